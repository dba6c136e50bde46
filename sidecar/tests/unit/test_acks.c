/* The acks' fast path: the exact shapes it takes (a lone ack, a results frame of acks), the ids
 * it hands over in order, and everything it declines untouched for the tree decoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "handler/acks.h"

typedef struct {
    char ids[8][64];
    long index[8];
    size_t n;
} seen;

static void on_ack(void *ud, const char *id, long index)
{
    seen *s = ud;
    assert_true(s->n < 8);
    assert_true(strlen(id) < sizeof s->ids[0]);
    strcpy(s->ids[s->n], id);
    s->index[s->n++] = index;
}

/* Scans a copy of text; returns sk_acks_scan's answer, the acks in *s. */
static int scan(const char *text, seen *s)
{
    char buf[512];
    size_t len = strlen(text);
    assert_true(len < sizeof buf);
    memcpy(buf, text, len + 1);
    memset(s, 0, sizeof *s);
    int r = sk_acks_scan((uint8_t *)buf, len, on_ack, s);
    if (!r) /* declined: untouched, nothing called */
        assert_memory_equal(buf, text, len + 1);
    if (!r)
        assert_int_equal(s->n, 0);
    return r;
}

static void test_lone_ack(void **state)
{
    (void)state;
    seen s;
    assert_int_equal(scan("{\"type\":\"ack\",\"id\":\"k-orders-3-42-7\"}", &s), 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "k-orders-3-42-7");
    assert_int_equal(s.index[0], -1);
}

static void test_results_of_acks(void **state)
{
    (void)state;
    seen s;
    assert_int_equal(scan("{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"a\"},"
                          "{\"type\":\"ack\",\"id\":\"b c\"},{\"type\":\"ack\",\"id\":\"d\"}]}",
                          &s),
                     1);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[0], "a");
    assert_string_equal(s.ids[1], "b c");
    assert_string_equal(s.ids[2], "d");
    assert_int_equal(s.index[0], 0);
    assert_int_equal(s.index[2], 2);
}

/* Valid frames of another shape are the tree decoder's: other result types, other members,
 * another member order, whitespace, escapes, non-ASCII ids, an empty id. */
static void test_declines_other_shapes(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "{\"type\":\"nack\",\"id\":\"a\",\"message\":\"m\"}",
        "{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"a\"},"
        "{\"type\":\"nack\",\"id\":\"b\",\"message\":\"m\"}]}",
        "{\"id\":\"a\",\"type\":\"ack\"}",
        "{\"type\":\"ack\",\"id\":\"a\",\"variables\":{}}",
        "{\"type\": \"ack\",\"id\":\"a\"}",
        "{\"type\":\"ack\",\"id\":\"a\\u0062\"}",
        "{\"type\":\"ack\",\"id\":\"\xc3\xa9\"}",
        "{\"type\":\"ack\",\"id\":\"\"}",
        "{\"type\":\"complete\",\"id\":\"a\"}",
        "{\"type\":\"ping\"}",
    };
    seen s;
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_int_equal(scan(texts[i], &s), 0);
}

/* Broken input is declined too (the tree decoder refuses it with its error): truncations of a
 * good frame at every length, trailing bytes, an empty or unclosed results array, a control
 * character in an id. */
static void test_declines_malformed(void **state)
{
    (void)state;
    const char *good = "{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"a\"},"
                       "{\"type\":\"ack\",\"id\":\"b\"}]}";
    char buf[256];
    seen s;
    for (size_t n = 0; n < strlen(good); n++) {
        memcpy(buf, good, n);
        buf[n] = '\0';
        assert_int_equal(scan(buf, &s), 0);
    }
    static const char *const texts[] = {
        "{\"type\":\"ack\",\"id\":\"a\"} ",
        "{\"type\":\"ack\",\"id\":\"a\"}}",
        "{\"type\":\"results\",\"results\":[]}",
        "{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"a\"},]}",
        "{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"a\"}",
        "{\"type\":\"ack\",\"id\":\"a\tb\"}",
        "{\"type\":\"ack\",\"id\":\"a\"",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        assert_int_equal(scan(texts[i], &s), 0);
    assert_int_equal(sk_acks_scan(NULL, 0, on_ack, &s), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lone_ack),
        cmocka_unit_test(test_results_of_acks),
        cmocka_unit_test(test_declines_other_shapes),
        cmocka_unit_test(test_declines_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
