/* Circuit breaker: every transition (ratio, consecutive failures, open time, probe success and
 * failure), one probe at a time, released probes, late outcomes ignored, option edges, time
 * going backwards, the counters and the transition callback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "egress/breaker.h"

static int seen[16][2];
static int nseen;

static void on_transition(void *ud, sk_breaker_state from, sk_breaker_state to)
{
    (*(int *)ud)++;
    seen[nseen][0] = (int)from;
    seen[nseen][1] = (int)to;
    nseen++;
}

static sk_breaker *make(double ratio, int min_calls, int window, int consecutive, int64_t open_ms,
                        int *calls)
{
    sk_breaker_opts o = {ratio, min_calls, window, consecutive, open_ms, on_transition, calls};
    nseen = 0;
    return sk_breaker_new(&o);
}

static void feed(sk_breaker *b, int n, int ok, int64_t now)
{
    for (int i = 0; i < n; i++) {
        int p = sk_breaker_allow(b, now, NULL);
        assert_int_equal(p, SK_BREAKER_GO);
        sk_breaker_record(b, p, ok, now);
    }
}

/* The ratio counts only once min_calls are in; the window slides. */
static void test_ratio_trip(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0.5, 10, 20, 0, 30000, &calls);
    feed(b, 9, 0, 0); /* 9 failures, below min_calls */
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    feed(b, 1, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_OPEN);
    assert_int_equal(calls, 1);
    sk_breaker_free(b);

    /* sliding: 20 successes then failures; trips when failures reach half of the last 20 */
    b = make(0.5, 10, 20, 0, 30000, &calls);
    feed(b, 20, 1, 0);
    feed(b, 9, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    int c, f;
    sk_breaker_window(b, &c, &f);
    assert_int_equal(c, 20);
    assert_int_equal(f, 9);
    feed(b, 1, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_OPEN);
    sk_breaker_free(b);

    /* below the ratio stays closed forever: 1 failure in 3 */
    b = make(0.5, 10, 20, 0, 30000, &calls);
    for (int i = 0; i < 300; i++)
        feed(b, 1, i % 3 != 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    sk_breaker_free(b);
}

static void test_consecutive_trip(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0, 0, 0, 5, 1000, &calls); /* ratio off */
    for (int i = 0; i < 100; i++) {
        feed(b, 4, 0, 0);
        feed(b, 1, 1, 0); /* a success breaks the streak */
    }
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    feed(b, 5, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_OPEN);
    sk_breaker_free(b);
}

static void test_open_half_open_close(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0.5, 2, 4, 0, 30000, &calls);
    feed(b, 2, 0, 1000);
    int64_t wait = -1;
    assert_int_equal(sk_breaker_allow(b, 1000, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 30000);
    assert_int_equal(sk_breaker_allow(b, 21000, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 10000);
    assert_int_equal(sk_breaker_state_at(b, 30999), SK_BREAKER_OPEN);
    assert_int_equal(sk_breaker_state_at(b, 31000), SK_BREAKER_HALF_OPEN);
    /* one probe at a time */
    assert_int_equal(sk_breaker_allow(b, 31000, &wait), SK_BREAKER_PROBE);
    assert_int_equal(wait, 0);
    assert_int_equal(sk_breaker_allow(b, 31001, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, SK_BREAKER_PROBE_RETRY_MS);
    sk_breaker_record(b, SK_BREAKER_PROBE, 1, 32000);
    assert_int_equal(sk_breaker_state_at(b, 32000), SK_BREAKER_CLOSED);
    /* closed with an empty window: one failure does not re-open it */
    int c, f;
    sk_breaker_window(b, &c, &f);
    assert_int_equal(c + f, 0);
    feed(b, 1, 0, 32000);
    assert_int_equal(sk_breaker_state_at(b, 32000), SK_BREAKER_CLOSED);
    assert_int_equal(nseen, 3);
    assert_int_equal(seen[0][0], SK_BREAKER_CLOSED);
    assert_int_equal(seen[0][1], SK_BREAKER_OPEN);
    assert_int_equal(seen[1][1], SK_BREAKER_HALF_OPEN);
    assert_int_equal(seen[2][0], SK_BREAKER_HALF_OPEN);
    assert_int_equal(seen[2][1], SK_BREAKER_CLOSED);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_OPEN), 1);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_HALF_OPEN), 1);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_CLOSED), 1);
    sk_breaker_free(b);
}

static void test_probe_failure_reopens(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0, 0, 0, 1, 500, &calls);
    feed(b, 1, 0, 0);
    int64_t wait;
    assert_int_equal(sk_breaker_allow(b, 500, &wait), SK_BREAKER_PROBE);
    sk_breaker_record(b, SK_BREAKER_PROBE, 0, 700);
    assert_int_equal(sk_breaker_allow(b, 700, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 500); /* a full open period from the failure */
    /* the probe-retry wait is never longer than open_ms */
    assert_int_equal(sk_breaker_allow(b, 1200, &wait), SK_BREAKER_PROBE);
    assert_int_equal(sk_breaker_allow(b, 1200, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 500);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_OPEN), 2);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_HALF_OPEN), 2);
    assert_int_equal(sk_breaker_transitions(b, SK_BREAKER_CLOSED), 0);
    assert_int_equal(calls, 4);
    sk_breaker_free(b);
}

/* A released probe lets the next call probe; late outcomes of pre-trip calls are ignored. */
static void test_release_and_late_outcomes(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0, 0, 0, 2, 100, &calls);
    int early = sk_breaker_allow(b, 0, NULL);
    assert_int_equal(early, SK_BREAKER_GO);
    feed(b, 2, 0, 0);
    /* the early call ends while OPEN: ignored */
    sk_breaker_record(b, early, 1, 50);
    assert_int_equal(sk_breaker_state_at(b, 50), SK_BREAKER_OPEN);
    int p = sk_breaker_allow(b, 100, NULL);
    assert_int_equal(p, SK_BREAKER_PROBE);
    /* another pre-trip call ends while HALF_OPEN: ignored, the probe still decides */
    sk_breaker_record(b, SK_BREAKER_GO, 1, 101);
    assert_int_equal(sk_breaker_state_at(b, 101), SK_BREAKER_HALF_OPEN);
    sk_breaker_release(b, p);
    /* released: the next call is the probe */
    p = sk_breaker_allow(b, 102, NULL);
    assert_int_equal(p, SK_BREAKER_PROBE);
    /* a refused permit and a GO release change nothing */
    sk_breaker_record(b, SK_BREAKER_REFUSED, 0, 103);
    sk_breaker_release(b, SK_BREAKER_GO);
    assert_int_equal(sk_breaker_allow(b, 103, NULL), SK_BREAKER_REFUSED);
    sk_breaker_record(b, p, 1, 104);
    assert_int_equal(sk_breaker_state_at(b, 104), SK_BREAKER_CLOSED);
    /* a stale probe outcome after it closed is ignored */
    sk_breaker_record(b, SK_BREAKER_PROBE, 0, 105);
    assert_int_equal(sk_breaker_state_at(b, 105), SK_BREAKER_CLOSED);
    sk_breaker_release(b, SK_BREAKER_PROBE);
    sk_breaker_free(b);
}

static void test_option_edges(void **state)
{
    (void)state;
    int calls = 0;
    /* both rules off: never opens */
    sk_breaker *b = make(0, 0, 20, 0, 1000, &calls);
    feed(b, 1000, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    sk_breaker_free(b);
    b = make(1.5, 1, 20, 0, 1000, &calls); /* ratio > 1: off */
    feed(b, 100, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    sk_breaker_free(b);
    /* ratio 1: only all-failed windows; min_calls above window is clamped to it */
    b = make(1.0, 50, 4, 0, 1000, &calls);
    feed(b, 3, 0, 0);
    feed(b, 1, 1, 0);
    feed(b, 3, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_CLOSED);
    feed(b, 1, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_OPEN);
    sk_breaker_free(b);
    /* min_calls 0 and window 1: a single failure opens; open_ms 0 half-opens at once */
    b = make(0.5, 0, 1, 0, 0, &calls);
    feed(b, 1, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_HALF_OPEN);
    assert_int_equal(sk_breaker_allow(b, 0, NULL), SK_BREAKER_PROBE);
    int64_t wait = -1;
    assert_int_equal(sk_breaker_allow(b, 0, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 0);
    sk_breaker_free(b);
    /* negative open time is 0 */
    b = make(0, 0, 0, 1, -5, &calls);
    feed(b, 1, 0, 0);
    assert_int_equal(sk_breaker_state_at(b, 0), SK_BREAKER_HALF_OPEN);
    sk_breaker_free(b);
    sk_breaker_opts big = {0.5, 10, SK_BREAKER_MAX_WINDOW + 1, 5, 1000, NULL, NULL};
    assert_null(sk_breaker_new(&big));
    sk_breaker_free(NULL);
    assert_string_equal(sk_breaker_state_name(SK_BREAKER_CLOSED), "closed");
    assert_string_equal(sk_breaker_state_name(SK_BREAKER_OPEN), "open");
    assert_string_equal(sk_breaker_state_name(SK_BREAKER_HALF_OPEN), "half_open");
    assert_string_equal(sk_breaker_state_name((sk_breaker_state)7), "unknown");
}

static void test_time_backwards(void **state)
{
    (void)state;
    int calls = 0;
    sk_breaker *b = make(0, 0, 0, 1, 1000, &calls);
    feed(b, 1, 0, 50000);
    int64_t wait;
    /* the clock jumps back: the open period restarts there, never longer than open_ms */
    assert_int_equal(sk_breaker_allow(b, 10000, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 1000);
    assert_int_equal(sk_breaker_allow(b, 10500, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 500);
    assert_int_equal(sk_breaker_allow(b, 11000, &wait), SK_BREAKER_PROBE);
    sk_breaker_record(b, SK_BREAKER_PROBE, 0, INT64_MIN);
    assert_int_equal(sk_breaker_allow(b, INT64_MAX, &wait), SK_BREAKER_PROBE);
    sk_breaker_record(b, SK_BREAKER_PROBE, 0, INT64_MAX);
    assert_int_equal(sk_breaker_allow(b, INT64_MIN, &wait), SK_BREAKER_REFUSED);
    assert_int_equal(wait, 1000);
    sk_breaker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ratio_trip),
        cmocka_unit_test(test_consecutive_trip),
        cmocka_unit_test(test_open_half_open_close),
        cmocka_unit_test(test_probe_failure_reopens),
        cmocka_unit_test(test_release_and_late_outcomes),
        cmocka_unit_test(test_option_edges),
        cmocka_unit_test(test_time_backwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
