/* The allow-lists of the handlers' secret and token calls: which patterns are well formed, which
 * references a handler may ask for, and which pattern allows which reference; and the calls'
 * errors through a real session (no Vault, no token service here: forbidden, invalid_params,
 * unavailable, each counted). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <event2/event.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "handler/session.h"
#include "secrets/grants.h"

static void test_pattern_check(void **state)
{
    (void)state;
    char err[160];
    const char *good[] = {"vault:secret/app/db#password", "vault:secret/app/*#token",
                          "vault:secret/*#*", "vault:kv/a#*", NULL};
    for (size_t i = 0; good[i]; i++)
        assert_int_equal(sk_grant_pattern_check(good[i], err, sizeof err), 0);
    const char *bad[] = {"secret/app#x",
                         "file:/etc/passwd",
                         "vault:secret/a*#x",
                         "vault:secret/*/b#x",
                         "vault:sec*/a#x",
                         "vault:secret/a#pass*",
                         "vault:secret/../x#y",
                         "vault:secret/a/./b#y",
                         "vault:secret/a#",
                         "vault:secret#x",
                         "vault:secret/a//b#x",
                         "",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        err[0] = '\0';
        assert_int_equal(sk_grant_pattern_check(bad[i], err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
}

static void test_reference_check(void **state)
{
    (void)state;
    char err[160];
    assert_int_equal(sk_grant_reference_check("vault:secret/app/db#password", err, sizeof err), 0);
    const char *bad[] = {"vault:secret/app/*#x",  "vault:secret/app#*",
                         "vault:secret/../app#x", "vault:secret/app/..#x",
                         "literal-value",         "file:/etc/shadow",
                         "vault:secret/a#b#c",    NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(sk_grant_reference_check(bad[i], err, sizeof err), -1);
}

static void test_match(void **state)
{
    (void)state;
    struct {
        const char *pattern, *reference;
        int match;
    } cases[] = {
        {"vault:secret/app/db#password", "vault:secret/app/db#password", 1},
        {"vault:secret/app/db#password", "vault:secret/app/db#user", 0},
        {"vault:secret/app/db#password", "vault:secret/app/db2#password", 0},
        {"vault:secret/app/db#password", "vault:secret/app#password", 0},
        {"vault:secret/app/db#password", "vault:other/app/db#password", 0},
        {"vault:secret/app/db#*", "vault:secret/app/db#user", 1},
        {"vault:secret/app/*#token", "vault:secret/app/x#token", 1},
        {"vault:secret/app/*#token", "vault:secret/app/x/y#token", 1},
        {"vault:secret/app/*#token", "vault:secret/app#token", 0},
        {"vault:secret/app/*#token", "vault:secret/apple/x#token", 0},
        {"vault:secret/app/*#token", "vault:secret/app/x#other", 0},
        {"vault:secret/app/*#token", "vault:secret/app/../root#token", 0},
        {"vault:secret/*#*", "vault:secret/anything/at/all#f", 1},
        {"vault:secret/*#*", "vault:secrets/a#f", 0},
        {"vault:secret/a*#x", "vault:secret/ab#x", 0}, /* a malformed pattern allows nothing */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (sk_grant_match(cases[i].pattern, cases[i].reference) != cases[i].match)
            fail_msg("%s vs %s: expected %d", cases[i].pattern, cases[i].reference, cases[i].match);
    }
}

static void test_new_refuses_bad_pattern(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char *secrets[] = {"vault:secret/ok#f", "vault:secret/x*#f"};
    sk_grants_opts o = {.secrets = secrets, .nsecrets = 2};
    char err[256];
    assert_null(sk_grants_new(base, NULL, &o, err, sizeof err));
    assert_non_null(strstr(err, "vault:secret/x*#f"));
    o.nsecrets = 1;
    sk_grants *g = sk_grants_new(base, NULL, &o, err, sizeof err);
    assert_non_null(g);
    sk_grants_free(g);
    sk_grants_free(NULL);
    event_base_free(base);
}

typedef struct fixture {
    struct event_base *base;
    sk_metrics *m;
    sk_dispatcher *d;
    sk_session *s;
    sk_grants *g;
    int fd;
} fixture;

static void on_closed(void *ud, sk_session *s)
{
    (void)ud;
    (void)s;
}

static void spin(fixture *fx)
{
    for (int i = 0; i < 5; i++)
        event_base_loop(fx->base, EVLOOP_NONBLOCK);
}

static void send_json(fixture *fx, const char *json)
{
    size_t n = strlen(json);
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    assert_int_equal(write(fx->fd, hdr, 4), 4);
    assert_int_equal(write(fx->fd, json, n), (ssize_t)n);
    spin(fx);
}

static int read_full(fixture *fx, uint8_t *buf, size_t len)
{
    size_t got = 0;
    for (int tries = 0; got < len && tries < 200; tries++) {
        spin(fx);
        struct pollfd p = {.fd = fx->fd, .events = POLLIN};
        if (poll(&p, 1, 10) <= 0)
            continue;
        ssize_t r = read(fx->fd, buf + got, len - got);
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return got == len ? 0 : -1;
}

static json_t *recv_frame(fixture *fx)
{
    uint8_t hdr[4];
    assert_int_equal(read_full(fx, hdr, 4), 0);
    size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    char *buf = malloc(n);
    assert_int_equal(read_full(fx, (uint8_t *)buf, n), 0);
    json_t *j = json_loadb(buf, n, 0, NULL);
    free(buf);
    assert_non_null(j);
    return j;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    int sv[2];
    sk_log_init("test", SK_LOG_ERROR, stderr);
    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    fx->base = event_base_new();
    fx->m = sk_metrics_new();
    fx->d = sk_dispatcher_new(fx->m, 65536);
    sk_dispatcher_add_route(fx->d, "zeebe", "work");
    char *secrets[] = {"vault:secret/app/*#password"}, *auds[] = {"billing-api"};
    sk_grants_opts o = {.secrets = secrets, .nsecrets = 1, .audiences = auds, .naudiences = 1};
    char err[256];
    assert_non_null(fx->g = sk_grants_new(fx->base, fx->m, &o, err, sizeof err));
    assert_int_equal(sk_grants_register(fx->g, fx->d), 0);
    evutil_make_socket_nonblocking(sv[0]);
    sk_session_opts so = {.max_frame = 65536, .hello_timeout_ms = 5000};
    fx->s = sk_session_new(fx->base, sv[0], fx->d, &so, fx->m, on_closed, fx);
    fx->fd = sv[1];
    send_json(fx, "{\"type\":\"hello\",\"version\":1,\"name\":\"t\",\"capacity\":1,"
                  "\"job_types\":[\"work\"]}");
    json_t *w = recv_frame(fx);
    json_t *methods = json_object_get(w, "methods");
    int secret = 0, token = 0;
    for (size_t i = 0; i < json_array_size(methods); i++) {
        secret |= strcmp(json_string_value(json_array_get(methods, i)), "secret") == 0;
        token |= strcmp(json_string_value(json_array_get(methods, i)), "token") == 0;
    }
    assert_true(secret && token);
    json_decref(w);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    sk_session_free(fx->s);
    spin(fx);
    sk_grants_free(fx->g);
    sk_dispatcher_free(fx->d);
    sk_metrics_free(fx->m);
    event_base_free(fx->base);
    close(fx->fd);
    free(fx);
    return 0;
}

/* Sends a call and returns the error code of its reply (NULL when ok); message into msg. */
static const char *call(fixture *fx, const char *method, const char *params, char *msg,
                        size_t msglen)
{
    static char code[64];
    char frame[512];
    snprintf(frame, sizeof frame,
             "{\"type\":\"call\",\"ref\":\"r\",\"method\":\"%s\",\"params\":%s}", method, params);
    send_json(fx, frame);
    json_t *r = recv_frame(fx);
    assert_string_equal(json_string_value(json_object_get(r, "type")), "reply");
    json_t *e = json_object_get(r, "error");
    const char *c = json_string_value(json_object_get(e, "code"));
    snprintf(code, sizeof code, "%s", c ? c : "");
    snprintf(msg, msglen, "%s", c ? json_string_value(json_object_get(e, "message")) : "");
    json_decref(r);
    return c ? code : NULL;
}

static double series(fixture *fx, const char *name, const char *result)
{
    char *text = sk_metrics_render(fx->m, NULL);
    char key[160];
    snprintf(key, sizeof key, "%s{result=\"%s\"} ", name, result);
    char *at = strstr(text, key);
    double v = at ? strtod(at + strlen(key), NULL) : -1;
    free(text);
    return v;
}

static void test_call_errors(void **state)
{
    fixture *fx = *state;
    char m1[256], m2[256];
    /* Not allowed: the same answer for any path, existing or not (nothing is asked). */
    assert_string_equal(
        call(fx, "secret", "{\"reference\":\"vault:secret/other#password\"}", m1, sizeof m1),
        "forbidden");
    assert_string_equal(
        call(fx, "secret", "{\"reference\":\"vault:secret/nope#password\"}", m2, sizeof m2),
        "forbidden");
    assert_non_null(strstr(m1, "not allowed"));
    assert_string_equal(strstr(m1, "#password"), strstr(m2, "#password"));
    assert_string_equal(
        call(fx, "secret", "{\"reference\":\"vault:secret/app/x#user\"}", m1, sizeof m1),
        "forbidden");
    assert_string_equal(
        call(fx, "secret", "{\"reference\":\"vault:secret/app/../x#password\"}", m1, sizeof m1),
        "invalid_params");
    assert_string_equal(call(fx, "secret", "{}", m1, sizeof m1), "invalid_params");
    /* Allowed, but no Vault to ask and nothing cached. */
    assert_string_equal(
        call(fx, "secret", "{\"reference\":\"vault:secret/app/x#password\"}", m1, sizeof m1),
        "unavailable");
    assert_string_equal(call(fx, "token", "{\"audience\":\"admin-api\"}", m1, sizeof m1),
                        "forbidden");
    assert_string_equal(call(fx, "token", "{\"audience\":5}", m1, sizeof m1), "invalid_params");
    assert_string_equal(call(fx, "token", "{\"audience\":\"billing-api\"}", m1, sizeof m1),
                        "unavailable");
    assert_int_equal(series(fx, "skiff_handler_secret_calls_total", "forbidden"), 3);
    assert_int_equal(series(fx, "skiff_handler_secret_calls_total", "invalid_params"), 2);
    assert_int_equal(series(fx, "skiff_handler_secret_calls_total", "unavailable"), 1);
    assert_int_equal(series(fx, "skiff_handler_token_calls_total", "forbidden"), 1);
    assert_int_equal(series(fx, "skiff_handler_token_calls_total", "invalid_params"), 1);
    assert_int_equal(series(fx, "skiff_handler_token_calls_total", "unavailable"), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_check),
        cmocka_unit_test(test_reference_check),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_new_refuses_bad_pattern),
        cmocka_unit_test_setup_teardown(test_call_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
