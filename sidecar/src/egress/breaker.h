/* Circuit breaker per route, after resilience4j's CircuitBreaker with a count-based sliding
 * window. Pure: no clock, no loop; every call takes the caller's monotonic time in ms. Loop
 * thread only; not thread-safe.
 *
 * CLOSED: every call goes; outcomes fill a window of the last `window` calls. It opens when
 * `consecutive` failures follow each other, or when the window holds at least `min_calls`
 * outcomes and the failed share is >= failure_ratio.
 * OPEN: calls are refused with the ms left until open_ms has passed since it opened; then the
 * next sk_breaker_allow or sk_breaker_state_at moves it to HALF_OPEN.
 * HALF_OPEN: one call at a time is let through as the probe (the others are refused with
 * SK_BREAKER_PROBE_RETRY_MS, or open_ms if shorter); the probe's success closes it (with an
 * empty window), its failure opens it again for open_ms.
 *
 * Outcomes of calls let through before a transition (allow returned SK_BREAKER_GO) that end
 * while OPEN or HALF_OPEN are ignored: only the probe decides in HALF_OPEN (one that ends after
 * the breaker closed again counts in the new window, as in resilience4j). Time going
 * backwards while OPEN restarts the open period at the earlier time (the wait stays <= open_ms).
 *
 * Transitions are counted per target state, and reported to an optional callback, called from
 * inside allow, record or state_at; it must not free the breaker. */
#ifndef SK_EGRESS_BREAKER_H
#define SK_EGRESS_BREAKER_H

#include <stdint.h>

#define SK_BREAKER_PROBE_RETRY_MS 1000

typedef enum { SK_BREAKER_CLOSED, SK_BREAKER_OPEN, SK_BREAKER_HALF_OPEN } sk_breaker_state;

typedef struct sk_breaker sk_breaker;

typedef void (*sk_breaker_cb)(void *ud, sk_breaker_state from, sk_breaker_state to);

typedef struct sk_breaker_opts {
    double failure_ratio; /* in (0, 1]; <= 0, > 1 or NaN: the ratio rule is off */
    int min_calls;        /* < 1: 1; above window: window */
    int window;      /* calls in the sliding window, 1..SK_BREAKER_MAX_WINDOW; <= 0: ratio off */
    int consecutive; /* consecutive failures that open it; <= 0: rule off */
    int64_t open_ms; /* time OPEN before a probe; < 0: 0 */
    sk_breaker_cb on_transition; /* optional */
    void *ud;
} sk_breaker_opts;

#define SK_BREAKER_MAX_WINDOW 100000

/* What sk_breaker_allow lets through; hand it back to record or release. */
enum { SK_BREAKER_REFUSED = 0, SK_BREAKER_GO = 1, SK_BREAKER_PROBE = 2 };

/* NULL when o->window > SK_BREAKER_MAX_WINDOW or out of memory. Starts CLOSED. */
sk_breaker *sk_breaker_new(const sk_breaker_opts *o);
/* Accepts NULL. */
void sk_breaker_free(sk_breaker *b);

/* SK_BREAKER_GO (CLOSED), SK_BREAKER_PROBE (HALF_OPEN, this call is the probe) or
 * SK_BREAKER_REFUSED with *retry_in_ms (may be NULL) set to the ms to wait (0 when going). */
int sk_breaker_allow(sk_breaker *b, int64_t now_ms, int64_t *retry_in_ms);
/* The outcome of a call let through: permit is what allow returned, ok 1 success, 0 failure
 * (connect error, timeout, 5xx). A permit of SK_BREAKER_REFUSED is ignored. */
void sk_breaker_record(sk_breaker *b, int permit, int ok, int64_t now_ms);
/* A call let through ended without an outcome (client gone, refused by a later limit): a
 * probe's turn is given back so the next call probes; a GO permit needs nothing. */
void sk_breaker_release(sk_breaker *b, int permit);
/* The state at now_ms (OPEN becomes HALF_OPEN here once open_ms has passed). */
sk_breaker_state sk_breaker_state_at(sk_breaker *b, int64_t now_ms);
/* "closed", "open", "half_open" ("unknown" for anything else). */
const char *sk_breaker_state_name(sk_breaker_state s);
/* Transitions into state `to` since creation. */
uint64_t sk_breaker_transitions(const sk_breaker *b, sk_breaker_state to);
/* Outcomes and failures in the window now (for readiness details). */
void sk_breaker_window(const sk_breaker *b, int *calls, int *failures);

#endif
