/* Configuration: the table, every source and their precedence, every value parser, problem
 * reporting. Includes config.c to reach the table; the per-job-type settings are tested in
 * test_config_jobs.c. */
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
#include "core/log.h"
#include "config_test_helpers.h"

/* ---- the table ---- */

static void test_table_rows(void **state)
{
    (void)state;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        assert_non_null(r->key);
        if (!r->help || strlen(r->help) < 20)
            fail_msg("%s: help text missing or too short", r->key);
        assert_null(strchr(r->help, '|'));
        for (size_t j = 0; j < i; j++)
            if (strcmp(sk_config_table[j].key, r->key) == 0)
                fail_msg("key %s appears twice", r->key);
        /* The default goes through the same parser and must be in bounds. */
        value v = {0};
        if (parse_text(r, r->def, &v) != OK)
            fail_msg("%s: default \"%s\" is not a valid value", r->key, r->def);
        value_clear(&v);
        assert_true(r->min <= r->max || r->type == T_ENUM || r->type == T_BOOL);
        if (r->type == T_ENUM)
            assert_non_null(r->choices);
        if (r->type == T_LIST)
            assert_true(r->off_len > 0);
        if (r->flags & F_PER_JOB) {
            if (strncmp(r->key, "zeebe.", 6) != 0 || strchr(r->key + 6, '.'))
                fail_msg("%s: a per-job-type row must be zeebe.<setting>", r->key);
            assert_true(r->job_off > 0);
            if (r->type == T_LIST)
                assert_true(r->job_off_len > 0);
        }
    }
}

/* Every byte of sk_config belongs to a row, except alignment padding. */
static void test_table_covers_struct(void **state)
{
    (void)state;
    unsigned char covered[sizeof(sk_config)] = {0};
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        size_t size = r->type == T_STRING || r->type == T_ADDRESS || r->type == T_LIST
                          ? sizeof(char *)
                      : r->type == T_ENUM || r->type == T_BOOL ? sizeof(int)
                                                               : sizeof(int64_t);
        for (size_t b = 0; b < size; b++) {
            assert_false(covered[r->off + b]);
            covered[r->off + b] = 1;
        }
        for (size_t b = 0; r->type == T_LIST && b < sizeof(size_t); b++)
            covered[r->off_len + b] = 1;
    }
    /* The resolved per-job-type and per-route settings are the only fields of no row. */
    memset(covered + offsetof(sk_config, zeebe_jobs), 1, sizeof(sk_job_type_config *));
    memset(covered + offsetof(sk_config, zeebe_jobs_len), 1, sizeof(size_t));
    memset(covered + offsetof(sk_config, egress_routes), 1, sizeof(sk_egress_route_config *));
    memset(covered + offsetof(sk_config, egress_routes_len), 1, sizeof(size_t));
    size_t gap = 0;
    for (size_t b = 0; b < sizeof(sk_config); b++) {
        gap = covered[b] ? 0 : gap + 1;
        if (gap >= sizeof(void *))
            fail_msg("bytes up to %zu of sk_config belong to no row", b);
    }
    assert_int_equal(NROWS, 138);
}

static void test_enum_matches_log_levels(void **state)
{
    (void)state;
    const row *r = find_row("log.level");
    for (int i = 0; r->choices[i]; i++)
        assert_int_equal(sk_log_level_parse(r->choices[i]), i);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {0};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.service_name, "skiff");
    assert_int_equal(cfg.log_level, SK_LOG_INFO);
    assert_string_equal(cfg.admin_address, "0.0.0.0:9464");
    assert_string_equal(cfg.handler_socket, "/run/skiff/handler.sock");
    assert_int_equal(cfg.handler_max_frame, 4 * 1024 * 1024);
    assert_int_equal(cfg.handler_hello_timeout_ms, 10000);
    assert_string_equal(cfg.zeebe_address, "127.0.0.1:26500");
    assert_non_null(cfg.zeebe_job_types);
    assert_null(cfg.zeebe_job_types[0]);
    assert_int_equal(cfg.zeebe_job_types_len, 0);
    assert_string_equal(cfg.zeebe_worker_name, "skiff");
    assert_int_equal(cfg.zeebe_job_timeout_ms, 300000);
    assert_int_equal(cfg.zeebe_max_jobs_active, 32);
    assert_int_equal(cfg.zeebe_request_timeout_ms, 20000);
    assert_non_null(cfg.zeebe_fetch_variables);
    assert_null(cfg.zeebe_fetch_variables[0]);
    assert_int_equal(cfg.zeebe_fetch_variables_len, 0);
    assert_non_null(cfg.zeebe_tenant_ids);
    assert_null(cfg.zeebe_tenant_ids[0]);
    assert_int_equal(cfg.zeebe_tenant_ids_len, 0);
    assert_int_equal(cfg.zeebe_streaming, 0);
    assert_int_equal(cfg.zeebe_stream_recycle_ms, 300000);
    assert_null(cfg.zeebe_jobs);
    assert_int_equal(cfg.zeebe_jobs_len, 0);
    assert_int_equal(cfg.zeebe_backoff_initial_ms, 100);
    assert_int_equal(cfg.zeebe_backoff_max_ms, 10000);
    assert_int_equal(cfg.grpc_max_message_bytes, 4 * 1024 * 1024);
    assert_int_equal(cfg.grpc_keepalive_ms, 45000);
    assert_int_equal(cfg.shutdown_grace_ms, 25000);
    sk_config_clear(&cfg);
    sk_config_clear(&cfg);
    assert_null(cfg.service_name);
}

static void test_worker_name_default(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("HOSTNAME=host-1", "POD_NAME=pod-7")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_worker_name, "pod-7");
    sk_config_clear(&cfg);
    s.env = LIST("HOSTNAME=host-1", "POD_NAME=");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_worker_name, "host-1");
    sk_config_clear(&cfg);
    s.env = LIST("SKIFF_ZEEBE_WORKER_NAME=w", "POD_NAME=pod-7");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_worker_name, "w");
    sk_config_clear(&cfg);
}

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

/* ---- zeebe keys of activation and streaming ---- */

static void test_zeebe_activation_keys(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"fetch_variables\": [\"applicant\", \"amount\"],"
                      " \"streaming\": true, \"stream_recycle\": 0}}",
              .env = LIST("SKIFF_ZEEBE_TENANT_IDS=<default>, t1")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_fetch_variables_len, 2);
    assert_string_equal(cfg.zeebe_fetch_variables[1], "amount");
    assert_int_equal(cfg.zeebe_tenant_ids_len, 2);
    assert_string_equal(cfg.zeebe_tenant_ids[0], "<default>");
    assert_string_equal(cfg.zeebe_tenant_ids[1], "t1");
    assert_int_equal(cfg.zeebe_streaming, 1);
    assert_int_equal(cfg.zeebe_stream_recycle_ms, 0);
    sk_config_clear(&cfg);
    s = (srcs){.annotations = "skiff.io/zeebe.streaming=\"on\"",
               .argv = LIST("--zeebe.stream_recycle=1h")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_streaming, 1);
    assert_int_equal(cfg.zeebe_stream_recycle_ms, 3600000);
    sk_config_clear(&cfg);
    s = (srcs){.argv = LIST("--zeebe.stream_recycle=5s")};
    load_one_problem(&s, LIST("zeebe.stream_recycle: value \"5s\" from command line "
                              "--zeebe.stream_recycle is out of range: expected 0 or a duration",
                              "in 10s..24h"));
    s = (srcs){.file = "{\"zeebe\": {\"streaming\": 1}}"};
    load_one_problem(&s, LIST("zeebe.streaming: value 1 from file", "expected true or false"));
}

/* ---- parsers ---- */

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

/* ---- reporting ---- */

static void test_all_problems_at_once(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs s = {.file = "{\"zeebe\": {\"job_timeout\": \"forever\"}}",
              .env = LIST("SKIFF_ZEEBE_MAX_JOBS_ACTIVE=0"),
              .argv = LIST("--handler.max_frame=1TB")};
    assert_int_equal(load(&cfg, &s, &p), 3);
    assert_int_equal(count_lines(p), 3);
    expect_in(p, "zeebe.max_jobs_active: value \"0\" from environment "
                 "SKIFF_ZEEBE_MAX_JOBS_ACTIVE is out of range: expected an integer in 1..10000\n");
    expect_in(p, "zeebe.job_timeout: value \"forever\" from file /tmp/");
    expect_in(p, "is not valid: expected a duration such as 250ms, 30s, 5m or 1h (a bare "
                 "integer is milliseconds) in 1s..168h\n");
    expect_in(p, "handler.max_frame: value \"1TB\" from command line --handler.max_frame is not "
                 "valid: expected a size such as");
    expect_in(p, "in 1KiB..64MiB\n");
    /* Invalid values leave the defaults in place. */
    assert_int_equal(cfg.zeebe_max_jobs_active, 32);
    assert_int_equal(cfg.zeebe_job_timeout_ms, 300000);
    free(p);
    sk_config_clear(&cfg);
}

static void test_cross_check(void **state)
{
    (void)state;
    srcs s = {.env = LIST("SKIFF_ZEEBE_BACKOFF_INITIAL=20s")};
    load_one_problem(&s, LIST("zeebe.backoff_initial: value \"20s\" from environment "
                              "SKIFF_ZEEBE_BACKOFF_INITIAL is larger than zeebe.backoff_max "
                              "(\"10s\" from default)"));
}

/* The consumer group's timings: defaults are librdkafka's, and they must nest. */
static void test_kafka_group_timings(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs ok = {.env = LIST("SKIFF_KAFKA_SESSION_TIMEOUT=6s")};
    assert_int_equal(load(&cfg, &ok, &p), 0);
    assert_int_equal(cfg.kafka_session_timeout_ms, 6000);
    assert_int_equal(cfg.kafka_heartbeat_ms, 3000);
    assert_int_equal(cfg.kafka_max_poll_ms, 300000);
    free(p);
    sk_config_clear(&cfg);
    srcs poll = {.argv = LIST("--kafka.max_poll_interval=10s")};
    load_one_problem(&poll, LIST("kafka.session_timeout: value \"45s\" from default is larger "
                                 "than kafka.max_poll_interval (\"10s\" from command line "
                                 "--kafka.max_poll_interval)"));
    srcs beat = {.argv = LIST("--kafka.heartbeat_interval=1m")};
    load_one_problem(&beat,
                     LIST("kafka.heartbeat_interval: value \"1m\" from command line "
                          "--kafka.heartbeat_interval is larger than kafka.session_timeout"));
}

/* OAuth for the gateway: Camunda's variables, the three settings go together. */
static void test_oauth_settings(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("CAMUNDA_CLIENT_ID=worker", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                          "CAMUNDA_OAUTH_URL=http://kc:8080/realms/r/protocol/openid-connect/token",
                          "CAMUNDA_TOKEN_AUDIENCE=zeebe-api", "ZEEBE_TOKEN_SCOPE=a b",
                          "CAMUNDA_OAUTH_TOKEN_REFRESH_THRESHOLD_MS=5000")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_client_id, "worker");
    assert_string_equal(cfg.zeebe_client_secret, "s3cret-canary");
    assert_string_equal(cfg.zeebe_token_url,
                        "http://kc:8080/realms/r/protocol/openid-connect/token");
    assert_string_equal(cfg.zeebe_token_audience, "zeebe-api");
    assert_string_equal(cfg.zeebe_token_scope, "a b");
    assert_int_equal(cfg.oauth_refresh_ahead_ms, 5000);
    /* the general OAuth client is the gateway's when unset */
    assert_string_equal(cfg.oauth_client_id, "worker");
    assert_string_equal(cfg.oauth_client_secret, "s3cret-canary");
    assert_string_equal(cfg.oauth_token_url,
                        "http://kc:8080/realms/r/protocol/openid-connect/token");
    sk_config_clear(&cfg);
    s.env = LIST("CAMUNDA_CLIENT_ID=worker", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                 "CAMUNDA_OAUTH_URL=http://kc/token");
    s.argv = LIST("--oauth.client_id=egress", "--oauth.client_secret=file:/dev/null",
                  "--oauth.token_url=https://other/token");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.oauth_client_id, "egress");
    assert_string_equal(cfg.oauth_client_secret, "file:/dev/null");
    assert_string_equal(cfg.oauth_token_url, "https://other/token");
    sk_config_clear(&cfg);
    s.argv = LIST("--oauth.client_id=egress");
    load_one_problem(&s, LIST("oauth.client_secret: empty while oauth.client_id is set"));
    s.argv = LIST("--oauth.client_secret=file:/dev/null");
    load_one_problem(&s, LIST("oauth.client_id: empty while oauth.client_secret is set"));
    s.argv = LIST("--oauth.token_url=kc/token");
    load_one_problem(&s, LIST("oauth.token_url: value \"kc/token\"", "http:// or https://"));
    s.argv = NULL;
    s.env = LIST("ZEEBE_CLIENT_ID=worker");
    char *p;
    assert_int_equal(load(&cfg, &s, &p), 2);
    expect_in(p, "zeebe.client_secret: empty while");
    expect_in(p, "zeebe.authorization_server_url: empty while");
    free(p);
    sk_config_clear(&cfg);
    s.env = LIST("ZEEBE_CLIENT_ID=w", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                 "ZEEBE_AUTHORIZATION_SERVER_URL=kc:8080/token");
    load_one_problem(
        &s, LIST("zeebe.authorization_server_url: value \"kc:8080/token\"", "http:// or https://"));
}

static void test_handler_call_settings(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--handler.secrets=vault:secret/app/*#token,vault:kv/db#password",
                           "--vault.address=https://vault:8200", "--vault.role=r",
                           "--handler.token_audiences=billing,search", "--oauth.client_id=c",
                           "--oauth.client_secret=file:/dev/null",
                           "--oauth.token_url=https://kc/token")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.handler_secrets_len, 2);
    assert_string_equal(cfg.handler_secrets[1], "vault:kv/db#password");
    assert_int_equal(cfg.handler_token_audiences_len, 2);
    sk_config_clear(&cfg);
    s.argv = LIST("--handler.secrets=vault:secret/a*#x", "--vault.address=https://vault:8200",
                  "--vault.role=r");
    load_one_problem(&s, LIST("handler.secrets: item \"vault:secret/a*#x\"", "`*` only"));
    s.argv = LIST("--handler.secrets=vault:secret/a#x");
    load_one_problem(&s, LIST("handler.secrets: set", "vault.address is empty"));
    s.argv = LIST("--handler.token_audiences=billing");
    load_one_problem(&s, LIST("handler.token_audiences: set", "oauth.client_id"));
}

static void test_literal_secrets(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("ZEEBE_CLIENT_ID=w", "ZEEBE_CLIENT_SECRET=canary-literal-4d1e",
                          "ZEEBE_AUTHORIZATION_SERVER_URL=https://kc/token",
                          "SKIFF_SECURITY_LITERAL_SECRETS=refuse")};
    char *p;
    /* one problem (oauth.client_secret is the same setting), naming key and source only */
    assert_int_equal(load(&cfg, &s, &p), 1);
    expect_in(p, "zeebe.client_secret: a literal secret (from environment ZEEBE_CLIENT_SECRET)");
    expect_in(p, "security.literal_secrets is refuse (from environment");
    assert_null(strstr(p, "canary-literal-4d1e"));
    free(p);
    sk_config_clear(&cfg);
    const char *keys[SK_LITERAL_SECRETS_MAX];
    s.argv = LIST("--schema_registry.password=canary-literal-4d1e",
                  "--zeebe.client_secret=file:/dev/null", "--security.literal_secrets=warn");
    load_ok(&cfg, &s);
    assert_int_equal(sk_config_literal_secrets(&cfg, keys), 1);
    assert_string_equal(keys[0], "schema_registry.password");
    sk_config_clear(&cfg);
    s.argv = LIST("--zeebe.client_secret=vault:secret/app#s", "--vault.address=https://v",
                  "--vault.role=r");
    load_ok(&cfg, &s);
    assert_int_equal(sk_config_literal_secrets(&cfg, keys), 0);
    sk_config_clear(&cfg);
}

static void test_problem_value_is_quoted_and_cut(void **state)
{
    (void)state;
    char long_val[300];
    memset(long_val, 'x', sizeof long_val - 1);
    long_val[sizeof long_val - 1] = '\0';
    char arg[340];
    snprintf(arg, sizeof arg, "--zeebe.max_jobs_active=%s", long_val);
    srcs s = {.argv = LIST(arg)};
    load_one_problem(&s, LIST("xxx...\" from command line"));
    s.argv = LIST("--zeebe.max_jobs_active=a\"b\nc");
    load_one_problem(&s, LIST("value \"a\\\"b\\x0ac\" from"));
}

/* ---- docs ---- */

static char *docs(void)
{
    char *buf;
    size_t len;
    FILE *out = open_memstream(&buf, &len);
    sk_config_write_docs(out);
    fclose(out);
    return buf;
}

static void test_docs(void **state)
{
    (void)state;
    char *a = docs(), *b = docs();
    assert_string_equal(a, b);
    for (size_t i = 0; i < NROWS; i++) {
        char cell[80];
        snprintf(cell, sizeof cell, "| `%s` |", sk_config_table[i].key);
        expect_in(a, cell);
    }
    expect_in(a, "`$POD_NAME`, else `$HOSTNAME`, else `skiff`");
    expect_in(a, "`SKIFF_ZEEBE_ADDRESS`, `ZEEBE_ADDRESS`, `CAMUNDA_ZEEBE_ADDRESS`");
    expect_in(a, "| `grpc.keepalive` | duration | `45s` | 0 or 30s..1h |");
    expect_in(a, "```json");
    expect_in(a, "skiff.io/zeebe.job_types");
    expect_in(a, "SKIFF_ZEEBE_MAX_JOBS_ACTIVE=64");
    expect_in(a, "--zeebe.address=");
    free(b);

    /* The committed reference must be what the table generates. */
    const char *root = getenv("SKIFF_SOURCE_DIR");
    if (root) {
        char path[4096];
        snprintf(path, sizeof path, "%s/docs/configuration.md", root);
        size_t len;
        char err[128];
        char *committed = read_file(path, &len, err, sizeof err);
        if (!committed)
            fail_msg("%s: %s", path, err);
        if (strcmp(committed, a) != 0)
            fail_msg("docs/configuration.md is stale: regenerate it with `skiff config docs`");
        free(committed);
    }
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_rows),
        cmocka_unit_test(test_table_covers_struct),
        cmocka_unit_test(test_enum_matches_log_levels),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_worker_name_default),
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
        cmocka_unit_test(test_zeebe_activation_keys),
        cmocka_unit_test(test_parse_duration),
        cmocka_unit_test(test_parse_size),
        cmocka_unit_test(test_parse_bool),
        cmocka_unit_test(test_parse_address),
        cmocka_unit_test(test_row_parsers_and_bounds),
        cmocka_unit_test(test_all_problems_at_once),
        cmocka_unit_test(test_cross_check),
        cmocka_unit_test(test_kafka_group_timings),
        cmocka_unit_test(test_oauth_settings),
        cmocka_unit_test(test_handler_call_settings),
        cmocka_unit_test(test_literal_secrets),
        cmocka_unit_test(test_problem_value_is_quoted_and_cut),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
