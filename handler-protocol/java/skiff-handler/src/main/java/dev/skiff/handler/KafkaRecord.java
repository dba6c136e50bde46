package dev.skiff.handler;

import java.util.Map;

/**
 * Kafka metadata of a task (the {@code kafka} member of the task frame). {@code key} is null
 * without a key or when it is not valid UTF-8 (then {@code keyBase64} holds it); headers whose
 * value is not UTF-8 are in {@code headersBase64}; {@code timestamp} is null when the record has
 * none.
 */
public record KafkaRecord(String topic, int partition, long offset, String key,
    Map<String, String> headers, Long timestamp, int schemaId, String keyBase64,
    Map<String, String> headersBase64) {

  static KafkaRecord from(Map<String, Object> k) {
    Object ts = k.get("timestamp");
    return new KafkaRecord(Frames.str(k, "topic", ""), (int) Frames.integer(k, "partition", 0),
        Frames.integer(k, "offset", 0), Frames.str(k, "key", null), Frames.strings(k, "headers"),
        ts == null ? null : Frames.integer(k, "timestamp", 0), (int) Frames.integer(k, "schema_id", 0),
        Frames.str(k, "key_base64", null), Frames.strings(k, "headers_base64"));
  }
}
