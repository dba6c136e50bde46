package dev.skiff.handler;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * One task from skiff: a Zeebe job ({@code source() == "zeebe"}: {@link #jobType()}, {@link
 * #variables()}, {@link #headers()}, {@link #job()}) or a Kafka record ({@code "kafka"}: {@link
 * #topic()}, {@link #value()}, {@link #record()}).
 *
 * <p>Cancellation: when skiff cancels the task, {@link #isCancelled()} becomes true, {@link
 * #cancelReason()} says why ({@code deadline}, {@code job_gone}, {@code revoked}), {@link
 * #awaitCancel(long)} returns, and the thread running the function is interrupted (so blocking
 * calls such as {@code Thread.sleep} end). The function should stop; its result is never sent.
 * {@link #awaitCancel(long)} consumes that interrupt.
 */
public final class Task {
  private final String id;
  private final String source;
  private final String jobType;
  private final Map<String, Object> variables;
  private final Map<String, String> headers;
  private volatile long deadline;
  private final long attempt;
  private final String traceparent;
  private final String tracestate;
  private final Job job;
  private final String topic;
  private final Object value;
  private final KafkaRecord record;
  private final Map<String, Object> frame;

  private final CountDownLatch cancelled = new CountDownLatch(1);
  private volatile String cancelReason;
  private Thread runner;
  private Connection conn;

  private Task(Map<String, Object> f) {
    id = Frames.str(f, "id", "");
    source = Frames.str(f, "source", "zeebe");
    jobType = Frames.str(f, "job_type", "");
    Map<String, Object> vars = Frames.object(f, "variables");
    variables = vars == null ? Map.of() : Collections.unmodifiableMap(vars);
    headers = Frames.strings(f, "headers");
    deadline = Frames.integer(f, "deadline", 0);
    attempt = Frames.integer(f, "attempt", 1);
    traceparent = Frames.str(f, "traceparent", null);
    tracestate = Frames.str(f, "tracestate", null);
    Map<String, Object> z = Frames.object(f, "zeebe");
    job = z == null ? null : Job.from(z);
    topic = Frames.str(f, "topic", "");
    value = f.get("value");
    Map<String, Object> k = Frames.object(f, "kafka");
    record = k == null ? null : KafkaRecord.from(k);
    frame = Collections.unmodifiableMap(f);
  }

  /** Reads a task frame; throws IllegalArgumentException when a member has the wrong type. */
  public static Task fromFrame(Map<String, Object> frame) {
    return new Task(frame);
  }

  public String id() {
    return id;
  }

  /** {@code "zeebe"} or {@code "kafka"}. */
  public String source() {
    return source;
  }

  public boolean isKafka() {
    return "kafka".equals(source);
  }

  public String jobType() {
    return jobType;
  }

  /** Zeebe: the job's variables (unmodifiable; JSON types as {@link Json} reads them). */
  public Map<String, Object> variables() {
    return variables;
  }

  /** Zeebe: the task definition's custom headers. */
  public Map<String, String> headers() {
    return headers;
  }

  /** Epoch ms; updated by {@link #extend(long)}. */
  public long deadline() {
    return deadline;
  }

  public long attempt() {
    return attempt;
  }

  /** W3C trace context of the span covering this task, or null. */
  public String traceparent() {
    return traceparent;
  }

  /** The W3C tracestate that goes with {@link #traceparent()}, or null. */
  public String tracestate() {
    return tracestate;
  }

  /** Zeebe job metadata, or null for a Kafka task. */
  public Job job() {
    return job;
  }

  public String topic() {
    return topic;
  }

  /** Kafka: the record value (Avro decoded to JSON). */
  public Object value() {
    return value;
  }

  /** Kafka record metadata, or null for a Zeebe task. */
  public KafkaRecord record() {
    return record;
  }

  /** The task frame as received. */
  public Map<String, Object> frame() {
    return frame;
  }

  /** Milliseconds until the deadline (negative once it has passed). */
  public long millisLeft() {
    return deadline - System.currentTimeMillis();
  }

  public boolean isCancelled() {
    return cancelled.getCount() == 0;
  }

  /** Why skiff cancelled the task, or null. */
  public String cancelReason() {
    return cancelReason;
  }

  /**
   * Waits up to {@code timeoutMs} for skiff to cancel the task; true if it did. Clears the
   * interrupt that the cancellation delivered to this thread.
   */
  public boolean awaitCancel(long timeoutMs) throws InterruptedException {
    try {
      cancelled.await(timeoutMs, TimeUnit.MILLISECONDS);
    } catch (InterruptedException e) {
      if (!isCancelled()) {
        throw e;
      }
    }
    synchronized (this) {
      if (isCancelled() && runner == Thread.currentThread()) {
        Thread.interrupted();
      }
    }
    return isCancelled();
  }

  /**
   * Sets the job's deadline to now + {@code timeoutMs}; returns the new deadline (epoch ms) and
   * updates {@link #deadline()}. Blocks until skiff answers; throws {@link CallError}, or
   * IllegalArgumentException if {@code timeoutMs < 1}.
   */
  public long extend(long timeoutMs) {
    if (timeoutMs < 1) {
      throw new IllegalArgumentException("timeout_ms must be >= 1, not " + timeoutMs);
    }
    Connection c = attached();
    if (isKafka()) {
      throw new CallError("unsupported", "a Kafka task cannot be extended");
    }
    if (!c.features.contains("extend")) {
      throw new CallError("unsupported", "skiff does not support extend");
    }
    Map<String, Object> members = new LinkedHashMap<>();
    members.put("id", id);
    members.put("timeout_ms", timeoutMs);
    Map<String, Object> result = c.request("extend", members, this);
    Object d = result.get("deadline");
    if (!(d instanceof Long l)) {
      throw new CallError("rejected", "extend reply without an integer deadline");
    }
    deadline = l;
    return l;
  }

  /**
   * Publishes a Zeebe message with the wire's params ({@code name}, {@code correlation_key},
   * {@code variables}, {@code time_to_live_ms}, {@code message_id}, {@code tenant_id}, {@code
   * traceparent}, {@code tracestate}); absent
   * {@code correlation_key} and {@code time_to_live_ms} default to "" and 0. Returns {@code
   * {"key", "tenant_id"}}; blocks; throws {@link CallError}.
   */
  public Map<String, Object> publishMessage(Map<String, ?> params) {
    return attached().call("publish_message", Calls.message(params));
  }

  /** {@link #publishMessage(Map)} with a name, correlation key and variables (may be null). */
  public Map<String, Object> publishMessage(String name, String correlationKey,
      Map<String, ?> variables) {
    return publishMessage(Calls.message(name, correlationKey, variables));
  }

  /**
   * {@link #publishMessage(String, String, Map)} with the W3C trace context of the span the
   * message comes from (protocol 1.3; either may be null, then left out): pass this task's
   * {@link #traceparent()} and {@link #tracestate()} so the jobs the message leads to continue
   * its trace.
   */
  public Map<String, Object> publishMessage(String name, String correlationKey,
      Map<String, ?> variables, String traceparent, String tracestate) {
    return publishMessage(Calls.message(name, correlationKey, variables, traceparent, tracestate));
  }

  /**
   * Writes a Kafka record through skiff ({@code value} encoded to Avro with the latest schema of
   * {@code <topic>-value}); {@code key} and {@code headers} may be null. Returns {@code {"topic",
   * "partition", "offset", "schema_id"}} once the broker confirmed it; throws {@link CallError}.
   */
  public Map<String, Object> produce(String topic, Object value, String key,
      Map<String, String> headers) {
    return attached().call("produce", Calls.produce(topic, value, key, headers));
  }

  /**
   * Reads a secret the pod may read (handler.secrets), e.g. {@code
   * "vault:secret/app/db#password"}; returns its value (protocol 1.3). Blocks; throws {@link
   * CallError} ({@code forbidden}, {@code not_found}, {@code unavailable}, {@code
   * invalid_params}, {@code unsupported}).
   */
  public String secret(String reference) {
    return Calls.member(attached().call("secret", Calls.one("secret", "reference", reference)),
        "secret", "value");
  }

  /**
   * An OAuth2 access token for an audience the pod may use (handler.token_audiences); skiff
   * caches and refreshes it (protocol 1.3). Blocks; throws {@link CallError} ({@code forbidden},
   * {@code unavailable}, {@code invalid_params}, {@code unsupported}).
   */
  public String token(String audience) {
    return Calls.member(attached().call("token", Calls.one("token", "audience", audience)),
        "token", "access_token");
  }

  private Connection attached() {
    Connection c = conn;
    if (c == null) {
      throw new CallError("closed", "task " + id + " did not come from a skiff connection");
    }
    return c;
  }

  void attach(Connection c) {
    conn = c;
  }

  /** The function starts (or ends, with null) on the current thread. */
  synchronized void runner(Thread t) {
    runner = t;
    if (t != null && isCancelled()) {
      t.interrupt(); // cancelled before the function started
    }
  }

  /** skiff cancelled the task: flag it, then interrupt the function's thread (atomically). */
  synchronized void cancel(String reason) {
    cancelReason = reason;
    cancelled.countDown();
    if (runner != null) {
      runner.interrupt();
    }
  }

  @Override
  public String toString() {
    return "Task[" + id + " " + (isKafka() ? topic : jobType) + "]";
  }
}
