/* Avro binary <-> JSON codec for the Kafka source (handler-protocol/SPEC.md, appendix "Avro <->
 * JSON mapping"). avro-c only validates schemas; the binary reader and writer walk our own
 * compiled copy of the schema (avro-c 1.11.1 drops field defaults and logical types), checking
 * every length against the remaining input. Pure functions, no I/O: unit-tested and fuzzed on
 * their own. A parsed schema is immutable and may be shared by threads. */
#ifndef SK_AVRO_JSON_H
#define SK_AVRO_JSON_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define SK_AVRO_MAX_DEPTH 64          /* nesting of values (and of schemas, x2) */
#define SK_AVRO_MAX_BYTES (64u << 20) /* any length prefix, any encoded body */
#define SK_AVRO_MAX_EMPTY (1 << 16)   /* values encoded in zero bytes (null...) per body */
#define SK_AVRO_WIRE_HEADER 5         /* Confluent: magic 0 + 4-byte schema id */

typedef struct sk_avro_schema sk_avro_schema;

/* Parses an Avro schema (JSON text) into an opaque handle; NULL with err set when it is invalid
 * (for avro-c, or for our compiler: bad default, unresolved name, too deep). */
sk_avro_schema *sk_avro_schema_parse(const char *json, size_t len, char *err, size_t errlen);
void sk_avro_schema_free(sk_avro_schema *s);

/* Avro binary body (without the Confluent prefix) -> new JSON value (caller owns the
 * reference). NULL with err naming the path and the problem (truncated, bad union branch,
 * length over limit, invalid UTF-8, trailing bytes...). */
json_t *sk_avro_to_json(const sk_avro_schema *s, const uint8_t *buf, size_t len, char *err,
                        size_t errlen);

/* JSON value -> malloc'ed Avro binary body of *len bytes. NULL with err naming the invalid
 * path, e.g. "$.customer.address.zip: expected string, got integer"; nothing partial is
 * returned. */
uint8_t *sk_avro_from_json(const sk_avro_schema *s, const json_t *v, size_t *len, char *err,
                           size_t errlen);

/* Confluent wire format: 0x00 magic + 4-byte big-endian schema id + body. Returns 0 with the
 * id and the body (pointing into buf), or -1 with err (too short, bad magic byte). */
int sk_avro_wire_split(const uint8_t *buf, size_t len, uint32_t *schema_id, const uint8_t **body,
                       size_t *body_len, char *err, size_t errlen);

/* Writes the 5-byte Confluent header for schema_id into out. */
void sk_avro_wire_header(uint32_t schema_id, uint8_t out[SK_AVRO_WIRE_HEADER]);

#endif
