/* Configuration value parsers: durations, sizes, booleans, addresses, and every row type's
 * parser and bounds. Includes config.c to reach the parsers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.c"
#include "config_test_helpers.h"

static void test_parse_duration(void **state)
{
    (void)state;
    assert_int_equal(sk_config_parse_duration("250ms"), 250);
    assert_int_equal(sk_config_parse_duration("30s"), 30000);
    assert_int_equal(sk_config_parse_duration("5m"), 300000);
    assert_int_equal(sk_config_parse_duration("1h"), 3600000);
    assert_int_equal(sk_config_parse_duration("1m30s"), 90000);
    assert_int_equal(sk_config_parse_duration("1500"), 1500);
    assert_int_equal(sk_config_parse_duration("0"), 0);
    assert_int_equal(sk_config_parse_duration("0s"), 0);
    static const char *const bad[] = {"",
                                      "s",
                                      "-5",
                                      "-5s",
                                      "+5",
                                      "5x",
                                      "5 s",
                                      " 5",
                                      "1.5s",
                                      "5sec",
                                      "5ms5",
                                      "5S",
                                      "1d",
                                      "ms",
                                      "999999999999999999999",
                                      "9223372036854775807h",
                                      NULL};
    for (size_t i = 0; bad[i]; i++)
        if (sk_config_parse_duration(bad[i]) != -1)
            fail_msg("duration \"%s\" accepted", bad[i]);
    assert_int_equal(sk_config_parse_duration(NULL), -1);
}

static void test_parse_size(void **state)
{
    (void)state;
    assert_int_equal(sk_config_parse_size("4MiB"), 4194304);
    assert_int_equal(sk_config_parse_size("64KiB"), 65536);
    assert_int_equal(sk_config_parse_size("1GiB"), 1073741824);
    assert_int_equal(sk_config_parse_size("4MB"), 4000000);
    assert_int_equal(sk_config_parse_size("2kB"), 2000);
    assert_int_equal(sk_config_parse_size("8Mi"), 8388608);
    assert_int_equal(sk_config_parse_size("100B"), 100);
    assert_int_equal(sk_config_parse_size("1234"), 1234);
    static const char *const bad[] = {"",
                                      "MiB",
                                      "4mib",
                                      "4 MiB",
                                      "-4MiB",
                                      "4.5MiB",
                                      "4TB",
                                      "4MiBs",
                                      "4M",
                                      "4k",
                                      "99999999999999999999GiB",
                                      NULL};
    for (size_t i = 0; bad[i]; i++)
        if (sk_config_parse_size(bad[i]) != -1)
            fail_msg("size \"%s\" accepted", bad[i]);
}

static void test_parse_bool(void **state)
{
    (void)state;
    static const char *const t[] = {"true", "TRUE", "yes", "on", "1", NULL};
    static const char *const f[] = {"false", "False", "no", "off", "0", NULL};
    for (size_t i = 0; t[i]; i++)
        assert_int_equal(sk_config_parse_bool(t[i]), 1);
    for (size_t i = 0; f[i]; i++)
        assert_int_equal(sk_config_parse_bool(f[i]), 0);
    assert_int_equal(sk_config_parse_bool("2"), -1);
    assert_int_equal(sk_config_parse_bool(""), -1);
    assert_int_equal(sk_config_parse_bool(NULL), -1);
    const row *r = find_row("zeebe.streaming");
    value v = {0};
    assert_int_equal(parse_text(r, "on", &v), OK);
    assert_int_equal(v.i, 1);
    assert_int_equal(parse_text(r, "maybe", &v), BAD);
    char exp[128];
    fmt_expected(r, exp, sizeof exp);
    assert_string_equal(exp, "true or false");
}

static void test_parse_address(void **state)
{
    (void)state;
    char host[64];
    int port;
    assert_int_equal(sk_config_parse_address("gw.example.com:26500", host, sizeof host, &port), 0);
    assert_string_equal(host, "gw.example.com");
    assert_int_equal(port, 26500);
    assert_int_equal(sk_config_parse_address("[::1]:0", host, sizeof host, &port), 0);
    assert_string_equal(host, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(sk_config_parse_address("10.0.0.1:65535", host, sizeof host, &port), 0);
    static const char *const bad[] = {"gw",           "gw:",    ":80",     "gw:65536", "gw:-1",
                                      "gw:8o",        "::1:80", "[::1]80", "[gw]:80",  "g w:80",
                                      "http://gw:80", "[]:80",  "gw:80 ",  NULL};
    for (size_t i = 0; bad[i]; i++)
        if (sk_config_parse_address(bad[i], host, sizeof host, &port) != -1)
            fail_msg("address \"%s\" accepted", bad[i]);
    assert_int_equal(sk_config_parse_address("averyveryverylonghostname:1", host, 8, &port), -1);
}

static void test_row_parsers_and_bounds(void **state)
{
    (void)state;
    static const struct {
        const char *key, *text;
        int rc;
    } cases[] = {
        {"zeebe.max_jobs_active", "1", OK},
        {"zeebe.max_jobs_active", "10000", OK},
        {"zeebe.max_jobs_active", "0", RANGE},
        {"zeebe.max_jobs_active", "10001", RANGE},
        {"zeebe.max_jobs_active", "-3", RANGE},
        {"zeebe.max_jobs_active", "3x", BAD},
        {"zeebe.job_timeout", "1s", OK},
        {"zeebe.job_timeout", "999", RANGE},
        {"zeebe.request_timeout", "0", OK},
        {"zeebe.request_timeout", "2h", RANGE},
        {"grpc.keepalive", "0", OK},
        {"grpc.keepalive", "30s", OK},
        {"grpc.keepalive", "10s", RANGE},
        {"grpc.keepalive", "2h", RANGE},
        {"handler.max_frame", "1KiB", OK},
        {"handler.max_frame", "1023", RANGE},
        {"handler.max_frame", "64MiB", OK},
        {"handler.max_frame", "65MiB", RANGE},
        {"handler.max_frame", "big", BAD},
        {"kafka.producer_queue_size", "1MiB", OK},
        {"kafka.producer_queue_size", "1023KiB", RANGE},
        {"kafka.producer_queue_size", "1GiB", OK},
        {"kafka.producer_queue_size", "1025MiB", RANGE},
        {"log.level", "Debug", OK},
        {"log.level", "trace", BAD},
        {"service.name", "", RANGE},
        {"handler.socket", "/tmp/s.sock", OK},
        {"zeebe.address", "gw:0", RANGE},
        {"admin.address", "127.0.0.1:0", OK},
        {"admin.address", "localhost", BAD},
        {"zeebe.job_types", "", OK},
        {"zeebe.job_types", " a , b ", OK},
        {"zeebe.job_types", "a,b,a", BAD},
        {"zeebe.fetch_variables", "a,b,a", OK},
        {"zeebe.tenant_ids", "<default>,t1", OK},
        {"zeebe.streaming", "yes", OK},
        {"zeebe.streaming", "sometimes", BAD},
        {"zeebe.stream_recycle", "0", OK},
        {"zeebe.stream_recycle", "10s", OK},
        {"zeebe.stream_recycle", "9s", RANGE},
        {"zeebe.stream_recycle", "24h", OK},
        {"zeebe.stream_recycle", "25h", RANGE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        value v = {0};
        int rc = parse_text(find_row(cases[i].key), cases[i].text, &v);
        if (rc != cases[i].rc)
            fail_msg("%s = \"%s\": got %d, expected %d", cases[i].key, cases[i].text, rc,
                     cases[i].rc);
        value_clear(&v);
    }
    char long_path[200];
    memset(long_path, 'a', sizeof long_path - 1);
    long_path[sizeof long_path - 1] = '\0';
    value v = {0};
    assert_int_equal(parse_text(find_row("handler.socket"), long_path, &v), RANGE);
    char many[400] = "";
    for (int i = 0; i < 101; i++)
        snprintf(many + strlen(many), sizeof many - strlen(many), "%s%d", i ? "," : "", i);
    assert_int_equal(parse_text(find_row("zeebe.job_types"), many, &v), RANGE);
    value_clear(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_row_parsers_and_bounds),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
