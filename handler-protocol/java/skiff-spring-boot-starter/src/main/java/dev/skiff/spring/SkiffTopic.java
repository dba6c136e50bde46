package dev.skiff.spring;

import java.lang.annotation.Documented;
import java.lang.annotation.ElementType;
import java.lang.annotation.Retention;
import java.lang.annotation.RetentionPolicy;
import java.lang.annotation.Target;

/**
 * Marks a bean method as the function of a Kafka topic's records. Parameters: {@link
 * dev.skiff.handler.Task}, {@link dev.skiff.handler.KafkaRecord}, {@link RecordValue @RecordValue}
 * (the record value as a typed object). Returning acks the record (the value is ignored);
 * {@link dev.skiff.handler.Retry} and {@link dev.skiff.handler.DeadLetter} nack it with a backoff
 * or to the dead-letter topic; any other exception nacks it with its message.
 */
@Target(ElementType.METHOD)
@Retention(RetentionPolicy.RUNTIME)
@Documented
public @interface SkiffTopic {
  /** The topic; {@code ${...}} placeholders are resolved from the environment. */
  String value();
}
