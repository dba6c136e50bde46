/* Egress request mapping: route and rest from the request target, upstream URLs, the headers
 * that cross the proxy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "egress/map.h"

static void split_ok(const char *uri, const char *route, const char *rest)
{
    char r[65];
    const char *got = NULL;
    if (sk_egress_split(uri, r, sizeof r, &got) != 0)
        fail_msg("\"%s\" refused", uri);
    assert_string_equal(r, route);
    assert_string_equal(got, rest);
}

static void test_split(void **state)
{
    (void)state;
    split_ok("/openai/v1/chat/completions", "openai", "/v1/chat/completions");
    split_ok("/openai", "openai", "");
    split_ok("/openai/", "openai", "/");
    split_ok("/openai?x=1&y=%20", "openai", "?x=1&y=%20");
    split_ok("/a-b_C9/x?q", "a-b_C9", "/x?q");
}

static void test_split_refused(void **state)
{
    (void)state;
    char r[65];
    const char *rest;
    const char *bad[] = {"",          "x",
                         "/",         "//x",
                         "/a.b/x",    "/a b/x",
                         "/a%2Fb/x",  "http://h/a/x",
                         "/a/x#frag", "/a/x\r\nX: y",
                         "/a/\x7f",   "*"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (sk_egress_split(bad[i], r, sizeof r, &rest) == 0)
            fail_msg("\"%s\" accepted", bad[i]);
    char small[4];
    assert_int_equal(sk_egress_split("/abcd/x", small, sizeof small, &rest), -1);
    assert_int_equal(sk_egress_split("/abc/x", small, sizeof small, &rest), 0);
}

static void test_upstream_url(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(sk_egress_upstream_url("https://h/v1", "/chat?x=1", out, sizeof out), 0);
    assert_string_equal(out, "https://h/v1/chat?x=1");
    assert_int_equal(sk_egress_upstream_url("https://h/v1/", "/chat", out, sizeof out), 0);
    assert_string_equal(out, "https://h/v1/chat");
    assert_int_equal(sk_egress_upstream_url("https://h", "", out, sizeof out), 0);
    assert_string_equal(out, "https://h");
    char tiny[8];
    assert_int_equal(sk_egress_upstream_url("https://h/v1", "/x", tiny, sizeof tiny), -1);
}

static void test_request_headers(void **state)
{
    (void)state;
    const char *dropped[] = {"Host",           "Content-Length", "Transfer-Encoding",
                             "Connection",     "Keep-Alive",     "TE",
                             "Trailer",        "Upgrade",        "Proxy-Authorization",
                             "Authorization",  "AUTHORIZATION",  "Expect",
                             "traceparent",    "tracestate",     "Proxy-Connection",
                             "Accept-Encoding"};
    for (size_t i = 0; i < sizeof dropped / sizeof dropped[0]; i++)
        if (sk_egress_forward_request_header(dropped[i], NULL, "authorization"))
            fail_msg("%s forwarded", dropped[i]);
    assert_true(sk_egress_forward_request_header("Content-Type", NULL, "authorization"));
    assert_true(sk_egress_forward_request_header("x-request-id", NULL, "authorization"));
    assert_true(sk_egress_forward_request_header("Idempotency-Key", NULL, "authorization"));
    /* The route's credential header, in any case. */
    assert_false(sk_egress_forward_request_header("X-Api-Key", NULL, "x-api-key"));
    assert_true(sk_egress_forward_request_header("X-Api-Key", NULL, "authorization"));
    /* Headers the Connection header names are hop-by-hop too. */
    assert_false(sk_egress_forward_request_header("X-Hop", "keep-alive, X-Hop", NULL));
    assert_true(sk_egress_forward_request_header("X-Hop2", "keep-alive, X-Hop", NULL));
    assert_false(sk_egress_forward_request_header("", NULL, NULL));
}

static void test_response_headers(void **state)
{
    (void)state;
    assert_false(sk_egress_forward_response_header("Transfer-Encoding"));
    assert_false(sk_egress_forward_response_header("connection"));
    assert_true(sk_egress_forward_response_header("Content-Type"));
    assert_true(sk_egress_forward_response_header("Content-Length"));
    assert_true(sk_egress_forward_response_header("x-ratelimit-remaining-requests"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split),
        cmocka_unit_test(test_split_refused),
        cmocka_unit_test(test_upstream_url),
        cmocka_unit_test(test_request_headers),
        cmocka_unit_test(test_response_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
