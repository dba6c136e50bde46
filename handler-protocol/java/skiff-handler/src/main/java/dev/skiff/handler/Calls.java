package dev.skiff.handler;

import java.util.LinkedHashMap;
import java.util.Map;

/** The params of the calls, as SPEC §4.4 names them. */
final class Calls {
  private Calls() {}

  static Map<String, Object> message(String name, String correlationKey, Map<String, ?> variables) {
    Map<String, Object> p = new LinkedHashMap<>();
    p.put("name", name);
    p.put("correlation_key", correlationKey == null ? "" : correlationKey);
    if (variables != null) {
      p.put("variables", variables);
    }
    return message(p);
  }

  /** The given params with the defaults: {@code correlation_key ""}, {@code time_to_live_ms 0}. */
  static Map<String, Object> message(Map<String, ?> params) {
    Map<String, Object> p = new LinkedHashMap<>(params);
    p.putIfAbsent("correlation_key", "");
    p.putIfAbsent("time_to_live_ms", 0L);
    return p;
  }

  static Map<String, Object> produce(String topic, Object value, String key,
      Map<String, String> headers) {
    Map<String, Object> p = new LinkedHashMap<>();
    p.put("topic", topic);
    p.put("value", value);
    if (key != null) {
      p.put("key", key);
    }
    if (headers != null) {
      p.put("headers", headers);
    }
    return p;
  }
}
