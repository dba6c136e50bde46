/* The acks' fast path: a handler's most frequent frames, a lone `ack` or a `results` frame of
 * acks alone, read without building a JSON tree. Only one exact shape is taken, the one the
 * SDKs write (no whitespace, members in this order, ids of printable ASCII without escapes):
 *
 *   {"type":"ack","id":"<id>"}
 *   {"type":"results","results":[{"type":"ack","id":"<id>"},...]}
 *
 * Anything else, valid or not, is declined untouched and goes through sk_msg_decode, so every
 * refusal (its error code, message and metric) stays the tree decoder's. Pure, no I/O: unit
 * tested, and fuzzed against sk_msg_decode (what it takes, the decoder reads the same way). */
#ifndef SK_ACKS_H
#define SK_ACKS_H

#include <stddef.h>
#include <stdint.h>

/* Called for each ack in frame order: id is NUL-terminated, index is the item's position in a
 * `results` frame or -1 for a lone `ack` frame. */
typedef void (*sk_ack_fn)(void *ud, const char *id, long index);

/* When payload[0..len) has one of the shapes above, NUL-terminates each id in place (over its
 * closing quote: payload is altered), calls fn for each, and returns 1; otherwise returns 0
 * without calling fn or touching payload. */
int sk_acks_scan(uint8_t *payload, size_t len, sk_ack_fn fn, void *ud);

#endif
