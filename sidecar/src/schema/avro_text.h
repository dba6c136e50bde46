/* Avro binary -> JSON text, straight into a sk_jtext (the Kafka task frame's hot path): the
 * same text, byte for byte, as sk_avro_to_json's value written by jansson in its compact
 * encoding (sk_jtext_json), without building the tree.
 *
 * The direct writer covers every type; it declines (and the tree path runs instead, giving the
 * same text or the same error) for what it does not handle itself: any input the tree path
 * would refuse, maps of more than SK_AVRO_TEXT_MAX_MAP entries (their keys are checked for
 * duplicates by a linear scan) and non-finite values aside, float and double go through
 * jansson's own number formatting. Pure functions, no I/O. */
#ifndef SK_AVRO_TEXT_H
#define SK_AVRO_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "core/jtext.h"
#include "schema/avro_json.h"

#define SK_AVRO_TEXT_MAX_MAP 64

/* Appends the value of the Avro body buf[0..len) to t. 0 on success; -1 with err (the tree
 * path's message) when it does not decode, t then as it was. An out-of-memory sets t->failed
 * as every sk_jtext writer does. */
int sk_avro_to_jtext(const sk_avro_schema *s, const uint8_t *buf, size_t len, sk_jtext *t,
                     char *err, size_t errlen);

/* The direct writer alone (for tests and the fuzz target): 0 when it wrote the value, -1 when
 * it declined (t as it was). */
int sk_avro_text_direct(const sk_avro_schema *s, const uint8_t *buf, size_t len, sk_jtext *t);

#endif
