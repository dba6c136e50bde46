package dev.skiff.handler;

/**
 * Kafka: nack the record so that skiff delivers it again after {@code backoffMs} (null: skiff's
 * own backoff). In a job function: fail the job with that backoff.
 */
public class Retry extends JobFailed {
  private static final long serialVersionUID = 1L;

  public Retry(String message) {
    super(message, null, null, null);
  }

  public Retry(String message, long backoffMs) {
    super(message, null, backoffMs, null);
  }
}
