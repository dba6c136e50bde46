/* The batch span processor and OTLP/HTTP exporter against an in-process HTTP server: the
 * request (path, content type, configured headers, decodable body), retries on 503 only,
 * dropping on other statuses and on a full queue, and the shutdown flush. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include <event2/buffer.h>
#include <zlib.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http_test_server.h"
#include "otlp_trace.pb-c.h"
#include "trace/trace.h"

typedef struct {
    test_server srv;
    int requests, spans;
    const int *statuses; /* reply of request i (the last one repeats) */
    int nstatuses;
    char path[64], content_type[64], api_key[64], encoding[32];
    sk_metrics *metrics;
    sk_tracer *tracer;
} fixture;

static void on_request(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    int status = f->statuses[f->requests < f->nstatuses ? f->requests : f->nstatuses - 1];
    f->requests++;
    snprintf(f->path, sizeof f->path, "%s", evhttp_request_get_uri(req));
    copy_header(req, "Content-Type", f->content_type, sizeof f->content_type);
    copy_header(req, "x-api-key", f->api_key, sizeof f->api_key);
    copy_header(req, "Content-Encoding", f->encoding, sizeof f->encoding);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    uint8_t *body = evbuffer_pullup(in, (ev_ssize_t)len), plain[65536];
    if (strcmp(f->encoding, "gzip") == 0) { /* zlib's inflate, gzip wrapper (windowBits 31) */
        z_stream z = {
            .next_in = body, .avail_in = (uInt)len, .next_out = plain, .avail_out = sizeof plain};
        assert_int_equal(inflateInit2(&z, 31), Z_OK);
        assert_int_equal(inflate(&z, Z_FINISH), Z_STREAM_END);
        body = plain;
        len = z.total_out;
        inflateEnd(&z);
    }
    SkiffOtlp__ExportTraceServiceRequest *r =
        skiff_otlp__export_trace_service_request__unpack(NULL, len, body);
    assert_non_null(r);
    f->spans += (int)r->resource_spans[0]->scope_spans[0]->n_spans;
    skiff_otlp__export_trace_service_request__free_unpacked(r, NULL);
    if (status == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    evhttp_send_reply(req, status, "Status", NULL);
}

static int compression; /* otlp.compression of the next start: 0 none, 1 gzip */

static void start(fixture *f, const int *statuses, int n, int64_t max_queue, int64_t max_batch,
                  int64_t delay_ms)
{
    char url[128], err[256];
    memset(f, 0, sizeof *f);
    f->statuses = statuses;
    f->nstatuses = n;
    test_server_start(&f->srv, on_request, f);
    test_server_url(&f->srv, "", url, sizeof url);
    sk_config cfg = {.service_name = "svc",
                     .trace_sampler_arg = "1.0",
                     .trace_resource_attributes = "",
                     .otlp_endpoint = url,
                     .otlp_traces_endpoint = "",
                     .otlp_headers = " x-api-key=k%2D123,bad",
                     .otlp_timeout_ms = 5000,
                     .bsp_schedule_delay_ms = delay_ms,
                     .bsp_export_timeout_ms = 30000,
                     .bsp_max_queue = max_queue,
                     .bsp_max_batch = max_batch,
                     .otlp_compression = compression};
    f->metrics = sk_metrics_new();
    f->tracer = sk_tracer_new(f->srv.base, &cfg, f->metrics, err, sizeof err);
    assert_non_null(f->tracer);
    sk_tracer_install(f->tracer);
}

static void stop(fixture *f)
{
    sk_tracer_free(f->tracer);
    sk_metrics_free(f->metrics);
    test_server_stop(&f->srv);
}

static double dropped(fixture *f, const char *reason)
{
    sk_metric *m = sk_metrics_counter(f->metrics, "skiff_trace_spans_dropped_total",
                                      "Finished sampled spans not exported: queue_full "
                                      "(otlp.max_queue_size reached) or export_failed (the "
                                      "receiver refused or could not be reached).",
                                      (const char *const[]){"reason", NULL});
    assert_non_null(m);
    return sk_series_value(sk_metric_series(m, (const char *const[]){reason}));
}

static double exported(fixture *f)
{
    sk_metric *m = sk_metrics_counter(f->metrics, "skiff_trace_spans_exported_total",
                                      "Spans the OTLP receiver accepted.", NULL);
    assert_non_null(m);
    return sk_series_value(sk_metric_series(m, NULL));
}

/* Runs the loop until nothing waits for export, for 10 s at most. */
static void drain(fixture *f)
{
    double deadline = sk_mono_s() + 10;
    while (sk_tracer_pending(f->tracer) > 0 && sk_mono_s() < deadline)
        event_base_loop(f->srv.base, EVLOOP_ONCE);
    assert_int_equal(sk_tracer_pending(f->tracer), 0);
}

static void spans(int n)
{
    for (int i = 0; i < n; i++)
        sk_span_end(sk_span_start(NULL, "process t", SK_SPAN_CONSUMER));
}

static void test_retry_on_503_then_exported(void **state)
{
    (void)state;
    static const int st[] = {503, 200};
    fixture f;
    start(&f, st, 2, 16, 2, 600000);
    spans(2); /* a full batch leaves at once */
    run_until(&f.srv, &f.requests, 2);
    drain(&f);
    assert_string_equal(f.path, "/v1/traces");
    assert_string_equal(f.content_type, "application/x-protobuf");
    assert_string_equal(f.api_key, "k-123");
    assert_int_equal(f.spans, 4); /* the same batch twice */
    assert_true(exported(&f) == 2);
    assert_true(dropped(&f, "export_failed") == 0);
    stop(&f);
}

static void test_400_drops_without_retry(void **state)
{
    (void)state;
    static const int st[] = {400};
    fixture f;
    FILE *log = tmpfile();
    char text[4096] = "";
    sk_log_init("t", SK_LOG_DEBUG, log);
    start(&f, st, 1, 16, 2, 600000);
    spans(2);
    run_until(&f.srv, &f.requests, 1);
    drain(&f);
    run_for(&f.srv, 0.2);
    assert_int_equal(f.requests, 1);
    rewind(log);
    text[fread(text, 1, sizeof text - 1, log)] = '\0';
    sk_log_init("t", SK_LOG_INFO, NULL);
    fclose(log);
    assert_non_null(strstr(text, "HTTP status 400")); /* the failure is logged ... */
    assert_null(strstr(text, "k-123"));               /* ... without the header's secret */
    assert_null(strstr(text, "k%2D123"));
    assert_true(dropped(&f, "export_failed") == 2);
    assert_true(exported(&f) == 0);
    stop(&f);
}

static void test_full_queue_drops_then_flush(void **state)
{
    (void)state;
    static const int st[] = {200};
    fixture f;
    start(&f, st, 1, 4, 100, 600000);
    spans(6); /* no batch is full and the delay is long: 4 wait, 2 are dropped */
    assert_int_equal(sk_tracer_pending(f.tracer), 4);
    assert_true(dropped(&f, "queue_full") == 2);
    assert_int_equal(f.requests, 0);
    sk_tracer_flush(f.tracer);
    run_until(&f.srv, &f.requests, 1);
    drain(&f);
    assert_int_equal(f.spans, 4);
    assert_true(exported(&f) == 4);
    stop(&f);
}

static void test_unsampled_not_exported(void **state)
{
    (void)state;
    static const int st[] = {200};
    fixture f;
    start(&f, st, 1, 4, 1, 600000);
    sk_trace_ctx parent = {.trace_id = {1}, .span_id = {2}, .flags = 0};
    sk_span_end(sk_span_start(&parent, "process t", SK_SPAN_CONSUMER));
    assert_int_equal(sk_tracer_pending(f.tracer), 0);
    run_for(&f.srv, 0.1);
    assert_int_equal(f.requests, 0);
    stop(&f);
}

/* otlp.compression=gzip: the body is gzip with Content-Encoding: gzip and decodes to the
 * batch. */
static void test_gzip_body(void **state)
{
    (void)state;
    static const int st[] = {200};
    fixture f;
    compression = 1;
    start(&f, st, 1, 16, 3, 600000);
    compression = 0;
    spans(3);
    run_until(&f.srv, &f.requests, 1);
    drain(&f);
    assert_string_equal(f.encoding, "gzip");
    assert_int_equal(f.spans, 3);
    assert_true(exported(&f) == 3);
    stop(&f);
}

/* OTLP/gRPC endpoints: an empty host is refused with a message naming the endpoint;
 * host:port (TLS, the system store), http:// and https:// are taken. */
static void test_grpc_endpoints(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        int ok;
    } cases[] = {{"https://collector:4317", 1},
                 {"http:///v1", 0},
                 {"http://127.0.0.1:4317", 1},
                 {"collector", 1},
                 {"[::1]:4317", 1}};
    struct event_base *base = event_base_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[256] = "";
        sk_config cfg = {.service_name = "svc",
                         .trace_sampler_arg = "",
                         .otlp_endpoint = (char *)cases[i].url,
                         .otlp_traces_endpoint = "",
                         .otlp_headers = "",
                         .otlp_protocol = 1, /* grpc */
                         .otlp_timeout_ms = 1000,
                         .bsp_schedule_delay_ms = 1000,
                         .bsp_export_timeout_ms = 1000,
                         .bsp_max_queue = 4,
                         .bsp_max_batch = 4};
        sk_metrics *m = sk_metrics_new();
        sk_tracer *t = sk_tracer_new(base, &cfg, m, err, sizeof err);
        if (cases[i].ok) {
            assert_non_null(t);
        } else {
            assert_null(t);
            assert_non_null(strstr(err, cases[i].url));
        }
        sk_tracer_free(t);
        sk_metrics_free(m);
    }
    event_base_free(base);
}

/* The receiver's TLS files load at start for both protocols: a missing CA file or garbage
 * PEM refuses the tracer with the peer and the file named; a plaintext endpoint loads none. */
static void test_tls_files_refused_at_start(void **state)
{
    (void)state;
    char garbage[] = "/tmp/skiff-test-otlp-ca-XXXXXX";
    int fd = mkstemp(garbage);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "not a PEM\n", 10), 10);
    close(fd);
    static const struct {
        const char *url, *ca;
        int grpc, ok;
    } cases[] = {{"https://collector:4318", "/nonexistent/ca.pem", 0, 0},
                 {"https://collector:4317", "/nonexistent/ca.pem", 1, 0},
                 {"collector:4317", NULL, 1, 0}, /* scheme-less gRPC: TLS */
                 {"http://collector:4317", NULL, 1, 1}};
    struct event_base *base = event_base_new();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char err[512] = "";
        sk_config cfg = {.service_name = "svc",
                         .trace_sampler_arg = "",
                         .otlp_endpoint = (char *)cases[i].url,
                         .otlp_traces_endpoint = "",
                         .otlp_headers = "",
                         .otlp_protocol = cases[i].grpc,
                         .otlp_ca_file = (char *)(cases[i].ca ? cases[i].ca : garbage),
                         .otlp_cert_file = "",
                         .otlp_key_file = "",
                         .otlp_timeout_ms = 1000,
                         .bsp_schedule_delay_ms = 1000,
                         .bsp_export_timeout_ms = 1000,
                         .bsp_max_queue = 4,
                         .bsp_max_batch = 4};
        sk_metrics *m = sk_metrics_new();
        sk_tracer *t = sk_tracer_new(base, &cfg, m, err, sizeof err);
        if (cases[i].ok) {
            assert_non_null(t);
        } else {
            assert_null(t);
            if (!strstr(err, "otlp") || !strstr(err, cfg.otlp_ca_file))
                fail_msg("case %zu: %s", i, err);
        }
        sk_tracer_free(t);
        sk_metrics_free(m);
    }
    event_base_free(base);
    unlink(garbage);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_retry_on_503_then_exported),
        cmocka_unit_test(test_400_drops_without_retry),
        cmocka_unit_test(test_full_queue_drops_then_flush),
        cmocka_unit_test(test_unsampled_not_exported),
        cmocka_unit_test(test_gzip_body),
        cmocka_unit_test(test_grpc_endpoints),
        cmocka_unit_test(test_tls_files_refused_at_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
