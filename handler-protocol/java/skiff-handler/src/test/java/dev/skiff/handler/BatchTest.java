package dev.skiff.handler;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** Batches (protocol 1.4) and the trace context of publish_message. */
class BatchTest {
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

  private void start(Handler h) {
    runner = new Thread(() -> {
      try {
        h.run();
      } catch (Throwable e) {
        runError.set(e);
      }
    });
    runner.start();
  }

  private void drainAndWait(FakeSkiff.Peer peer) throws Exception {
    peer.send(Map.of("type", "drain", "deadline", System.currentTimeMillis() + 5000));
    assertEquals("<closed>", peer.recv().get("type"));
    runner.join(10000);
    assertFalse(runner.isAlive(), "run() did not return after drain");
    assertNull(runError.get());
  }

  private static byte[] frame(Map<String, ?> f) {
    return Frames.encode(f);
  }

  /** The frames in a packed write; every one at most max, a results frame of 2 items or more. */
  @SuppressWarnings("unchecked")
  private static List<String> ids(ByteBuffer[] bufs, int max) {
    List<String> out = new ArrayList<>();
    for (ByteBuffer b : bufs) {
      while (b.hasRemaining()) {
        int n = b.getInt();
        assertTrue(n <= max, "a frame of " + n + " bytes above max_frame " + max);
        byte[] body = new byte[n];
        b.get(body);
        Map<String, Object> f = (Map<String, Object>) Json.parse(
            new String(body, StandardCharsets.UTF_8));
        if ("results".equals(f.get("type"))) {
          List<Object> items = (List<Object>) f.get("results");
          assertTrue(items.size() >= 2, "a results frame of one item");
          items.forEach(i -> out.add((String) ((Map<String, Object>) i).get("id")));
        } else {
          out.add(f.get("id") != null ? (String) f.get("id") : (String) f.get("type"));
        }
      }
    }
    return out;
  }

  @Test
  void packKeepsTheOrderAndMaxFrame() {
    List<Batches.Queued> q = new ArrayList<>();
    List<String> want = new ArrayList<>();
    for (int i = 0; i < 9; i++) {
      q.add(new Batches.Queued(frame(Map.of("type", "ack", "id", "k-" + i)), true));
      want.add("k-" + i);
      if (i == 4) {
        q.add(new Batches.Queued(frame(Map.of("type", "pong", "ref", "p")), false));
        want.add("pong");
      }
    }
    int one = q.get(0).data().length - 4;
    for (int max : new int[] {one, one + 20, 2 * one + 30, 3 * one + 30, 4096}) {
      assertEquals(want, ids(Batches.pack(q, true, max), max), "max " + max);
    }
    assertEquals(3, Batches.pack(q, true, 4096).length, "two results frames around the pong");
    assertEquals(q.size(), Batches.pack(q, false, 4096).length);
    assertEquals(want, ids(Batches.pack(q, false, 4096), 4096));
  }

  @Test
  void helloLeavesBatchOutWhenTurnedOff() throws Exception {
    start(builder(1).batch(false).job("a", t -> null).build());
    FakeSkiff.Peer peer = skiff.accept();
    assertEquals(List.of("cancel"), peer.handshake().get("features"));
    drainAndWait(peer);
  }

  /**
   * A tasks frame served item by item (an item without an id and one that is not a task
   * skipped, an unregistered job type failed) after an error frame with an index (a refused
   * results item: the session goes on); returns how many results frames came.
   */
  @SuppressWarnings("unchecked")
  private int serveTasksFrame(List<String> welcomeFeatures) throws Exception {
    CountDownLatch gate = new CountDownLatch(1);
    start(builder(16).job("gate", t -> {
      gate.await();
      return Map.of("pad", "p".repeat(1500)); // 12 results do not fit in one frame
    }).topic("t.ok", t -> { }).build());
    FakeSkiff.Peer peer = skiff.accept();
    assertEquals(List.of("cancel", "batch"),
        peer.handshake(welcomeFeatures, List.of(), 16384).get("features"));
    peer.send(Map.of("type", "error", "code", "unknown_task", "message", "no open task",
        "id", "z-0", "index", 1));
    List<Object> items = new ArrayList<>();
    Map<String, String> want = new HashMap<>();
    for (int i = 0; i < 12; i++) {
      Map<String, Object> t = FakeSkiff.task("gate", Map.of());
      t.put("id", "z-" + i);
      items.add(t);
      want.put("z-" + i, "complete");
    }
    Map<String, Object> noId = FakeSkiff.task("gate", Map.of());
    noId.remove("id");
    items.add(noId);
    items.add(Map.of("type", "cancel", "id", "x"));
    Map<String, Object> nope = FakeSkiff.task("nope", Map.of());
    want.put((String) nope.get("id"), "fail");
    items.add(nope);
    Map<String, Object> rec = FakeSkiff.record("t.ok", null);
    want.put((String) rec.get("id"), "ack");
    items.add(rec);
    Map<String, Object> tasks = new LinkedHashMap<>();
    tasks.put("type", "tasks");
    tasks.put("tasks", items);
    peer.send(tasks);
    gate.countDown();
    Map<String, String> got = new HashMap<>();
    int batched = 0;
    while (got.size() < want.size()) {
      Map<String, Object> f = peer.recv();
      List<Object> list = List.of(f);
      if ("results".equals(f.get("type"))) {
        batched++;
        assertTrue(Json.write(f).getBytes(StandardCharsets.UTF_8).length <= 16384);
        list = (List<Object>) f.get("results");
      }
      for (Object o : list) {
        Map<String, Object> r = (Map<String, Object>) o;
        assertNull(got.put((String) r.get("id"), (String) r.get("type")), "two results");
      }
    }
    assertEquals(want, got);
    peer.send(Map.of("type", "ping", "ref", "after"));
    assertEquals(Map.of("type", "pong", "ref", "after"), peer.recv());
    drainAndWait(peer);
    return batched;
  }

  @Test
  void aTasksFrameIsServedItemByItem() throws Exception {
    serveTasksFrame(List.of("batch", "cancel"));
  }

  @Test
  void noResultsFrameToASkiffWithoutBatch() throws Exception {
    assertEquals(0, serveTasksFrame(List.of("cancel")));
  }

  @Test
  @SuppressWarnings("unchecked")
  void publishMessageCarriesTheTraceContext() throws Exception {
    String tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    start(builder(1).job("pub", t -> t.publishMessage("paid", null, null, t.traceparent(),
        t.tracestate())).build());
    FakeSkiff.Peer peer = skiff.accept();
    peer.handshake();
    Map<String, Object> task = FakeSkiff.task("pub", Map.of());
    task.put("traceparent", tp);
    task.put("tracestate", "congo=t61rcWkgMzE");
    peer.send(task);
    Map<String, Object> call = peer.recv();
    assertEquals(Map.of("name", "paid", "correlation_key", "", "time_to_live_ms", 0L,
        "traceparent", tp, "tracestate", "congo=t61rcWkgMzE"), call.get("params"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", true,
        "result", Map.of("key", "1", "tenant_id", "<default>")));
    assertEquals("complete", peer.recv().get("type"));
    peer.send(FakeSkiff.task("pub", Map.of())); // no trace context: left out of the params
    call = peer.recv();
    assertEquals(Map.of("name", "paid", "correlation_key", "", "time_to_live_ms", 0L),
        call.get("params"));
    peer.send(Map.of("type", "reply", "ref", call.get("ref"), "ok", true,
        "result", Map.of("key", "2", "tenant_id", "<default>")));
    assertEquals("complete", peer.recv().get("type"));
    drainAndWait(peer);
  }
}
