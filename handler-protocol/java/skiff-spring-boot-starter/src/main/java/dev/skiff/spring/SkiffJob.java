package dev.skiff.spring;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a bean method as the function of a Zeebe job type, like spring-zeebe's
 * {@code @JobWorker}. Parameters are bound from the task: {@link dev.skiff.handler.Task}, {@link
 * dev.skiff.handler.Job}, a {@link Variable @Variable} (one variable, by name), a {@link
 * VariablesAsType @VariablesAsType} (all variables as one typed object). The return value
 * completes the job: a {@code Map}, any object Jackson turns into one (a record, a POJO), or
 * {@code void}/{@code null} for no variables. Throw {@link dev.skiff.handler.BpmnError} for a BPMN
 * error and {@link dev.skiff.handler.JobFailed} for explicit retries; any other exception fails
 * the job with its message and stack.
 */
@Target(ElementType.METHOD)
@Retention(RetentionPolicy.RUNTIME)
@Documented
public @interface SkiffJob {
  /** The job type; {@code ${...}} placeholders are resolved from the environment. */
  String value();
}
