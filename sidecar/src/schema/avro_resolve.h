/* Avro schema resolution ("Schema Resolution" in the Avro specification) in our own decoder:
 * a value written with one schema (the writer's, named by the record's schema id) is decoded
 * into the shape of another (the reader's, the one the handlers expect). avro-c's resolver is
 * not used: it ignores field defaults and corrupts memory on failure (REFERENCE.md).
 *
 * A plan is computed once per (writer, reader) pair: record fields matched by name or by the
 * reader field's aliases, writer fields absent from the reader skipped, reader fields absent from
 * the writer filled from their defaults (no default: no plan), the promotions int -> long, float,
 * double; long -> float, double; float -> double; string <-> bytes; enums by symbol (an unknown
 * writer symbol takes the reader's enum default, or fails when the value is met); a writer union
 * resolves the branch written, a reader union takes the first branch that matches (the same
 * type first, then a promotion); arrays, maps, fixed and named types recursively, named types
 * matching by (unqualified) name or the reader's aliases. The output follows the JSON mapping of
 * sk_avro_to_json with the reader's schema.
 *
 * A plan borrows both schemas: it must not outlive them. Immutable once built: threads may share
 * it. Pure functions, no I/O. */
#ifndef SK_AVRO_RESOLVE_H
#define SK_AVRO_RESOLVE_H

#include "schema/avro_json.h"

#define SK_AVRO_PLAN_MAX_STEPS 100000 /* (writer node, reader node) pairs in one plan */

typedef struct sk_avro_plan sk_avro_plan;

/* The plan for reading values written with ws (the writer's schema) as rs (the reader's). NULL with
 * err naming the first incompatibility and its path, e.g. "$.customer.email: reader field has no
 * default and the writer has no such field", or "out of memory". */
sk_avro_plan *sk_avro_plan_new(const sk_avro_schema *ws, const sk_avro_schema *rs, char *err,
                               size_t errlen);
void sk_avro_plan_free(sk_avro_plan *p);

/* Avro binary body written with the plan's writer schema -> new JSON value in the reader's
 * shape. NULL with err on failure; *incompatible (optional) is then 1 when the body is
 * well-formed but holds a value the reader cannot take (an enum symbol unknown to a reader enum
 * without default, a writer union branch no reader branch matches, bytes that are not UTF-8 for
 * a reader string), 0 when the body is malformed (truncated, bad length...). */
json_t *sk_avro_resolve(const sk_avro_plan *p, const uint8_t *buf, size_t len, int *incompatible,
                        char *err, size_t errlen);

#endif
