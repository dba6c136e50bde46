/* Unit tests of the output secret scan over the decoded text of SSE streams. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "egress/sse_scan.h"

static const char KEY[] = "sk-abcd1234efgh";

static sk_sse_scan *scan_new(void)
{
    const char *needles[] = {KEY};
    size_t lens[] = {sizeof KEY - 1};
    sk_sse_scan *s = sk_sse_scan_new(needles, lens, 1);
    assert_non_null(s);
    return s;
}

static int feed(sk_sse_scan *s, const char *text)
{
    return sk_sse_scan_feed(s, text, strlen(text));
}

#define CHAT(x) "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" x "\"}}]}\n\n"

static void test_split_across_events(void **state)
{
    (void)state;
    sk_sse_scan *s = scan_new();
    assert_int_equal(feed(s, CHAT("Hello ")), 0);
    assert_int_equal(sk_sse_scan_hold(s), 0);
    /* The decoded tail "sk-ab" may start the key: the whole event is held. */
    assert_int_equal(feed(s, CHAT("sk-ab")), 0);
    assert_int_equal(sk_sse_scan_hold(s), strlen(CHAT("sk-ab")));
    /* An event without text keeps it held, and is held behind it. */
    assert_int_equal(feed(s, ": keep-alive\n\n"), 0);
    assert_int_equal(sk_sse_scan_hold(s), strlen(CHAT("sk-ab")) + 14);
    assert_int_equal(feed(s, CHAT("cd1234efgh and more")), 1);
    assert_int_equal(feed(s, CHAT("x")), 1); /* sticky */
    sk_sse_scan_free(s);

    /* Not the key after all: released with the event that shows it. */
    s = scan_new();
    assert_int_equal(feed(s, CHAT("sk-ab")), 0);
    assert_int_equal(feed(s, CHAT("cX")), 0);
    assert_int_equal(sk_sse_scan_hold(s), 0);
    sk_sse_scan_free(s);
}

static void test_escapes_and_shapes(void **state)
{
    (void)state;
    static const char *found[] = {
        CHAT("sk-\\u0061bcd1234efgh"),
        "data: {\"choices\":[{\"text\":\"sk-abcd\"}]}\n\ndata: "
        "{\"choices\":[{\"text\":\"1234efgh\"}]}\n\n",
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"sk-abcd1\"}\n\n"
        "data: {\"type\":\"response.output_text.delta\",\"delta\":\"234efgh\"}\n\n",
        "event: content_block_delta\ndata: "
        "{\"delta\":{\"type\":\"text_delta\",\"text\":\"sk-a\"}}\n\n"
        "data: {\"delta\":{\"text\":\"bcd1234efgh\"}}\n\n",
        "data: "
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"k\\\":"
        "\\\"sk-ab\"}}]}}]}\n\n"
        "data: "
        "{\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"cd1234efgh\"}}]}}"
        "]}\n\n",
        /* CRLF and CR line ends. */
        "data: {\"choices\":[{\"delta\":{\"content\":\"sk-abcd\"}}]}\r\n\r\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"1234efgh\"}}]}\r\r",
        "\xEF\xBB\xBF" CHAT("sk-abcd1234") CHAT("efgh"),
        "data:{\"choices\":[{\"delta\":{\"content\":\"sk-abcd1234efgh\"}}]}\n\n",
    };
    for (size_t i = 0; i < sizeof found / sizeof *found; i++) {
        sk_sse_scan *s = scan_new();
        assert_int_equal(feed(s, found[i]), 1);
        sk_sse_scan_free(s);
    }
    /* Data over two lines (one event, joined by LF: not JSON), a comment, other fields. */
    static const char *clean[] = {
        "data: {\"choices\":[{\"delta\":{\"content\":\"sk-abcd\"}}]}\n"
        "data: {\"choices\":[{\"delta\":{\"content\":\"1234efgh\"}}]}\n\n",
        "data: [DONE]\n\n",
        ": sk-abcd1234efgh is in a comment, which the byte scan sees\n\n",
        "data: {\"other\":\"sk-abcd\"}\n\ndata: {\"other\":\"1234efgh\"}\n\n",
    };
    for (size_t i = 0; i < sizeof clean / sizeof *clean; i++) {
        sk_sse_scan *s = scan_new();
        assert_int_equal(feed(s, clean[i]), 0);
        assert_int_equal(sk_sse_scan_finish(s), 0);
        sk_sse_scan_free(s);
    }
}

/* The proxy's loop over a stream cut at every byte: sent = fed - hold never decreases, and
 * when the key is found, nothing of the events holding it has been sent. */
static void test_byte_by_byte(void **state)
{
    (void)state;
    const char *stream = CHAT("Hi ") ": ping\r\n\r\n" CHAT("sk-ab") CHAT("") CHAT(
        "cd12") "data: {\"choices\":[{\"delta\":{\"content\":\"34efgh\"}}]}\r\n\r\n" CHAT("bye");
    size_t len = strlen(stream), start = strstr(stream, "sk-ab") - stream, sent = 0;
    sk_sse_scan *s = scan_new();
    size_t i;
    for (i = 0; i < len; i++) {
        if (sk_sse_scan_feed(s, stream + i, 1))
            break;
        size_t now = i + 1 - sk_sse_scan_hold(s);
        assert_true(now >= sent);
        sent = now;
    }
    assert_true(i < len);
    assert_true(sent < start);
    assert_false(sk_sse_scan_gave_up(s));
    sk_sse_scan_free(s);

    /* A CR at the end of one chunk and LF at the start of the next: one line end. */
    s = scan_new();
    assert_int_equal(feed(s, "data: {\"choices\":[{\"text\":\"a\"}]}\r"), 0);
    assert_int_equal(feed(s, "\n"), 0);
    assert_int_equal(feed(s, "\r"), 0);
    assert_int_equal(sk_sse_scan_hold(s), 0);
    assert_int_equal(feed(s, "\ndata: x"), 0);
    assert_int_equal(sk_sse_scan_hold(s), 8); /* the LF belongs to the event being read */
    sk_sse_scan_free(s);
}

static void test_finish(void **state)
{
    (void)state;
    sk_sse_scan *s = scan_new();
    assert_int_equal(feed(s, CHAT("sk-abcd")), 0);
    assert_int_equal(feed(s, "data: {\"choices\":[{\"text\":\"1234efgh\"}]}"), 0);
    assert_int_equal(sk_sse_scan_hold(s), strlen(CHAT("sk-abcd")) + 39);
    assert_int_equal(sk_sse_scan_finish(s), 1);
    sk_sse_scan_free(s);
    s = scan_new();
    assert_int_equal(feed(s, CHAT("sk-abcd")), 0);
    assert_int_equal(sk_sse_scan_finish(s), 0);
    sk_sse_scan_free(s);
    sk_sse_scan_free(NULL);
}

static void test_oversized_event(void **state)
{
    (void)state;
    sk_sse_scan *s = scan_new();
    char *big = malloc(SK_SSE_MAX_EVENT + 10);
    assert_non_null(big);
    memcpy(big, "data: ", 6);
    memset(big + 6, 'a', SK_SSE_MAX_EVENT + 4);
    assert_int_equal(feed(s, CHAT("sk-ab")), 0);
    assert_int_equal(sk_sse_scan_feed(s, big, SK_SSE_MAX_EVENT + 10), 0);
    assert_true(sk_sse_scan_gave_up(s));
    assert_int_equal(sk_sse_scan_hold(s), 0);
    assert_int_equal(feed(s, "\n\n" CHAT("cd1234efgh")), 0);
    assert_int_equal(sk_sse_scan_finish(s), 0);
    free(big);
    sk_sse_scan_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_across_events), cmocka_unit_test(test_escapes_and_shapes),
        cmocka_unit_test(test_byte_by_byte),        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_oversized_event),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
