package dev.skiff.handler;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/** Builds the result frames (SPEC §4.2), including the structured {@code error} of a fail. */
final class Results {
  private static final int MAX_STACK = 64;
  private static final String RUNNER = Handler.class.getName();

  private Results() {}

  static Map<String, Object> complete(Task task, Map<String, ?> variables) {
    Map<String, Object> f = Frames.frame("complete");
    f.put("id", task.id());
    if (variables != null) {
      f.put("variables", variables);
    }
    return f;
  }

  static Map<String, Object> ack(Task task) {
    Map<String, Object> f = Frames.frame("ack");
    f.put("id", task.id());
    return f;
  }

  /** A Zeebe task's answer to an exception: bpmn_error, or fail (with retries or a stack). */
  static Map<String, Object> failure(Task task, Throwable e) {
    if (task.isKafka()) {
      return nack(task, e);
    }
    if (e instanceof BpmnError b) {
      Map<String, Object> f = Frames.frame("bpmn_error");
      f.put("id", task.id());
      f.put("code", b.code());
      if (!b.errorMessage().isEmpty()) {
        f.put("message", b.errorMessage());
      }
      return withVariables(f, b.variables());
    }
    Map<String, Object> f = Frames.frame("fail");
    f.put("id", task.id());
    if (e instanceof JobFailed j) {
      f.put("message", String.valueOf(j.getMessage()));
      if (j.retries() != null) {
        f.put("retries", j.retries());
      }
      if (j.retryBackoffMs() != null) {
        f.put("retry_backoff_ms", j.retryBackoffMs());
      }
      return withVariables(f, j.variables());
    }
    f.put("message", describe(e));
    f.put("error", error(e));
    return f;
  }

  /** A Kafka task's answer to an exception: nack (dead letter, backoff, or message and stack). */
  static Map<String, Object> nack(Task task, Throwable e) {
    Map<String, Object> f = Frames.frame("nack");
    f.put("id", task.id());
    if (e instanceof JobFailed j) {
      f.put("message", String.valueOf(j.getMessage()));
      if (e instanceof DeadLetter) {
        f.put("dead_letter", true);
      } else if (j.retryBackoffMs() != null) {
        f.put("retry_backoff_ms", j.retryBackoffMs());
      }
      return f;
    }
    f.put("message", describe(e));
    f.put("error", error(e));
    return f;
  }

  /** {@code "RuntimeException: boom"}: the class's simple name and the message. */
  static String describe(Throwable e) {
    String m = e.getMessage();
    String name = e.getClass().getSimpleName().isEmpty() ? e.getClass().getName()
        : e.getClass().getSimpleName();
    return m == null ? name : name + ": " + m;
  }

  /** The structured error: type, message, stack frames innermost first (SPEC §4.2, 1.3). */
  static Map<String, Object> error(Throwable e) {
    Map<String, Object> err = new LinkedHashMap<>();
    err.put("type", e.getClass().getName());
    err.put("message", e.getMessage() == null ? "" : e.getMessage());
    err.put("stack", stack(e));
    return err;
  }

  /** The function's frames: from the throw up to where the SDK called the function. */
  static List<Map<String, Object>> stack(Throwable e) {
    List<Map<String, Object>> out = new ArrayList<>();
    boolean userSeen = false;
    for (StackTraceElement el : e.getStackTrace()) {
      String cls = el.getClassName();
      boolean runner = cls.equals(RUNNER) || cls.startsWith(RUNNER + "$");
      if (runner && userSeen) {
        break;
      }
      userSeen |= !runner;
      if (out.size() == MAX_STACK) {
        break;
      }
      out.add(frame(el));
    }
    if (out.isEmpty()) {
      Map<String, Object> unknown = new LinkedHashMap<>();
      unknown.put("file", "");
      unknown.put("line", 0);
      unknown.put("function", "");
      out.add(unknown);
    }
    return out;
  }

  private static Map<String, Object> frame(StackTraceElement el) {
    String cls = el.getClassName();
    int dot = cls.lastIndexOf('.');
    String file = el.getFileName() == null ? "" : el.getFileName();
    if (dot > 0 && !file.isEmpty()) {
      file = cls.substring(0, dot).replace('.', '/') + "/" + file;
    }
    Map<String, Object> f = new LinkedHashMap<>();
    f.put("file", file);
    f.put("line", Math.max(0, el.getLineNumber()));
    f.put("function", cls + "." + el.getMethodName());
    return f;
  }

  private static Map<String, Object> withVariables(Map<String, Object> f, Map<String, ?> vars) {
    if (vars != null) {
      f.put("variables", vars);
    }
    return f;
  }

  /**
   * Encodes a result; one that cannot be encoded or exceeds {@code maxFrame} becomes a fail (a
   * nack, keeping its other members, for a Kafka task) saying why.
   */
  static byte[] encode(Map<String, Object> result, int maxFrame) {
    byte[] data;
    try {
      data = Frames.encode(result);
    } catch (Json.JsonException e) {
      return Frames.encode(failed(result, "result is not JSON: " + e.getMessage()));
    }
    if (data.length - 4 > maxFrame) {
      return Frames.encode(failed(result, "result frame of " + (data.length - 4)
          + " bytes exceeds max_frame " + maxFrame));
    }
    return data;
  }

  /** The fail (nack) replacing {@code result}, with {@code message}. */
  static Map<String, Object> failed(Map<String, Object> result, String message) {
    Object type = result.get("type");
    Map<String, Object> f = Frames.frame("ack".equals(type) || "nack".equals(type) ? "nack" : "fail");
    f.put("id", result.get("id"));
    f.put("message", message);
    if ("nack".equals(type)) {
      for (String k : List.of("retry_backoff_ms", "dead_letter")) {
        if (result.containsKey(k)) {
          f.put(k, result.get(k));
        }
      }
    }
    return f;
  }
}
