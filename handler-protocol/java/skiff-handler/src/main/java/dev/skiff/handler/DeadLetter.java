package dev.skiff.handler;

/**
 * Kafka: nack the record with {@code dead_letter}: skiff writes it to the dead-letter topic at
 * once (a poison record). In a job function: fail the job with retries 0 (an incident).
 */
public class DeadLetter extends JobFailed {
  private static final long serialVersionUID = 1L;

  public DeadLetter(String message) {
    super(message, 0, null, null);
  }
}
