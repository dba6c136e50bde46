/* Partition queue: what may start under each ordering mode, the commit position, state
 * transitions and their errors. Includes partq.c to substitute a colliding key hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

static int weak_hash; /* 1: every key of a given length hashes alike */
static uint64_t test_hash(const void *key, size_t len);
#define SK_PARTQ_HASH test_hash
#include "kafka/partq.c"

static uint64_t test_hash(const void *key, size_t len)
{
    return weak_hash ? (uint64_t)len : key_hash(key, len);
}

/* ud for offset o: distinct, non-NULL, needs no freeing */
#define UD(o) ((void *)(uintptr_t)((o) + 1000))

static void push(sk_partq *q, int64_t off, const char *key)
{
    assert_int_equal(sk_partq_push(q, off, key, key ? strlen(key) : 0, UD(off)), 0);
}

static void push_ready(sk_partq *q, int64_t off, const char *key)
{
    push(q, off, key);
    assert_int_equal(sk_partq_ready(q, off), 0);
}

/* take must hand out exactly this offset (-1: nothing). */
static void expect_take(sk_partq *q, int64_t want)
{
    int64_t off = 12345;
    void *ud = sk_partq_take(q, &off);
    if (off != want)
        fail_msg("take gave %lld, expected %lld", (long long)off, (long long)want);
    assert_ptr_equal(ud, want < 0 ? NULL : UD(want));
}

/* ---- key mode ---- */

static void test_key_parallel_and_serial(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push_ready(q, 0, "a");
    push_ready(q, 1, "b");
    push_ready(q, 2, "a");
    push_ready(q, 3, "c");
    expect_take(q, 0);
    expect_take(q, 1);
    expect_take(q, 3); /* 2 waits for 0 */
    expect_take(q, -1);
    assert_int_equal(sk_partq_done(q, 0), 0);
    expect_take(q, 2);
    expect_take(q, -1);
    assert_int_equal(sk_partq_position(q), 1);
    sk_partq_free(q);
}

/* Record 5 "a" fails and waits in backoff: 7 "a" must wait until 5 is DONE, 6 "b" may run. */
static void test_key_retry_backoff(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push_ready(q, 5, "a");
    push_ready(q, 6, "b");
    push_ready(q, 7, "a");
    expect_take(q, 5);
    assert_int_equal(sk_partq_hold(q, 5), 0);
    expect_take(q, 6);
    expect_take(q, -1);
    assert_int_equal(sk_partq_unstarted(q), 2);
    assert_int_equal(sk_partq_ready(q, 5), 0);
    expect_take(q, 5); /* the retry, still ahead of 7 */
    expect_take(q, -1);
    assert_int_equal(sk_partq_done(q, 6), 0);
    expect_take(q, -1);
    assert_int_equal(sk_partq_position(q), 5);
    assert_int_equal(sk_partq_done(q, 5), 0);
    assert_int_equal(sk_partq_position(q), 7);
    expect_take(q, 7);
    assert_int_equal(sk_partq_done(q, 7), 0);
    assert_int_equal(sk_partq_position(q), 8);
    assert_int_equal(sk_partq_open(q), 0);
    sk_partq_free(q);
}

/* A PENDING record blocks its key too, and a record done while waiting unblocks nothing
 * ahead of it. */
static void test_key_pending_blocks_and_skip(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push(q, 1, "k"); /* waiting for its schema */
    push_ready(q, 2, "k");
    push_ready(q, 3, "k");
    expect_take(q, -1);
    assert_int_equal(sk_partq_ready(q, 1), 0);
    expect_take(q, 1);
    assert_int_equal(sk_partq_done(q, 2), 0); /* filtered out without running */
    expect_take(q, -1);                       /* 3 still behind 1 */
    assert_int_equal(sk_partq_position(q), 1);
    assert_int_equal(sk_partq_done(q, 1), 0);
    assert_int_equal(sk_partq_position(q), 3);
    expect_take(q, 3);
    sk_partq_free(q);
}

static void test_key_null_keys_unordered(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push(q, 0, NULL);
    push_ready(q, 1, NULL);
    push_ready(q, 2, "a");
    push_ready(q, 3, NULL);
    expect_take(q, 1); /* 0 is PENDING, blocks nothing */
    expect_take(q, 2);
    expect_take(q, 3);
    expect_take(q, -1);
    assert_int_equal(sk_partq_ready(q, 0), 0);
    expect_take(q, 0);
    sk_partq_free(q);
}

/* Keys compare by bytes: embedded NULs count, the empty key is a key, NULL is not. */
static void test_key_bytes(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    assert_int_equal(sk_partq_push(q, 0, "a\0b", 3, UD(0)), 0);
    assert_int_equal(sk_partq_push(q, 1, "a\0c", 3, UD(1)), 0);
    assert_int_equal(sk_partq_push(q, 2, "a\0b", 3, UD(2)), 0);
    assert_int_equal(sk_partq_push(q, 3, "a", 1, UD(3)), 0);
    assert_int_equal(sk_partq_push(q, 4, "", 0, UD(4)), 0);
    assert_int_equal(sk_partq_push(q, 5, "", 0, UD(5)), 0);
    assert_int_equal(sk_partq_push(q, 6, NULL, 0, UD(6)), 0);
    for (int64_t o = 0; o <= 6; o++)
        assert_int_equal(sk_partq_ready(q, o), 0);
    expect_take(q, 0);
    expect_take(q, 1);
    expect_take(q, 3);
    expect_take(q, 4);
    expect_take(q, 6);
    expect_take(q, -1); /* 2 behind 0, 5 behind 4 */
    assert_int_equal(sk_partq_done(q, 4), 0);
    expect_take(q, 5);
    assert_int_equal(sk_partq_done(q, 0), 0);
    expect_take(q, 2);
    sk_partq_free(q);
}

static void run_collisions(void)
{
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push_ready(q, 0, "xa");
    push_ready(q, 1, "xb");
    push_ready(q, 2, "xa");
    push_ready(q, 3, "yb");
    push_ready(q, 4, "xb");
    expect_take(q, 0);
    expect_take(q, 1);
    expect_take(q, 3);
    expect_take(q, -1);
    assert_int_equal(sk_partq_done(q, 1), 0);
    expect_take(q, 4);
    assert_int_equal(sk_partq_done(q, 0), 0);
    expect_take(q, 2);
    sk_partq_free(q);
}

/* Same-length keys all collide under the weak hash: the byte compare must tell them apart. */
static void test_key_hash_collisions(void **state)
{
    (void)state;
    run_collisions();
    weak_hash = 1;
    run_collisions();
    weak_hash = 0;
}

/* 20000 records over 257 keys, up to 3000 held and 64 running, finished in random order: a
 * key never runs twice at once and always in offset order. */
static void test_key_many_keys_thousands(void **state)
{
    (void)state;
    enum { N = 20000, KEYS = 257, MAXRUN = 64 };
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    int64_t last_started[KEYS];
    int busy[KEYS] = {0};
    for (int k = 0; k < KEYS; k++)
        last_started[k] = -1;
    int64_t pushed = 0, running[MAXRUN];
    int nrunning = 0;
    unsigned rng = 7;
    while (pushed < N || sk_partq_open(q) > 0) {
        for (; pushed < N && sk_partq_held(q) < 3000; pushed++) {
            char key[16];
            snprintf(key, sizeof(key), "key-%d", (int)(pushed * 31 % KEYS));
            push_ready(q, pushed * 2, key); /* even offsets: a gap after each */
        }
        int64_t off;
        while (nrunning < MAXRUN && sk_partq_take(q, &off)) {
            int k = (int)(off / 2 * 31 % KEYS);
            assert_false(busy[k]);
            assert_true(off > last_started[k]);
            busy[k] = 1;
            last_started[k] = off;
            running[nrunning++] = off;
        }
        assert_true(nrunning > 0);
        rng = rng * 1103515245u + 12345u;
        int i = (int)((rng >> 16) % (unsigned)nrunning);
        busy[running[i] / 2 * 31 % KEYS] = 0;
        assert_int_equal(sk_partq_done(q, running[i]), 0);
        running[i] = running[--nrunning];
    }
    assert_int_equal(sk_partq_position(q), 2 * (N - 1) + 1);
    assert_int_equal(sk_partq_held(q), 0);
    sk_partq_free(q);
}

/* ---- partition and none modes ---- */

static void test_partition_one_at_a_time(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_PARTITION);
    push(q, 10, "a");
    push_ready(q, 11, "b");
    push_ready(q, 12, NULL);
    expect_take(q, -1); /* 10 not ready yet */
    assert_int_equal(sk_partq_ready(q, 10), 0);
    expect_take(q, 10);
    expect_take(q, -1);
    assert_int_equal(sk_partq_hold(q, 10), 0);
    expect_take(q, -1);
    assert_int_equal(sk_partq_ready(q, 10), 0);
    expect_take(q, 10);
    assert_int_equal(sk_partq_done(q, 10), 0);
    expect_take(q, 11);
    expect_take(q, -1);
    assert_int_equal(sk_partq_done(q, 12), 0); /* done out of order, without running */
    expect_take(q, -1);
    assert_int_equal(sk_partq_position(q), 11);
    assert_int_equal(sk_partq_done(q, 11), 0);
    assert_int_equal(sk_partq_position(q), 13);
    sk_partq_free(q);
}

static void test_none_any_ready(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_NONE);
    push(q, 0, "a");
    push_ready(q, 1, "a");
    push_ready(q, 2, "a");
    expect_take(q, 1);
    expect_take(q, 2);
    expect_take(q, -1);
    assert_int_equal(sk_partq_ready(q, 0), 0);
    push_ready(q, 3, "a");
    expect_take(q, 0); /* lowest offset first */
    expect_take(q, 3);
    sk_partq_free(q);
}

/* ---- position ---- */

static void test_position_gaps_and_order(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_NONE);
    assert_int_equal(sk_partq_position(q), -1);
    push_ready(q, 10, NULL);
    push_ready(q, 13, NULL);
    push_ready(q, 20, NULL);
    push_ready(q, 21, NULL);
    assert_int_equal(sk_partq_position(q), 10);
    assert_int_equal(sk_partq_done(q, 20), 0);
    assert_int_equal(sk_partq_done(q, 13), 0);
    assert_int_equal(sk_partq_position(q), 10);
    assert_int_equal(sk_partq_held(q), 4);
    assert_int_equal(sk_partq_done(q, 10), 0); /* jumps over the DONE 13 and 20 */
    assert_int_equal(sk_partq_position(q), 21);
    assert_int_equal(sk_partq_held(q), 1);
    assert_int_equal(sk_partq_done(q, 21), 0);
    assert_int_equal(sk_partq_position(q), 22);
    assert_int_equal(sk_partq_held(q), 0);
    push(q, 40, NULL);
    assert_int_equal(sk_partq_position(q), 40);
    sk_partq_free(q);
}

/* Thousands of records finished in reverse: the position stays until the first one is done,
 * and the ring grows and shrinks around it. */
static void test_position_reverse_done(void **state)
{
    (void)state;
    enum { N = 5000 };
    sk_partq *q = sk_partq_new(SK_ORDER_PARTITION);
    for (int64_t o = 0; o < N; o++)
        push(q, 100 + 3 * o, NULL);
    for (int64_t o = N - 1; o > 0; o--) {
        assert_int_equal(sk_partq_done(q, 100 + 3 * o), 0);
        assert_int_equal(sk_partq_position(q), 100);
    }
    assert_int_equal(sk_partq_open(q), 1);
    assert_int_equal(sk_partq_held(q), N);
    assert_int_equal(sk_partq_done(q, 100), 0);
    assert_int_equal(sk_partq_position(q), 100 + 3 * (N - 1) + 1);
    assert_int_equal(sk_partq_held(q), 0);
    push_ready(q, 100000, "z");
    expect_take(q, 100000);
    sk_partq_free(q);
}

/* ---- errors, counters, lookups ---- */

static void test_errors(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    assert_int_equal(sk_partq_push(q, -1, NULL, 0, UD(0)), -1);
    assert_int_equal(sk_partq_push(q, INT64_MAX, NULL, 0, UD(0)), -1);
    assert_int_equal(sk_partq_ready(q, 0), -1);
    assert_int_equal(sk_partq_done(q, 0), -1);
    push(q, 5, "a");
    assert_int_equal(sk_partq_push(q, 5, "a", 1, UD(5)), -1);
    assert_int_equal(sk_partq_push(q, 4, "a", 1, UD(4)), -1);
    push(q, 8, "a");
    assert_int_equal(sk_partq_hold(q, 5), -1);  /* PENDING */
    assert_int_equal(sk_partq_ready(q, 6), -1); /* gap */
    assert_int_equal(sk_partq_ready(q, 9), -1); /* past the end */
    assert_int_equal(sk_partq_ready(q, 5), 0);
    assert_int_equal(sk_partq_ready(q, 5), -1); /* already READY */
    assert_int_equal(sk_partq_hold(q, 5), -1);  /* READY */
    expect_take(q, 5);
    assert_int_equal(sk_partq_ready(q, 5), -1); /* RUNNING */
    assert_int_equal(sk_partq_done(q, 5), 0);
    assert_int_equal(sk_partq_done(q, 5), -1); /* released */
    assert_int_equal(sk_partq_ready(q, 5), -1);
    assert_int_equal(sk_partq_push(q, 7, "a", 1, UD(7)), -1);
    assert_int_equal(sk_partq_done(q, 8), 0);
    assert_int_equal(sk_partq_done(q, 8), -1);
    assert_int_equal(sk_partq_position(q), 9);
    assert_null(sk_partq_new((sk_order)42));
    sk_partq_free(NULL);
    sk_partq_free(q);
}

/* DONE but not yet released (behind the head) is still a wrong state. */
static void test_done_twice_behind_head(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_NONE);
    push(q, 1, NULL);
    push(q, 2, NULL);
    assert_int_equal(sk_partq_done(q, 2), 0);
    assert_int_equal(sk_partq_done(q, 2), -1);
    assert_int_equal(sk_partq_ready(q, 2), -1);
    assert_null(sk_partq_get(q, 2));
    assert_ptr_equal(sk_partq_get(q, 1), UD(1));
    sk_partq_free(q);
}

static void test_counters(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push(q, 0, "a");
    push_ready(q, 1, "b");
    push_ready(q, 2, "c");
    assert_int_equal(sk_partq_open(q), 3);
    assert_int_equal(sk_partq_unstarted(q), 3);
    expect_take(q, 1);
    assert_int_equal(sk_partq_unstarted(q), 2);
    assert_int_equal(sk_partq_hold(q, 1), 0);
    assert_int_equal(sk_partq_unstarted(q), 3);
    assert_int_equal(sk_partq_done(q, 1), 0); /* done straight from PENDING */
    assert_int_equal(sk_partq_done(q, 2), 0); /* and from READY */
    assert_int_equal(sk_partq_open(q), 1);
    assert_int_equal(sk_partq_unstarted(q), 1);
    assert_int_equal(sk_partq_held(q), 3);
    expect_take(q, -1);
    sk_partq_free(q);
}

typedef struct seen {
    int64_t offs[8];
    void *uds[8];
    int n;
} seen;

static void collect(void *ctx, int64_t offset, void *ud)
{
    seen *s = ctx;
    s->offs[s->n] = offset;
    s->uds[s->n++] = ud;
}

static void test_foreach_and_get(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_KEY);
    push(q, 3, "a");
    push_ready(q, 4, "b");
    push_ready(q, 9, "a");
    push(q, 11, NULL);
    expect_take(q, 4);
    assert_int_equal(sk_partq_done(q, 9), 0);
    seen s = {.n = 0};
    sk_partq_foreach(q, collect, &s);
    assert_int_equal(s.n, 3);
    assert_int_equal(s.offs[0], 3);
    assert_int_equal(s.offs[1], 4);
    assert_int_equal(s.offs[2], 11);
    assert_ptr_equal(s.uds[1], UD(4));
    assert_ptr_equal(sk_partq_get(q, 4), UD(4));
    assert_null(sk_partq_get(q, 9));
    assert_null(sk_partq_get(q, 5));
    assert_null(sk_partq_get(q, 12));
    assert_int_equal(sk_partq_done(q, 3), 0);
    s.n = 0;
    sk_partq_foreach(q, collect, &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.offs[0], 4);
    sk_partq_free(q); /* with open records: nothing leaks, ud untouched */
}

/* A NULL ud is allowed: *offset tells a taken record from none. */
static void test_null_ud(void **state)
{
    (void)state;
    sk_partq *q = sk_partq_new(SK_ORDER_NONE);
    assert_int_equal(sk_partq_push(q, 0, NULL, 0, NULL), 0);
    assert_int_equal(sk_partq_ready(q, 0), 0);
    int64_t off = -5;
    assert_null(sk_partq_take(q, &off));
    assert_int_equal(off, 0);
    assert_null(sk_partq_take(q, &off));
    assert_int_equal(off, -1);
    assert_null(sk_partq_take(q, NULL));
    sk_partq_free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_parallel_and_serial),
        cmocka_unit_test(test_key_retry_backoff),
        cmocka_unit_test(test_key_pending_blocks_and_skip),
        cmocka_unit_test(test_key_null_keys_unordered),
        cmocka_unit_test(test_key_bytes),
        cmocka_unit_test(test_key_hash_collisions),
        cmocka_unit_test(test_key_many_keys_thousands),
        cmocka_unit_test(test_partition_one_at_a_time),
        cmocka_unit_test(test_none_any_ready),
        cmocka_unit_test(test_position_gaps_and_order),
        cmocka_unit_test(test_position_reverse_done),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_done_twice_behind_head),
        cmocka_unit_test(test_counters),
        cmocka_unit_test(test_foreach_and_get),
        cmocka_unit_test(test_null_ud),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
