/* Per-job-type settings: overrides zeebe.jobs.<type>.<setting> from every source, their
 * precedence and problems, their resolution into sk_config.zeebe_jobs and their docs. */
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

/* ---- the table ---- */

/* Every field of sk_job_type_config but the type belongs to one per-job-type row, of the same
 * type as the global field. */
static void test_table_covers_job_struct(void **state)
{
    (void)state;
    unsigned char covered[sizeof(sk_job_type_config)] = {0};
    memset(covered + offsetof(sk_job_type_config, type), 1, sizeof(char *));
    size_t n = 0;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        if (!(r->flags & F_PER_JOB))
            continue;
        n++;
        size_t size = r->type == T_STRING || r->type == T_LIST ? sizeof(char *)
                      : r->type == T_BOOL                      ? sizeof(int)
                                                               : sizeof(int64_t);
        for (size_t b = 0; b < size; b++) {
            assert_false(covered[r->job_off + b]);
            covered[r->job_off + b] = 1;
        }
        for (size_t b = 0; r->type == T_LIST && b < sizeof(size_t); b++)
            covered[r->job_off_len + b] = 1;
    }
    size_t gap = 0;
    for (size_t b = 0; b < sizeof(sk_job_type_config); b++) {
        gap = covered[b] ? 0 : gap + 1;
        if (gap >= sizeof(void *))
            fail_msg("bytes up to %zu of sk_job_type_config belong to no row", b);
    }
    assert_int_equal(n, 7);
}

/* ---- per-job-type settings ---- */

/* The resolved settings of type, failing when cfg has none. */
static const sk_job_type_config *job(const sk_config *cfg, const char *type)
{
    for (size_t i = 0; i < cfg->zeebe_jobs_len; i++)
        if (strcmp(cfg->zeebe_jobs[i].type, type) == 0)
            return &cfg->zeebe_jobs[i];
    fail_msg("no resolved settings for job type \"%s\"", type);
    return NULL;
}

/* Checks that the settings of j are the global ones of cfg. */
static void expect_global(const sk_config *cfg, const sk_job_type_config *j)
{
    assert_string_equal(j->worker_name, cfg->zeebe_worker_name);
    assert_int_equal(j->job_timeout_ms, cfg->zeebe_job_timeout_ms);
    assert_int_equal(j->max_jobs_active, cfg->zeebe_max_jobs_active);
    assert_int_equal(j->request_timeout_ms, cfg->zeebe_request_timeout_ms);
    assert_int_equal(j->fetch_variables_len, cfg->zeebe_fetch_variables_len);
    for (size_t i = 0; i <= j->fetch_variables_len; i++)
        if (cfg->zeebe_fetch_variables[i])
            assert_string_equal(j->fetch_variables[i], cfg->zeebe_fetch_variables[i]);
        else
            assert_null(j->fetch_variables[i]);
    assert_int_equal(j->tenant_ids_len, cfg->zeebe_tenant_ids_len);
    assert_null(j->tenant_ids[j->tenant_ids_len]);
    assert_int_equal(j->streaming, cfg->zeebe_streaming);
}

static void test_jobs_resolve_globals(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("SKIFF_ZEEBE_JOB_TYPES=b,a.x", "SKIFF_ZEEBE_JOB_TIMEOUT=1m",
                          "SKIFF_ZEEBE_FETCH_VARIABLES=v1,v2", "POD_NAME=pod-7")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.zeebe_jobs_len, 2);
    assert_string_equal(cfg.zeebe_jobs[0].type, "b");
    assert_string_equal(cfg.zeebe_jobs[1].type, "a.x");
    for (size_t i = 0; i < 2; i++)
        expect_global(&cfg, &cfg.zeebe_jobs[i]);
    assert_string_equal(cfg.zeebe_jobs[0].worker_name, "pod-7");
    assert_int_equal(cfg.zeebe_jobs[1].job_timeout_ms, 60000);
    /* Each entry owns its values. */
    assert_ptr_not_equal(cfg.zeebe_jobs[0].fetch_variables, cfg.zeebe_fetch_variables);
    assert_ptr_not_equal(cfg.zeebe_jobs[1].worker_name, cfg.zeebe_worker_name);
    sk_config_clear(&cfg);
    assert_null(cfg.zeebe_jobs);
    assert_int_equal(cfg.zeebe_jobs_len, 0);
}

static void test_jobs_file_nested(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"job_types\": [\"underwriting.score\", \"price\"],"
                      " \"max_jobs_active\": 8, \"jobs\": {\"underwriting.score\":"
                      " {\"job_timeout\": \"10m\", \"max_jobs_active\": 2,"
                      " \"fetch_variables\": [\"applicant\", \"amount\"], \"streaming\": true,"
                      " \"worker_name\": \"scorer\", \"request_timeout\": 0,"
                      " \"tenant_ids\": \"t1,t2\"}}}}"};
    load_ok(&cfg, &s);
    const sk_job_type_config *j = job(&cfg, "underwriting.score");
    assert_int_equal(j->job_timeout_ms, 600000);
    assert_int_equal(j->max_jobs_active, 2);
    assert_int_equal(j->fetch_variables_len, 2);
    assert_string_equal(j->fetch_variables[0], "applicant");
    assert_string_equal(j->fetch_variables[1], "amount");
    assert_null(j->fetch_variables[2]);
    assert_int_equal(j->streaming, 1);
    assert_string_equal(j->worker_name, "scorer");
    assert_int_equal(j->request_timeout_ms, 0);
    assert_int_equal(j->tenant_ids_len, 2);
    assert_string_equal(j->tenant_ids[1], "t2");
    /* The other type and the global values are untouched. */
    expect_global(&cfg, job(&cfg, "price"));
    assert_int_equal(cfg.zeebe_max_jobs_active, 8);
    assert_int_equal(cfg.zeebe_job_timeout_ms, 300000);
    assert_int_equal(cfg.zeebe_streaming, 0);
    sk_config_clear(&cfg);
}

static void test_jobs_file_flat(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe.job_types\": \"a.b.c,d\","
                      " \"zeebe.jobs.a.b.c.job_timeout\": 120000,"
                      " \"zeebe.jobs\": {\"d.max_jobs_active\": \"3\"},"
                      " \"zeebe\": {\"jobs.a.b.c\": {\"streaming\": \"yes\"}}}"};
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "a.b.c")->job_timeout_ms, 120000);
    assert_int_equal(job(&cfg, "a.b.c")->streaming, 1);
    assert_int_equal(job(&cfg, "a.b.c")->max_jobs_active, 32);
    assert_int_equal(job(&cfg, "d")->max_jobs_active, 3);
    sk_config_clear(&cfg);
    s.file = "{\"zeebe\": {\"job_types\": [\"a\"], \"jobs\": {\"a\": {\"job_timeout\": \"1m\"}}},"
             " \"zeebe.jobs.a.job_timeout\": \"2m\"}";
    load_one_problem(&s, LIST("zeebe.jobs.a.job_timeout: set more than once in file /tmp/"));
}

static void test_jobs_annotations(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.annotations = "skiff.io/zeebe.job_types=\"underwriting.score,price\"\n"
                             "skiff.io/zeebe.jobs.underwriting.score.job_timeout=\"10m\"\n"
                             "skiff.io/zeebe.jobs.price.fetch_variables=\"amount\"\n"};
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "underwriting.score")->job_timeout_ms, 600000);
    assert_int_equal(job(&cfg, "underwriting.score")->fetch_variables_len, 0);
    assert_int_equal(job(&cfg, "price")->job_timeout_ms, 300000);
    assert_int_equal(job(&cfg, "price")->fetch_variables_len, 1);
    assert_string_equal(job(&cfg, "price")->fetch_variables[0], "amount");
    sk_config_clear(&cfg);
}

static void test_jobs_cli(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--zeebe.job_types=a.b,c", "--zeebe.jobs.a.b.max_jobs_active=5",
                           "--zeebe.jobs.c.worker_name", "w-c", "--zeebe.jobs.c.streaming=true")};
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "a.b")->max_jobs_active, 5);
    assert_string_equal(job(&cfg, "a.b")->worker_name, "skiff");
    assert_string_equal(job(&cfg, "c")->worker_name, "w-c");
    assert_int_equal(job(&cfg, "c")->streaming, 1);
    assert_int_equal(job(&cfg, "c")->max_jobs_active, 32);
    sk_config_clear(&cfg);
}

/* For each (type, setting) the later source wins: command line > annotations > file; an
 * override wins over a global value from any source, the environment included. */
static void test_jobs_precedence(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.file = "{\"zeebe\": {\"job_types\": [\"a\"], \"jobs\": {\"a\": {\"job_timeout\": "
                      "\"1m\", \"max_jobs_active\": 1, \"request_timeout\": \"1s\"}}}}",
              .annotations = "skiff.io/zeebe.jobs.a.job_timeout=\"2m\"\n"
                             "skiff.io/zeebe.jobs.a.max_jobs_active=\"2\"",
              .env = LIST("SKIFF_ZEEBE_MAX_JOBS_ACTIVE=9", "SKIFF_ZEEBE_STREAMING=on"),
              .argv = LIST("--zeebe.jobs.a.job_timeout=3m")};
    load_ok(&cfg, &s);
    const sk_job_type_config *j = job(&cfg, "a");
    assert_int_equal(j->job_timeout_ms, 180000);
    assert_int_equal(j->max_jobs_active, 2);
    assert_int_equal(j->request_timeout_ms, 1000);
    assert_int_equal(j->streaming, 1);
    assert_int_equal(cfg.zeebe_max_jobs_active, 9);
    sk_config_clear(&cfg);
    s.argv = NULL;
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "a")->job_timeout_ms, 120000);
    sk_config_clear(&cfg);
    s.annotations = NULL;
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "a")->job_timeout_ms, 60000);
    assert_int_equal(job(&cfg, "a")->max_jobs_active, 1);
    sk_config_clear(&cfg);
}

/* An invalid override is reported under its own key and source, like any value, and leaves
 * the previous valid one: another source's override, else the global value. */
static void test_jobs_invalid_value(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs s = {.env = LIST("SKIFF_ZEEBE_JOB_TYPES=a.b,c", "SKIFF_ZEEBE_JOB_TIMEOUT=1m"),
              .annotations = "skiff.io/zeebe.jobs.a.b.job_timeout=\"forever\"\n"
                             "skiff.io/zeebe.jobs.c.max_jobs_active=\"4\"",
              .argv = LIST("--zeebe.jobs.c.max_jobs_active=0")};
    assert_int_equal(load(&cfg, &s, &p), 2);
    expect_in(p, "zeebe.jobs.a.b.job_timeout: value \"forever\" from annotations /tmp/");
    expect_in(p, " line 1 is not valid: expected a duration such as 250ms, 30s, 5m or 1h (a bare "
                 "integer is milliseconds) in 1s..168h\n");
    expect_in(p, "zeebe.jobs.c.max_jobs_active: value \"0\" from command line "
                 "--zeebe.jobs.c.max_jobs_active is out of range: expected an integer in "
                 "1..10000\n");
    assert_int_equal(cfg.zeebe_jobs_len, 2);
    assert_int_equal(job(&cfg, "a.b")->job_timeout_ms, 60000);
    assert_int_equal(job(&cfg, "c")->max_jobs_active, 4);
    free(p);
    sk_config_clear(&cfg);
    s = (srcs){.file = "{\"zeebe\": {\"job_types\": [\"a\"],"
                       " \"jobs\": {\"a\": {\"fetch_variables\": [1]}}}}"};
    load_one_problem(&s, LIST("zeebe.jobs.a.fetch_variables: value [1] from file /tmp/",
                              "is not valid: expected a comma-separated list"));
    s.file = "{\"zeebe\": {\"job_types\": [\"a\"], \"jobs\": {\"a\": {\"streaming\": []}}}}";
    load_one_problem(&s, LIST("zeebe.jobs.a.streaming: value [] from file"));
}

static void test_jobs_unknown_setting(void **state)
{
    (void)state;
    srcs s = {.file = "{\"zeebe\": {\"job_types\": [\"a.b\"],"
                      " \"jobs\": {\"a.b\": {\"job_timout\": \"1m\"}}}}"};
    load_one_problem(&s, LIST("zeebe.jobs.a.b.job_timout: unknown key in file /tmp/",
                              "(did you mean zeebe.jobs.a.b.job_timeout?)"));
    s = (srcs){.annotations = "skiff.io/zeebe.jobs.a.max_job_active=\"3\""};
    load_one_problem(&s, LIST("skiff.io/zeebe.jobs.a.max_job_active: unknown key in annotations",
                              "(did you mean skiff.io/zeebe.jobs.a.max_jobs_active?)"));
    s = (srcs){.argv = LIST("--zeebe.jobs.a.colour=red")};
    load_one_problem(&s, LIST("--zeebe.jobs.a.colour: unknown option on the command line: "
                              "expected --zeebe.jobs.<type>.<setting>, <setting> one of "
                              "worker_name, job_timeout, max_jobs_active, request_timeout, "
                              "fetch_variables, tenant_ids, streaming"));
    /* A global-only setting is not a per-job-type one. */
    s.argv = LIST("--zeebe.jobs.a.backoff_max=1s");
    load_one_problem(&s, LIST("--zeebe.jobs.a.backoff_max: unknown option on the command line"));
    /* No type: the global key was most likely meant. */
    s = (srcs){.file = "{\"zeebe\": {\"jobs\": {\"job_timeout\": \"1m\"}}}"};
    load_one_problem(&s, LIST("zeebe.jobs.job_timeout: unknown key in file",
                              "expected zeebe.jobs.<type>.<setting>"));
    s.file = "{\"zeebe\": {\"jobs\": {\"a\": {\"b\": {\"nope\": 1}}}}}";
    load_one_problem(&s, LIST("zeebe.jobs.a.b.nope: unknown key in file"));
}

static void test_jobs_type_not_listed(void **state)
{
    (void)state;
    srcs s = {.env = LIST("SKIFF_ZEEBE_JOB_TYPES=a,b"),
              .argv = LIST("--zeebe.jobs.x.job_timeout=1m")};
    load_one_problem(&s, LIST("zeebe.jobs.x.job_timeout: job type \"x\" is not in "
                              "zeebe.job_types (\"a,b\" from environment SKIFF_ZEEBE_JOB_TYPES): "
                              "the value from command line --zeebe.jobs.x.job_timeout applies "
                              "to no job type"));
    s = (srcs){.file = "{\"zeebe.jobs.a.streaming\": true}"};
    load_one_problem(&s, LIST("zeebe.jobs.a.streaming: job type \"a\" is not in "
                              "zeebe.job_types (\"\" from default)"));
    /* Job types are compared whole. */
    s = (srcs){.annotations = "skiff.io/zeebe.job_types=\"a.b\"\n"
                              "skiff.io/zeebe.jobs.b.worker_name=\"w\""};
    load_one_problem(&s, LIST("job type \"b\" is not in zeebe.job_types (\"a.b\" from "
                              "annotations /tmp/"));
}

static void test_jobs_duplicate_types(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs s = {.file = "{\"zeebe\": {\"job_types\": [\"a\", \"b\"]}}",
              .env = LIST("SKIFF_ZEEBE_JOB_TYPES=a, b,a")};
    assert_int_equal(load(&cfg, &s, &p), 1);
    expect_in(p, "zeebe.job_types: value \"a, b,a\" from environment SKIFF_ZEEBE_JOB_TYPES is "
                 "not valid: expected a comma-separated list (in a config file also a JSON "
                 "array of strings) of at most 100 distinct items\n");
    /* The previous value stays and the job types still get their settings. */
    assert_int_equal(cfg.zeebe_job_types_len, 2);
    assert_int_equal(cfg.zeebe_jobs_len, 2);
    expect_global(&cfg, job(&cfg, "b"));
    free(p);
    sk_config_clear(&cfg);
    s = (srcs){.file = "{\"zeebe\": {\"job_types\": [\"a\", \"a\"]}}"};
    load_one_problem(&s, LIST("zeebe.job_types: value [\"a\",\"a\"] from file", "distinct"));
}

/* The environment has no per-job-type names: such a variable is not read. */
static void test_jobs_not_from_env(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("SKIFF_ZEEBE_JOB_TYPES=a", "SKIFF_ZEEBE_JOBS_A_JOB_TIMEOUT=1m")};
    load_ok(&cfg, &s);
    assert_int_equal(job(&cfg, "a")->job_timeout_ms, 300000);
    sk_config_clear(&cfg);
}

/* Overrides name at most as many job types as zeebe.job_types may list. */
static void test_jobs_bounded(void **state)
{
    (void)state;
    enum { N = 101 };
    char *args[N + 1] = {0};
    for (int i = 0; i < N; i++) {
        args[i] = malloc(64);
        snprintf(args[i], 64, "--zeebe.jobs.t%d.streaming=on", i);
    }
    sk_config cfg;
    char *p;
    srcs s = {.argv = (const char *const *)args};
    assert_int_equal(load(&cfg, &s, &p), N);
    expect_in(p, "zeebe.jobs.t100.streaming: value from command line --zeebe.jobs.t100.streaming "
                 "not stored: overrides name more than 100 job types");
    expect_in(p, "zeebe.jobs.t99.streaming: job type \"t99\" is not in zeebe.job_types");
    free(p);
    sk_config_clear(&cfg);
    for (int i = 0; i < N; i++)
        free(args[i]);
}

static void test_jobs_json_text_entry(void **state)
{
    (void)state;
    sk_config cfg;
    const char *text =
        "{\"zeebe\": {\"job_types\": \"a\", \"jobs\": {\"a\": {\"max_jobs_active\": 3},"
        " \"b\": {\"streaming\": true}}}}";
    assert_int_equal(sk_config_load_json_text(&cfg, text, strlen(text), "mem.json", NULL), 1);
    assert_int_equal(cfg.zeebe_jobs_len, 1);
    assert_int_equal(cfg.zeebe_jobs[0].max_jobs_active, 3);
    sk_config_clear(&cfg);
}

static void test_jobs_docs(void **state)
{
    (void)state;
    char *a;
    size_t len;
    FILE *out = open_memstream(&a, &len);
    sk_config_write_docs(out);
    fclose(out);
    expect_in(a, "\n## Per-job-type settings\n");
    expect_in(a, "- `job_timeout`: `zeebe.job_timeout`\n");
    expect_in(a, "skiff.io/zeebe.jobs.underwriting.score.job_timeout: \"10m\"");
    expect_in(a, "\"jobs\": {\n      \"underwriting.score\": {\"job_timeout\": \"10m\"");
    expect_in(a, "not read from the environment");
    expect_in(a, "Can be [set per job type](#per-job-type-settings). |\n| `zeebe.fetch_variables`");
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_covers_job_struct),
        cmocka_unit_test(test_jobs_resolve_globals),
        cmocka_unit_test(test_jobs_file_nested),
        cmocka_unit_test(test_jobs_file_flat),
        cmocka_unit_test(test_jobs_annotations),
        cmocka_unit_test(test_jobs_cli),
        cmocka_unit_test(test_jobs_precedence),
        cmocka_unit_test(test_jobs_invalid_value),
        cmocka_unit_test(test_jobs_unknown_setting),
        cmocka_unit_test(test_jobs_type_not_listed),
        cmocka_unit_test(test_jobs_duplicate_types),
        cmocka_unit_test(test_jobs_not_from_env),
        cmocka_unit_test(test_jobs_bounded),
        cmocka_unit_test(test_jobs_json_text_entry),
        cmocka_unit_test(test_jobs_docs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
