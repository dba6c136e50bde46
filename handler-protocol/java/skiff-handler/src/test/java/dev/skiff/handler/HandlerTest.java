package dev.skiff.handler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

class HandlerTest {
  private FakeSkiff skiff;
  private Thread runner;
  private final AtomicReference<Throwable> runError = new AtomicReference<>();

  @BeforeEach
  void setUp() throws Exception {
    skiff = new FakeSkiff();
  }

  @AfterEach
  void tearDown() throws Exception {
    if (runner != null) {
      runner.interrupt();
      runner.join(5000);
    }
    skiff.close();
  }

  private Handler.Builder builder(int capacity) {
    return Handler.builder("unit").capacity(capacity).socketPath(skiff.path.toString())
        .backoff(Duration.ofMillis(20), Duration.ofMillis(100));
  }

  private Handler start(Handler h) {
    runner = new Thread(() -> {
      try {
        h.run();
      } catch (Throwable e) {
        runError.set(e);
      }
    });
    runner.start();
    return h;
  }

  private void drainAndWait(FakeSkiff.Peer peer) throws Exception {
    peer.send(Map.of("type", "drain", "deadline", System.currentTimeMillis() + 5000));
    assertEquals("<closed>", peer.recv().get("type"));
    runner.join(10000);
    assertFalse(runner.isAlive(), "run() did not return after drain");
    assertEquals(null, runError.get());
  }

  @Test
  void helloThenCompleteThenDrain() throws Exception {
    start(builder(3).job("score", t -> Map.of("doubled", (Long) t.variables().get("n") * 2))
        .topic("events", t -> { }).build());
    FakeSkiff.Peer peer = skiff.accept();
    Map<String, Object> hello = peer.handshake();
    assertEquals(List.of("type", "version", "name", "capacity", "job_types", "topics", "features"),
        new ArrayList<>(hello.keySet()));
    assertEquals(1L, hello.get("version"));
    assertEquals(3L, hello.get("capacity"));
    assertEquals(List.of("score"), hello.get("job_types"));
    assertEquals(List.of("events"), hello.get("topics"));
    assertEquals(List.of("cancel", "batch"), hello.get("features"));
    Map<String, Object> task = FakeSkiff.task("score", Map.of("n", 21));
    peer.send(task);
    Map<String, Object> r = peer.recv();
    assertEquals("complete", r.get("type"));
    assertEquals(task.get("id"), r.get("id"));
    assertEquals(Map.of("doubled", 42L), r.get("variables"));
    Map<String, Object> rec = FakeSkiff.record("events", Map.of("a", 1));
    peer.send(rec);
    assertEquals(Map.of("type", "ack", "id", rec.get("id")), peer.recv());
    drainAndWait(peer);
  }

  @Test
  void failCarriesTheStackOfTheFunction() throws Exception {
    start(builder(1).job("boom", HandlerTest::explode).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    peer.send(FakeSkiff.task("boom", Map.of()));
    Map<String, Object> r = peer.recv();
    assertEquals("fail", r.get("type"));
    assertEquals("IllegalStateException: boom inner", r.get("message"));
    assertFalse(r.containsKey("retries"));
    Map<?, ?> err = (Map<?, ?>) r.get("error");
    assertEquals("java.lang.IllegalStateException", err.get("type"));
    assertEquals("boom inner", err.get("message"));
    List<?> stack = (List<?>) err.get("stack");
    Map<?, ?> top = (Map<?, ?>) stack.get(0);
    assertEquals("dev/skiff/handler/HandlerTest.java", top.get("file"));
    assertEquals("dev.skiff.handler.HandlerTest.inner", top.get("function"));
    assertTrue((Long) top.get("line") > 0);
    assertEquals("dev.skiff.handler.HandlerTest.explode",
        ((Map<?, ?>) stack.get(1)).get("function"));
    for (Object f : stack) {
      assertFalse(((Map<?, ?>) f).get("function").toString().startsWith("java.util.concurrent"),
          "the stack stops where the SDK called the function: " + stack);
    }
    drainAndWait(peer);
  }

  private static Map<String, ?> explode(Task t) {
    return inner();
  }

  private static Map<String, ?> inner() {
    throw new IllegalStateException("boom inner");
  }

  @Test
  void typedFailuresAndKafkaResults() throws Exception {
    start(builder(1)
        .job("bpmn", t -> {
          throw new BpmnError("RISK", "too risky", Map.of("r", 1));
        })
        .job("failed", t -> {
          throw new JobFailed("later", 2, 5000L, null);
        })
        .topic("retry", t -> {
          throw new Retry("again", 250);
        })
        .topic("dlq", t -> {
          throw new DeadLetter("poison");
        })
        .topic("raise", t -> {
          throw new IllegalArgumentException("bad");
        })
        .build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    List<Map<String, Object>> tasks = List.of(FakeSkiff.task("bpmn", Map.of()),
        FakeSkiff.task("failed", Map.of()), FakeSkiff.record("retry", null),
        FakeSkiff.record("dlq", 1), FakeSkiff.record("raise", "x"),
        FakeSkiff.task("unknown-type", Map.of()), FakeSkiff.record("unknown.topic", null));
    List<Map<String, Object>> results = new ArrayList<>();
    for (Map<String, Object> t : tasks) {
      peer.send(t);
      Map<String, Object> r = new LinkedHashMap<>(peer.recv());
      assertEquals(t.get("id"), r.remove("id"));
      results.add(r);
    }
    assertEquals(Map.of("type", "bpmn_error", "code", "RISK", "message", "too risky",
        "variables", Map.of("r", 1L)), results.get(0));
    assertEquals(Map.of("type", "fail", "message", "later", "retries", 2L,
        "retry_backoff_ms", 5000L), results.get(1));
    assertEquals(Map.of("type", "nack", "message", "again", "retry_backoff_ms", 250L),
        results.get(2));
    assertEquals(Map.of("type", "nack", "message", "poison", "dead_letter", true),
        results.get(3));
    assertEquals("IllegalArgumentException: bad", results.get(4).get("message"));
    assertEquals("java.lang.IllegalArgumentException",
        ((Map<?, ?>) results.get(4).get("error")).get("type"));
    assertFalse(results.get(4).containsKey("dead_letter"));
    assertEquals("fail", results.get(5).get("type"));
    assertTrue(results.get(5).get("message").toString().contains("unknown-type"));
    assertEquals(Map.of("type", "nack", "message", "no handler for topic unknown.topic"),
        results.get(6));
    drainAndWait(peer);
  }

  @Test
  void pingIsAnsweredWhileEveryTaskIsBusy() throws Exception {
    CountDownLatch release = new CountDownLatch(1);
    start(builder(1).job("block", t -> {
      release.await();
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    Map<String, Object> task = FakeSkiff.task("block", Map.of());
    peer.send(task);
    peer.send(Map.of("type", "ping", "ref", "7"));
    assertEquals(Map.of("type", "pong", "ref", "7"), peer.recv());
    peer.send(Map.of("type", "drain", "deadline", System.currentTimeMillis() + 5000));
    peer.assertSilent();
    release.countDown();
    assertEquals(Map.of("type", "complete", "id", task.get("id")), peer.recv());
    assertEquals("<closed>", peer.recv().get("type"));
    runner.join(10000);
    assertFalse(runner.isAlive());
  }

  @Test
  void cancelInterruptsTheFunctionAndItsResultIsNeverSent() throws Exception {
    CountDownLatch interrupted = new CountDownLatch(1);
    AtomicReference<String> extendCode = new AtomicReference<>();
    start(builder(1).job("slow", t -> {
      try {
        Thread.sleep(30000);
      } catch (InterruptedException e) {
        interrupted.countDown();
      }
      try {
        t.extend(1000);
      } catch (CallError e) {
        extendCode.set(e.code());
      }
      return Map.of("late", true);
    }).job("quick", t -> null).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    Map<String, Object> slow = FakeSkiff.task("slow", Map.of());
    peer.send(slow);
    peer.send(Map.of("type", "cancel", "id", slow.get("id"), "reason", "deadline"));
    assertTrue(interrupted.await(10, TimeUnit.SECONDS), "the function was not interrupted");
    Map<String, Object> quick = FakeSkiff.task("quick", Map.of());
    peer.send(quick);
    assertEquals(Map.of("type", "complete", "id", quick.get("id")), peer.recv());
    peer.assertSilent();
    assertEquals("cancelled", extendCode.get());
    drainAndWait(peer);
  }

  @Test
  void awaitCancelReportsTheReasonAndConsumesTheInterrupt() throws Exception {
    AtomicReference<String> seen = new AtomicReference<>();
    start(builder(1).job("wait", t -> {
      boolean cancelled = t.awaitCancel(10000);
      seen.set(cancelled + " " + t.cancelReason() + " " + Thread.currentThread().isInterrupted());
      t.publishMessage("cancelled", t.id(), null);
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    Map<String, Object> task = FakeSkiff.task("wait", Map.of());
    peer.send(task);
    peer.send(Map.of("type", "cancel", "id", task.get("id"), "reason", "job_gone"));
    Map<String, Object> call = peer.recv();
    assertEquals("call", call.get("type"));
    assertEquals(Map.of("name", "cancelled", "correlation_key", task.get("id"),
        "time_to_live_ms", 0L), call.get("params"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", true,
        "result", Map.of("key", "1")));
    peer.assertSilent();
    assertEquals("true job_gone false", seen.get());
    drainAndWait(peer);
  }

  @Test
  void extendAndCallsMapRepliesAndRefuseLocally() throws Exception {
    List<String> outcomes = new ArrayList<>();
    start(builder(1).job("work", t -> {
      outcomes.add("deadline " + t.extend(60000) + " " + t.deadline());
      try {
        t.publishMessage("paid", "order-42", Map.of("a", 1));
      } catch (CallError e) {
        outcomes.add(e.code() + " " + e.errorMessage());
      }
      try {
        t.produce("topic", null, null, null);
      } catch (CallError e) {
        outcomes.add(e.code());
      }
      try {
        t.extend(0);
      } catch (IllegalArgumentException e) {
        outcomes.add("refused 0");
      }
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake(List.of("cancel", "extend"), List.of("publish_message"), 1 << 20);
    Map<String, Object> task = FakeSkiff.task("work", Map.of());
    peer.send(task);
    Map<String, Object> ext = peer.recv();
    assertEquals("extend", ext.get("type"));
    assertEquals(task.get("id"), ext.get("id"));
    assertEquals(60000L, ext.get("timeout_ms"));
    peer.send(Map.of("type", "reply", "ref", ext.get("ref"), "ok", true,
        "result", Map.of("deadline", 1234L)));
    Map<String, Object> call = peer.recv();
    assertEquals("publish_message", call.get("method"));
    assertEquals(Map.of("name", "paid", "correlation_key", "order-42", "variables",
        Map.of("a", 1L), "time_to_live_ms", 0L), call.get("params"));
    peer.send(Map.of("type", "reply", "ref", "no-such-ref", "ok", true));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", false,
        "error", Map.of("code", "brand_new_code", "message", "m")));
    assertEquals(Map.of("type", "complete", "id", task.get("id")), peer.recv());
    assertEquals(List.of("deadline 1234 1234", "brand_new_code m", "unsupported", "refused 0"),
        outcomes);
    drainAndWait(peer);
  }

  @Test
  void secretAndTokenCalls() throws Exception {
    List<String> outcomes = new ArrayList<>();
    Handler[] self = new Handler[1];
    self[0] = start(builder(1).job("work", t -> {
      outcomes.add(t.secret("vault:secret/app/db#password"));
      try {
        self[0].token("billing-api");
      } catch (CallError e) {
        outcomes.add(e.code() + " " + e.errorMessage());
      }
      try {
        t.secret("");
      } catch (CallError e) {
        outcomes.add(e.code());
      }
      try {
        t.token("other-api");
      } catch (CallError e) {
        outcomes.add(e.code());
      }
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake(List.of("cancel"), List.of("publish_message", "secret", "token"), 1 << 20);
    Map<String, Object> task = FakeSkiff.task("work", Map.of());
    peer.send(task);
    Map<String, Object> call = peer.recv();
    assertEquals("secret", call.get("method"));
    assertEquals(Map.of("reference", "vault:secret/app/db#password"), call.get("params"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", true,
        "result", Map.of("value", "s3cret \u00e9", "version", 3L)));
    call = peer.recv();
    assertEquals("token", call.get("method"));
    assertEquals(Map.of("audience", "billing-api"), call.get("params"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", false,
        "error", Map.of("code", "forbidden", "message", "not allowed")));
    call = peer.recv();
    assertEquals("token", call.get("method"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", true,
        "result", Map.of("expires_at", 1L)));
    assertEquals(Map.of("type", "complete", "id", task.get("id")), peer.recv());
    assertEquals(List.of("s3cret \u00e9", "forbidden not allowed", "invalid_params",
        "invalid_reply"), outcomes);
    drainAndWait(peer);
  }

  @Test
  void secretWithoutTheMethodIsRefusedLocally() throws Exception {
    List<String> outcomes = new ArrayList<>();
    start(builder(1).job("work", t -> {
      try {
        t.secret("vault:secret/app/db#password");
      } catch (CallError e) {
        outcomes.add(e.code());
      }
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake(List.of("cancel"), List.of("publish_message"), 1 << 20);
    Map<String, Object> task = FakeSkiff.task("work", Map.of());
    peer.send(task);
    assertEquals(Map.of("type", "complete", "id", task.get("id")), peer.recv());
    assertEquals(List.of("unsupported"), outcomes);
    drainAndWait(peer);
  }

  @Test
  void extendWithoutTheFeatureIsRefusedLocally() throws Exception {
    start(builder(1).job("work", t -> Map.of("deadline", t.extend(1000))).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake(List.of(), List.of(), 1 << 20);
    peer.send(FakeSkiff.task("work", Map.of()));
    Map<String, Object> r = peer.recv();
    assertEquals("fail", r.get("type"));
    assertTrue(r.get("message").toString().contains("unsupported"), r.toString());
    drainAndWait(peer);
  }

  @Test
  void aResultAboveMaxFrameBecomesAFail() throws Exception {
    start(builder(1).job("big", t -> Map.of("blob", "x".repeat(5000))).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake(List.of(), List.of(), 1000);
    peer.send(FakeSkiff.task("big", Map.of()));
    Map<String, Object> r = peer.recv();
    assertEquals("fail", r.get("type"));
    assertTrue(r.get("message").toString().contains("max_frame 1000"), r.toString());
    drainAndWait(peer);
  }

  @Test
  void badBodiesAreIgnoredAndInFlightTasksStillAnswered() throws Exception {
    CountDownLatch release = new CountDownLatch(1);
    start(builder(2).job("block", t -> {
      release.await();
      return Map.of("ok", true);
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    Map<String, Object> task = FakeSkiff.task("block", Map.of());
    peer.send(task);
    peer.sendRaw("{not json".getBytes(StandardCharsets.UTF_8));
    peer.sendRaw(new byte[] {(byte) 0xff, (byte) 0xfe});
    peer.sendRaw("[1,2]".getBytes(StandardCharsets.UTF_8));
    peer.sendRaw("{\"type\":5}".getBytes(StandardCharsets.UTF_8));
    peer.send(Map.of("type", "no-such-type"));
    peer.send(Map.of("type", "cancel", "id", "z-unknown", "reason", "deadline"));
    peer.send(Map.of("type", "task", "source", "zeebe"));
    Map<String, Object> bad = FakeSkiff.task("block", Map.of());
    bad.put("variables", List.of(1));
    peer.send(bad);
    Map<String, Object> r = peer.recv();
    assertEquals("fail", r.get("type"));
    assertEquals(bad.get("id"), r.get("id"));
    assertTrue(r.get("message").toString().contains("variables"), r.toString());
    release.countDown();
    assertEquals(Map.of("type", "complete", "id", task.get("id"), "variables",
        Map.of("ok", true)), peer.recv());
    drainAndWait(peer);
  }

  @Test
  void lostFramingClosesAndReconnects() throws Exception {
    start(builder(1).job("t", t -> null).build());
    FakeSkiff.Peer first = skiff.accept();
    first.handshake();
    first.sendRaw(new byte[0]);
    assertEquals("<closed>", first.recv().get("type"));
    FakeSkiff.Peer second = skiff.accept();
    second.handshake();
    Map<String, Object> task = FakeSkiff.task("t", Map.of());
    second.send(task);
    assertEquals(Map.of("type", "complete", "id", task.get("id")), second.recv());
    drainAndWait(second);
  }

  @Test
  void waitsForSkiffAndReconnectsAfterItRestarts() throws Exception {
    skiff.stopListening();
    start(builder(1).job("t", t -> null).build());
    Thread.sleep(200); // a few connection attempts fail meanwhile
    skiff.listen();
    FakeSkiff.Peer first = skiff.accept();
    first.handshake();
    first.close(); // skiff restarts
    FakeSkiff.Peer second = skiff.accept();
    second.handshake();
    Map<String, Object> task = FakeSkiff.task("t", Map.of());
    second.send(task);
    assertEquals(Map.of("type", "complete", "id", task.get("id")), second.recv());
    drainAndWait(second);
  }

  @Test
  void anErrorAnsweringHelloStopsTheHandler() throws Exception {
    start(builder(1).job("t", t -> null).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.recv();
    peer.send(Map.of("type", "error", "code", "protocol", "message", "job type t not served"));
    runner.join(10000);
    assertFalse(runner.isAlive());
    ProtocolError e = assertInstanceOf(ProtocolError.class, runError.get());
    assertEquals("protocol", e.code());
  }

  @Test
  void functionsRunOnVirtualThreadsWhereTheRuntimeHasThem() throws Exception {
    AtomicReference<Boolean> virtual = new AtomicReference<>();
    start(builder(1).job("t", t -> {
      virtual.set((Boolean) Thread.class.getMethod("isVirtual").invoke(Thread.currentThread()));
      return null;
    }).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    peer.send(FakeSkiff.task("t", Map.of()));
    Map<String, Object> r = peer.recv();
    if (Runtime.version().feature() >= 21) {
      assertEquals("complete", r.get("type"), r.toString());
      assertEquals(Boolean.TRUE, virtual.get());
    } else {
      assertEquals("fail", r.get("type")); // Thread.isVirtual does not exist before JDK 21
    }
    drainAndWait(peer);
  }
}
