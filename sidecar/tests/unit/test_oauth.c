/* The OAuth token service against an in-process token endpoint: the form it posts, one request
 * in flight however many wait, refresh ahead of expiry, retries of endpoint errors, a refusal
 * reported as a configuration problem and cured by a rotated secret, a rejected token replaced,
 * and the token response parser. A canary client secret never shows in what it reports. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "core/log.h"
#include "secrets/oauth.h"

#include "http_test_server.h"

#define CANARY "canary-oauth-5e1d-secret"
#define MAX_HELD 16

typedef struct {
    int status;
    const char *body;
} answer;

typedef struct {
    test_server server;
    answer answers[16]; /* answered in order; the last one repeats */
    int nanswers, requests, answered;
    int hold; /* keep requests unanswered until release() */
    struct evhttp_request *held[MAX_HELD];
    int nheld;
    char form[1024], ctype[128];
    sk_metrics *m;
    sk_oauth *o;
    sk_secret *secret;
    char secret_path[64];
    int tokens; /* listener calls */
} fixture;

static void reply(fixture *f, struct evhttp_request *req)
{
    int i = f->answered < f->nanswers ? f->answered : f->nanswers - 1;
    f->answered++;
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, f->answers[i].body, strlen(f->answers[i].body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, f->answers[i].status, "X", b);
    evbuffer_free(b);
}

static void on_server(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    f->requests++;
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    if (n >= sizeof f->form)
        n = sizeof f->form - 1;
    evbuffer_copyout(in, f->form, n);
    f->form[n] = '\0';
    copy_header(req, "Content-Type", f->ctype, sizeof f->ctype);
    if (f->hold && f->nheld < MAX_HELD)
        f->held[f->nheld++] = req;
    else
        reply(f, req);
}

static void release(fixture *f)
{
    for (int i = 0; i < f->nheld; i++)
        reply(f, f->held[i]);
    f->nheld = 0;
    f->hold = 0;
}

static void answers(fixture *f, int n, const answer *a)
{
    memcpy(f->answers, a, (size_t)n * sizeof *a);
    f->nanswers = n;
    f->answered = 0;
}

static void write_secret(fixture *f, const char *value)
{
    char tmp[80];
    snprintf(tmp, sizeof tmp, "%s.new", f->secret_path);
    FILE *w = fopen(tmp, "w");
    fputs(value, w);
    fclose(w);
    assert_int_equal(rename(tmp, f->secret_path), 0);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    test_server_start(&f->server, on_server, f);
    f->m = sk_metrics_new();
    snprintf(f->secret_path, sizeof f->secret_path, "/tmp/skiff-test-oauth-%d", (int)getpid());
    write_secret(f, CANARY "&=+\n");
    char ref[96], err[256];
    snprintf(ref, sizeof ref, "file:%s", f->secret_path);
    assert_non_null(f->secret = sk_secret_new("zeebe.client_secret", ref, err, sizeof err));
    assert_non_null(f->o = sk_oauth_new(f->server.base, f->m, err, sizeof err));
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_oauth_free(f->o);
    sk_secret_free(f->secret);
    sk_metrics_free(f->m);
    test_server_stop(&f->server);
    unlink(f->secret_path);
    free(f);
    return 0;
}

static void on_token(void *ud)
{
    ((fixture *)ud)->tokens++;
}

static sk_oauth_client *client(fixture *f, const char *audience, const char *scope)
{
    char url[128], err[256];
    test_server_url(&f->server, "/realms/r/protocol/openid-connect/token", url, sizeof url);
    sk_oauth_opts o = {.name = "zeebe",
                       .token_url = url,
                       .client_id = "worker one",
                       .client_secret = f->secret,
                       .audience = audience,
                       .scope = scope,
                       .backoff_initial_ms = 20,
                       .backoff_max_ms = 100};
    sk_oauth_client *c = sk_oauth_client_get(f->o, &o, err, sizeof err);
    if (!c)
        fail_msg("%s", err);
    sk_oauth_listen(c, on_token, f);
    return c;
}

static const answer ok_long = {200, "{\"access_token\":\"tok-1\",\"expires_in\":300,"
                                    "\"token_type\":\"Bearer\"}"};

static void test_form_and_single_flight(void **state)
{
    fixture *f = *state;
    answers(f, 1, &ok_long);
    f->hold = 1;
    sk_oauth_client *c = client(f, "zeebe-api", "openid profile");
    assert_ptr_equal(client(f, "zeebe-api", "openid profile"), c); /* same tuple, same client */
    run_until(&f->server, &f->requests, 1);
    for (int i = 0; i < 100; i++) /* many waiters, still one request */
        assert_null(sk_oauth_token_get(c));
    run_for(&f->server, 0.2);
    assert_int_equal(f->requests, 1);
    char why[256];
    assert_int_equal(sk_oauth_ready(c, why, sizeof why), 0);
    assert_non_null(strstr(why, "no access token yet"));
    release(f);
    run_until(&f->server, &f->tokens, 1);
    assert_string_equal(sk_oauth_token_get(c), "tok-1");
    assert_int_equal(sk_oauth_ready(c, why, sizeof why), 1);
    assert_string_equal(f->ctype, "application/x-www-form-urlencoded");
    assert_string_equal(f->form, "grant_type=client_credentials&client_id=worker%20one"
                                 "&client_secret=" CANARY "%26%3D%2B&audience=zeebe-api"
                                 "&scope=openid%20profile");
    assert_int_equal(f->requests, 1);
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(
        strstr(text, "skiff_oauth_token_requests_total{token=\"zeebe\",result=\"ok\"} 1"));
    assert_non_null(strstr(text, "skiff_oauth_token_valid{token=\"zeebe\"} 1"));
    assert_null(strstr(text, CANARY));
    assert_null(strstr(text, "tok-1"));
    free(text);
}

static void test_no_audience_no_scope(void **state)
{
    fixture *f = *state;
    answers(f, 1, &ok_long);
    sk_oauth_client *c = client(f, NULL, "");
    run_until(&f->server, &f->tokens, 1);
    assert_non_null(sk_oauth_token_get(c));
    assert_null(strstr(f->form, "audience"));
    assert_null(strstr(f->form, "scope"));
}

/* expires_in 2 s: the refresh starts a fifth of the lifetime ahead, while the token is valid. */
static void test_refresh_ahead(void **state)
{
    fixture *f = *state;
    const answer a[] = {{200, "{\"access_token\":\"short\",\"expires_in\":2}"},
                        {200, "{\"access_token\":\"next\",\"expires_in\":\"300\"}"}};
    answers(f, 2, a);
    sk_oauth_client *c = client(f, "a", NULL);
    run_until(&f->server, &f->tokens, 1);
    assert_string_equal(sk_oauth_token_get(c), "short");
    f->hold = 1; /* the refresh request is held: the old token must still be valid then */
    run_until(&f->server, &f->requests, 2);
    char why[256];
    assert_int_equal(sk_oauth_ready(c, why, sizeof why), 1);
    assert_string_equal(sk_oauth_token_get(c), "short");
    release(f);
    run_until(&f->server, &f->tokens, 2);
    assert_string_equal(sk_oauth_token_get(c), "next");
}

static void test_errors_retried(void **state)
{
    fixture *f = *state;
    const answer a[] = {{503, "down"},
                        {200, "not json"},
                        {200, "{\"access_token\":\"x y\"}"},
                        {200, "{\"access_token\":\"t\",\"token_type\":\"mac\"}"},
                        {200, "{\"access_token\":\"ok\",\"expires_in\":300}"}};
    answers(f, 5, a);
    sk_oauth_client *c = client(f, "a", NULL);
    run_until(&f->server, &f->tokens, 1);
    assert_int_equal(f->requests, 5);
    assert_string_equal(sk_oauth_token_get(c), "ok");
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(
        strstr(text, "skiff_oauth_token_requests_total{token=\"zeebe\",result=\"error\"} 4"));
    free(text);
}

/* 401 invalid_client: a configuration problem; the message names the OAuth error but never
 * the secret, even when the server echoes it; a rotated secret is tried at once. */
static void test_refused_then_rotated(void **state)
{
    fixture *f = *state;
    const answer a[] = {{401, "{\"error\":\"invalid_client\",\"error_description\":\"bad "
                              "secret " CANARY "&=+\"}"},
                        {200, "{\"access_token\":\"good\",\"expires_in\":300}"}};
    answers(f, 2, a);
    sk_oauth_client *c = client(f, "a", NULL);
    double deadline = sk_mono_s() + 10;
    char why[256] = "";
    while (!strstr(why, "invalid_client") && sk_mono_s() < deadline) {
        event_base_loop(f->server.base, EVLOOP_ONCE);
        sk_oauth_ready(c, why, sizeof why);
    }
    assert_non_null(strstr(why, "HTTP 401 invalid_client: bad secret"));
    assert_null(strstr(why, CANARY));
    write_secret(f, "rotated-secret");
    assert_int_equal(sk_secret_reload(f->secret), 1);
    run_until(&f->server, &f->tokens, 1);
    assert_string_equal(sk_oauth_token_get(c), "good");
    assert_non_null(strstr(f->form, "client_secret=rotated-secret"));
    assert_int_equal(f->requests, 2);
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(
        strstr(text, "skiff_oauth_token_requests_total{token=\"zeebe\",result=\"refused\"} 1"));
    free(text);
}

static void test_rejected_token_replaced(void **state)
{
    fixture *f = *state;
    const answer a[] = {{200, "{\"access_token\":\"first\",\"expires_in\":300}"},
                        {200, "{\"access_token\":\"second\",\"expires_in\":300}"}};
    answers(f, 2, a);
    sk_oauth_client *c = client(f, "a", NULL);
    run_until(&f->server, &f->tokens, 1);
    sk_oauth_token_rejected(c, "not-the-current-one"); /* a stale rejection: ignored */
    assert_string_equal(sk_oauth_token_get(c), "first");
    sk_oauth_token_rejected(c, "first");
    assert_null(sk_oauth_token_get(c));
    sk_oauth_token_rejected(c, "first");
    run_until(&f->server, &f->tokens, 2);
    assert_string_equal(sk_oauth_token_get(c), "second");
    assert_int_equal(f->requests, 2);
}

/* The endpoint goes down while the token runs out: no token, not ready; back up: a token. */
static void test_expiry_without_endpoint(void **state)
{
    fixture *f = *state;
    const answer a[] = {{200, "{\"access_token\":\"brief\",\"expires_in\":1}"}, {502, ""}};
    answers(f, 2, a);
    sk_oauth_client *c = client(f, "a", NULL);
    run_until(&f->server, &f->tokens, 1);
    double deadline = sk_mono_s() + 10;
    while (sk_oauth_token_get(c) && sk_mono_s() < deadline)
        event_base_loop(f->server.base, EVLOOP_ONCE);
    char why[256] = "";
    while (!strstr(why, "HTTP 502") && sk_mono_s() < deadline) {
        event_base_loop(f->server.base, EVLOOP_ONCE);
        assert_int_equal(sk_oauth_ready(c, why, sizeof why), 0);
    }
    assert_non_null(strstr(why, "HTTP 502"));
    const answer b[] = {{200, "{\"access_token\":\"back\",\"expires_in\":300}"}};
    answers(f, 1, b);
    run_until(&f->server, &f->tokens, 2);
    assert_string_equal(sk_oauth_token_get(c), "back");
}

static void test_bad_options(void **state)
{
    fixture *f = *state;
    char err[256];
    sk_oauth_opts o = {.token_url = "ftp://x", .client_id = "a", .client_secret = f->secret};
    assert_null(sk_oauth_client_get(f->o, &o, err, sizeof err));
    assert_non_null(strstr(err, "token URL"));
    o.token_url = "http://x";
    o.client_id = "";
    assert_null(sk_oauth_client_get(f->o, &o, err, sizeof err));
}

static void expect_parse(long status, const char *body, sk_oauth_verdict want, const char *why)
{
    sk_oauth_token tok;
    char got[256] = "";
    sk_oauth_verdict v = sk_oauth_parse_response(status, body, strlen(body), &tok, got, sizeof got);
    if (v != want)
        fail_msg("%ld %s: verdict %d, want %d (%s)", status, body, v, want, got);
    if (why && !strstr(got, why))
        fail_msg("%ld %s: \"%s\" does not say \"%s\"", status, body, got, why);
    sk_oauth_token_clear(&tok);
}

static void test_parse(void **state)
{
    (void)state;
    sk_oauth_token tok;
    char why[128];
    const char *keycloak = "{\"access_token\":\"eyJ.a.b\",\"expires_in\":60,\"refresh_expires_in\":"
                           "0,\"token_type\":\"Bearer\",\"not-before-policy\":0,\"scope\":\"x\"}";
    assert_int_equal(
        sk_oauth_parse_response(200, keycloak, strlen(keycloak), &tok, why, sizeof why),
        SK_OAUTH_OK);
    assert_string_equal(tok.access_token, "eyJ.a.b");
    assert_int_equal(tok.expires_in_ms, 60000);
    sk_oauth_token_clear(&tok);
    assert_null(tok.access_token);
    const char *no_exp = "{\"access_token\":\"a\",\"token_type\":\"bearer\"}";
    assert_int_equal(sk_oauth_parse_response(200, no_exp, strlen(no_exp), &tok, why, sizeof why),
                     SK_OAUTH_OK);
    assert_int_equal(tok.expires_in_ms, SK_OAUTH_DEFAULT_LIFETIME_MS);
    sk_oauth_token_clear(&tok);
    expect_parse(200, "{\"access_token\":\"a\",\"expires_in\":0}", SK_OAUTH_ERROR, "expires_in");
    expect_parse(200, "{\"access_token\":\"a\",\"expires_in\":-5}", SK_OAUTH_ERROR, "expires_in");
    expect_parse(200, "{\"access_token\":\"a\",\"expires_in\":\"5x\"}", SK_OAUTH_ERROR,
                 "expires_in");
    expect_parse(200, "{\"access_token\":\"a\",\"expires_in\":1.5}", SK_OAUTH_ERROR, "expires_in");
    expect_parse(200, "{\"access_token\":\"\"}", SK_OAUTH_ERROR, "access_token");
    expect_parse(200, "{\"access_token\":\"a\\r\\nX-Evil: 1\"}", SK_OAUTH_ERROR, "access_token");
    expect_parse(200, "{\"access_token\":\"a\\u0000b\"}", SK_OAUTH_ERROR, "JSON");
    expect_parse(200, "{\"access_token\":7}", SK_OAUTH_ERROR, "access_token");
    expect_parse(200, "{\"access_token\":\"a\",\"access_token\":\"b\"}", SK_OAUTH_ERROR, "JSON");
    expect_parse(200, "[]", SK_OAUTH_ERROR, "JSON object");
    expect_parse(204, "", SK_OAUTH_ERROR, "unexpected HTTP status 204");
    expect_parse(401, "", SK_OAUTH_REFUSED, "HTTP 401");
    expect_parse(400, "{\"error\":\"invalid_client\"}", SK_OAUTH_REFUSED, "invalid_client");
    expect_parse(400, "{\"error\":\"unauthorized_client\",\"error_description\":\"disabled\"}",
                 SK_OAUTH_REFUSED, "unauthorized_client: disabled");
    expect_parse(400, "{\"error\":\"invalid_scope\"}", SK_OAUTH_REFUSED, "invalid_scope");
    expect_parse(400, "{\"error\":\"slow_down\"}", SK_OAUTH_ERROR, "slow_down");
    expect_parse(429, "{\"error\":\"invalid_client\"}", SK_OAUTH_ERROR, "HTTP 429");
    expect_parse(500, "{\"error\":\"invalid_client\"}", SK_OAUTH_ERROR, "HTTP 500");
    expect_parse(503, "<html>", SK_OAUTH_ERROR, "HTTP 503");
    char big[SK_OAUTH_MAX_TOKEN + 64];
    int n = snprintf(big, sizeof big, "{\"access_token\":\"");
    memset(big + n, 'a', SK_OAUTH_MAX_TOKEN + 1);
    snprintf(big + n + SK_OAUTH_MAX_TOKEN + 1, 8, "\"}");
    expect_parse(200, big, SK_OAUTH_ERROR, "access_token");
}

/* JWT payloads: {"aud":["zeebe-api","billing-api"]}, {"aud":"billing-api"}, {"sub":"x"}. */
static void test_token_audience(void **state)
{
    (void)state;
    char why[256] = "";
    const char *list = "eyJhbGciOiJub25lIn0.eyJhdWQiOlsiemVlYmUtYXBpIiwiYmlsbGluZy1hcGkiXX0.sig";
    const char *one = "h.eyJhdWQiOiJiaWxsaW5nLWFwaSJ9.s";
    const char *none = "h.eyJzdWIiOiJ4In0=.s";
    assert_int_equal(sk_oauth_token_has_audience(list, "billing-api", why, sizeof why), 1);
    assert_int_equal(sk_oauth_token_has_audience(one, "billing-api", why, sizeof why), 1);
    assert_int_equal(sk_oauth_token_has_audience(list, "billing", why, sizeof why), 0);
    assert_non_null(strstr(why, "[\"zeebe-api\",\"billing-api\"]"));
    assert_non_null(strstr(why, "audience billing"));
    assert_int_equal(sk_oauth_token_has_audience(none, "billing-api", why, sizeof why), 0);
    assert_non_null(strstr(why, "(none)"));
    /* Not a JWT with a JSON payload: cannot be checked. */
    assert_int_equal(sk_oauth_token_has_audience("opaque-token", "a", why, sizeof why), -1);
    assert_int_equal(sk_oauth_token_has_audience("a.b.c.d", "a", why, sizeof why), -1);
    assert_int_equal(sk_oauth_token_has_audience("h.!!!.s", "a", why, sizeof why), -1);
    assert_int_equal(sk_oauth_token_has_audience("h.aGVsbG8.s", "a", why, sizeof why), -1);
    assert_int_equal(sk_oauth_token_has_audience("h..s", "a", why, sizeof why), -1);
}

int main(void)
{
    sk_log_init("test", SK_LOG_ERROR, stderr);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_token_audience),
        cmocka_unit_test_setup_teardown(test_form_and_single_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_audience_no_scope, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refresh_ahead, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_then_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rejected_token_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_without_endpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_options, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
