/* Configuration sources: the config file, the annotations file, the environment, the command
 * line, and their precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"
#include "core/log.h"
#include "config_test_helpers.h"

/* ---- config file ---- */

static void test_file_nested_and_flat(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"address\": \"gw:26500\", \"job_types\": [\"a\", \"b\"],"
                      " \"max_jobs_active\": 7, \"job_timeout\": 60000},"
                      " \"log.level\": \"debug\", \"zeebe.request_timeout\": \"1m\","
                      " \"handler\": {\"max_frame\": 2048}, \"grpc.max_message_size\": \"1MiB\","
                      " \"service\": {\"name\": \"underwriting\"}}"};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "gw:26500");
    assert_int_equal(cfg.zeebe_job_types_len, 2);
    assert_string_equal(cfg.zeebe_job_types[0], "a");
    assert_string_equal(cfg.zeebe_job_types[1], "b");
    assert_null(cfg.zeebe_job_types[2]);
    assert_int_equal(cfg.zeebe_max_jobs_active, 7);
    assert_int_equal(cfg.zeebe_job_timeout_ms, 60000);
    assert_int_equal(cfg.log_level, SK_LOG_DEBUG);
    assert_int_equal(cfg.zeebe_request_timeout_ms, 60000);
    assert_int_equal(cfg.handler_max_frame, 2048);
    assert_int_equal(cfg.grpc_max_message_bytes, 1024 * 1024);
    assert_string_equal(cfg.service_name, "underwriting");
    sk_config_clear(&cfg);
}

static void test_file_list_as_string(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"fetch_variables\": \"x, y,,x\"}}"};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_fetch_variables_len, 2);
    assert_string_equal(cfg.zeebe_fetch_variables[0], "x");
    assert_string_equal(cfg.zeebe_fetch_variables[1], "y");
    assert_null(cfg.zeebe_fetch_variables[2]);
    sk_config_clear(&cfg);
}

static void test_file_problems(void **state)
{
    (void)state;
    srcs s = {.file = "{\"zeebe\": {\"adress\": \"gw:1\"}}"};
    load_one_problem(&s, LIST("zeebe.adress: unknown key in file /tmp/", "zeebe.address?"));
    s.file = "{\"nothing.like.this\": 1}";
    load_one_problem(&s, LIST("nothing.like.this: unknown key in file"));
    s.file = "{\"zeebe\": {\"max_jobs_active\": 1.5}}";
    load_one_problem(&s, LIST("zeebe.max_jobs_active: value 1.5 from file", "not valid",
                              "expected an integer in 1..10000"));
    s.file = "{\"zeebe\": {\"job_types\": [\"a\", 3]}}";
    load_one_problem(&s, LIST("zeebe.job_types: value [\"a\",3]", "JSON array"));
    s.file = "{\"service.name\": 5}";
    load_one_problem(&s, LIST("service.name: value 5 from file", "expected a string"));
    s.file = "{\"zeebe\": {\"address\": {\"host\": \"x\"}}}";
    load_one_problem(&s, LIST("zeebe.address: value {\"host\":\"x\"}", "host:port"));
    s.file = "{\"zeebe\": {\"address\": \"a:1\"}, \"zeebe.address\": \"b:2\"}";
    load_one_problem(&s, LIST("zeebe.address: set more than once in file"));
    s.file = "{\"zeebe\": {\"job_timeout\": -5}}";
    load_one_problem(&s, LIST("zeebe.job_timeout: value -5 from file", "out of range"));
    s.file = "[1, 2]";
    load_one_problem(&s, LIST("expected a JSON object at the top level"));
    s.file = "{\"zeebe\": {\n  \"address\": }";
    load_one_problem(&s, LIST("line 2", "invalid JSON"));
    s.file = "";
    load_one_problem(&s, LIST("invalid JSON"));
    s.file = "{\"a\": 1, \"a\": 2}";
    load_one_problem(&s, LIST("invalid JSON", "duplicate"));
}

static void test_file_missing(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    sk_config_sources src = {.file_path = "/nonexistent/skiff.json",
                             .annotations_path = "/nonexistent/annotations"};
    size_t len;
    FILE *out = open_memstream(&p, &len);
    assert_int_equal(sk_config_load(&cfg, &src, out), 2);
    fclose(out);
    expect_in(p, "file /nonexistent/skiff.json: cannot be read: No such file or directory");
    expect_in(p, "annotations /nonexistent/annotations: cannot be read");
    assert_string_equal(cfg.zeebe_address, "127.0.0.1:26500");
    free(p);
    sk_config_clear(&cfg);
}

static void test_json_text_entry(void **state)
{
    (void)state;
    sk_config cfg;
    assert_int_equal(
        sk_config_load_json_text(&cfg, "{\"zeebe.max_jobs_active\": 3}", 28, "mem.json", NULL), 0);
    assert_int_equal(cfg.zeebe_max_jobs_active, 3);
    sk_config_clear(&cfg);
    assert_int_equal(sk_config_load_json_text(&cfg, "{", 1, NULL, NULL), 1);
    sk_config_clear(&cfg);
}

/* ---- annotations ---- */

static void test_annotations_source(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.annotations = "kubernetes.io/config.seen=\"2024-10-27T10:00:00Z\"\n"
                             "skiff.io/zeebe.job_types=\"score,price\"\n"
                             "\n"
                             "skiff.io/service.name=\"under\\\"writing\\u00e9\"\n"
                             "skiff.io/zeebe.max_jobs_active=\"12\""};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_job_types_len, 2);
    assert_string_equal(cfg.zeebe_job_types[1], "price");
    assert_string_equal(cfg.service_name, "under\"writing\xc3\xa9");
    assert_int_equal(cfg.zeebe_max_jobs_active, 12);
    sk_config_clear(&cfg);
}

static void test_annotations_problems(void **state)
{
    (void)state;
    srcs s = {.annotations = "a=\"1\"\nskiff.io/zeebe.max_job_active=\"3\"\n"};
    load_one_problem(&s, LIST("skiff.io/zeebe.max_job_active: unknown key in annotations /tmp/",
                              "line 2", "did you mean skiff.io/zeebe.max_jobs_active?"));
    s.annotations = "a=\"1\"\n\nskiff.io/zeebe.max_jobs_active=3\n";
    load_one_problem(&s, LIST("annotations /tmp/", "line 3: value is not a quoted string"));
    s.annotations = "skiff.io/zeebe.max_jobs_active=\"0\"";
    load_one_problem(&s, LIST("zeebe.max_jobs_active: value \"0\" from annotations /tmp/",
                              "line 1 is out of range: expected an integer in 1..10000"));
    s.annotations = "skiff.io/inject=\"true\"\nskiff.io/chart=\"skiff-0.1.0\"\n"
                    "skiff.io/injected=\"true\"\n";
    load_one_problem(&s, LIST("skiff.io/injected: unknown key in annotations /tmp/", "line 3"));
}

/* The Helm chart's marker annotations are accepted and set nothing. */
static void test_annotations_chart_markers(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.annotations = "skiff.io/inject=\"true\"\n"
                             "skiff.io/chart=\"skiff-0.1.0\"\n"
                             "skiff.io/zeebe.job_types=\"score\""};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_job_types_len, 1);
    assert_string_equal(cfg.zeebe_job_types[0], "score");
    sk_config_clear(&cfg);
}

/* ---- environment ---- */

static void test_env(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("PATH=/bin", "SKIFF_ZEEBE_JOB_TYPES=a,b,c", "SKIFF_LOG_LEVEL=WARN",
                          "SKIFF_HANDLER_MAX_FRAME=64KiB", "SKIFF_SHUTDOWN_GRACE_PERIOD=0",
                          "OTEL_SERVICE_NAME=otel-name", "ZEEBE_KEEP_ALIVE=60000",
                          "SKIFF_ADMIN_ADDRESS=[::1]:0", "SKIFF_CONFIG=/ignored.json")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_job_types_len, 3);
    assert_int_equal(cfg.log_level, SK_LOG_WARN);
    assert_int_equal(cfg.handler_max_frame, 65536);
    assert_int_equal(cfg.shutdown_grace_ms, 0);
    assert_string_equal(cfg.service_name, "otel-name");
    assert_int_equal(cfg.grpc_keepalive_ms, 60000);
    assert_string_equal(cfg.admin_address, "[::1]:0");
    sk_config_clear(&cfg);
}

static void test_env_alias_precedence(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("CAMUNDA_ZEEBE_ADDRESS=camunda:1", "ZEEBE_ADDRESS=zeebe:2",
                          "SKIFF_ZEEBE_ADDRESS=skiff:3")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "skiff:3");
    sk_config_clear(&cfg);
    s.env = LIST("CAMUNDA_ZEEBE_ADDRESS=camunda:1", "ZEEBE_ADDRESS=zeebe:2");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "zeebe:2");
    sk_config_clear(&cfg);
    s.env = LIST("CAMUNDA_ZEEBE_ADDRESS=camunda:1", "ZEEBE_ADDRESS=");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "camunda:1");
    sk_config_clear(&cfg);
    s.env = LIST("OTEL_SERVICE_NAME=otel", "SKIFF_SERVICE_NAME=skiff-name");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.service_name, "skiff-name");
    sk_config_clear(&cfg);
    /* A shadowed alias is not read, so its value cannot be a problem. */
    s.env = LIST("ZEEBE_ADDRESS=grpcs://gw:443/x", "SKIFF_ZEEBE_ADDRESS=gw:26500");
    load_ok(&cfg, &s);
    sk_config_clear(&cfg);
    s.env = LIST("ZEEBE_ADDRESS=nohost");
    load_one_problem(&s, LIST("zeebe.address: value \"nohost\" from environment ZEEBE_ADDRESS "
                              "is not valid: expected host:port"));
}

/* ---- command line ---- */

static void test_cli(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--zeebe.address=gw:1", "--config", "/x.json", "--log.level", "error",
                           "--annotations=/y", "--zeebe.job_types=", "--service.name", "a=b")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "gw:1");
    assert_int_equal(cfg.log_level, SK_LOG_ERROR);
    assert_int_equal(cfg.zeebe_job_types_len, 0);
    assert_string_equal(cfg.service_name, "a=b");
    sk_config_clear(&cfg);
}

static void test_cli_problems(void **state)
{
    (void)state;
    srcs s = {.argv = LIST("--zeebe.adress=gw:1")};
    load_one_problem(&s, LIST("--zeebe.adress: unknown option on the command line",
                              "did you mean --zeebe.address?"));
    s.argv = LIST("--log.level");
    load_one_problem(&s, LIST("--log.level: missing value on the command line",
                              "expected --log.level=<value> or --log.level <value>"));
    s.argv = LIST("--log.level", "--service.name=x");
    load_one_problem(&s, LIST("--log.level: missing value"));
    s.argv = LIST("stray");
    load_one_problem(&s, LIST("\"stray\": unexpected argument on the command line"));
    s.argv = LIST("--log.level=verbose");
    load_one_problem(&s, LIST("log.level: value \"verbose\" from command line --log.level is "
                              "not valid: expected one of debug, info, warn, error"));
    s.argv = LIST("--grpc.keepalive=10s");
    load_one_problem(&s, LIST("grpc.keepalive: value \"10s\" from command line --grpc.keepalive "
                              "is out of range: expected 0 or a duration such as 250ms, 30s, 5m "
                              "or 1h (a bare integer is milliseconds) in 30s..1h"));
    s.argv = LIST("--zeebe.address=gw:0");
    load_one_problem(&s, LIST("expected host:port or [ipv6]:port with a port in 1..65535"));
    s.argv = LIST("--bogus", "value");
    load_one_problem(&s, LIST("--bogus: unknown option on the command line"));
    char long_opt[300] = "--zeebe.jobs.";
    memset(long_opt + 13, 'x', 270);
    memcpy(long_opt + 283, ".streaming=on", 14);
    s.argv = LIST(long_opt);
    load_one_problem(&s, LIST("\"--zeebe.jobs.xxx", "...\": option name longer than 255 bytes "
                                                    "on the command line"));
}

/* ---- precedence across all sources ---- */

static void test_precedence(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"address\": \"file:1\", \"max_jobs_active\": 1},"
                      " \"log.level\": \"debug\", \"service.name\": \"file\"}",
              .annotations = "skiff.io/zeebe.address=\"ann:2\"\n"
                             "skiff.io/zeebe.max_jobs_active=\"2\"\n"
                             "skiff.io/service.name=\"ann\"",
              .env = LIST("ZEEBE_ADDRESS=env:3", "SKIFF_ZEEBE_MAX_JOBS_ACTIVE=3"),
              .argv = LIST("--zeebe.address", "cli:4")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "cli:4");
    assert_int_equal(cfg.zeebe_max_jobs_active, 3);
    assert_string_equal(cfg.service_name, "ann");
    assert_int_equal(cfg.log_level, SK_LOG_DEBUG);
    assert_string_equal(cfg.handler_socket, "/run/skiff/handler.sock");
    sk_config_clear(&cfg);
    s.argv = NULL;
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "env:3");
    sk_config_clear(&cfg);
    s.env = NULL;
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "ann:2");
    assert_int_equal(cfg.zeebe_max_jobs_active, 2);
    sk_config_clear(&cfg);
    s.annotations = NULL;
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_address, "file:1");
    assert_int_equal(cfg.zeebe_max_jobs_active, 1);
    sk_config_clear(&cfg);
}

/* An invalid value keeps the last valid one (here the file's) and is reported. */
static void test_invalid_keeps_previous(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs s = {.file = "{\"zeebe.max_jobs_active\": 5}",
              .env = LIST("SKIFF_ZEEBE_MAX_JOBS_ACTIVE=lots")};
    assert_int_equal(load(&cfg, &s, &p), 1);
    assert_int_equal(cfg.zeebe_max_jobs_active, 5);
    free(p);
    sk_config_clear(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file_nested_and_flat),
        cmocka_unit_test(test_file_list_as_string),
        cmocka_unit_test(test_file_problems),
        cmocka_unit_test(test_file_missing),
        cmocka_unit_test(test_json_text_entry),
        cmocka_unit_test(test_annotations_source),
        cmocka_unit_test(test_annotations_problems),
        cmocka_unit_test(test_annotations_chart_markers),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_env_alias_precedence),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_cli_problems),
        cmocka_unit_test(test_precedence),
        cmocka_unit_test(test_invalid_keeps_previous),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
