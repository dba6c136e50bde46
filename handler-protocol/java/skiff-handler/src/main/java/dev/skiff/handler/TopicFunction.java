package dev.skiff.handler;

/**
 * A Kafka topic function: returning acks the record. Throwing {@link Retry} or {@link DeadLetter}
 * nacks it with a backoff or to the dead-letter topic; any other exception nacks it with its
 * message.
 */
@FunctionalInterface
public interface TopicFunction {
  void handle(Task task) throws Exception;
}
