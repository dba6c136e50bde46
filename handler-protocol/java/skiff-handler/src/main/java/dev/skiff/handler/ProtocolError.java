package dev.skiff.handler;

/** skiff refused the handshake (an {@code error} frame answered {@code hello}): reconnecting will not help. */
public class ProtocolError extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final String code;

  public ProtocolError(String code, String message) {
    super("skiff refused hello: " + code + ": " + message);
    this.code = code;
  }

  /** The error frame's code, e.g. {@code protocol} or {@code unsupported_version}. */
  public String code() {
    return code;
  }
}
