package dev.skiff.handler;

import java.util.LinkedHashMap;
import java.util.Map;

/** The params of the calls, as SPEC §4.4 names them. */
final class Calls {
  private Calls() {}

  static Map<String, Object> message(String name, String correlationKey, Map<String, ?> variables) {
    return message(name, correlationKey, variables, null, null);
  }

  /** The params with the trace context (SPEC 1.3 §4.4); null members are left out. */
  static Map<String, Object> message(String name, String correlationKey, Map<String, ?> variables,
      String traceparent, String tracestate) {
    Map<String, Object> p = new LinkedHashMap<>();
    p.put("name", name);
    p.put("correlation_key", correlationKey == null ? "" : correlationKey);
    if (variables != null) {
      p.put("variables", variables);
    }
    if (traceparent != null) {
      p.put("traceparent", traceparent);
    }
    if (tracestate != null) {
      p.put("tracestate", tracestate);
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

  /** The params of secret or token: {@code {name: value}}, value a non-empty string. */
  static Map<String, Object> one(String call, String name, String value) {
    if (value == null || value.isEmpty()) {
      throw new CallError("invalid_params", call + " needs a non-empty " + name);
    }
    Map<String, Object> p = new LinkedHashMap<>();
    p.put(name, value);
    return p;
  }

  /** The string member of a secret or token reply. */
  static String member(Map<String, Object> reply, String call, String name) {
    Object v = reply == null ? null : reply.get(name);
    if (!(v instanceof String)) {
      throw new CallError("invalid_reply", call + " reply without a string " + name);
    }
    return (String) v;
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
