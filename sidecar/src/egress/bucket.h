/* Token bucket for a per-minute budget (requests or LLM tokens per minute). A pure value
 * machine: no clock, no loop; every call takes the caller's monotonic time in ms. Loop thread
 * only; not thread-safe.
 *
 * The bucket holds up to `capacity` (the burst) tokens, fractional, and refills continuously at
 * per_minute / 60000 tokens per ms. It starts full. A take either succeeds at once (returns 0)
 * or takes nothing and says how many ms until it would succeed (the caller sleeps or answers 429
 * with Retry-After). An adjustment after the fact (actual usage minus the estimate taken) may
 * push the level below zero: the debt delays later takes until refilled.
 *
 * n larger than the capacity can never be covered by a refill alone, so such a take is allowed
 * when the bucket is full (the level then goes to capacity - n, a debt) and otherwise waits for
 * the bucket to be full: a request never waits forever.
 *
 * The debt is bounded at SK_BUCKET_MAX_DEBT full buckets, so a misreported usage figure blocks
 * a route for a bounded time. Time going backwards (now_ms below the last time seen) refills
 * nothing and is otherwise harmless: refill resumes from the latest time seen. */
#ifndef SK_EGRESS_BUCKET_H
#define SK_EGRESS_BUCKET_H

#include <stdint.h>

#define SK_BUCKET_MAX_DEBT 60.0

typedef struct sk_bucket sk_bucket;

/* per_minute <= 0 or +inf: no limit (every take returns 0, adjust does nothing). burst <= 0:
 * capacity = per_minute. NULL when per_minute or burst is NaN, burst is +inf, or out of
 * memory. */
sk_bucket *sk_bucket_new(double per_minute, double burst, int64_t now_ms);
/* Accepts NULL. */
void sk_bucket_free(sk_bucket *b);

/* Takes n tokens if available now and returns 0; otherwise takes nothing and returns the ms
 * (>= 1, rounded up) until the take would succeed if nothing else changed. n <= 0 or NaN
 * returns 0 and takes nothing; n > capacity: see above. The wait is capped at INT32_MAX ms. */
int64_t sk_bucket_take(sk_bucket *b, double n, int64_t now_ms);
/* The same answer as sk_bucket_take without taking anything (to check several buckets before
 * committing to any of them). */
int64_t sk_bucket_wait(sk_bucket *b, double n, int64_t now_ms);
/* Adds -delta tokens: delta > 0 (used more than taken) lowers the level, possibly below zero
 * (down to -SK_BUCKET_MAX_DEBT * capacity); delta < 0 gives tokens back, up to the capacity.
 * NaN or +-inf is ignored. */
void sk_bucket_adjust(sk_bucket *b, double delta, int64_t now_ms);
/* The level after refilling to now_ms (negative while in debt); +inf for an unlimited bucket. */
double sk_bucket_level(sk_bucket *b, int64_t now_ms);
/* The burst capacity; +inf for an unlimited bucket. */
double sk_bucket_capacity(const sk_bucket *b);

#endif
