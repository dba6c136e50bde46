/* Metrics registry: exposition of counters, gauges and histograms, escaping, name checks, and
 * `promtool check metrics` on the rendered text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/metrics.h"

#define L(...) ((const char *const[]){__VA_ARGS__, NULL})

static char *render(sk_metrics *r)
{
    size_t len = 0;
    char *text = sk_metrics_render(r, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    return text;
}

static void expect_render(sk_metrics *r, const char *expected)
{
    char *text = render(r);
    assert_string_equal(text, expected);
    free(text);
}

static void test_counter(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    sk_metric *m = sk_metrics_counter(r, "skiff_tasks_total", "Tasks received.", NULL);
    assert_non_null(m);
    expect_render(r, "# HELP skiff_tasks_total Tasks received.\n"
                     "# TYPE skiff_tasks_total counter\n"
                     "skiff_tasks_total 0\n");
    sk_series *s = sk_metric_series(m, NULL);
    assert_ptr_equal(s, sk_metric_series(m, NULL));
    sk_series_add(s, 1);
    sk_series_add(s, 2.5);
    sk_series_add(s, -10); /* counters never go down */
    sk_series_set(s, 100); /* set is for gauges */
    sk_series_observe(s, 1);
    assert_true(sk_series_value(s) == 3.5);
    expect_render(r, "# HELP skiff_tasks_total Tasks received.\n"
                     "# TYPE skiff_tasks_total counter\n"
                     "skiff_tasks_total 3.5\n");
    sk_metrics_free(r);
}

static void test_labelled_series_order(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    sk_metric *m =
        sk_metrics_counter(r, "skiff_jobs_total", "Jobs by result.", L("job_type", "result"));
    sk_metric *g = sk_metrics_gauge(r, "skiff_handlers", "Connected handlers.", NULL);
    assert_null(sk_metric_series(m, NULL));
    sk_series *b = sk_metric_series(m, L("b", "ok"));
    sk_series *a = sk_metric_series(m, L("a", "failed"));
    assert_ptr_equal(sk_metric_series(m, L("b", "ok")), b);
    assert_ptr_not_equal(a, b);
    sk_series_add(b, 2);
    sk_series_add(a, 1);
    sk_series_set(sk_metric_series(g, NULL), 4);
    expect_render(r, "# HELP skiff_jobs_total Jobs by result.\n"
                     "# TYPE skiff_jobs_total counter\n"
                     "skiff_jobs_total{job_type=\"b\",result=\"ok\"} 2\n"
                     "skiff_jobs_total{job_type=\"a\",result=\"failed\"} 1\n"
                     "# HELP skiff_handlers Connected handlers.\n"
                     "# TYPE skiff_handlers gauge\n"
                     "skiff_handlers 4\n");
    sk_metrics_free(r);
}

static void test_family_without_series(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    assert_non_null(sk_metrics_gauge(r, "skiff_lag", "Lag.", L("topic")));
    expect_render(r, "# HELP skiff_lag Lag.\n# TYPE skiff_lag gauge\n");
    sk_metrics_free(r);
    r = sk_metrics_new();
    expect_render(r, "");
    sk_metrics_free(r);
}

static void test_gauge_numbers(void **state)
{
    (void)state;
    static const struct {
        double v;
        const char *text;
    } cases[] = {
        {0, "0"},
        {-0.0, "0"},
        {42, "42"},
        {-7, "-7"},
        {0.1, "0.1"},
        {2.5, "2.5"},
        {1e-7, "1e-07"},
        {1e20, "1e+20"},
        {123456789012345, "123456789012345"},
        {1.0 / 3, "0.3333333333333333"},
        {INFINITY, "+Inf"},
        {-INFINITY, "-Inf"},
        {NAN, "NaN"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sk_metrics *r = sk_metrics_new();
        sk_series *s = sk_metric_series(sk_metrics_gauge(r, "g", "G.", NULL), NULL);
        sk_series_set(s, cases[i].v);
        char expected[128];
        snprintf(expected, sizeof expected, "# HELP g G.\n# TYPE g gauge\ng %s\n", cases[i].text);
        expect_render(r, expected);
        sk_metrics_free(r);
    }
}

static void test_histogram(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    const double b[] = {0.1, 1, 2.5};
    sk_metric *h =
        sk_metrics_histogram(r, "skiff_task_seconds", "Task latency.", L("job_type"), b, 3);
    sk_series *s = sk_metric_series(h, L("score"));
    sk_series_observe(s, 0.05);
    sk_series_observe(s, 0.1); /* le is inclusive */
    sk_series_observe(s, 2);
    sk_series_observe(s, 7);
    sk_series_add(s, 5); /* not for histograms */
    assert_true(sk_series_value(s) == 4);
    expect_render(r, "# HELP skiff_task_seconds Task latency.\n"
                     "# TYPE skiff_task_seconds histogram\n"
                     "skiff_task_seconds_bucket{job_type=\"score\",le=\"0.1\"} 2\n"
                     "skiff_task_seconds_bucket{job_type=\"score\",le=\"1\"} 2\n"
                     "skiff_task_seconds_bucket{job_type=\"score\",le=\"2.5\"} 3\n"
                     "skiff_task_seconds_bucket{job_type=\"score\",le=\"+Inf\"} 4\n"
                     "skiff_task_seconds_sum{job_type=\"score\"} 9.15\n"
                     "skiff_task_seconds_count{job_type=\"score\"} 4\n");
    sk_metrics_free(r);

    r = sk_metrics_new();
    h = sk_metrics_histogram(r, "skiff_call_seconds", "Calls.", NULL, sk_metrics_latency_buckets,
                             sk_metrics_latency_nbuckets);
    sk_series_observe(sk_metric_series(h, NULL), 0.0003);
    char *text = render(r);
    assert_non_null(strstr(text, "skiff_call_seconds_bucket{le=\"0.0001\"} 0\n"
                                 "skiff_call_seconds_bucket{le=\"0.00025\"} 0\n"
                                 "skiff_call_seconds_bucket{le=\"0.0005\"} 1\n"));
    assert_non_null(strstr(text, "skiff_call_seconds_bucket{le=\"60\"} 1\n"
                                 "skiff_call_seconds_bucket{le=\"+Inf\"} 1\n"
                                 "skiff_call_seconds_sum 0.0003\n"
                                 "skiff_call_seconds_count 1\n"));
    free(text);
    sk_metrics_free(r);
}

#define TRACE_A "4bf92f3577b34da6a3ce929d0e0e4736"
#define SPAN_A "00f067aa0ba902b7"
#define TRACE_B "0af7651916cd43dd8448eb211c80319c"
#define SPAN_B "b7ad6b7169203331"

/* Exemplars: one per bucket, the latest; shown in OpenMetrics only, with "# EOF", counter
 * families named without "_total" and " escaped in HELP. */
static void test_openmetrics_exemplars(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    sk_metric *c =
        sk_metrics_counter(r, "skiff_results_total", "Results by \"result\".", L("result"));
    sk_series_add(sk_metric_series(c, L("ok")), 2);
    const double b[] = {0.1, 1};
    sk_metric *h = sk_metrics_histogram(r, "skiff_task_seconds", "Latency.", L("route"), b, 2);
    sk_series *s = sk_metric_series(h, L("score"));
    sk_series_observe_exemplar(s, 0.05, TRACE_A, SPAN_A);
    sk_series_observe_exemplar(s, 0.5, TRACE_A, SPAN_A);
    sk_series_observe_exemplar(s, 0.7, TRACE_B, SPAN_B); /* replaces the bucket's exemplar */
    sk_series_observe(s, 0.08);                          /* keeps the bucket's exemplar */
    sk_series_observe_exemplar(s, 3, TRACE_B, NULL);     /* a trace without a span id */
    sk_series_observe_exemplar(s, 0.01, "4BF92F3577B34DA6A3CE929D0E0E4736", SPAN_A); /* refused */
    sk_series_observe_exemplar(s, 0.01, TRACE_A, "00f067aa");                        /* refused */
    assert_true(sk_series_value(s) == 7);

    size_t len = 0;
    char *om = sk_metrics_render_openmetrics(r, &len);
    assert_non_null(om);
    assert_int_equal(strlen(om), len);
    const char *want =
        "# HELP skiff_results Results by \\\"result\\\".\n"
        "# TYPE skiff_results counter\n"
        "skiff_results_total{result=\"ok\"} 2\n"
        "# HELP skiff_task_seconds Latency.\n"
        "# TYPE skiff_task_seconds histogram\n"
        "skiff_task_seconds_bucket{route=\"score\",le=\"0.1\"} 4 # {trace_id=\"" TRACE_A
        "\",span_id=\"" SPAN_A "\"} 0.05 \n"
        "skiff_task_seconds_bucket{route=\"score\",le=\"1\"} 6 # {trace_id=\"" TRACE_B
        "\",span_id=\"" SPAN_B "\"} 0.7 \n"
        "skiff_task_seconds_bucket{route=\"score\",le=\"+Inf\"} 7 # {trace_id=\"" TRACE_B "\"} 3 \n"
        "skiff_task_seconds_sum{route=\"score\"} 4.35\n"
        "skiff_task_seconds_count{route=\"score\"} 7\n"
        "# EOF\n";
    /* Each exemplar line ends in " <unix seconds with millis>", which the test checks apart. */
    char stripped[4096];
    size_t n = 0;
    for (const char *line = om; *line && n < sizeof stripped - 1;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        size_t k = (size_t)(end - line);
        if (strstr(line, " # {") && strstr(line, " # {") < end) {
            const char *sp = end;
            while (sp > line && sp[-1] != ' ')
                sp--;
            double at = strtod(sp, NULL);
            assert_true(at > 1.6e9 && at < 1e10); /* wall-clock seconds, not monotonic */
            k = (size_t)(sp - line);
        }
        assert_true(n + k + 1 < sizeof stripped);
        memcpy(stripped + n, line, k);
        n += k;
        stripped[n++] = '\n';
        line = end + 1;
    }
    stripped[n] = '\0';
    assert_string_equal(stripped, want);
    free(om);

    /* The text format 0.0.4 is unchanged: no exemplars, no EOF, counters named with _total. */
    expect_render(r, "# HELP skiff_results_total Results by \"result\".\n"
                     "# TYPE skiff_results_total counter\n"
                     "skiff_results_total{result=\"ok\"} 2\n"
                     "# HELP skiff_task_seconds Latency.\n"
                     "# TYPE skiff_task_seconds histogram\n"
                     "skiff_task_seconds_bucket{route=\"score\",le=\"0.1\"} 4\n"
                     "skiff_task_seconds_bucket{route=\"score\",le=\"1\"} 6\n"
                     "skiff_task_seconds_bucket{route=\"score\",le=\"+Inf\"} 7\n"
                     "skiff_task_seconds_sum{route=\"score\"} 4.35\n"
                     "skiff_task_seconds_count{route=\"score\"} 7\n");
    /* Exemplars only on histograms. */
    sk_series_observe_exemplar(sk_metric_series(c, L("ok")), 1, TRACE_A, SPAN_A);
    om = sk_metrics_render_openmetrics(r, NULL);
    assert_non_null(strstr(om, "skiff_results_total{result=\"ok\"} 2\n"));
    free(om);
    sk_metrics_free(r);

    /* An empty registry is still a valid exposition. */
    r = sk_metrics_new();
    om = sk_metrics_render_openmetrics(r, NULL);
    assert_string_equal(om, "# EOF\n");
    free(om);
    sk_metrics_free(r);
}

static void test_escaping(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    sk_metric *m = sk_metrics_counter(r, "x_total", "Back\\slash \"quoted\"\nnext line.", L("v"));
    sk_series_add(sk_metric_series(m, L("a\\b\"c\nd")), 1);
    sk_series_add(sk_metric_series(m, L("bad\xff utf8")), 1);
    sk_series_add(sk_metric_series(m, L("")), 1);
    expect_render(r, "# HELP x_total Back\\\\slash \"quoted\"\\nnext line.\n"
                     "# TYPE x_total counter\n"
                     "x_total{v=\"a\\\\b\\\"c\\nd\"} 1\n"
                     "x_total{v=\"bad\xef\xbf\xbd utf8\"} 1\n"
                     "x_total{v=\"\"} 1\n");
    sk_metrics_free(r);
}

static void test_invalid_names(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    const double asc[] = {1, 2}, desc[] = {2, 1}, nan[] = {NAN}, inf[] = {1, INFINITY};
    assert_null(sk_metrics_counter(r, "skiff_tasks", "No _total.", NULL));
    assert_null(sk_metrics_gauge(r, "1abc", "Digit first.", NULL));
    assert_null(sk_metrics_gauge(r, "a-b", "Dash.", NULL));
    assert_null(sk_metrics_gauge(r, "", "Empty.", NULL));
    assert_null(sk_metrics_gauge(r, NULL, "Null.", NULL));
    assert_null(sk_metrics_gauge(r, "g", "Reserved label.", L("__name")));
    assert_null(sk_metrics_gauge(r, "g", "Digit label.", L("1a")));
    assert_null(sk_metrics_gauge(r, "g", "Colon label.", L("a:b")));
    assert_null(sk_metrics_gauge(r, "g", "Duplicate label.", L("a", "a")));
    assert_null(sk_metrics_histogram(r, "h", "le label.", L("le"), asc, 2));
    assert_null(sk_metrics_histogram(r, "h", "Descending.", NULL, desc, 2));
    assert_null(sk_metrics_histogram(r, "h", "NaN bucket.", NULL, nan, 1));
    assert_null(sk_metrics_histogram(r, "h", "Inf bucket.", NULL, inf, 2));
    assert_non_null(sk_metrics_gauge(r, "ns:g_1", "Colons are fine in metric names.", L("_a")));
    assert_null(sk_metrics_counter(NULL, "x_total", "No registry.", NULL));
    expect_render(r, "# HELP ns:g_1 Colons are fine in metric names.\n# TYPE ns:g_1 gauge\n");
    sk_metrics_free(r);
}

static void test_reregistration(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    const double b[] = {1, 2}, c[] = {1, 3};
    sk_metric *m = sk_metrics_counter(r, "x_total", "X.", L("a"));
    assert_ptr_equal(sk_metrics_counter(r, "x_total", "X again.", L("a")), m);
    assert_null(sk_metrics_counter(r, "x_total", "X.", L("b")));
    assert_null(sk_metrics_gauge(r, "x_total", "X.", L("a")));
    sk_metric *h = sk_metrics_histogram(r, "h_seconds", "H.", NULL, b, 2);
    assert_ptr_equal(sk_metrics_histogram(r, "h_seconds", "H.", NULL, b, 2), h);
    assert_null(sk_metrics_histogram(r, "h_seconds", "H.", NULL, c, 2));
    /* Sample names of a histogram are taken. */
    assert_null(sk_metrics_gauge(r, "h_seconds_count", "Clash.", NULL));
    assert_null(sk_metrics_gauge(r, "h_seconds_sum", "Clash.", NULL));
    assert_non_null(sk_metrics_gauge(r, "y_bucket", "Y.", NULL));
    assert_null(sk_metrics_histogram(r, "y", "Clash.", NULL, b, 2));
    sk_metrics_free(r);
    sk_metrics_free(NULL);
    assert_null(sk_metric_series(NULL, NULL));
    sk_series_add(NULL, 1);
    sk_series_set(NULL, 1);
    sk_series_observe(NULL, 1);
    assert_true(sk_series_value(NULL) == 0);
}

static void test_null_label_value(void **state)
{
    (void)state;
    sk_metrics *r = sk_metrics_new();
    sk_metric *m = sk_metrics_gauge(r, "g", "G.", L("a", "b"));
    const char *const vals[] = {"x", NULL};
    assert_null(sk_metric_series(m, vals));
    sk_metrics_free(r);
}

/* Runs promtool on text; returns its exit status and fills out with what it printed. */
/* Runs `command < file holding text`; its output in out, its exit code returned. */
static int check_with(const char *command, const char *text, char *out, size_t outlen)
{
    char path[] = "/tmp/skiff-test-metrics-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s < %s 2>&1", command, path);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    unlink(path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int promtool(const char *text, char *out, size_t outlen)
{
    return check_with("promtool check metrics", text, out, outlen);
}

/* The OpenMetrics parser of the reference Python client (Debian's python3-prometheus-client),
 * which checks the whole exposition: families, samples, exemplars, "# EOF". */
#define OM_PARSER                                                                                  \
    "/usr/bin/python3 -c 'import sys; from prometheus_client.openmetrics.parser import "           \
    "text_string_to_metric_families as p; fs = list(p(sys.stdin.read())); "                        \
    "print(sum(1 for f in fs for s in f.samples if s.exemplar), end=\"\")'"

static int have_om_parser(void)
{
    return system("/usr/bin/python3 -c 'import prometheus_client.openmetrics.parser' "
                  ">/dev/null 2>&1") == 0;
}

static void test_promtool(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        print_message("promtool not found: install Debian's prometheus package\n");
        skip();
    }
    sk_metrics *r = sk_metrics_new();
    sk_metric *c = sk_metrics_counter(r, "skiff_tasks_total", "Tasks by \"source\"\\result.\n",
                                      L("source", "result"));
    sk_series_add(sk_metric_series(c, L("zeebe", "ok")), 3);
    sk_series_add(sk_metric_series(c, L("ka\"fka\\\n", "failed")), 1);
    sk_series_set(sk_metric_series(sk_metrics_gauge(r, "skiff_handlers", "Handlers.", NULL), NULL),
                  2);
    sk_metric *g = sk_metrics_gauge(r, "skiff_kafka_lag", "Lag.", L("topic", "partition"));
    sk_series_set(sk_metric_series(g, L("t", "0")), NAN);
    sk_series_set(sk_metric_series(g, L("t", "1")), INFINITY);
    sk_series_set(sk_metric_series(g, L("t", "2")), 1e-9);
    sk_metrics_gauge(r, "skiff_empty", "No series yet.", L("x"));
    sk_metric *h = sk_metrics_histogram(r, "skiff_task_duration_seconds", "Latency.", L("job_type"),
                                        sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    for (int i = 0; i < 100; i++)
        sk_series_observe(sk_metric_series(h, L(i % 2 ? "a" : "b\xfe")), i * 0.013);
    sk_metrics_histogram(r, "skiff_empty_seconds", "No series yet.", L("x"),
                         sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    sk_series_observe(sk_metric_series(sk_metrics_histogram(r, "skiff_call_seconds", "Calls.", NULL,
                                                            sk_metrics_latency_buckets,
                                                            sk_metrics_latency_nbuckets),
                                       NULL),
                      0.5);
    char *text = render(r);
    char out[4096];
    int rc = promtool(text, out, sizeof out);
    if (rc != 0 || out[0])
        fail_msg("promtool exit %d:\n%s\non:\n%s", rc, out, text);
    free(text);
    sk_metrics_free(r);
}

static void test_openmetrics_parser(void **state)
{
    (void)state;
    if (!have_om_parser()) {
        print_message("OpenMetrics parser not found: install python3-prometheus-client\n");
        skip();
    }
    sk_metrics *r = sk_metrics_new();
    sk_metric *c = sk_metrics_counter(r, "skiff_tasks_total", "Tasks by \"source\"\\result.\n",
                                      L("source", "result"));
    sk_series_add(sk_metric_series(c, L("zeebe", "ok")), 3);
    sk_series_add(sk_metric_series(c, L("ka\"fka\\\n", "failed")), 1);
    sk_series_set(sk_metric_series(sk_metrics_gauge(r, "skiff_handlers", "Handlers.", NULL), NULL),
                  2);
    sk_metric *g = sk_metrics_gauge(r, "skiff_kafka_lag", "Lag.", L("topic", "partition"));
    sk_series_set(sk_metric_series(g, L("t", "0")), NAN);
    sk_series_set(sk_metric_series(g, L("t", "1")), 1e-9);
    sk_metrics_gauge(r, "skiff_empty", "No series yet.", L("x"));
    sk_metric *h = sk_metrics_histogram(r, "skiff_task_duration_seconds", "Latency.", L("job_type"),
                                        sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    for (int i = 0; i < 100; i++)
        sk_series_observe_exemplar(sk_metric_series(h, L(i % 2 ? "a" : "b\xfe")), i * 0.013,
                                   i % 3 ? TRACE_A : TRACE_B, i % 3 ? SPAN_A : NULL);
    sk_series_observe(sk_metric_series(sk_metrics_histogram(r, "skiff_call_seconds", "Calls.", NULL,
                                                            sk_metrics_latency_buckets,
                                                            sk_metrics_latency_nbuckets),
                                       NULL),
                      0.5);
    char *text = sk_metrics_render_openmetrics(r, NULL);
    char out[4096];
    int rc = check_with(OM_PARSER, text, out, sizeof out);
    /* The parser reads back every exemplar: one per bucket that was hit (the 50 observations
     * of each series, 0 to 1.287 s, fall in 7 buckets). */
    if (rc != 0 || strcmp(out, "14") != 0)
        fail_msg("OpenMetrics parser exit %d:\n%s\non:\n%s", rc, out, text);
    free(text);
    sk_metrics_free(r);
}

/* The parser refuses what the format forbids, or the test above proves nothing. */
static void test_openmetrics_parser_catches_bad_text(void **state)
{
    (void)state;
    if (!have_om_parser())
        skip();
    char out[4096];
    const char *good = "# TYPE x counter\nx_total 1 # {trace_id=\"a\"} 1 2.5\n# EOF\n";
    assert_int_equal(check_with(OM_PARSER, good, out, sizeof out), 0);
    assert_int_not_equal(check_with(OM_PARSER, "# TYPE x counter\nx_total 1\n", out, sizeof out),
                         0);
    assert_int_not_equal(
        check_with(OM_PARSER, "# TYPE x_total counter\nx_total 1\n# EOF\n", out, sizeof out), 0);
}

/* promtool itself must catch what we claim to avoid, or the test above proves nothing. */
static void test_promtool_catches_bad_text(void **state)
{
    (void)state;
    if (system("command -v promtool >/dev/null 2>&1") != 0)
        skip();
    char out[4096];
    assert_int_not_equal(promtool("# TYPE x counter\nx{a=\"1\" 1\n", out, sizeof out), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_labelled_series_order),
        cmocka_unit_test(test_family_without_series),
        cmocka_unit_test(test_gauge_numbers),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_openmetrics_exemplars),
        cmocka_unit_test(test_escaping),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_reregistration),
        cmocka_unit_test(test_null_label_value),
        cmocka_unit_test(test_promtool),
        cmocka_unit_test(test_promtool_catches_bad_text),
        cmocka_unit_test(test_openmetrics_parser),
        cmocka_unit_test(test_openmetrics_parser_catches_bad_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
