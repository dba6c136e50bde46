package dev.skiff.handler;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small strict JSON codec (RFC 8259), so that the SDK has no dependencies.
 *
 * <p>Reading gives {@code Map<String, Object>} (insertion-ordered), {@code List<Object>},
 * {@code String}, {@code Long} (an integer that fits, else {@code BigInteger}), {@code Double}
 * (a number with a fraction or exponent), {@code Boolean} and {@code null}. A repeated member
 * name, a byte-order mark, trailing data or nesting deeper than 512 levels is an error. Writing
 * takes the same types plus any {@code Number}, {@code Iterable}, array of objects, {@code
 * Character} and {@code Enum} (its name); NaN and infinities are refused.
 */
public final class Json {
  private static final int MAX_DEPTH = 512;

  private final String s;
  private int pos;

  private Json(String s) {
    this.s = s;
  }

  /** Thrown for text that is not JSON, or a value that cannot be written as JSON. */
  public static final class JsonException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    JsonException(String message) {
      super(message);
    }
  }

  /** Parses one JSON value. */
  public static Object parse(String text) {
    Json p = new Json(text);
    p.skipSpace();
    Object value = p.value(0);
    p.skipSpace();
    if (p.pos != text.length()) {
      throw p.error("trailing data");
    }
    return value;
  }

  /** Writes a value as compact JSON. */
  public static String write(Object value) {
    StringBuilder out = new StringBuilder(128);
    write(value, out, 0);
    return out.toString();
  }

  private JsonException error(String what) {
    return new JsonException(what + " at offset " + pos);
  }

  private void skipSpace() {
    while (pos < s.length()) {
      char c = s.charAt(pos);
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
        return;
      }
      pos++;
    }
  }

  private Object value(int depth) {
    if (depth > MAX_DEPTH) {
      throw error("nesting deeper than " + MAX_DEPTH);
    }
    if (pos >= s.length()) {
      throw error("unexpected end");
    }
    char c = s.charAt(pos);
    switch (c) {
      case '{':
        return object(depth);
      case '[':
        return array(depth);
      case '"':
        return string();
      case 't':
        return literal("true", Boolean.TRUE);
      case 'f':
        return literal("false", Boolean.FALSE);
      case 'n':
        return literal("null", null);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) {
          return number();
        }
        throw error("unexpected character '" + c + "'");
    }
  }

  private Object literal(String word, Object value) {
    if (!s.startsWith(word, pos)) {
      throw error("invalid literal");
    }
    pos += word.length();
    return value;
  }

  private Map<String, Object> object(int depth) {
    pos++;
    Map<String, Object> map = new LinkedHashMap<>();
    skipSpace();
    if (peek() == '}') {
      pos++;
      return map;
    }
    while (true) {
      skipSpace();
      if (peek() != '"') {
        throw error("expected a member name");
      }
      String name = string();
      skipSpace();
      expect(':');
      skipSpace();
      Object v = value(depth + 1);
      if (map.containsKey(name)) {
        throw error("repeated member \"" + name + "\"");
      }
      map.put(name, v);
      skipSpace();
      char c = next();
      if (c == '}') {
        return map;
      }
      if (c != ',') {
        throw error("expected ',' or '}'");
      }
    }
  }

  private List<Object> array(int depth) {
    pos++;
    List<Object> list = new ArrayList<>();
    skipSpace();
    if (peek() == ']') {
      pos++;
      return list;
    }
    while (true) {
      skipSpace();
      list.add(value(depth + 1));
      skipSpace();
      char c = next();
      if (c == ']') {
        return list;
      }
      if (c != ',') {
        throw error("expected ',' or ']'");
      }
    }
  }

  private char peek() {
    if (pos >= s.length()) {
      throw error("unexpected end");
    }
    return s.charAt(pos);
  }

  private char next() {
    char c = peek();
    pos++;
    return c;
  }

  private void expect(char c) {
    if (next() != c) {
      pos--;
      throw error("expected '" + c + "'");
    }
  }

  private String string() {
    pos++;
    int start = pos;
    while (pos < s.length()) {
      char c = s.charAt(pos);
      if (c == '"') {
        return s.substring(start, pos++);
      }
      if (c == '\\' || c < 0x20) {
        break;
      }
      pos++;
    }
    StringBuilder sb = new StringBuilder(s.substring(start, pos));
    while (true) {
      char c = next();
      if (c == '"') {
        return sb.toString();
      }
      if (c < 0x20) {
        pos--;
        throw error("control character in string");
      }
      if (c == '\\') {
        escape(sb);
      } else {
        sb.append(c);
      }
    }
  }

  private void escape(StringBuilder sb) {
    char c = next();
    switch (c) {
      case '"', '\\', '/' -> sb.append(c);
      case 'b' -> sb.append('\b');
      case 'f' -> sb.append('\f');
      case 'n' -> sb.append('\n');
      case 'r' -> sb.append('\r');
      case 't' -> sb.append('\t');
      case 'u' -> sb.append(hex4());
      default -> {
        pos--;
        throw error("invalid escape");
      }
    }
  }

  private char hex4() {
    if (pos + 4 > s.length()) {
      throw error("short \\u escape");
    }
    int v = 0;
    for (int i = 0; i < 4; i++) {
      int d = Character.digit(s.charAt(pos++), 16);
      if (d < 0) {
        throw error("invalid \\u escape");
      }
      v = v * 16 + d;
    }
    return (char) v;
  }

  private Object number() {
    int start = pos;
    if (peek() == '-') {
      pos++;
    }
    int intStart = pos;
    int intDigits = digits();
    if (intDigits == 0) {
      throw error("invalid number");
    }
    if (intDigits > 1 && s.charAt(intStart) == '0') {
      throw error("leading zero");
    }
    boolean integral = true;
    if (pos < s.length() && s.charAt(pos) == '.') {
      pos++;
      integral = false;
      if (digits() == 0) {
        throw error("invalid fraction");
      }
    }
    if (pos < s.length() && (s.charAt(pos) == 'e' || s.charAt(pos) == 'E')) {
      pos++;
      integral = false;
      if (pos < s.length() && (s.charAt(pos) == '+' || s.charAt(pos) == '-')) {
        pos++;
      }
      if (digits() == 0) {
        throw error("invalid exponent");
      }
    }
    String text = s.substring(start, pos);
    if (!integral) {
      return Double.valueOf(text);
    }
    if (pos - start <= 18) {
      return Long.valueOf(text);
    }
    BigInteger big = new BigInteger(text);
    return big.bitLength() < 64 ? (Object) big.longValue() : big;
  }

  private int digits() {
    int start = pos;
    while (pos < s.length() && s.charAt(pos) >= '0' && s.charAt(pos) <= '9') {
      pos++;
    }
    return pos - start;
  }

  private static void write(Object v, StringBuilder out, int depth) {
    if (depth > MAX_DEPTH) {
      throw new JsonException("nesting deeper than " + MAX_DEPTH + " (a cycle?)");
    }
    if (v == null) {
      out.append("null");
    } else if (v instanceof String str) {
      quote(str, out);
    } else if (v instanceof Boolean) {
      out.append(v);
    } else if (v instanceof Number n) {
      number(n, out);
    } else if (v instanceof Map<?, ?> m) {
      map(m, out, depth);
    } else if (v instanceof Iterable<?> it) {
      iterable(it, out, depth);
    } else if (v instanceof Object[] arr) {
      iterable(java.util.Arrays.asList(arr), out, depth);
    } else if (v instanceof Character || v instanceof Enum<?>) {
      quote(v instanceof Enum<?> e ? e.name() : v.toString(), out);
    } else {
      throw new JsonException("cannot write a " + v.getClass().getName() + " as JSON");
    }
  }

  private static void number(Number n, StringBuilder out) {
    if (n instanceof Double || n instanceof Float) {
      double d = n.doubleValue();
      if (Double.isNaN(d) || Double.isInfinite(d)) {
        throw new JsonException("NaN and infinity are not JSON");
      }
      out.append(n instanceof Float ? Float.toString(n.floatValue()) : Double.toString(d));
    } else if (n instanceof BigDecimal bd) {
      out.append(bd.toString());
    } else {
      out.append(n.toString());
    }
  }

  private static void map(Map<?, ?> m, StringBuilder out, int depth) {
    out.append('{');
    boolean first = true;
    for (Map.Entry<?, ?> e : m.entrySet()) {
      if (!(e.getKey() instanceof String key)) {
        throw new JsonException("object member names must be strings, not " + e.getKey());
      }
      if (!first) {
        out.append(',');
      }
      first = false;
      quote(key, out);
      out.append(':');
      write(e.getValue(), out, depth + 1);
    }
    out.append('}');
  }

  private static void iterable(Iterable<?> it, StringBuilder out, int depth) {
    out.append('[');
    boolean first = true;
    for (Object o : it) {
      if (!first) {
        out.append(',');
      }
      first = false;
      write(o, out, depth + 1);
    }
    out.append(']');
  }

  private static final char[] HEX = "0123456789abcdef".toCharArray();

  private static void quote(String str, StringBuilder out) {
    out.append('"');
    for (int i = 0; i < str.length(); i++) {
      char c = str.charAt(i);
      switch (c) {
        case '"' -> out.append("\\\"");
        case '\\' -> out.append("\\\\");
        case '\n' -> out.append("\\n");
        case '\r' -> out.append("\\r");
        case '\t' -> out.append("\\t");
        default -> {
          if (c < 0x20) {
            out.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 15]);
          } else {
            out.append(c);
          }
        }
      }
    }
    out.append('"');
  }

  /** An unmodifiable view of a JSON object (or an empty one when {@code o} is not an object). */
  @SuppressWarnings("unchecked")
  static Map<String, Object> asObject(Object o) {
    return o instanceof Map<?, ?> ? Collections.unmodifiableMap((Map<String, Object>) o) : Map.of();
  }
}
