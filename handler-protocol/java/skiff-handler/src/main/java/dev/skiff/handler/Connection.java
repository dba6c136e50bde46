package dev.skiff.handler;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.CharBuffer;
import java.nio.channels.SocketChannel;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CharsetDecoder;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicLong;
import java.util.logging.Level;
import java.util.logging.Logger;

/**
 * One session with skiff: the framing, a writer thread (so that interrupting a task's thread
 * never closes the socket; it writes all that is queued at once, so results finishing while it
 * writes leave together), the open tasks and the pending extends and calls.
 */
final class Connection {
  private static final Logger LOG = Logger.getLogger("dev.skiff.handler");

  /** What {@link #recv()} returns for a frame that was logged and ignored. */
  static final Map<String, Object> SKIPPED = Map.of("type", "");

  private final SocketChannel ch;
  private ByteBuffer in = ByteBuffer.allocate(1 << 16).flip();
  private final CharsetDecoder utf8 = StandardCharsets.UTF_8.newDecoder()
      .onMalformedInput(CodingErrorAction.REPORT)
      .onUnmappableCharacter(CodingErrorAction.REPORT);

  volatile int maxFrame = Frames.DEFAULT_MAX_FRAME;
  volatile Set<String> features = Set.of();
  volatile Set<String> methods = Set.of();

  final Object lock = new Object();
  final Map<String, Task> open = new HashMap<>();
  private final Map<String, Pending> pending = new HashMap<>();
  int inFlight;
  int running;
  boolean draining;
  private boolean closed;
  private final AtomicLong refs = new AtomicLong();

  private final Object outLock = new Object();
  private final ArrayDeque<Batches.Queued> out = new ArrayDeque<>();
  private boolean closeWhenFlushed;
  private boolean outClosed;
  private final Thread writer;

  private static final class Pending {
    final Task task;
    final CountDownLatch done = new CountDownLatch(1);
    volatile Map<String, Object> reply;

    Pending(Task task) {
      this.task = task;
    }
  }

  Connection(SocketChannel ch) {
    this.ch = ch;
    writer = new Thread(this::writeLoop, "skiff-writer");
    writer.setDaemon(true);
    writer.start();
  }

  // ---- reading (only the reader thread) ----

  /** The next frame, {@link #SKIPPED} for a bad body, or null when the connection ended. */
  Map<String, Object> recv() {
    try {
      if (!fill(4)) {
        return null;
      }
      int n = in.getInt();
      int max = maxFrame;
      if (n <= 0 || n > max) {
        LOG.severe("skiff sent a frame of " + Integer.toUnsignedString(n) + " bytes (max " + max
            + "): the framing is lost, closing");
        return null;
      }
      if (!fill(n)) {
        return null;
      }
      ByteBuffer body = in.slice(in.position(), n);
      in.position(in.position() + n);
      return decode(body);
    } catch (IOException e) {
      LOG.fine("read ended: " + e);
      return null;
    }
  }

  private boolean fill(int need) throws IOException {
    while (in.remaining() < need) {
      if (in.capacity() < need) {
        ByteBuffer bigger = ByteBuffer.allocate(Math.max(need, in.capacity() * 2));
        bigger.put(in).flip();
        in = bigger;
      }
      in.compact();
      int n = ch.read(in);
      in.flip();
      if (n < 0) {
        return false;
      }
    }
    return true;
  }

  @SuppressWarnings("unchecked")
  private Map<String, Object> decode(ByteBuffer body) {
    Object v;
    try {
      CharBuffer text = utf8.decode(body);
      v = Json.parse(text.toString());
    } catch (CharacterCodingException e) {
      LOG.severe("skiff sent a frame that is not UTF-8; ignoring it");
      return SKIPPED;
    } catch (Json.JsonException e) {
      LOG.severe("skiff sent a frame that is not JSON (" + e.getMessage() + "); ignoring it");
      return SKIPPED;
    }
    if (!(v instanceof Map<?, ?> m) || !(m.get("type") instanceof String)) {
      LOG.severe("skiff sent a frame that is not an object with a string type; ignoring it");
      return SKIPPED;
    }
    return (Map<String, Object>) v;
  }

  // ---- writing ----

  /** Queues a frame; false if the connection is closed (the frame is dropped). */
  boolean send(Map<String, ?> frame) {
    return sendBytes(Frames.encode(frame));
  }

  boolean sendBytes(byte[] data) {
    return queue(data, false);
  }

  /**
   * Queues a result frame: with the welcome feature "batch", the results queued together leave
   * in one {@code results} frame (see {@link Batches}).
   */
  boolean sendResult(byte[] data) {
    return queue(data, true);
  }

  private boolean queue(byte[] data, boolean result) {
    synchronized (outLock) {
      if (outClosed || closeWhenFlushed) {
        return false;
      }
      out.add(new Batches.Queued(data, result));
      outLock.notifyAll();
      return true;
    }
  }

  private void writeLoop() {
    while (true) {
      ByteBuffer[] batch;
      boolean last;
      synchronized (outLock) {
        while (out.isEmpty() && !closeWhenFlushed && !outClosed) {
          try {
            outLock.wait();
          } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            return;
          }
        }
        if (outClosed) {
          return;
        }
        // everything queued leaves in one write (the results among it batched when skiff
        // takes batches); what is queued meanwhile goes in the next one
        batch = Batches.pack(out, features.contains("batch"), maxFrame);
        out.clear();
        last = closeWhenFlushed;
      }
      if (!writeAll(batch) || last) {
        shutdownSocket();
        return;
      }
    }
  }

  private boolean writeAll(ByteBuffer[] batch) {
    int n = batch.length;
    try {
      int first = 0;
      while (first < n) {
        ch.write(batch, first, n - first);
        while (first < n && !batch[first].hasRemaining()) {
          batch[first++] = null;
        }
      }
      return true;
    } catch (IOException e) {
      LOG.fine("write failed: " + e);
      return false;
    }
  }

  /** Sends what is queued, then shuts the socket down (the reader sees the end). */
  void closeWhenFlushed() {
    synchronized (outLock) {
      closeWhenFlushed = true;
      outLock.notifyAll();
    }
  }

  private void shutdownSocket() {
    synchronized (outLock) {
      outClosed = true;
      out.clear();
      outLock.notifyAll();
    }
    try {
      ch.shutdownOutput();
      ch.shutdownInput();
    } catch (IOException e) {
      LOG.fine("shutdown: " + e);
    }
  }

  /** Closes the socket now (unsent frames are dropped). */
  void abort() {
    synchronized (outLock) {
      outClosed = true;
      out.clear();
      outLock.notifyAll();
    }
    try {
      ch.close();
    } catch (IOException e) {
      LOG.fine("close: " + e);
    }
  }

  // ---- requests (extend, call) ----

  Map<String, Object> call(String method, Map<String, Object> params) {
    if (!methods.contains(method)) {
      throw new CallError("unsupported", "skiff does not offer the method " + method);
    }
    Map<String, Object> members = new LinkedHashMap<>();
    members.put("method", method);
    members.put("params", params);
    return request("call", members, null);
  }

  /** Sends a frame with a fresh {@code ref} and waits for its reply's result. */
  @SuppressWarnings("unchecked")
  Map<String, Object> request(String type, Map<String, Object> members, Task task) {
    Pending p = new Pending(task);
    String ref;
    byte[] data;
    synchronized (lock) {
      if (closed) {
        throw new CallError("closed", "not connected to skiff");
      }
      if (task != null && task.isCancelled()) {
        throw new CallError("cancelled",
            "task " + task.id() + " was cancelled (" + task.cancelReason() + ")");
      }
      if (task != null && open.get(task.id()) != task) {
        throw new CallError("closed", "task " + task.id() + " is no longer open");
      }
      ref = Long.toString(refs.incrementAndGet());
      Map<String, Object> f = Frames.frame(type);
      f.put("ref", ref);
      f.putAll(members);
      try {
        data = Frames.encode(f);
      } catch (Json.JsonException e) {
        throw new CallError("invalid_params", "not JSON: " + e.getMessage());
      }
      if (data.length - 4 > maxFrame) {
        throw new CallError("invalid_params", type + " frame of " + (data.length - 4)
            + " bytes exceeds max_frame " + maxFrame);
      }
      pending.put(ref, p);
    }
    if (!sendBytes(data)) {
      resolve(ref, failure("closed", "connection to skiff lost"));
    }
    try {
      p.done.await();
    } catch (InterruptedException e) {
      synchronized (lock) {
        pending.remove(ref);
      }
      Thread.currentThread().interrupt();
      if (p.reply == null) {
        throw new CallError("cancelled", "interrupted while waiting for the reply");
      }
    }
    Map<String, Object> reply = p.reply;
    if (Boolean.TRUE.equals(reply.get("ok"))) {
      return reply.get("result") instanceof Map<?, ?> r ? (Map<String, Object>) r : Map.of();
    }
    Map<String, Object> err = Json.asObject(reply.get("error"));
    Object code = err.get("code");
    Object msg = err.get("message");
    throw new CallError(code instanceof String s ? s : "rejected", msg instanceof String s ? s : "");
  }

  /** Hands a reply to the request waiting for {@code ref} (a reply nobody waits for is ignored). */
  void resolve(String ref, Map<String, Object> reply) {
    Pending p;
    synchronized (lock) {
      p = pending.remove(ref);
    }
    if (p != null) {
      p.reply = reply;
      p.done.countDown();
    } else {
      LOG.fine("reply for unknown ref " + ref);
    }
  }

  static Map<String, Object> failure(String code, String message) {
    Map<String, Object> err = new LinkedHashMap<>();
    err.put("code", code);
    err.put("message", message);
    Map<String, Object> reply = new LinkedHashMap<>();
    reply.put("ok", false);
    reply.put("error", err);
    return reply;
  }

  /** skiff cancelled a task: free its credit, fail its pending extends, wake its function. */
  void cancel(String id, String reason) {
    Task t;
    synchronized (lock) {
      t = open.remove(id);
      if (t == null) {
        LOG.fine("cancel for task " + id + ", which is not open");
        return;
      }
      Map<String, Object> fail = failure("cancelled", "task " + id + " was cancelled (" + reason + ")");
      pending.values().removeIf(p -> {
        if (p.task != t) {
          return false;
        }
        p.reply = fail;
        p.done.countDown();
        return true;
      });
      resultDone();
    }
    t.cancel(reason);
  }

  /** One owed result less (sent or cancelled); the caller holds {@link #lock}. */
  void resultDone() {
    inFlight--;
    if (draining && inFlight == 0) {
      closeWhenFlushed();
    }
  }

  /** The connection ended: fail the pending requests. */
  void close() {
    Map<String, Pending> left;
    synchronized (lock) {
      closed = true;
      left = new HashMap<>(pending);
      pending.clear();
    }
    Map<String, Object> fail = failure("closed", "connection to skiff lost before the reply");
    for (Pending p : left.values()) {
      p.reply = fail;
      p.done.countDown();
    }
    abort();
  }

  static void log(Level level, String message, Throwable t) {
    LOG.log(level, message, t);
  }
}
