/* Egress settings: egress.<setting> globals, the per-route overrides
 * egress.routes.<name>.<setting> from every source, their resolution into
 * sk_config.egress_routes, and the checks of egress.listen and of each route. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config_internal.h"
#include "config_test_helpers.h"
#include "egress/egress.h"

/* Every field of sk_egress_route_config but the name and the parsed ratio belongs to one
 * per-route row. */
static void test_table_covers_route_struct(void **state)
{
    (void)state;
    unsigned char covered[sizeof(sk_egress_route_config)] = {0};
    memset(covered + offsetof(sk_egress_route_config, name), 1, sizeof(char *));
    memset(covered + offsetof(sk_egress_route_config, breaker_ratio), 1, sizeof(double));
    size_t n = 0;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        if (!(r->flags & F_PER_ROUTE))
            continue;
        n++;
        size_t size = r->type == T_STRING || r->type == T_LIST ? sizeof(char *)
                      : r->type == T_BOOL                      ? sizeof(int)
                                                               : sizeof(int64_t);
        for (size_t b = 0; b < size; b++) {
            assert_false(covered[r->route_off + b]);
            covered[r->route_off + b] = 1;
        }
        for (size_t b = 0; r->type == T_LIST && b < sizeof(size_t); b++)
            covered[r->route_off_len + b] = 1;
    }
    size_t gap = 0;
    for (size_t b = 0; b < sizeof(sk_egress_route_config); b++) {
        gap = covered[b] ? 0 : gap + 1;
        if (gap >= sizeof(void *))
            fail_msg("bytes up to %zu of sk_egress_route_config belong to no row", b);
    }
    assert_int_equal(n, 25);
}

static const sk_egress_route_config *route(const sk_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->egress_routes_len; i++)
        if (strcmp(cfg->egress_routes[i].name, name) == 0)
            return &cfg->egress_routes[i];
    fail_msg("no resolved route \"%s\"", name);
    return NULL;
}

/* Defaults of a route named only by an override; global values apply to every route. */
static void test_defaults_and_globals(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--egress.listen=127.0.0.1:8088", "--egress.timeout=30s",
                           "--egress.routes.a.upstream=https://a.example/v1")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.egress_routes_len, 1);
    const sk_egress_route_config *a = route(&cfg, "a");
    assert_string_equal(a->upstream, "https://a.example/v1");
    assert_string_equal(a->credential_header, "authorization");
    assert_int_equal(a->timeout_ms, 30000);
    assert_int_equal(a->connect_timeout_ms, 5000);
    assert_int_equal(a->ttfb_timeout_ms, 120000);
    assert_int_equal(a->max_queued, 64);
    assert_int_equal(a->retries, 2);
    assert_int_equal(a->retry_backoff_ms, 250);
    assert_int_equal(a->max_request_bytes, 1024 * 1024);
    assert_true(a->strip_control_chars);
    assert_false(a->log_bodies);
    assert_true(a->breaker_ratio > 0.49 && a->breaker_ratio < 0.51);
    assert_int_equal(a->deny_patterns_len, 1);
    assert_string_equal(a->deny_patterns[0], "@baseline");
    sk_config_clear(&cfg);
}

/* The nested JSON form, the flat key, annotations and the command line, later sources winning
 * per route and setting; the other route keeps the global value. */
static void test_overrides_every_source(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"egress\": {\"listen\": \"127.0.0.1:8088\", \"routes\": {"
                      "\"openai\": {\"upstream\": \"https://api.openai.com/v1\", "
                      "\"requests_per_minute\": 60, \"deny_patterns\": [\"x\", \"y\"]},"
                      "\"anth\": {\"upstream\": \"https://api.anthropic.com/v1\", "
                      "\"credential_header\": \"X-Api-Key\"}}},"
                      "\"egress.routes.openai.retries\": 5}",
              .annotations = "skiff.io/egress.routes.openai.requests_per_minute=\"120\"\n",
              .argv = LIST("--egress.routes.anth.max_concurrent=3")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.egress_routes_len, 2);
    const sk_egress_route_config *o = route(&cfg, "openai"), *a = route(&cfg, "anth");
    assert_int_equal(o->requests_per_minute, 120);
    assert_int_equal(o->retries, 5);
    assert_int_equal(o->deny_patterns_len, 2);
    assert_string_equal(o->deny_patterns[1], "y");
    assert_int_equal(o->max_concurrent, 0);
    assert_int_equal(a->max_concurrent, 3);
    assert_int_equal(a->retries, 2);
    assert_string_equal(a->credential_header, "x-api-key"); /* lower-cased */
    sk_config_clear(&cfg);
}

/* egress.routes lists a route; it gets the global upstream. */
static void test_route_list_with_global_upstream(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("SKIFF_EGRESS_ROUTES=one,two",
                          "SKIFF_EGRESS_UPSTREAM=https://internal.example")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.egress_routes_len, 2);
    assert_string_equal(route(&cfg, "two")->upstream, "https://internal.example");
    sk_config_clear(&cfg);
}

static void test_problems(void **state)
{
    (void)state;
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.upstrem=https://x")},
                     LIST("egress.routes.a.upstrem", "did you mean --egress.routes.a.upstream"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.retries=3")},
                     LIST("egress.routes.a.upstream", "empty"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.upstream=ftp://x")},
                     LIST("egress.routes.a.upstream", "http:// or https://"));
    load_one_problem(&(srcs){.argv = LIST("--security.plaintext=refuse", "--zeebe.tls=true",
                                          "--egress.routes.a.upstream=http://x")},
                     LIST("egress.routes.a.upstream", "plaintext", "https://"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.upstream=https://x",
                                          "--egress.routes.a.breaker_failure_ratio=1.5")},
                     LIST("breaker_failure_ratio", "(0, 1]"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.upstream=https://x",
                                          "--egress.routes.a.credential_header=bad header")},
                     LIST("credential_header", "not a header name"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.upstream=https://x",
                                          "--egress.routes.a.oauth_audience=api",
                                          "--egress.routes.a.credential=file:/dev/null")},
                     LIST("both credential and oauth_audience"));
    load_one_problem(&(srcs){.argv = LIST("--egress.listen=0.0.0.0:8088")},
                     LIST("egress.listen", "every interface"));
    load_one_problem(&(srcs){.argv = LIST("--egress.listen=nonsense")},
                     LIST("egress.listen", "host:port"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a/b.upstream=https://x")},
                     LIST("route name", "not valid"));
    load_one_problem(&(srcs){.argv = LIST("--egress.routes.a.max_queued=-1",
                                          "--egress.routes.a.upstream=https://x")},
                     LIST("egress.routes.a.max_queued"));
}

/* A literal credential never shows in a problem. */
static void test_secret_not_shown(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs s = {.argv = LIST("--egress.routes.a.credential=sk-canary-7f3a9",
                           "--egress.routes.a.upstream=ftp://x")};
    assert_int_equal(load(&cfg, &s, &p), 1);
    assert_null(strstr(p, "sk-canary-7f3a9"));
    free(p);
    sk_config_clear(&cfg);
}

/* `skiff config check` loads each https route's CA file: a missing one is a problem. */
static void test_check_ca_files(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--egress.listen=127.0.0.1:8088",
                           "--egress.routes.a.upstream=https://a.example",
                           "--egress.routes.a.ca_file=/nonexistent/ca.pem",
                           "--egress.routes.b.upstream=https://b.example")};
    load_ok(&cfg, &s);
    char *buf = NULL;
    size_t len;
    FILE *out = open_memstream(&buf, &len);
    assert_int_equal(sk_egress_check(&cfg, out), 1);
    fclose(out);
    expect_in(buf, "egress.routes.a.ca_file");
    expect_in(buf, "/nonexistent/ca.pem");
    free(buf);
    sk_config_clear(&cfg);
}

static void test_docs(void **state)
{
    (void)state;
    char *buf = NULL;
    size_t len;
    FILE *out = open_memstream(&buf, &len);
    sk_config_write_docs(out);
    fclose(out);
    expect_in(buf, "## Per-route egress settings");
    expect_in(buf, "- `upstream`: `egress.upstream`");
    expect_in(buf, "Can be [set per route](#per-route-egress-settings)");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_route_struct),
        cmocka_unit_test(test_defaults_and_globals),
        cmocka_unit_test(test_overrides_every_source),
        cmocka_unit_test(test_route_list_with_global_upstream),
        cmocka_unit_test(test_problems),
        cmocka_unit_test(test_secret_not_shown),
        cmocka_unit_test(test_check_ca_files),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
