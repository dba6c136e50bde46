package dev.skiff.handler;

import java.util.Map;

/** Thrown by a job function to throw a BPMN error, caught by an error boundary event with {@code code}. */
public class BpmnError extends RuntimeException {
  private static final long serialVersionUID = 1L;

  private final String code;
  private final String errorMessage;
  private final transient Map<String, ?> variables;

  public BpmnError(String code) {
    this(code, "", null);
  }

  public BpmnError(String code, String message) {
    this(code, message, null);
  }

  /** {@code message} may be empty; {@code variables} may be null. */
  public BpmnError(String code, String message, Map<String, ?> variables) {
    super(message == null || message.isEmpty() ? code : message);
    if (code == null || code.isEmpty()) {
      throw new IllegalArgumentException("a BPMN error needs a non-empty code");
    }
    this.code = code;
    this.errorMessage = message == null ? "" : message;
    this.variables = variables;
  }

  public String code() {
    return code;
  }

  /** The message as given (empty when none). */
  public String errorMessage() {
    return errorMessage;
  }

  /** The variables to set with the error, or null. */
  public Map<String, ?> variables() {
    return variables;
  }
}
