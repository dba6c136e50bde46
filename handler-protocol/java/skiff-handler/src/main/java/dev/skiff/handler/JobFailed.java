package dev.skiff.handler;

import java.util.Map;

/**
 * Thrown by a job function to fail the job with explicit retries and backoff. {@code retries}
 * null lets skiff use the job's retries - 1; 0 raises an incident. In a topic function it nacks
 * the record (with {@code retryBackoffMs} when given).
 */
public class JobFailed extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final Integer retries;
  private final Long retryBackoffMs;
  private final transient Map<String, ?> variables;

  public JobFailed(String message) {
    this(message, null, null, null);
  }

  public JobFailed(String message, Integer retries, Long retryBackoffMs, Map<String, ?> variables) {
    super(message);
    if (retries != null && retries < 0) {
      throw new IllegalArgumentException("retries must be >= 0");
    }
    if (retryBackoffMs != null && retryBackoffMs < 0) {
      throw new IllegalArgumentException("retryBackoffMs must be >= 0");
    }
    this.retries = retries;
    this.retryBackoffMs = retryBackoffMs;
    this.variables = variables;
  }

  /** The retries to set, or null for skiff's default (the job's retries - 1). */
  public Integer retries() {
    return retries;
  }

  /** The backoff before the next attempt in ms, or null for the default. */
  public Long retryBackoffMs() {
    return retryBackoffMs;
  }

  /** The variables to set with the failure, or null. */
  public Map<String, ?> variables() {
    return variables;
  }
}
