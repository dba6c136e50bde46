/* Token usage from JSON bodies and SSE streams (every chunk split, line-end styles, bounded
 * events, the providers' shapes) and the up-front estimate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "egress/usage.h"

/* Feeds text in the given chunks (cut positions); returns the result. */
static int run_cuts(const char *ct, size_t max, const char *text, size_t len, const size_t *cuts,
                    size_t ncuts, int64_t *in, int64_t *out)
{
    sk_usage *u = sk_usage_new(ct, max);
    assert_non_null(u);
    size_t fed = 0;
    for (size_t i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        sk_usage_feed(u, text + fed, end - fed);
        fed = end;
    }
    int rc = sk_usage_result(u, in, out);
    sk_usage_free(u);
    return rc;
}

/* Every split into two and three chunks, and byte by byte, gives the same answer. */
static void expect_every_split(const char *ct, const char *text, int want, int64_t want_in,
                               int64_t want_out)
{
    size_t len = strlen(text);
    int64_t in, out;
    for (size_t a = 0; a <= len; a++) {
        for (size_t b = a; b <= len; b += (len / 40) + 1) {
            size_t cuts[2] = {a, b};
            assert_int_equal(run_cuts(ct, 0, text, len, cuts, 2, &in, &out), want);
            assert_int_equal(in, want_in);
            assert_int_equal(out, want_out);
        }
    }
    size_t *cuts = malloc(sizeof *cuts * (len + 1));
    for (size_t i = 0; i < len; i++)
        cuts[i] = i;
    assert_int_equal(run_cuts(ct, 0, text, len, cuts, len, &in, &out), want);
    assert_int_equal(in, want_in);
    assert_int_equal(out, want_out);
    free(cuts);
}

static void test_json_bodies(void **state)
{
    (void)state;
    expect_every_split("application/json",
                       "{\"id\":\"x\",\"choices\":[{\"message\":{\"content\":\"hi\"}}],"
                       "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":34,"
                       "\"total_tokens\":46}}",
                       1, 12, 34);
    expect_every_split("application/json; charset=utf-8",
                       "  \n{\"object\":\"response\",\"usage\":{\"input_tokens\":7,"
                       "\"output_tokens\":9}}",
                       1, 7, 9);
    /* embeddings: only prompt_tokens */
    expect_every_split(NULL, "{\"data\":[],\"usage\":{\"prompt_tokens\":5,\"total_tokens\":5}}", 1,
                       5, 0);
    expect_every_split("application/vnd.x+json", "{\"message\":{\"usage\":{\"input_tokens\":3}}}",
                       1, 3, 0);
    /* no usage, not JSON, invalid counts */
    expect_every_split("application/json", "{\"choices\":[]}", 0, 0, 0);
    expect_every_split("application/json", "{\"usage\":null}", 0, 0, 0);
    expect_every_split("application/json", "{\"usage\":{\"prompt_tokens\":", 0, 0, 0);
    expect_every_split("application/json", "[{\"usage\":{\"prompt_tokens\":1}}]", 0, 0, 0);
    expect_every_split("application/json",
                       "{\"usage\":{\"prompt_tokens\":-1,\"completion_tokens\":1.5,"
                       "\"input_tokens\":\"3\",\"output_tokens\":1e300}}",
                       0, 0, 0);
    expect_every_split("text/plain", "{\"usage\":{\"prompt_tokens\":1}}", 0, 0, 0);
    expect_every_split("text/html", "", 0, 0, 0);
}

static void test_json_bounded(void **state)
{
    (void)state;
    const char *body = "{\"pad\":\"xxxxxxxxxxxxxxxxxxxx\",\"usage\":{\"prompt_tokens\":1}}";
    int64_t in, out;
    size_t len = strlen(body);
    assert_int_equal(run_cuts("application/json", len, body, len, NULL, 0, &in, &out), 1);
    assert_int_equal(run_cuts("application/json", len - 1, body, len, NULL, 0, &in, &out), 0);
    size_t cuts[] = {10, 20};
    assert_int_equal(run_cuts("application/json", len - 1, body, len, cuts, 2, &in, &out), 0);
    /* the default bound holds a 3 MB body */
    size_t big = 3u << 20;
    char *b = malloc(big + 64);
    memcpy(b, "{\"pad\":\"", 8);
    memset(b + 8, 'x', big);
    strcpy(b + 8 + big, "\",\"usage\":{\"completion_tokens\":77}}");
    sk_usage *u = sk_usage_new("application/json", 0);
    for (size_t off = 0, n = strlen(b); off < n; off += 65536)
        sk_usage_feed(u, b + off, n - off < 65536 ? n - off : 65536);
    assert_int_equal(sk_usage_result(u, &in, &out), 1);
    assert_int_equal(out, 77);
    sk_usage_free(u);
    free(b);
}

#define CHUNK(c) "data: {\"choices\":[{\"delta\":{\"content\":\"" c "\"}}],\"usage\":null}\n\n"

static void test_sse_openai(void **state)
{
    (void)state;
    const char *ct = "text/event-stream; charset=utf-8";
    expect_every_split(ct,
                       ": keep-alive\n\n" CHUNK("Hel") CHUNK(
                           "lo") "data: {\"choices\":[],"
                                 "\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":2}}\n\n"
                                 "data: [DONE]\n\n",
                       1, 11, 2);
    /* without include_usage: none */
    expect_every_split(ct, CHUNK("a") CHUNK("b") "data: [DONE]\n\n", 0, 0, 0);
    /* CRLF and CR line ends; no space after the colon */
    expect_every_split(ct,
                       "data:{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\r\n\r\n"
                       "data: [DONE]\r\n\r\n",
                       1, 1, 2);
    expect_every_split(ct, "data: {\"usage\":{\"prompt_tokens\":3}}\r\rdata: [DONE]\r\r", 1, 3, 0);
    /* the last event is not complete until its blank line */
    expect_every_split(ct, "data: {\"usage\":{\"prompt_tokens\":3}}\n", 0, 0, 0);
    expect_every_split(ct, "data: {\"usage\":{\"prompt_tokens\":3}}", 0, 0, 0);
}

static void test_sse_fields(void **state)
{
    (void)state;
    const char *ct = "text/event-stream";
    /* data over several lines is joined with LF; other fields and comments ignored */
    expect_every_split(ct,
                       "event: message\nid: 7\nretry: 100\n: note\n"
                       "data: {\"usage\":\ndata: {\"input_tokens\":4,\ndata:"
                       "\"output_tokens\":6}}\n\n",
                       1, 4, 6);
    /* field names that only start like data, and "data" alone */
    expect_every_split(ct,
                       "dataX: {\"usage\":{\"input_tokens\":1}}\n\n"
                       "datadata: {\"usage\":{\"input_tokens\":1}}\n\n"
                       "data\n\n",
                       0, 0, 0);
    expect_every_split(ct, "data\ndata: {\"usage\":{\"input_tokens\":8}}\n\n", 1, 8, 0);
    /* the Responses API's final event; Anthropic's counts over two events */
    expect_every_split(ct,
                       "event: response.completed\ndata: {\"type\":\"response.completed\","
                       "\"response\":{\"usage\":{\"input_tokens\":20,\"output_tokens\":30}}}\n\n",
                       1, 20, 30);
    expect_every_split(ct,
                       "event: message_start\ndata: {\"type\":\"message_start\",\"message\":"
                       "{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n"
                       "event: message_delta\ndata: {\"type\":\"message_delta\","
                       "\"usage\":{\"output_tokens\":15}}\n\n",
                       1, 25, 15);
    /* non-JSON and broken data are skipped */
    expect_every_split(ct,
                       "data: usage\n\ndata: {\"usage\":\n\n"
                       "data: {\"usage\":{\"prompt_tokens\":2}}\n\n",
                       1, 2, 0);
}

/* An event larger than the bound is skipped, later ones still read; memory stays bounded. */
static void test_sse_bounded(void **state)
{
    (void)state;
    size_t big = 100000;
    char *s = malloc(big + 200);
    strcpy(s, "data: {\"usage\":{\"prompt_tokens\":9},\"pad\":\"");
    size_t n = strlen(s);
    memset(s + n, 'x', big);
    n += big;
    strcpy(s + n, "\"}\n\ndata: {\"usage\":{\"completion_tokens\":4}}\n\n");
    n = strlen(s);
    sk_usage *u = sk_usage_new("text/event-stream", 1000);
    for (size_t off = 0; off < n; off += 777)
        sk_usage_feed(u, s + off, n - off < 777 ? n - off : 777);
    int64_t in, out;
    assert_int_equal(sk_usage_result(u, &in, &out), 1);
    assert_int_equal(in, 0);
    assert_int_equal(out, 4);
    assert_int_equal(sk_usage_skipped(u), 1);
    sk_usage_free(u);
    /* the same stream with room for the event reads both */
    u = sk_usage_new("text/event-stream", 0);
    sk_usage_feed(u, s, n);
    assert_int_equal(sk_usage_result(u, &in, &out), 1);
    assert_int_equal(in, 9);
    assert_int_equal(sk_usage_skipped(u), 0);
    sk_usage_free(u);
    free(s);
    sk_usage_free(NULL);
}

static void expect_estimate(const char *body, int64_t want)
{
    int64_t got = sk_usage_estimate(body, body ? strlen(body) : 0);
    if (got != want)
        fail_msg("estimate %lld, want %lld: %s", (long long)got, (long long)want,
                 body ? body : "(null)");
}

static void test_estimate(void **state)
{
    (void)state;
    /* 8 + 9 text bytes: ceil(17/4) = 5, plus 100 asked */
    expect_estimate("{\"model\":\"gpt\",\"max_tokens\":100,\"messages\":[{\"role\":\"system\","
                    "\"content\":\"be brief\"},{\"role\":\"user\",\"content\":\"hello you\"}]}",
                    105);
    /* content parts: text counted, image URLs not */
    expect_estimate("{\"max_completion_tokens\":10,\"messages\":[{\"role\":\"user\",\"content\":["
                    "{\"type\":\"text\",\"text\":\"abcdefgh\"},{\"type\":\"image_url\","
                    "\"image_url\":{\"url\":\"data:image/png;base64,AAAAAAAAAAAAAAAA\"}}]}]}",
                    12);
    /* prompt of token ids (4 bytes each), input strings, instructions and system */
    expect_estimate("{\"prompt\":[1,2,3]}", 3);
    expect_estimate("{\"input\":[\"abcd\",\"efgh\"],\"max_output_tokens\":5}", 7);
    expect_estimate("{\"instructions\":\"abcd\",\"system\":[{\"type\":\"text\",\"text\":\"ab\"}]}",
                    2);
    /* none of the keys, not an object, not JSON: the whole body */
    expect_estimate("{\"query\":\"abc\"}", 4);
    expect_estimate("[\"abcdefgh\"]", 3);
    expect_estimate("plain text body", 4);
    expect_estimate("", 0);
    expect_estimate(NULL, 0);
    /* odd max_tokens are not counted; huge ones are capped */
    expect_estimate("{\"prompt\":\"abcd\",\"max_tokens\":-5}", 1);
    expect_estimate("{\"prompt\":\"abcd\",\"max_tokens\":\"9\"}", 1);
    expect_estimate("{\"prompt\":\"abcd\",\"max_tokens\":1e300}", 1);
    expect_estimate("{\"prompt\":\"abcd\",\"max_tokens\":9007199254740991}", 9007199254740992);
    /* deep nesting does not recurse without end */
    char deep[4000];
    size_t n = 0;
    n += (size_t)sprintf(deep, "{\"messages\":");
    for (int i = 0; i < 1000; i++)
        deep[n++] = '[';
    for (int i = 0; i < 1000; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    deep[n] = '\0';
    assert_true(sk_usage_estimate(deep, n) >= 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_bodies), cmocka_unit_test(test_json_bounded),
        cmocka_unit_test(test_sse_openai),  cmocka_unit_test(test_sse_fields),
        cmocka_unit_test(test_sse_bounded), cmocka_unit_test(test_estimate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
