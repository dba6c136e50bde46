/* Exponential backoff with jitter ("equal jitter": half fixed, half random), a value type. */
#ifndef SK_BACKOFF_H
#define SK_BACKOFF_H

#include <stdint.h>

typedef struct sk_backoff {
    int64_t initial_ms;
    int64_t max_ms;
    unsigned attempt;
    uint64_t rng; /* xorshift state; seeded by sk_backoff_init */
} sk_backoff;

void sk_backoff_init(sk_backoff *b, int64_t initial_ms, int64_t max_ms, uint64_t seed);
/* Delay before the next attempt: in [d/2, d] with d = min(max, initial * 2^attempt). */
int64_t sk_backoff_next(sk_backoff *b);
void sk_backoff_reset(sk_backoff *b);

#endif
