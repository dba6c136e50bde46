package dev.skiff.handler;

import java.nio.charset.StandardCharsets;
import java.util.LinkedHashMap;
import java.util.Map;

/** Frame encoding and typed access to frame members (a wrong type is a {@link BadFrame}). */
final class Frames {
  static final int DEFAULT_MAX_FRAME = 4 * 1024 * 1024;

  private Frames() {}

  /** A member of a frame has the wrong type. */
  static final class BadFrame extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    BadFrame(String message) {
      super(message);
    }
  }

  /** One frame on the wire: 4-byte big-endian length, then compact UTF-8 JSON. */
  static byte[] encode(Map<String, ?> frame) {
    byte[] json = Json.write(frame).getBytes(StandardCharsets.UTF_8);
    byte[] out = new byte[json.length + 4];
    int n = json.length;
    out[0] = (byte) (n >>> 24);
    out[1] = (byte) (n >>> 16);
    out[2] = (byte) (n >>> 8);
    out[3] = (byte) n;
    System.arraycopy(json, 0, out, 4, n);
    return out;
  }

  static Map<String, Object> frame(String type) {
    Map<String, Object> f = new LinkedHashMap<>();
    f.put("type", type);
    return f;
  }

  static String str(Map<String, Object> m, String name, String dflt) {
    Object v = m.get(name);
    if (v == null) {
      return dflt;
    }
    if (!(v instanceof String s)) {
      throw new BadFrame("member " + name + " must be a string");
    }
    return s;
  }

  static long integer(Map<String, Object> m, String name, long dflt) {
    Object v = m.get(name);
    if (v == null) {
      return dflt;
    }
    if (!(v instanceof Long l)) {
      throw new BadFrame("member " + name + " must be an integer");
    }
    return l;
  }

  @SuppressWarnings("unchecked")
  static Map<String, Object> object(Map<String, Object> m, String name) {
    Object v = m.get(name);
    if (v == null) {
      return null;
    }
    if (!(v instanceof Map<?, ?>)) {
      throw new BadFrame("member " + name + " must be an object");
    }
    return (Map<String, Object>) v;
  }

  /** An object member whose values are strings (absent: empty), unmodifiable. */
  static Map<String, String> strings(Map<String, Object> m, String name) {
    Map<String, Object> o = object(m, name);
    if (o == null) {
      return Map.of();
    }
    Map<String, String> out = new LinkedHashMap<>();
    for (Map.Entry<String, Object> e : o.entrySet()) {
      if (!(e.getValue() instanceof String s)) {
        throw new BadFrame("member " + name + "." + e.getKey() + " must be a string");
      }
      out.put(e.getKey(), s);
    }
    return java.util.Collections.unmodifiableMap(out);
  }
}
