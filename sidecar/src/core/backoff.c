#include "core/backoff.h"

void sk_backoff_init(sk_backoff *b, int64_t initial_ms, int64_t max_ms, uint64_t seed)
{
    b->initial_ms = initial_ms > 0 ? initial_ms : 1;
    b->max_ms = max_ms >= b->initial_ms ? max_ms : b->initial_ms;
    b->attempt = 0;
    b->rng = seed ? seed : 0x9e3779b97f4a7c15ull;
}

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

int64_t sk_backoff_next(sk_backoff *b)
{
    int64_t d = b->initial_ms;
    for (unsigned i = 0; i < b->attempt && d < b->max_ms; i++)
        d *= 2;
    if (d > b->max_ms)
        d = b->max_ms;
    if (b->attempt < 64)
        b->attempt++;
    int64_t half = d / 2;
    return half + (int64_t)(xorshift(&b->rng) % (uint64_t)(d - half + 1));
}

void sk_backoff_reset(sk_backoff *b)
{
    b->attempt = 0;
}
