/* Token bucket: refill, burst, fractional tokens, waits, debt after an adjustment, n above the
 * capacity, unlimited buckets, bad arguments, time going backwards. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "egress/bucket.h"

static void test_starts_full_then_waits(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(60, 0, 1000); /* 1 token per second, capacity 60 */
    assert_non_null(b);
    assert_true(sk_bucket_capacity(b) == 60);
    for (int i = 0; i < 60; i++)
        assert_int_equal(sk_bucket_take(b, 1, 1000), 0);
    assert_int_equal(sk_bucket_take(b, 1, 1000), 1000);
    assert_int_equal(sk_bucket_take(b, 1, 1500), 500);
    assert_int_equal(sk_bucket_take(b, 1, 2000), 0);
    assert_int_equal(sk_bucket_take(b, 2, 2000), 2000);
    /* a refused take took nothing */
    assert_int_equal(sk_bucket_take(b, 2, 4000), 0);
    sk_bucket_free(b);
}

static void test_burst_caps_refill(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(600, 5, 0); /* 10 per second, burst 5 */
    assert_true(sk_bucket_capacity(b) == 5);
    assert_int_equal(sk_bucket_take(b, 5, 0), 0);
    /* an hour idle refills to the burst, not beyond */
    assert_true(sk_bucket_level(b, 3600000) == 5);
    assert_int_equal(sk_bucket_take(b, 5, 3600000), 0);
    assert_true(sk_bucket_take(b, 1, 3600000) > 0);
    sk_bucket_free(b);
}

static void test_fractional(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(1, 1, 0); /* one per minute */
    assert_int_equal(sk_bucket_take(b, 0.25, 0), 0);
    assert_int_equal(sk_bucket_take(b, 0.75, 0), 0);
    assert_int_equal(sk_bucket_take(b, 0.5, 0), 30000);
    assert_int_equal(sk_bucket_take(b, 0.5, 29999), 1);
    assert_int_equal(sk_bucket_take(b, 0.5, 30000), 0);
    /* a wait that is a fraction of a ms rounds up to 1 */
    sk_bucket *fast = sk_bucket_new(6e6, 1, 0); /* 100 per ms */
    assert_int_equal(sk_bucket_take(fast, 1, 0), 0);
    assert_int_equal(sk_bucket_take(fast, 0.5, 0), 1);
    sk_bucket_free(fast);
    sk_bucket_free(b);
}

static void test_wait_does_not_take(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(60, 2, 0);
    assert_int_equal(sk_bucket_wait(b, 2, 0), 0);
    assert_int_equal(sk_bucket_wait(b, 2, 0), 0);
    assert_int_equal(sk_bucket_take(b, 2, 0), 0);
    assert_int_equal(sk_bucket_wait(b, 1, 0), 1000);
    sk_bucket_free(b);
}

/* n above the capacity: refused with the wait until full, taken when full (debt). */
static void test_n_above_capacity(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(60, 10, 0);
    assert_int_equal(sk_bucket_take(b, 1, 0), 0);
    assert_int_equal(sk_bucket_take(b, 25, 0), 1000); /* until full again */
    assert_int_equal(sk_bucket_take(b, 25, 1000), 0);
    assert_true(sk_bucket_level(b, 1000) == -15);
    /* the debt delays the next take: 16 s to get back to 1 */
    assert_int_equal(sk_bucket_take(b, 1, 1000), 16000);
    assert_int_equal(sk_bucket_take(b, 1, 17000), 0);
    sk_bucket_free(b);
}

static void test_huge_n_is_bounded(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(60, 10, 0);
    assert_int_equal(sk_bucket_take(b, 1e300, 0), 0);
    assert_true(sk_bucket_level(b, 0) == -SK_BUCKET_MAX_DEBT * 10);
    int64_t w = sk_bucket_take(b, 1, 0);
    assert_int_equal(w, (int64_t)((SK_BUCKET_MAX_DEBT * 10 + 1) * 1000));
    assert_int_equal(sk_bucket_take(b, 1, w), 0);
    assert_int_equal(sk_bucket_take(b, INFINITY, w + 1000000), 0);
    /* a wait beyond int range is capped */
    sk_bucket *slow = sk_bucket_new(1e-9, 1, 0);
    assert_int_equal(sk_bucket_take(slow, 1, 0), 0);
    assert_int_equal(sk_bucket_take(slow, 1, 0), INT32_MAX);
    sk_bucket_free(slow);
    sk_bucket_free(b);
}

static void test_adjust(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(6000, 0, 0); /* 100 per second, capacity 6000 */
    assert_int_equal(sk_bucket_take(b, 1000, 0), 0);
    /* used 4000 more than estimated: level 1000 */
    sk_bucket_adjust(b, 4000, 0);
    assert_true(sk_bucket_level(b, 0) == 1000);
    /* goes negative: later takes wait */
    sk_bucket_adjust(b, 3000, 0);
    assert_true(sk_bucket_level(b, 0) == -2000);
    assert_int_equal(sk_bucket_take(b, 100, 0), 21000);
    /* used less than estimated: tokens come back, capped at the capacity */
    sk_bucket_adjust(b, -2500, 0);
    assert_true(sk_bucket_level(b, 0) == 500);
    sk_bucket_adjust(b, -1e9, 0);
    assert_true(sk_bucket_level(b, 0) == 6000);
    /* the debt is bounded too */
    sk_bucket_adjust(b, 1e12, 0);
    assert_true(sk_bucket_level(b, 0) == -SK_BUCKET_MAX_DEBT * 6000);
    /* non-finite deltas are ignored */
    sk_bucket_adjust(b, NAN, 0);
    sk_bucket_adjust(b, -INFINITY, 0);
    assert_true(sk_bucket_level(b, 0) == -SK_BUCKET_MAX_DEBT * 6000);
    sk_bucket_free(b);
}

static void test_zero_and_bad_args(void **state)
{
    (void)state;
    /* per_minute 0: no limit */
    sk_bucket *b = sk_bucket_new(0, 0, 0);
    assert_non_null(b);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sk_bucket_take(b, 1e6, 0), 0);
    sk_bucket_adjust(b, 1e9, 0);
    assert_int_equal(sk_bucket_take(b, 1, 0), 0);
    assert_true(isinf(sk_bucket_level(b, 0)));
    assert_true(isinf(sk_bucket_capacity(b)));
    sk_bucket_free(b);
    b = sk_bucket_new(-5, 3, 0);
    assert_int_equal(sk_bucket_take(b, 1e6, 0), 0);
    sk_bucket_free(b);
    b = sk_bucket_new(INFINITY, 0, 0);
    assert_int_equal(sk_bucket_take(b, 1e6, 0), 0);
    sk_bucket_free(b);
    assert_null(sk_bucket_new(NAN, 0, 0));
    assert_null(sk_bucket_new(60, NAN, 0));
    assert_null(sk_bucket_new(60, INFINITY, 0));
    sk_bucket_free(NULL);
    /* n <= 0 or NaN takes nothing */
    b = sk_bucket_new(60, 1, 0);
    assert_int_equal(sk_bucket_take(b, 0, 0), 0);
    assert_int_equal(sk_bucket_take(b, -3, 0), 0);
    assert_int_equal(sk_bucket_take(b, NAN, 0), 0);
    assert_true(sk_bucket_level(b, 0) == 1);
    sk_bucket_free(b);
}

static void test_time_backwards(void **state)
{
    (void)state;
    sk_bucket *b = sk_bucket_new(60, 10, 100000);
    assert_int_equal(sk_bucket_take(b, 10, 100000), 0);
    /* earlier times refill nothing and leave the latest time in place */
    assert_int_equal(sk_bucket_take(b, 1, 50000), 1000);
    assert_int_equal(sk_bucket_take(b, 1, INT64_MIN), 1000);
    assert_true(sk_bucket_level(b, 0) == 0);
    assert_int_equal(sk_bucket_take(b, 1, 101000), 0);
    /* a jump to the far future just fills the bucket */
    assert_true(sk_bucket_level(b, INT64_MAX) == 10);
    assert_int_equal(sk_bucket_take(b, 10, INT64_MAX), 0);
    assert_int_equal(sk_bucket_take(b, 1, 0), 1000);
    sk_bucket_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_starts_full_then_waits),
        cmocka_unit_test(test_burst_caps_refill),
        cmocka_unit_test(test_fractional),
        cmocka_unit_test(test_wait_does_not_take),
        cmocka_unit_test(test_n_above_capacity),
        cmocka_unit_test(test_huge_n_is_bounded),
        cmocka_unit_test(test_adjust),
        cmocka_unit_test(test_zero_and_bad_args),
        cmocka_unit_test(test_time_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
