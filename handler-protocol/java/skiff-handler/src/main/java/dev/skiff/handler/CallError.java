package dev.skiff.handler;

/**
 * An extend or call failed. {@link #code()} is skiff's ({@code not_found}, {@code unavailable},
 * {@code rejected}, {@code invalid_params}, {@code already_exists}, {@code invalid_value},
 * {@code schema_not_found}, {@code produce_failed}, or any other: treat unknown codes as a
 * failure too) or the SDK's own, raised without waiting for skiff: {@code unsupported} (skiff's
 * welcome did not list the feature or method, or the task is a Kafka task; nothing was sent),
 * {@code cancelled} (skiff cancelled the task, also while an extend waits), {@code closed} (not
 * connected, the task's result was sent, or the connection was lost before the reply: the
 * outcome is unknown), {@code invalid_params} (not JSON or larger than {@code max_frame}, or an
 * empty secret reference or token audience), {@code invalid_reply} (a secret or token reply
 * without its string member).
 */
public class CallError extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final String code;
  private final String errorMessage;

  public CallError(String code, String message) {
    super(code + ": " + message);
    this.code = code;
    this.errorMessage = message;
  }

  public String code() {
    return code;
  }

  /** skiff's (or the SDK's) message, without the code. */
  public String errorMessage() {
    return errorMessage;
  }
}
