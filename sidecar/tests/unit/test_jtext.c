/* The JSON text buffer of the hot paths: what it writes parses (jansson) back to the input,
 * escapes, invalid UTF-8 refused without a trace, base64, integers, growth and reuse. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/jtext.h"
#include "core/text.h"

/* The buffer's text parsed as JSON (must be valid). */
static json_t *parsed(const sk_jtext *t)
{
    json_error_t e;
    json_t *v = json_loadb(t->buf, t->len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e);
    if (!v)
        fail_msg("not JSON (%s): %.*s", e.text, (int)t->len, t->buf);
    return v;
}

static void test_string_round_trip(void **state)
{
    (void)state;
    static const char in[] = "a\"b\\c\n\r\t\b\f\x01\x1f/\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";
    const size_t n = sizeof in - 1 + 1; /* with the terminating NUL as a byte of the value */
    sk_jtext t = {0};
    assert_int_equal(sk_jtext_str(&t, in, n), 0);
    json_t *v = parsed(&t);
    assert_int_equal(json_string_length(v), n);
    assert_memory_equal(json_string_value(v), in, n);
    json_decref(v);
    sk_jtext_free(&t);
}

static void test_invalid_utf8_refused(void **state)
{
    (void)state;
    static const char *const bad[] = {"\xff", "a\xc3", "\xed\xa0\x80", "\xc0\xaf",
                                      "\xf4\x90\x80\x80"};
    sk_jtext t = {0};
    sk_jtext_lit(&t, "[");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sk_jtext_str(&t, bad[i], strlen(bad[i])), -1);
    assert_int_equal(t.len, 1); /* nothing appended */
    assert_int_equal(sk_jtext_str(&t, NULL, 0), 0);
    sk_jtext_lit(&t, "]");
    json_t *v = parsed(&t);
    assert_string_equal(json_string_value(json_array_get(v, 0)), "");
    json_decref(v);
    sk_jtext_free(&t);
}

/* The UTF-8 check reads ASCII 8 bytes at a time: a multi-byte character, a stray continuation
 * byte and a truncated sequence at every offset of a 24-byte text (either side of each 8-byte
 * boundary). */
static void test_utf8_every_offset(void **state)
{
    (void)state;
    for (size_t at = 0; at < 24; at++) {
        char buf[24];
        memset(buf, 'a', sizeof buf);
        assert_int_equal(sk_ascii_prefix(buf, sizeof buf), sizeof buf);
        if (at + 2 <= sizeof buf) {
            memcpy(buf + at, "\xc3\xa9", 2);
            assert_int_equal(sk_ascii_prefix(buf, sizeof buf), at);
            assert_true(sk_utf8_valid(buf, sizeof buf));
            memset(buf, 'a', sizeof buf);
        }
        buf[at] = '\x80';
        assert_false(sk_utf8_valid(buf, sizeof buf));
        buf[at] = '\xc3'; /* truncated at the end, or followed by 'a' */
        assert_false(sk_utf8_valid(buf, sizeof buf));
        assert_true(sk_utf8_valid(buf, at));
    }
}

/* The JSON escape scan reads 8 bytes at a time: each byte that needs an escape stops it at
 * every offset of a 24-byte text, each of its neighbours that does not never does. */
static void test_json_plain_every_offset(void **state)
{
    (void)state;
    static const unsigned char stop[] = {'"', '\\', 0x00, 0x01, 0x1f, '\n'};
    static const unsigned char go[] = {0x20, '!', '#', '[', ']', 0x7f, 0x80, 0xa2, 0xdc, 0xff};
    for (size_t at = 0; at < 24; at++) {
        unsigned char buf[24];
        memset(buf, 'a', sizeof buf);
        for (size_t i = 0; i < sizeof stop; i++) {
            buf[at] = stop[i];
            assert_int_equal(sk_json_plain_prefix(buf, sizeof buf), at);
        }
        for (size_t i = 0; i < sizeof go; i++) {
            buf[at] = go[i];
            assert_int_equal(sk_json_plain_prefix(buf, sizeof buf), sizeof buf);
        }
    }
    sk_jtext t = {0}; /* escapes between runs: each one in its place */
    assert_int_equal(sk_jtext_str(&t, "0123456789\"abcdefgh\\ijklmnopq\n", 30), 0);
    assert_int_equal(t.len, 35);
    assert_memory_equal(t.buf, "\"0123456789\\\"abcdefgh\\\\ijklmnopq\\n\"", 35);
    sk_jtext_free(&t);
}

static void test_base64(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {{"", "\"\""},        {"f", "\"Zg==\""},        {"fo", "\"Zm8=\""},
                 {"foo", "\"Zm9v\""}, {"foob", "\"Zm9vYg==\""}, {"\xff\xfe\x00", "\"//4A\""}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_jtext t = {0};
        size_t n = i == 5 ? 3 : strlen(cases[i].in);
        sk_jtext_base64(&t, cases[i].in, n);
        assert_int_equal(t.len, strlen(cases[i].out));
        assert_memory_equal(t.buf, cases[i].out, t.len);
        sk_jtext_free(&t);
    }
}

/* A frame-like object: integers at the limits, a jansson value inside, growth past the first
 * allocation, and reset keeping the memory. */
static void test_object_and_reuse(void **state)
{
    (void)state;
    sk_jtext t = {0};
    json_t *inner = json_pack("{s:[i,s,n,b]}", "k", 1, "x", 1);
    for (int round = 0; round < 2; round++) {
        sk_jtext_reset(&t);
        sk_jtext_lit(&t, "{\"min\":");
        sk_jtext_int(&t, INT64_MIN);
        sk_jtext_lit(&t, ",\"max\":");
        sk_jtext_int(&t, INT64_MAX);
        sk_jtext_lit(&t, ",\"v\":");
        sk_jtext_json(&t, inner);
        sk_jtext_lit(&t, ",\"long\":");
        char big[5000];
        memset(big, 'x', sizeof big);
        sk_jtext_str(&t, big, sizeof big);
        sk_jtext_lit(&t, "}");
        assert_false(t.failed);
        json_t *v = parsed(&t);
        assert_true(json_integer_value(json_object_get(v, "min")) == INT64_MIN);
        assert_true(json_integer_value(json_object_get(v, "max")) == INT64_MAX);
        assert_true(json_equal(json_object_get(v, "v"), inner));
        assert_int_equal(json_string_length(json_object_get(v, "long")), sizeof big);
        json_decref(v);
    }
    json_decref(inner);
    sk_jtext_free(&t);
}

/* Integers as JSON writes them: no sign for 0, one minus, every digit of the extremes. */
static void test_integers(void **state)
{
    (void)state;
    const struct {
        int64_t v;
        const char *out;
    } cases[] = {{0, "0"},
                 {7, "7"},
                 {-7, "-7"},
                 {10, "10"},
                 {-1000000, "-1000000"},
                 {INT64_MAX, "9223372036854775807"},
                 {INT64_MIN, "-9223372036854775808"}};
    sk_jtext t = {0};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sk_jtext_reset(&t);
        sk_jtext_int(&t, cases[i].v);
        assert_int_equal(t.len, strlen(cases[i].out));
        assert_memory_equal(t.buf, cases[i].out, t.len);
    }
    sk_jtext_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_string_round_trip),
        cmocka_unit_test(test_invalid_utf8_refused),
        cmocka_unit_test(test_utf8_every_offset),
        cmocka_unit_test(test_json_plain_every_offset),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_object_and_reuse),
        cmocka_unit_test(test_integers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
