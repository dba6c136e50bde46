/* Configuration: the table, the defaults, the zeebe keys of activation and streaming, problem
 * reporting and the generated docs. Includes config.c to reach the table. The sources and their
 * precedence are tested in test_config_sources.c, the value parsers in test_config_parse.c,
 * the settings of each area in test_config_<area>.c. */
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
    assert_int_equal(NROWS, 139);
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
        cmocka_unit_test(test_zeebe_activation_keys),
        cmocka_unit_test(test_all_problems_at_once),
        cmocka_unit_test(test_cross_check),
        cmocka_unit_test(test_problem_value_is_quoted_and_cut),
        cmocka_unit_test(test_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
