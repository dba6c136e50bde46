/* Unit tests of the gRPC wire helpers: message prefix, deframer, grpc-timeout, grpc-message,
 * status codes and mappings, target parsing. Connection behaviour is tested against a scripted
 * HTTP/2 server in sidecar/tests/grpc/test_grpc_channel.c and against real gRPC servers in
 * sidecar/tests/grpc/test_conformance.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <event2/event.h>

#include "grpc/deframer.h"
#include "grpc/grpc.h"

/* ---- deframer helpers ---- */

typedef struct got {
    int count;
    size_t lens[16];
    char text[16][64];
    int stop_after; /* 0 = never */
} got;

static int collect(void *ud, const uint8_t *msg, size_t len)
{
    got *g = ud;
    if (g->count < 16) {
        g->lens[g->count] = len;
        size_t n = len < 63 ? len : 63;
        memcpy(g->text[g->count], msg, n);
        g->text[g->count][n] = '\0';
    }
    g->count++;
    return g->stop_after && g->count >= g->stop_after;
}

/* Appends one framed message to buf at *off. */
static void put_msg(uint8_t *buf, size_t *off, const char *text)
{
    size_t len = strlen(text);
    sk_grpc_frame_header(buf + *off, len);
    memcpy(buf + *off + 5, text, len);
    *off += 5 + len;
}

static void test_frame_header(void **state)
{
    (void)state;
    uint8_t h[5];
    sk_grpc_frame_header(h, 0);
    assert_memory_equal(h, "\0\0\0\0\0", 5);
    sk_grpc_frame_header(h, 0x01020304);
    assert_memory_equal(h, "\0\x01\x02\x03\x04", 5);
    sk_grpc_frame_header(h, 300);
    assert_memory_equal(h, "\0\0\0\x01\x2c", 5);
}

static void test_deframer_split_every_byte(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = 0;
    put_msg(buf, &len, "hello");
    put_msg(buf, &len, "world!");
    sk_grpc_deframer *df = sk_grpc_deframer_new(1024);
    got g = {0};
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(sk_grpc_deframer_feed(df, buf + i, 1, collect, &g), 0);
        assert_int_equal(sk_grpc_deframer_partial(df), i + 1 != 10 && i + 1 != len);
    }
    assert_int_equal(g.count, 2);
    assert_string_equal(g.text[0], "hello");
    assert_string_equal(g.text[1], "world!");
    sk_grpc_deframer_free(df);
}

static void test_deframer_several_in_one_chunk(void **state)
{
    (void)state;
    uint8_t buf[128];
    size_t len = 0;
    put_msg(buf, &len, "a");
    put_msg(buf, &len, "");
    put_msg(buf, &len, "ccc");
    put_msg(buf, &len, "dd");
    sk_grpc_deframer *df = sk_grpc_deframer_new(16);
    got g = {0};
    /* The last message is cut: its tail arrives in a second chunk. */
    assert_int_equal(sk_grpc_deframer_feed(df, buf, len - 1, collect, &g), 0);
    assert_int_equal(g.count, 3);
    assert_true(sk_grpc_deframer_partial(df));
    assert_int_equal(sk_grpc_deframer_feed(df, buf + len - 1, 1, collect, &g), 0);
    assert_int_equal(g.count, 4);
    assert_string_equal(g.text[0], "a");
    assert_int_equal(g.lens[1], 0);
    assert_string_equal(g.text[2], "ccc");
    assert_string_equal(g.text[3], "dd");
    assert_false(sk_grpc_deframer_partial(df));
    sk_grpc_deframer_free(df);
}

static void test_deframer_zero_length(void **state)
{
    (void)state;
    uint8_t buf[16];
    size_t len = 0;
    put_msg(buf, &len, "");
    sk_grpc_deframer *df = sk_grpc_deframer_new(0); /* a limit of 0 still admits empty ones */
    got g = {0};
    assert_int_equal(sk_grpc_deframer_feed(df, buf, 3, collect, &g), 0);
    assert_int_equal(g.count, 0);
    assert_int_equal(sk_grpc_deframer_feed(df, buf + 3, 2, collect, &g), 0);
    assert_int_equal(g.count, 1);
    assert_int_equal(g.lens[0], 0);
    assert_false(sk_grpc_deframer_partial(df));
    sk_grpc_deframer_free(df);
}

static void test_deframer_oversized(void **state)
{
    (void)state;
    /* Announces 4 GiB - 1 and sends nothing more: rejected on the prefix, nothing allocated
     * (ASan would report a 4 GiB allocation). */
    const uint8_t huge[5] = {0, 0xff, 0xff, 0xff, 0xff};
    sk_grpc_deframer *df = sk_grpc_deframer_new(100);
    got g = {0};
    assert_int_equal(sk_grpc_deframer_feed(df, huge, 5, collect, &g), SK_GRPC_DEFRAMER_TOO_BIG);
    assert_int_equal(sk_grpc_deframer_rejected_len(df), 0xffffffffu);
    /* Sticky: later bytes are refused too. */
    assert_int_equal(sk_grpc_deframer_feed(df, (const uint8_t *)"x", 1, collect, &g),
                     SK_GRPC_DEFRAMER_TOO_BIG);
    assert_int_equal(g.count, 0);
    sk_grpc_deframer_free(df);

    /* Exactly the limit passes, one more byte does not. */
    uint8_t buf[32];
    size_t len = 0;
    put_msg(buf, &len, "0123456789");
    df = sk_grpc_deframer_new(10);
    assert_int_equal(sk_grpc_deframer_feed(df, buf, len, collect, &g), 0);
    assert_int_equal(g.count, 1);
    sk_grpc_deframer_free(df);
    df = sk_grpc_deframer_new(9);
    assert_int_equal(sk_grpc_deframer_feed(df, buf, len, collect, &g), SK_GRPC_DEFRAMER_TOO_BIG);
    assert_int_equal(sk_grpc_deframer_rejected_len(df), 10);
    sk_grpc_deframer_free(df);
}

static void test_deframer_flags(void **state)
{
    (void)state;
    const uint8_t compressed[7] = {1, 0, 0, 0, 2, 'h', 'i'};
    const uint8_t bad[7] = {0x80, 0, 0, 0, 2, 'h', 'i'};
    got g = {0};
    sk_grpc_deframer *df = sk_grpc_deframer_new(100);
    assert_int_equal(sk_grpc_deframer_feed(df, compressed, 7, collect, &g),
                     SK_GRPC_DEFRAMER_COMPRESSED);
    sk_grpc_deframer_free(df);
    df = sk_grpc_deframer_new(100);
    assert_int_equal(sk_grpc_deframer_feed(df, bad, 7, collect, &g), SK_GRPC_DEFRAMER_BAD_FLAG);
    sk_grpc_deframer_free(df);
    assert_int_equal(g.count, 0);
    assert_string_equal(sk_grpc_deframer_strerror(SK_GRPC_DEFRAMER_TOO_BIG),
                        "message larger than the limit");
}

static void test_deframer_stop(void **state)
{
    (void)state;
    uint8_t buf[64];
    size_t len = 0;
    put_msg(buf, &len, "one");
    put_msg(buf, &len, "two");
    put_msg(buf, &len, "three");
    got g = {.stop_after = 2};
    sk_grpc_deframer *df = sk_grpc_deframer_new(100);
    assert_int_equal(sk_grpc_deframer_feed(df, buf, len, collect, &g), SK_GRPC_DEFRAMER_STOPPED);
    assert_int_equal(g.count, 2);
    sk_grpc_deframer_free(df);
}

static void test_timeout_parse(void **state)
{
    (void)state;
    assert_int_equal(sk_grpc_timeout_parse("1S"), 1000);
    assert_int_equal(sk_grpc_timeout_parse("100m"), 100);
    assert_int_equal(sk_grpc_timeout_parse("2M"), 120000);
    assert_int_equal(sk_grpc_timeout_parse("1H"), 3600000);
    assert_int_equal(sk_grpc_timeout_parse("0m"), 0);
    assert_int_equal(sk_grpc_timeout_parse("1000u"), 1);
    assert_int_equal(sk_grpc_timeout_parse("1001u"), 2); /* rounds up */
    assert_int_equal(sk_grpc_timeout_parse("1n"), 1);
    assert_int_equal(sk_grpc_timeout_parse("99999999H"), 99999999LL * 3600000);
    assert_int_equal(sk_grpc_timeout_parse("00000001S"), 1000);
    const char *bad[] = {"", "S", "1", "1x", "-1S", " 1S", "1 S", "123456789S", "1s", "1.5S"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(sk_grpc_timeout_parse(bad[i]), -1);
    assert_int_equal(sk_grpc_timeout_parse(NULL), -1);
}

static void test_timeout_format(void **state)
{
    (void)state;
    char out[16];
    sk_grpc_timeout_format(100, out, sizeof out);
    assert_string_equal(out, "100m");
    sk_grpc_timeout_format(99999999, out, sizeof out);
    assert_string_equal(out, "99999999m");
    sk_grpc_timeout_format(100000000, out, sizeof out);
    assert_string_equal(out, "100000S");
    sk_grpc_timeout_format(100000001, out, sizeof out);
    assert_string_equal(out, "100001S"); /* never shorter than asked */
    sk_grpc_timeout_format(0, out, sizeof out);
    assert_string_equal(out, "0m");
    sk_grpc_timeout_format(INT64_MAX, out, sizeof out);
    assert_string_equal(out, "99999999H");
    const int64_t samples[] = {1, 45000, 86400000, 123456789012LL, 99999999LL * 60000 + 1};
    for (size_t i = 0; i < sizeof samples / sizeof samples[0]; i++) {
        sk_grpc_timeout_format(samples[i], out, sizeof out);
        assert_true(strlen(out) <= 9);
        assert_true(sk_grpc_timeout_parse(out) >= samples[i]);
    }
}

static void test_message_decode(void **state)
{
    (void)state;
    char out[64];
    const char *in = "hello%20world";
    sk_grpc_message_decode(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "hello world");
    in = "caf%C3%A9 %E2%82%AC 100%25";
    sk_grpc_message_decode(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "caf\xc3\xa9 \xe2\x82\xac 100%");
    /* Malformed escapes pass through untouched, and so does %00. */
    in = "50% off %zz %4 %00 end%";
    sk_grpc_message_decode(in, strlen(in), out, sizeof out);
    assert_string_equal(out, "50% off %zz %4 %00 end%");
    /* Not NUL-terminated input, truncated output. */
    sk_grpc_message_decode("abcdef", 3, out, sizeof out);
    assert_string_equal(out, "abc");
    sk_grpc_message_decode("abcdef", 6, out, 4);
    assert_string_equal(out, "abc");
    sk_grpc_message_decode("", 0, out, sizeof out);
    assert_string_equal(out, "");
}

static void test_code_names(void **state)
{
    (void)state;
    assert_string_equal(sk_grpc_code_name(SK_GRPC_OK), "OK");
    assert_string_equal(sk_grpc_code_name(SK_GRPC_CANCELLED), "CANCELLED");
    assert_string_equal(sk_grpc_code_name(SK_GRPC_DEADLINE_EXCEEDED), "DEADLINE_EXCEEDED");
    assert_string_equal(sk_grpc_code_name(SK_GRPC_RESOURCE_EXHAUSTED), "RESOURCE_EXHAUSTED");
    assert_string_equal(sk_grpc_code_name(SK_GRPC_UNAVAILABLE), "UNAVAILABLE");
    assert_string_equal(sk_grpc_code_name(SK_GRPC_UNAUTHENTICATED), "UNAUTHENTICATED");
    assert_string_equal(sk_grpc_code_name(17), "UNKNOWN");
    assert_string_equal(sk_grpc_code_name(-1), "UNKNOWN");
}

static void test_http_status_mapping(void **state)
{
    (void)state;
    assert_int_equal(sk_grpc_status_from_http(400), SK_GRPC_INTERNAL);
    assert_int_equal(sk_grpc_status_from_http(401), SK_GRPC_UNAUTHENTICATED);
    assert_int_equal(sk_grpc_status_from_http(403), SK_GRPC_PERMISSION_DENIED);
    assert_int_equal(sk_grpc_status_from_http(404), SK_GRPC_UNIMPLEMENTED);
    assert_int_equal(sk_grpc_status_from_http(429), SK_GRPC_UNAVAILABLE);
    assert_int_equal(sk_grpc_status_from_http(502), SK_GRPC_UNAVAILABLE);
    assert_int_equal(sk_grpc_status_from_http(503), SK_GRPC_UNAVAILABLE);
    assert_int_equal(sk_grpc_status_from_http(504), SK_GRPC_UNAVAILABLE);
    assert_int_equal(sk_grpc_status_from_http(500), SK_GRPC_UNKNOWN);
    assert_int_equal(sk_grpc_status_from_http(200), SK_GRPC_UNKNOWN);
}

static void test_h2_error_mapping(void **state)
{
    (void)state;
    assert_int_equal(sk_grpc_status_from_h2_error(0x0), SK_GRPC_INTERNAL);
    assert_int_equal(sk_grpc_status_from_h2_error(0x1), SK_GRPC_INTERNAL);
    assert_int_equal(sk_grpc_status_from_h2_error(0x2), SK_GRPC_INTERNAL);
    assert_int_equal(sk_grpc_status_from_h2_error(0x7), SK_GRPC_UNAVAILABLE);
    assert_int_equal(sk_grpc_status_from_h2_error(0x8), SK_GRPC_CANCELLED);
    assert_int_equal(sk_grpc_status_from_h2_error(0xb), SK_GRPC_RESOURCE_EXHAUSTED);
    assert_int_equal(sk_grpc_status_from_h2_error(0xc), SK_GRPC_PERMISSION_DENIED);
}

static void test_channel_targets(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *good[] = {"127.0.0.1:26500", "localhost:1", "[::1]:26500",
                          "dns:///zeebe.example:443"};
    const char *bad[] = {"localhost", "host:", "host:0",  "host:65536", "[::1]",
                         "::1:80",    ":80",   "host:8x", "[]:80"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        sk_grpc_channel_opts o = {.target = good[i]};
        sk_grpc_channel *ch = sk_grpc_channel_new(base, &o, NULL, NULL);
        assert_non_null(ch);
        assert_false(sk_grpc_channel_connected(ch));
        assert_string_equal(sk_grpc_channel_last_error(ch), "");
        sk_grpc_channel_free(ch); /* before the first loop turn: nothing started yet */
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sk_grpc_channel_opts o = {.target = bad[i]};
        assert_null(sk_grpc_channel_new(base, &o, NULL, NULL));
    }
    sk_grpc_channel_opts none = {0};
    assert_null(sk_grpc_channel_new(base, &none, NULL, NULL));
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_header),
        cmocka_unit_test(test_deframer_split_every_byte),
        cmocka_unit_test(test_deframer_several_in_one_chunk),
        cmocka_unit_test(test_deframer_zero_length),
        cmocka_unit_test(test_deframer_oversized),
        cmocka_unit_test(test_deframer_flags),
        cmocka_unit_test(test_deframer_stop),
        cmocka_unit_test(test_timeout_parse),
        cmocka_unit_test(test_timeout_format),
        cmocka_unit_test(test_message_decode),
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_http_status_mapping),
        cmocka_unit_test(test_h2_error_mapping),
        cmocka_unit_test(test_channel_targets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
