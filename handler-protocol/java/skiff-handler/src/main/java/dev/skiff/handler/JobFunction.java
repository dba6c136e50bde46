package dev.skiff.handler;

import java.util.Map;

/**
 * A Zeebe job function: returns the variables to complete the job with (null: none). Throwing
 * {@link BpmnError} throws a BPMN error, {@link JobFailed} fails with explicit retries, any other
 * exception fails the job with its message and stack.
 */
@FunctionalInterface
public interface JobFunction {
  Map<String, ?> handle(Task task) throws Exception;
}
