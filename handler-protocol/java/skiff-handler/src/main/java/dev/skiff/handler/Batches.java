package dev.skiff.handler;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;

/**
 * Batches on the writing side (protocol 1.4, SPEC §4.7): when skiff's welcome lists "batch",
 * each run of consecutive result frames queued together becomes one {@code results} frame,
 * never above max_frame.
 */
final class Batches {
  private static final byte[] OPEN =
      "{\"type\":\"results\",\"results\":[".getBytes(StandardCharsets.UTF_8);

  private Batches() {}

  /** One encoded frame waiting for the writer; {@code result}: it may join a results frame. */
  record Queued(byte[] data, boolean result) {}

  /**
   * The queued frames as buffers for one write, in the queued order: as they are without
   * {@code batch}, else every run of results as one {@code results} frame (a new one whenever
   * {@code maxFrame} would be passed; a run of one stays a single frame).
   */
  static ByteBuffer[] pack(Collection<Queued> queued, boolean batch, int maxFrame) {
    List<ByteBuffer> out = new ArrayList<>(queued.size());
    List<byte[]> run = new ArrayList<>();
    long size = OPEN.length + 2; // the results frame's body if the run closed now
    for (Queued q : queued) {
      if (!batch) {
        out.add(ByteBuffer.wrap(q.data()));
        continue;
      }
      if (!q.result() || (!run.isEmpty() && size + q.data().length - 4 + 1 > maxFrame)) {
        closeRun(out, run, size);
        size = OPEN.length + 2;
      }
      if (q.result()) {
        size += q.data().length - 4 + (run.isEmpty() ? 0 : 1);
        run.add(q.data());
      } else {
        out.add(ByteBuffer.wrap(q.data()));
      }
    }
    closeRun(out, run, size);
    return out.toArray(new ByteBuffer[0]);
  }

  private static void closeRun(List<ByteBuffer> out, List<byte[]> run, long size) {
    if (run.size() == 1) {
      out.add(ByteBuffer.wrap(run.get(0)));
    } else if (run.size() > 1) {
      ByteArrayOutputStream b = new ByteArrayOutputStream((int) size + 4);
      b.writeBytes(ByteBuffer.allocate(4).putInt((int) size).array());
      b.writeBytes(OPEN);
      for (int i = 0; i < run.size(); i++) {
        if (i > 0) {
          b.write(',');
        }
        b.write(run.get(i), 4, run.get(i).length - 4);
      }
      b.write(']');
      b.write('}');
      out.add(ByteBuffer.wrap(b.toByteArray()));
    }
    run.clear();
  }
}
