package dev.skiff.conformance;

import dev.skiff.handler.BpmnError;
import dev.skiff.handler.CallError;
import dev.skiff.handler.DeadLetter;
import dev.skiff.handler.Handler;
import dev.skiff.handler.JobFailed;
import dev.skiff.handler.KafkaRecord;
import dev.skiff.handler.ProtocolError;
import dev.skiff.handler.Retry;
import dev.skiff.handler.Task;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;

/**
 * The Java SDK's conformance handler: the job types and topics of
 * handler-protocol/conformance/CONTRACT.md (level 2), through the SDK's ordinary API.
 * Environment: SKIFF_SOCKET, CONF_NAME, CONF_CAPACITY (default 2), CONF_MODE (all, zeebe, kafka).
 */
public final class ConformanceHandler {
  private static final Object LOCK = new Object();
  private static int active;
  private static int maxActive;

  private ConformanceHandler() {}

  public static void main(String[] args) throws Exception {
    String mode = env("CONF_MODE", "all");
    Handler.Builder b = Handler.builder(env("CONF_NAME", "conformance-java"))
        .capacity(Integer.parseInt(env("CONF_CAPACITY", "2")))
        .backoff(Duration.ofMillis(50), Duration.ofMillis(200));
    Handler[] self = new Handler[1];
    if (!mode.equals("kafka")) {
      jobs(b, self);
    }
    if (!mode.equals("zeebe")) {
      topics(b);
    }
    self[0] = b.build();
    try {
      self[0].run();
    } catch (ProtocolError e) {
      System.err.println("conformance-java: " + e.getMessage());
      System.exit(2);
    }
    System.exit(0);
  }

  private static String env(String name, String dflt) {
    String v = System.getenv(name);
    return v == null || v.isEmpty() ? dflt : v;
  }

  private static void jobs(Handler.Builder b, Handler[] self) {
    b.job("conf-complete", ConformanceHandler::complete);
    b.job("conf-none", task -> null);
    b.job("conf-raise", task -> {
      throw new IllegalStateException("boom " + task.variables().getOrDefault("msg", ""));
    });
    b.job("conf-bpmn", task -> {
      throw new BpmnError("RISK_TOO_HIGH", "too risky", Map.of("reason", "amount"));
    });
    b.job("conf-jobfailed", task -> {
      throw new JobFailed("try later", 2, 5000L, Map.of("attempted", true));
    });
    b.job("conf-async", task -> CompletableFuture
        .supplyAsync(() -> Map.of("async", true),
            CompletableFuture.delayedExecutor(10, TimeUnit.MILLISECONDS))
        .get());
    b.job("conf-sleep", ConformanceHandler::sleep);
    b.job("conf-big", task -> Map.of("blob", "x".repeat(number(task.variables(), "size", 0))));
    b.job("conf-extend", ConformanceHandler::extend);
    b.job("conf-wait-cancel", ConformanceHandler::waitCancel);
    b.job("conf-publish", task -> call(task, () -> {
      Map<String, Object> params = params(task);
      return "handler".equals(task.variables().get("via"))
          ? self[0].publishMessage(params) : task.publishMessage(params);
    }));
    b.job("conf-produce", task -> call(task, () -> {
      Map<String, Object> p = params(task);
      @SuppressWarnings("unchecked")
      Map<String, String> headers = (Map<String, String>) p.get("headers");
      String topic = (String) p.get("topic");
      String key = (String) p.get("key");
      return "handler".equals(task.variables().get("via"))
          ? self[0].produce(topic, p.get("value"), key, headers)
          : task.produce(topic, p.get("value"), key, headers);
    }));
    b.job("conf-secret", task -> text(() -> {
      String reference = string(task, "reference");
      return "handler".equals(task.variables().get("via"))
          ? self[0].secret(reference) : task.secret(reference);
    }));
    b.job("conf-token", task -> text(() -> {
      String audience = string(task, "audience");
      return "handler".equals(task.variables().get("via"))
          ? self[0].token(audience) : task.token(audience);
    }));
    b.job("conf-echo", task -> {
      Map<String, Object> out = new LinkedHashMap<>();
      out.put("echo", task.variables());
      out.put("key", task.job().key());
      out.put("process_instance_key", task.job().processInstanceKey());
      return out;
    });
  }

  private static Map<String, Object> complete(Task task) {
    Map<String, Object> seen = new LinkedHashMap<>();
    seen.put("id", task.id());
    seen.put("job_type", task.jobType());
    seen.put("headers", task.headers());
    seen.put("key", task.job().key());
    seen.put("retries", task.job().retries());
    seen.put("traceparent", task.traceparent());
    seen.put("deadline", task.deadline());
    seen.put("attempt", task.attempt());
    Map<String, Object> out = new LinkedHashMap<>();
    out.put("doubled", ((Number) task.variables().get("n")).longValue() * 2);
    out.put("seen", seen);
    return out;
  }

  private static Map<String, Object> sleep(Task task) throws InterruptedException {
    int seen;
    synchronized (LOCK) {
      seen = ++active;
      maxActive = Math.max(maxActive, active);
    }
    Thread.sleep(number(task.variables(), "ms", 100));
    synchronized (LOCK) {
      active--;
      return Map.of("active_at_start", seen, "max_active", maxActive);
    }
  }

  private static Map<String, Object> extend(Task task) {
    long ms = number(task.variables(), "ms", 0);
    try {
      long deadline = task.extend(ms);
      return Map.of("deadline", deadline, "task_deadline", task.deadline());
    } catch (CallError e) {
      return callError(e);
    }
  }

  private static Map<String, Object> waitCancel(Task task) throws InterruptedException {
    boolean cancelled = task.awaitCancel(number(task.variables(), "ms", 5000));
    String extendError = null;
    try {
      task.extend(1000);
    } catch (CallError e) {
      extendError = e.code();
    }
    Map<String, Object> seen = new LinkedHashMap<>();
    seen.put("cancelled", cancelled);
    seen.put("reason", task.cancelReason());
    seen.put("extend_error", extendError);
    task.publishMessage("cancelled", task.id(), seen);
    return Map.of("late", true); // the SDK must not send this: the task was cancelled
  }

  private interface Call {
    Map<String, Object> run();
  }

  private static Map<String, Object> call(Task task, Call c) {
    try {
      return Map.of("result", c.run());
    } catch (CallError e) {
      return callError(e);
    }
  }

  /** conf-secret, conf-token (CONTRACT.md §4a): the string result, or the call error. */
  private static Map<String, Object> text(java.util.function.Supplier<String> c) {
    try {
      return Map.of("result", c.get());
    } catch (CallError e) {
      return callError(e);
    }
  }

  private static String string(Task task, String name) {
    Object v = task.variables().get(name);
    return v instanceof String s ? s : "";
  }

  private static Map<String, Object> callError(CallError e) {
    return Map.of("error", Map.of("code", e.code(), "message", e.errorMessage()));
  }

  @SuppressWarnings("unchecked")
  private static Map<String, Object> params(Task task) {
    Object p = task.variables().get("params");
    return p instanceof Map<?, ?> m ? (Map<String, Object>) m : Map.of();
  }

  private static int number(Object map, String name, int dflt) {
    Object v = map instanceof Map<?, ?> m ? m.get(name) : null;
    return v instanceof Number n ? n.intValue() : dflt;
  }

  private static String msg(Object value) {
    Object v = value instanceof Map<?, ?> m ? m.get("msg") : null;
    return v == null ? "" : v.toString();
  }

  private static void topics(Handler.Builder b) {
    b.topic("conf.seen", ConformanceHandler::seen);
    b.topic("conf.ok", task -> { });
    b.topic("conf.raise", task -> {
      throw new IllegalStateException("bad record " + msg(task.value()));
    });
    b.topic("conf.retry", task -> {
      throw new Retry("try later", number(task.value(), "ms", 0));
    });
    b.topic("conf.retry-default", task -> {
      throw new Retry("try later");
    });
    b.topic("conf.dlq", task -> {
      throw new DeadLetter("poison record");
    });
    b.topic("conf.async", task -> CompletableFuture
        .runAsync(() -> { }, CompletableFuture.delayedExecutor(10, TimeUnit.MILLISECONDS))
        .get());
    b.topic("conf.extend", task -> task.extend(1000));
    b.topic("conf.wait-cancel", task -> {
      boolean cancelled = task.awaitCancel(number(task.value(), "ms", 5000));
      Map<String, Object> seen = new LinkedHashMap<>();
      seen.put("cancelled", cancelled);
      seen.put("reason", task.cancelReason());
      task.produce("conf.cancelled", seen, null, null);
    });
  }

  private static void seen(Task task) {
    KafkaRecord r = task.record();
    Map<String, Object> rec = new LinkedHashMap<>();
    rec.put("topic", r.topic());
    rec.put("partition", r.partition());
    rec.put("offset", r.offset());
    rec.put("key", r.key());
    rec.put("key_base64", r.keyBase64());
    rec.put("headers", r.headers());
    rec.put("headers_base64", r.headersBase64());
    rec.put("timestamp", r.timestamp());
    rec.put("schema_id", r.schemaId());
    Map<String, Object> v = new LinkedHashMap<>();
    v.put("id", task.id());
    v.put("source", task.source());
    v.put("topic", task.topic());
    v.put("value", task.value());
    v.put("attempt", task.attempt());
    v.put("deadline", task.deadline());
    v.put("traceparent", task.traceparent());
    v.put("record", rec);
    task.produce("conf.seen.out", v, r.key(), Map.of("seen-by", "conformance"));
  }
}
