/* W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` and `tracestate`
 * values that carry a trace across Kafka record headers, Zeebe process variables and handlers.
 * Parsing never fails loudly: an invalid value is simply no context (the caller starts a new
 * trace, as the recommendation says). */
#ifndef SK_TRACE_CONTEXT_H
#define SK_TRACE_CONTEXT_H

#include <stddef.h>
#include <stdint.h>

#define SK_TRACEPARENT_LEN 55  /* "00-" 32 hex "-" 16 hex "-" 2 hex */
#define SK_TRACESTATE_MAX 512  /* longest tracestate kept (the recommendation's minimum) */
#define SK_TRACE_SAMPLED 0x01u /* trace-flags bit */

typedef struct sk_trace_ctx {
    uint8_t trace_id[16];
    uint8_t span_id[8];
    uint8_t flags;
    char tracestate[SK_TRACESTATE_MAX + 1]; /* "" when none or invalid */
} sk_trace_ctx;

/* Parses a traceparent value (len bytes, not NUL-terminated). Version 00 must be exactly 55
 * bytes; a higher version may carry more after a '-' (forward compatibility); version ff, upper
 * case hex, all-zero ids are invalid. Returns 0 and fills trace_id, span_id and flags, or -1
 * (ctx untouched). */
int sk_traceparent_parse(const char *s, size_t len, sk_trace_ctx *ctx);

/* Writes "00-<trace>-<span>-<flags>" and a NUL into out (SK_TRACEPARENT_LEN + 1 bytes). */
void sk_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                           char out[SK_TRACEPARENT_LEN + 1]);

/* Checks a tracestate value: at most 32 comma-separated list members key=value (optional
 * whitespace around them, empty members allowed), keys and values by the recommendation's
 * grammar, no duplicate key, at most SK_TRACESTATE_MAX bytes. 0 valid, -1 invalid. */
int sk_tracestate_valid(const char *s, size_t len);

/* Lowercase hex of n bytes into out (2n + 1 bytes with the NUL). */
void sk_trace_hex(const uint8_t *in, size_t n, char *out);

/* 1 when every byte of id is zero (an invalid id). */
int sk_trace_id_zero(const uint8_t *id, size_t n);

/* Fresh random ids (never all zero), from OpenSSL's generator through a pool: loop thread
 * only. */
void sk_trace_new_trace_id(uint8_t id[16]);
void sk_trace_new_span_id(uint8_t id[8]);

#endif
