/* Token bucket: see bucket.h. */
#include "egress/bucket.h"

#include <math.h>
#include <stdlib.h>

struct sk_bucket {
    double capacity;
    double per_ms; /* refill rate, tokens per ms */
    int unlimited;
    double level;
    int64_t last_ms; /* the latest time seen */
};

sk_bucket *sk_bucket_new(double per_minute, double burst, int64_t now_ms)
{
    if (isnan(per_minute) || isnan(burst) || (isinf(burst) && burst > 0))
        return NULL;
    sk_bucket *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->last_ms = now_ms;
    if (per_minute <= 0 || isinf(per_minute)) {
        b->unlimited = 1;
        return b;
    }
    b->per_ms = per_minute / 60000.0;
    b->capacity = burst > 0 ? burst : per_minute;
    b->level = b->capacity;
    return b;
}

void sk_bucket_free(sk_bucket *b)
{
    free(b);
}

static void refill(sk_bucket *b, int64_t now_ms)
{
    if (now_ms <= b->last_ms)
        return;
    /* the difference in double: two int64 times far apart must not overflow */
    double add = ((double)now_ms - (double)b->last_ms) * b->per_ms;
    b->level = fmin(b->capacity, b->level + add);
    b->last_ms = now_ms;
}

/* ms until the level reaches `need`, rounded up, at least 1, capped. */
static int64_t wait_for(const sk_bucket *b, double need)
{
    double ms = ceil((need - b->level) / b->per_ms);
    if (!(ms < (double)INT32_MAX))
        return INT32_MAX;
    return ms < 1 ? 1 : (int64_t)ms;
}

/* 0 when n can be taken now, else the wait; the level is refilled to now_ms. */
static int64_t check(sk_bucket *b, double n, int64_t now_ms)
{
    if (b->unlimited || !(n > 0))
        return 0;
    refill(b, now_ms);
    double need = n > b->capacity ? b->capacity : n;
    return b->level >= need ? 0 : wait_for(b, need);
}

int64_t sk_bucket_take(sk_bucket *b, double n, int64_t now_ms)
{
    int64_t w = check(b, n, now_ms);
    if (w == 0 && !b->unlimited && n > 0)
        b->level = fmax(b->level - n, -SK_BUCKET_MAX_DEBT * b->capacity);
    return w;
}

int64_t sk_bucket_wait(sk_bucket *b, double n, int64_t now_ms)
{
    return check(b, n, now_ms);
}

void sk_bucket_adjust(sk_bucket *b, double delta, int64_t now_ms)
{
    if (b->unlimited || !isfinite(delta))
        return;
    refill(b, now_ms);
    double level = b->level - delta;
    b->level = fmax(fmin(level, b->capacity), -SK_BUCKET_MAX_DEBT * b->capacity);
}

double sk_bucket_level(sk_bucket *b, int64_t now_ms)
{
    if (b->unlimited)
        return INFINITY;
    refill(b, now_ms);
    return b->level;
}

double sk_bucket_capacity(const sk_bucket *b)
{
    return b->unlimited ? INFINITY : b->capacity;
}
