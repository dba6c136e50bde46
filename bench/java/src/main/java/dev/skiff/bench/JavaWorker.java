// Peer contender of bench/run.sh (Java): a job worker of the official Zeebe Java client
// (io.camunda:zeebe-client-java), one per job type, doing the bench's trivial work: complete the
// job with {"ok": true}, as the client's documentation does it (send().join() in the handler).
//
//   java -cp bench/java/target/skiff-bench-java.jar:bench/java/target/lib/* \
//       dev.skiff.bench.JavaWorker --address 127.0.0.1:26700 --types a,b --max-jobs 32 \
//       [--stream true] [--poll-interval-ms 100] [--threads 1] [--hold true]
//
// Everything not given stays at the client's default (8.5: maxJobsActive 32, pollInterval
// 100 ms, requestTimeout 10 s (long polling), 1 job worker execution thread, streaming off).
// --hold true: the handler keeps every job without completing it until a line "release" arrives
// on stdin, then completes them all (the bench's "1,000 jobs in flight" phase).
// Prints "ready" once the workers are open (they poll from then on). SIGTERM: exit.
package dev.skiff.bench;

import io.camunda.zeebe.client.ZeebeClient;
import io.camunda.zeebe.client.ZeebeClientBuilder;
import io.camunda.zeebe.client.api.response.ActivatedJob;
import io.camunda.zeebe.client.api.worker.JobClient;
import io.camunda.zeebe.client.api.worker.JobWorkerBuilderStep1.JobWorkerBuilderStep3;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

public final class JavaWorker {
  private static final Map<String, Object> RESULT = Map.of("ok", true);

  private record Held(JobClient client, ActivatedJob job) {}

  /**
   * Completes the held jobs, 32 at a time (1,000 at once overflow the broker's command buffer:
   * RESOURCE_EXHAUSTED), retrying a rejected completion after 20 ms.
   */
  private static int release(final ConcurrentLinkedQueue<Held> held) throws InterruptedException {
    final ExecutorService pool = Executors.newFixedThreadPool(32);
    final AtomicInteger done = new AtomicInteger();
    Held h;
    while ((h = held.poll()) != null) {
      final Held job = h;
      pool.execute(
          () -> {
            for (int attempt = 0; ; attempt++) {
              try {
                job.client().newCompleteCommand(job.job()).variables(RESULT).send().join();
                done.incrementAndGet();
                return;
              } catch (final RuntimeException e) {
                if (attempt >= 100) {
                  System.err.println("completing job " + job.job().getKey() + " failed: " + e);
                  return;
                }
                try {
                  Thread.sleep(20);
                } catch (final InterruptedException ie) {
                  return;
                }
              }
            }
          });
    }
    pool.shutdown();
    pool.awaitTermination(5, TimeUnit.MINUTES);
    return done.get();
  }

  public static void main(final String[] argv) throws Exception {
    final Map<String, String> a = new HashMap<>();
    for (int i = 0; i < argv.length; i += 2) {
      if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
        throw new IllegalArgumentException("bad argument " + argv[i]);
      }
      a.put(argv[i].substring(2), argv[i + 1]);
    }
    final boolean hold = Boolean.parseBoolean(a.getOrDefault("hold", "false"));

    ZeebeClientBuilder builder =
        ZeebeClient.newClientBuilder()
            .grpcAddress(URI.create("http://" + a.get("address")))
            .usePlaintext();
    if (a.containsKey("threads")) {
      builder = builder.numJobWorkerExecutionThreads(Integer.parseInt(a.get("threads")));
    }
    final ZeebeClient client = builder.build();

    final ConcurrentLinkedQueue<Held> held = new ConcurrentLinkedQueue<>();
    for (final String type : a.get("types").split(",")) {
      JobWorkerBuilderStep3 w =
          client
              .newWorker()
              .jobType(type)
              .handler(
                  (jobClient, job) -> {
                    if (hold) {
                      held.add(new Held(jobClient, job));
                    } else {
                      jobClient.newCompleteCommand(job).variables(RESULT).send().join();
                    }
                  });
      if (a.containsKey("max-jobs")) {
        w = w.maxJobsActive(Integer.parseInt(a.get("max-jobs")));
      }
      if (a.containsKey("poll-interval-ms")) {
        w = w.pollInterval(Duration.ofMillis(Long.parseLong(a.get("poll-interval-ms"))));
      }
      if (a.containsKey("stream")) {
        w = w.streamEnabled(Boolean.parseBoolean(a.get("stream")));
      }
      w.open();
    }
    System.out.println("ready");
    System.out.flush();

    // stdin: "release" completes the held jobs; end of input: keep running until SIGTERM.
    final BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    String line;
    while ((line = in.readLine()) != null) {
      if (line.trim().equals("release")) {
        System.out.println("released " + release(held));
        System.out.flush();
      }
    }
    Thread.currentThread().join();
  }
}
