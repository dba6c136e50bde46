/* Exponential backoff with equal jitter: every delay in [d/2, d], growth, cap, reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/backoff.h"

/* d = min(max, initial * 2^attempt) for the attempt-th call (0-based). */
static int64_t nominal(int64_t initial, int64_t max, unsigned attempt)
{
    int64_t d = initial;
    for (unsigned i = 0; i < attempt && d < max; i++)
        d *= 2;
    return d < max ? d : max;
}

static void expect_in_bounds(int64_t delay, int64_t d)
{
    if (delay < d / 2 || delay > d)
        fail_msg("delay %lld outside [%lld, %lld]", (long long)delay, (long long)(d / 2),
                 (long long)d);
}

static void test_bounds_and_growth(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 50; seed++) {
        sk_backoff b;
        sk_backoff_init(&b, 100, 10000, seed);
        for (unsigned i = 0; i < 80; i++)
            expect_in_bounds(sk_backoff_next(&b), nominal(100, 10000, i));
    }
}

/* The upper bound doubles until the cap; the lower half is fixed, so delays grow. */
static void test_growth_is_visible(void **state)
{
    (void)state;
    sk_backoff b;
    sk_backoff_init(&b, 100, 10000, 42);
    int64_t d0 = sk_backoff_next(&b), d1 = sk_backoff_next(&b), d2 = sk_backoff_next(&b),
            d3 = sk_backoff_next(&b);
    assert_true(d0 <= 100);
    assert_true(d2 >= 200);
    assert_true(d3 >= 400 && d3 > d0);
    (void)d1;
}

static void test_cap(void **state)
{
    (void)state;
    sk_backoff b;
    sk_backoff_init(&b, 100, 1000, 7);
    for (int i = 0; i < 200; i++) {
        int64_t d = sk_backoff_next(&b);
        assert_true(d <= 1000);
        if (i >= 4)
            assert_true(d >= 500);
    }
}

static void test_reset(void **state)
{
    (void)state;
    sk_backoff b;
    sk_backoff_init(&b, 100, 10000, 3);
    for (int i = 0; i < 10; i++)
        sk_backoff_next(&b);
    sk_backoff_reset(&b);
    expect_in_bounds(sk_backoff_next(&b), 100);
    expect_in_bounds(sk_backoff_next(&b), 200);
}

/* Jitter spreads delays: many seeds do not all pick the same value. */
static void test_jitter(void **state)
{
    (void)state;
    int64_t first = -1;
    int distinct = 0;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        sk_backoff b;
        sk_backoff_init(&b, 1000, 60000, seed);
        int64_t d = sk_backoff_next(&b);
        if (first < 0)
            first = d;
        distinct += d != first;
    }
    assert_true(distinct > 0);
}

static void test_degenerate_init(void **state)
{
    (void)state;
    sk_backoff b;
    sk_backoff_init(&b, 0, 0, 0);
    for (int i = 0; i < 10; i++) {
        int64_t d = sk_backoff_next(&b);
        assert_true(d >= 0 && d <= 1);
    }
    sk_backoff_init(&b, 500, 100, 9); /* max below initial: initial is the cap */
    for (int i = 0; i < 10; i++)
        expect_in_bounds(sk_backoff_next(&b), 500);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_and_growth),
        cmocka_unit_test(test_growth_is_visible),
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_jitter),
        cmocka_unit_test(test_degenerate_init),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
