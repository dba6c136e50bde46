/* The Zeebe source's state machine: a scripted in-process HTTP/2 server plays the gateway
 * (ActivateJobs streaming, CompleteJob / FailJob / ThrowError unary), a real dispatcher routes
 * jobs to a handler session driven over a socketpair as a handler would. Checks what reaches
 * the gateway (decoded with the generated protobuf-c code), when, and what the handler sees:
 * credit-bound activation, job results, abandon, command retries up to the job deadline,
 * activation backoff, shutdown and undecodable jobs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <jansson.h>
#include <nghttp2/nghttp2.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "fake_h2_server.h"
#include "gateway.pb-c.h"
#include "grpc/grpc.h"
#include "handler/dispatcher.h"
#include "handler/session.h"
#include "zeebe/zeebe.h"

enum { M_ACTIVATE, M_COMPLETE, M_FAIL, M_THROW, M_COUNT };

static const char *const paths[M_COUNT] = {
    ":path: /gateway_protocol.Gateway/ActivateJobs\n",
    ":path: /gateway_protocol.Gateway/CompleteJob\n",
    ":path: /gateway_protocol.Gateway/FailJob\n",
    ":path: /gateway_protocol.Gateway/ThrowError\n",
};

#define HOLD (-1) /* a scripted answer: none (the request stays open) */
#define MAX_SCRIPT 8
#define MAX_REQS 64
#define MAX_JOBS 4
/* libevent times timers with a coarse monotonic clock: one may fire a tick before the exact
 * delay measured with gettimeofday. */
#define SLACK 10

/* A job the fake gateway activates. deadline_in_ms 0: one minute. */
typedef struct job_spec {
    int64_t key;
    int32_t retries;
    int64_t deadline_in_ms;
    const char *variables;
    const char *headers;
} job_spec;

typedef struct reply {
    int code; /* gRPC status or HOLD */
    const job_spec *jobs;
    size_t njobs;
} reply;

typedef struct seen { /* one request the gateway received */
    fstream *st;
    int method;
    double at_ms;
} seen;

typedef struct fixture {
    struct event_base *base;
    fserver *srv;
    sk_metrics *metrics;
    sk_dispatcher *d;
    sk_zeebe *z;
    sk_config cfg;
    sk_job_type_config job; /* the one job type, "work" */
    char address[32];
    char *types[2];
    /* the handler */
    sk_session *s;
    int fd, closed;
    uint8_t in[65536];
    size_t inlen;
    /* the gateway's script and what it saw */
    reply script[M_COUNT][MAX_SCRIPT];
    int nscript[M_COUNT], next[M_COUNT], dflt[M_COUNT];
    seen reqs[MAX_REQS];
    int nreqs;
    int64_t last_deadline;
} fixture;

static double now_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec * 1000 + (double)tv.tv_usec / 1000;
}

/* ---- the loop ---- */

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    *(int *)arg = 1;
}

static void run_for(struct event_base *base, int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_timeout, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

static int count(const fixture *fx, int method)
{
    int n = 0;
    for (int i = 0; i < fx->nreqs; i++)
        n += fx->reqs[i].method == method;
    return n;
}

/* The i-th request of a method. */
static seen *nth(fixture *fx, int method, int i)
{
    for (int k = 0; k < fx->nreqs; k++)
        if (fx->reqs[k].method == method && i-- == 0)
            return &fx->reqs[k];
    fail_msg("request %d of method %d never arrived", i, method);
    return NULL;
}

/* Runs the loop until the gateway has seen n requests of a method (or ms pass). */
static int wait_reqs(fixture *fx, int method, int n, int ms)
{
    for (int waited = 0; count(fx, method) < n && waited < ms; waited += 5)
        run_for(fx->base, 5);
    return count(fx, method) >= n;
}

static int wait_idle(fixture *fx, int ms)
{
    for (int waited = 0; sk_zeebe_pending(fx->z) > 0 && waited < ms; waited += 5)
        run_for(fx->base, 5);
    return sk_zeebe_pending(fx->z) == 0;
}

/* ---- the gateway ---- */

static void fill_job(GatewayProtocol__ActivatedJob *j, const job_spec *s, int64_t now)
{
    GatewayProtocol__ActivatedJob init = GATEWAY_PROTOCOL__ACTIVATED_JOB__INIT;
    *j = init;
    j->key = s->key;
    j->type = "work";
    j->processinstancekey = s->key + 1;
    j->bpmnprocessid = "order";
    j->processdefinitionversion = 2;
    j->processdefinitionkey = s->key + 2;
    j->elementid = "charge";
    j->elementinstancekey = s->key + 3;
    j->customheaders = (char *)(s->headers ? s->headers : "{}");
    j->worker = "skiff-test-worker";
    j->retries = s->retries;
    j->deadline = now + (s->deadline_in_ms ? s->deadline_in_ms : 60000);
    j->variables = (char *)(s->variables ? s->variables : "{}");
    j->tenantid = "<default>";
}

static void send_message(fstream *st, const ProtobufCMessage *m)
{
    size_t len = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(len + 5);
    assert_non_null(buf);
    sk_grpc_frame_header(buf, len);
    protobuf_c_message_pack(m, buf + 5);
    respond(st, "200", "application/grpc", buf, len + 5, 0, NULL);
    free(buf);
}

static void answer(fixture *fx, fstream *st, const reply *r)
{
    GatewayProtocol__ActivatedJob jobs[MAX_JOBS], *ptrs[MAX_JOBS];
    GatewayProtocol__ActivateJobsResponse res = GATEWAY_PROTOCOL__ACTIVATE_JOBS_RESPONSE__INIT;
    char code[12];
    if (r->code == HOLD)
        return;
    if (r->code != SK_GRPC_OK) {
        snprintf(code, sizeof code, "%d", r->code);
        respond_headers_only(st, "200", code, "scripted%20failure");
        return;
    }
    assert_true(r->njobs <= MAX_JOBS);
    int64_t now = (int64_t)now_ms();
    for (size_t i = 0; i < r->njobs; i++) {
        fill_job(&jobs[i], &r->jobs[i], now);
        ptrs[i] = &jobs[i];
        fx->last_deadline = jobs[i].deadline;
    }
    res.n_jobs = r->njobs;
    res.jobs = ptrs;
    /* Every response of the gateway is an empty message but ActivateJobs'. */
    send_message(st, &res.base);
}

static int method_of(const fstream *st)
{
    for (int m = 0; m < M_COUNT; m++)
        if (strstr(st->headers, paths[m]) != NULL)
            return m;
    return -1;
}

/* Records each request and answers it with the next scripted reply of its method. */
static void s_gateway(fserver *srv, fstream *st)
{
    fixture *fx = srv->ud;
    int m = method_of(st);
    assert_true(m >= 0 && fx->nreqs < MAX_REQS);
    fx->reqs[fx->nreqs++] = (seen){.st = st, .method = m, .at_ms = now_ms()};
    reply r = {.code = fx->dflt[m]};
    if (fx->next[m] < fx->nscript[m])
        r = fx->script[m][fx->next[m]++];
    answer(fx, st, &r);
}

static void then(fixture *fx, int method, int code)
{
    assert_true(fx->nscript[method] < MAX_SCRIPT);
    fx->script[method][fx->nscript[method]++] = (reply){.code = code};
}

static void then_jobs(fixture *fx, const job_spec *jobs, size_t n)
{
    assert_true(fx->nscript[M_ACTIVATE] < MAX_SCRIPT);
    fx->script[M_ACTIVATE][fx->nscript[M_ACTIVATE]++] = (reply){.jobs = jobs, .njobs = n};
}

/* Answers a held request now. */
static void answer_later(fixture *fx, seen *r, int code)
{
    answer(fx, r->st, &(reply){.code = code});
    fserver_flush(fx->srv);
}

static const uint8_t *body(const seen *r, size_t *len)
{
    const fstream *st = r->st;
    assert_true(st->in_len >= 5);
    assert_int_equal(st->in[0], 0); /* uncompressed */
    *len = st->in_len - 5;
    return st->in + 5;
}

static GatewayProtocol__ActivateJobsRequest *activate_req(fixture *fx, int i)
{
    size_t len;
    const uint8_t *p = body(nth(fx, M_ACTIVATE, i), &len);
    GatewayProtocol__ActivateJobsRequest *q =
        gateway_protocol__activate_jobs_request__unpack(NULL, len, p);
    assert_non_null(q);
    return q;
}

static int32_t max_jobs(fixture *fx, int i)
{
    GatewayProtocol__ActivateJobsRequest *q = activate_req(fx, i);
    int32_t n = q->maxjobstoactivate;
    gateway_protocol__activate_jobs_request__free_unpacked(q, NULL);
    return n;
}

static GatewayProtocol__CompleteJobRequest *complete_req(fixture *fx, int i)
{
    size_t len;
    const uint8_t *p = body(nth(fx, M_COMPLETE, i), &len);
    GatewayProtocol__CompleteJobRequest *q =
        gateway_protocol__complete_job_request__unpack(NULL, len, p);
    assert_non_null(q);
    return q;
}

/* The FailJob request for a job key. */
static GatewayProtocol__FailJobRequest *fail_req(fixture *fx, int64_t key)
{
    for (int i = 0; i < count(fx, M_FAIL); i++) {
        size_t len;
        const uint8_t *p = body(nth(fx, M_FAIL, i), &len);
        GatewayProtocol__FailJobRequest *q =
            gateway_protocol__fail_job_request__unpack(NULL, len, p);
        assert_non_null(q);
        if (q->jobkey == key)
            return q;
        gateway_protocol__fail_job_request__free_unpacked(q, NULL);
    }
    fail_msg("no FailJob for job %lld", (long long)key);
    return NULL;
}

static GatewayProtocol__ThrowErrorRequest *throw_req(fixture *fx, int i)
{
    size_t len;
    const uint8_t *p = body(nth(fx, M_THROW, i), &len);
    GatewayProtocol__ThrowErrorRequest *q =
        gateway_protocol__throw_error_request__unpack(NULL, len, p);
    assert_non_null(q);
    return q;
}

/* Asserts that a JSON text equals the expected JSON text. */
static void assert_json(const char *text, const char *expected)
{
    json_t *a = json_loads(text, 0, NULL), *b = json_loads(expected, 0, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

/* ---- the handler ---- */

static void on_closed(void *ud, sk_session *s)
{
    (void)s;
    ((fixture *)ud)->closed = 1;
}

static void send_json(fixture *fx, const char *json)
{
    size_t n = strlen(json);
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    assert_int_equal(write(fx->fd, hdr, 4), 4);
    assert_int_equal(write(fx->fd, json, n), (ssize_t)n);
    run_for(fx->base, 5);
}

/* A whole frame already received from skiff, or NULL. */
static json_t *pop_frame(fixture *fx)
{
    ssize_t r;
    while (fx->inlen < sizeof fx->in &&
           (r = read(fx->fd, fx->in + fx->inlen, sizeof fx->in - fx->inlen)) > 0)
        fx->inlen += (size_t)r;
    if (fx->inlen < 4)
        return NULL;
    size_t n =
        (size_t)fx->in[0] << 24 | (size_t)fx->in[1] << 16 | (size_t)fx->in[2] << 8 | fx->in[3];
    if (fx->inlen < 4 + n)
        return NULL;
    json_t *f = json_loadb((const char *)fx->in + 4, n, 0, NULL);
    assert_non_null(f);
    fx->inlen -= 4 + n;
    memmove(fx->in, fx->in + 4 + n, fx->inlen);
    return f;
}

/* Next frame from skiff to the handler, or NULL when none comes within ms. */
static json_t *next_frame(fixture *fx, int ms)
{
    json_t *f;
    for (int waited = 0; !(f = pop_frame(fx)) && waited < ms; waited += 5)
        run_for(fx->base, 5);
    return f;
}

static json_t *expect_frame(fixture *fx, const char *type)
{
    json_t *f = next_frame(fx, 2000);
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "type")), type);
    return f;
}

/* Connects a handler serving "work" with this capacity and completes the handshake. */
static void join(fixture *fx, int capacity)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    sk_session_opts o = {.max_frame = 65536, .hello_timeout_ms = 5000};
    fx->s = sk_session_new(fx->base, sv[0], fx->d, &o, fx->metrics, on_closed, fx);
    assert_non_null(fx->s);
    fx->fd = sv[1];
    char hello[160];
    snprintf(hello, sizeof hello,
             "{\"type\":\"hello\",\"version\":1,\"name\":\"t\",\"capacity\":%d,"
             "\"job_types\":[\"work\"]}",
             capacity);
    send_json(fx, hello);
    json_decref(expect_frame(fx, "welcome"));
}

/* Receives the next task frame and checks its id. */
static void expect_task(fixture *fx, const char *id)
{
    json_t *t = expect_frame(fx, "task");
    assert_string_equal(json_string_value(json_object_get(t, "id")), id);
    json_decref(t);
}

/* ---- the source ---- */

static double jobs_total(fixture *fx, const char *outcome)
{
    sk_metric *m = sk_metrics_counter(fx->metrics, "skiff_zeebe_jobs_total", NULL,
                                      SK_KV("job_type", "outcome"));
    assert_non_null(m);
    const char *const labels[] = {"work", outcome, NULL};
    return sk_series_value(sk_metric_series(m, labels));
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    sk_log_init("test", SK_LOG_ERROR, stderr);
    fx->base = event_base_new();
    fx->srv = fserver_new(fx->base, MODE_H2, s_gateway);
    fx->srv->ud = fx;
    fx->metrics = sk_metrics_new();
    fx->d = sk_dispatcher_new(fx->metrics, 65536);
    fx->fd = -1;
    fx->dflt[M_ACTIVATE] = HOLD; /* a long poll with nothing to hand out */
    snprintf(fx->address, sizeof fx->address, "127.0.0.1:%d", fx->srv->port);
    fx->types[0] = "work";
    fx->cfg = (sk_config){.service_name = "skiff-test",
                          .zeebe_address = fx->address,
                          .zeebe_job_types = fx->types,
                          .zeebe_job_types_len = 1,
                          .zeebe_worker_name = "skiff-test-worker",
                          .zeebe_job_timeout_ms = 30000,
                          .zeebe_max_jobs_active = 32,
                          .zeebe_request_timeout_ms = 20000,
                          .zeebe_backoff_initial_ms = 50,
                          .zeebe_backoff_max_ms = 200,
                          .grpc_max_message_bytes = 4 << 20,
                          .zeebe_jobs = &fx->job,
                          .zeebe_jobs_len = 1};
    fx->job = (sk_job_type_config){.type = "work",
                                   .worker_name = "skiff-test-worker",
                                   .job_timeout_ms = 30000,
                                   .max_jobs_active = 32,
                                   .request_timeout_ms = 20000};
    *state = fx;
    return 0;
}

/* Starts the source with fx->cfg as the test left it. */
static void start(fixture *fx)
{
    char err[128];
    fx->z = sk_zeebe_new(fx->base, &fx->cfg, fx->d, fx->metrics, err, sizeof err);
    assert_non_null(fx->z);
}

static int teardown(void **state)
{
    fixture *fx = *state;
    if (fx->s != NULL && !fx->closed)
        sk_session_free(fx->s);
    sk_zeebe_free(fx->z);
    run_for(fx->base, 20); /* deferred frees (channel, closed session) */
    sk_dispatcher_free(fx->d);
    fserver_free(fx->srv);
    sk_metrics_free(fx->metrics);
    event_base_free(fx->base);
    if (fx->fd >= 0)
        close(fx->fd);
    free(fx);
    return 0;
}

/* ---- 1. activation waits for a handler ---- */

static void test_no_handler_no_activation(void **state)
{
    fixture *fx = *state;
    start(fx);
    for (int waited = 0; !sk_zeebe_connected(fx->z) && waited < 2000; waited += 10)
        run_for(fx->base, 10);
    assert_true(sk_zeebe_connected(fx->z));
    run_for(fx->base, 300);
    assert_int_equal(count(fx, M_ACTIVATE), 0);

    join(fx, 3);
    assert_true(wait_reqs(fx, M_ACTIVATE, 1, 2000));
    GatewayProtocol__ActivateJobsRequest *q = activate_req(fx, 0);
    assert_string_equal(q->type, "work");
    assert_string_equal(q->worker, "skiff-test-worker");
    assert_int_equal(q->maxjobstoactivate, 3);
    assert_int_equal(q->timeout, 30000);
    assert_int_equal(q->requesttimeout, 20000);
    gateway_protocol__activate_jobs_request__free_unpacked(q, NULL);
    run_for(fx->base, 100);
    assert_int_equal(count(fx, M_ACTIVATE), 1); /* one long poll at a time */
}

/* ---- 2. credits bound activation ---- */

static void test_max_jobs_active_bounds_activation(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 201, .retries = 3}};
    fx->job.max_jobs_active = 1;
    then_jobs(fx, jobs, 1);
    fx->dflt[M_COMPLETE] = HOLD;
    start(fx);
    join(fx, 2);
    assert_true(wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_int_equal(max_jobs(fx, 0), 1);
    expect_task(fx, "z-201");
    run_for(fx->base, 200); /* the session has a free credit, skiff holds its maximum */
    assert_int_equal(count(fx, M_ACTIVATE), 1);

    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-201\"}");
    assert_true(wait_reqs(fx, M_COMPLETE, 1, 2000));
    run_for(fx->base, 100); /* still held until the gateway acknowledges */
    assert_int_equal(count(fx, M_ACTIVATE), 1);
    answer_later(fx, nth(fx, M_COMPLETE, 0), SK_GRPC_OK);
    assert_true(wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(max_jobs(fx, 1), 1);
}

static void test_open_jobs_use_up_credits(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 211, .retries = 3}, {.key = 212, .retries = 3}};
    then_jobs(fx, jobs, 2);
    fx->dflt[M_COMPLETE] = HOLD;
    start(fx);
    join(fx, 2);
    assert_true(wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_int_equal(max_jobs(fx, 0), 2);
    expect_task(fx, "z-211");
    expect_task(fx, "z-212");
    run_for(fx->base, 200);
    assert_int_equal(count(fx, M_ACTIVATE), 1);

    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-211\"}");
    assert_true(wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(max_jobs(fx, 1), 1);
}

/* ---- 3. jobs to tasks, results to commands ---- */

#define BIG 9007199254740993LL /* 2^53 + 1: not representable as a double */

static void check_task_frame(fixture *fx)
{
    json_t *t = expect_frame(fx, "task");
    assert_string_equal(json_string_value(json_object_get(t, "id")), "z-9007199254740993");
    assert_string_equal(json_string_value(json_object_get(t, "job_type")), "work");
    assert_string_equal(json_string_value(json_object_get(t, "source")), "zeebe");
    assert_int_equal(json_integer_value(json_object_get(t, "deadline")), fx->last_deadline);
    json_t *vars = json_object_get(t, "variables"), *z = json_object_get(t, "zeebe");
    assert_int_equal(json_integer_value(json_object_get(vars, "amount")), 12);
    assert_string_equal(json_string_value(json_object_get(vars, "sku")), "A-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "headers"), "queue")),
                        "fast");
    assert_string_equal(json_string_value(json_object_get(z, "key")), "9007199254740993");
    assert_string_equal(json_string_value(json_object_get(z, "process_instance_key")),
                        "9007199254740994");
    assert_string_equal(json_string_value(json_object_get(z, "element_instance_key")),
                        "9007199254740996");
    assert_string_equal(json_string_value(json_object_get(z, "bpmn_process_id")), "order");
    assert_int_equal(json_integer_value(json_object_get(z, "retries")), 3);
    json_decref(t);
}

static void check_fail(fixture *fx, int64_t key, int32_t retries, const char *message,
                       int64_t backoff)
{
    GatewayProtocol__FailJobRequest *q = fail_req(fx, key);
    assert_int_equal(q->retries, retries);
    assert_string_equal(q->errormessage, message);
    assert_int_equal(q->retrybackoff, backoff);
    gateway_protocol__fail_job_request__free_unpacked(q, NULL);
}

static void check_commands(fixture *fx)
{
    GatewayProtocol__CompleteJobRequest *c = complete_req(fx, 0);
    assert_int_equal(c->jobkey, BIG);
    assert_json(c->variables, "{\"out\":42}");
    gateway_protocol__complete_job_request__free_unpacked(c, NULL);
    check_fail(fx, BIG + 2, 2, "boom", 1500);
    check_fail(fx, BIG + 4, 0, "give up", 0);
    GatewayProtocol__ThrowErrorRequest *e = throw_req(fx, 0);
    assert_int_equal(e->jobkey, BIG + 6);
    assert_string_equal(e->errorcode, "NO_STOCK");
    assert_string_equal(e->errormessage, "out of stock");
    assert_json(e->variables, "{\"sku\":\"A-1\"}");
    gateway_protocol__throw_error_request__free_unpacked(e, NULL);
}

static void test_results_become_commands(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {
        {.key = BIG,
         .retries = 3,
         .variables = "{\"amount\":12,\"sku\":\"A-1\"}",
         .headers = "{\"queue\":\"fast\"}"},
        {.key = BIG + 2, .retries = 3},
        {.key = BIG + 4, .retries = 3},
        {.key = BIG + 6, .retries = 3},
    };
    then_jobs(fx, jobs, 4);
    start(fx);
    join(fx, 4);
    check_task_frame(fx);
    expect_task(fx, "z-9007199254740995");
    expect_task(fx, "z-9007199254740997");
    expect_task(fx, "z-9007199254740999");
    send_json(fx,
              "{\"type\":\"complete\",\"id\":\"z-9007199254740993\",\"variables\":{\"out\":42}}");
    send_json(fx, "{\"type\":\"fail\",\"id\":\"z-9007199254740995\",\"message\":\"boom\","
                  "\"retry_backoff_ms\":1500}");
    send_json(
        fx,
        "{\"type\":\"fail\",\"id\":\"z-9007199254740997\",\"message\":\"give up\",\"retries\":0}");
    send_json(fx, "{\"type\":\"bpmn_error\",\"id\":\"z-9007199254740999\",\"code\":\"NO_STOCK\","
                  "\"message\":\"out of stock\",\"variables\":{\"sku\":\"A-1\"}}");
    assert_true(wait_reqs(fx, M_THROW, 1, 2000));
    assert_true(wait_idle(fx, 2000));
    assert_int_equal(count(fx, M_COMPLETE), 1);
    assert_int_equal(count(fx, M_FAIL), 2);
    check_commands(fx);
    assert_true(jobs_total(fx, "completed") == 1);
    assert_true(jobs_total(fx, "failed") == 2);
    assert_true(jobs_total(fx, "bpmn_error") == 1);
}

/* ---- 4. a handler gone gives its jobs back ---- */

static void test_handler_gone_abandons(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 401, .retries = 3}};
    then_jobs(fx, jobs, 1);
    fx->cfg.zeebe_backoff_initial_ms = 1000; /* "at once" is well below any backoff */
    fx->cfg.zeebe_backoff_max_ms = 1000;
    start(fx);
    join(fx, 1);
    expect_task(fx, "z-401");
    close(fx->fd);
    fx->fd = -1;
    double closed_at = now_ms();
    assert_true(wait_reqs(fx, M_FAIL, 1, 2000));
    assert_true(fx->closed);
    assert_true(nth(fx, M_FAIL, 0)->at_ms - closed_at < 200);
    check_fail(fx, 401, 3, "handler connection closed", 0);
    assert_true(wait_idle(fx, 2000));
}

/* ---- 5. commands retried on transient errors, up to the job deadline ---- */

static void test_command_retried_until_ok(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 501, .retries = 3}};
    then_jobs(fx, jobs, 1);
    then(fx, M_COMPLETE, SK_GRPC_UNAVAILABLE);
    then(fx, M_COMPLETE, SK_GRPC_UNAVAILABLE);
    then(fx, M_COMPLETE, SK_GRPC_OK);
    start(fx);
    join(fx, 1);
    expect_task(fx, "z-501");
    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-501\"}");
    assert_true(wait_reqs(fx, M_COMPLETE, 3, 3000));
    assert_true(wait_idle(fx, 2000));
    run_for(fx->base, 200);
    assert_int_equal(count(fx, M_COMPLETE), 3);
    for (int i = 0; i < 3; i++) {
        GatewayProtocol__CompleteJobRequest *c = complete_req(fx, i);
        assert_int_equal(c->jobkey, 501);
        gateway_protocol__complete_job_request__free_unpacked(c, NULL);
    }
    assert_true(jobs_total(fx, "completed") == 1);
    assert_true(jobs_total(fx, "deadline_passed") == 0);
}

static void test_command_gives_up_at_deadline(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 502, .retries = 3, .deadline_in_ms = 300}};
    then_jobs(fx, jobs, 1);
    fx->dflt[M_COMPLETE] = SK_GRPC_UNAVAILABLE;
    fx->cfg.zeebe_backoff_initial_ms = 20; /* dense retries: a late one would show */
    fx->cfg.zeebe_backoff_max_ms = 40;
    start(fx);
    join(fx, 1);
    expect_task(fx, "z-502");
    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-502\"}");
    assert_true(wait_idle(fx, 3000));
    int sent = count(fx, M_COMPLETE);
    assert_true(sent >= 2); /* it did retry */
    /* Timer latency aside, the last attempt went out before the deadline. */
    assert_true(nth(fx, M_COMPLETE, sent - 1)->at_ms <= (double)fx->last_deadline + 30);
    assert_true(now_ms() >= (double)fx->last_deadline - 100); /* and not much before */
    run_for(fx->base, 300);
    assert_int_equal(count(fx, M_COMPLETE), sent);
    assert_true(jobs_total(fx, "deadline_passed") == 1);
    assert_true(jobs_total(fx, "completed") == 0);
}

/* ---- 6. a job gone from the engine is not retried ---- */

static void test_not_found_not_retried(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 601, .retries = 3}};
    then_jobs(fx, jobs, 1);
    fx->dflt[M_COMPLETE] = SK_GRPC_NOT_FOUND;
    start(fx);
    join(fx, 1);
    expect_task(fx, "z-601");
    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-601\"}");
    assert_true(wait_reqs(fx, M_COMPLETE, 1, 2000));
    assert_true(wait_idle(fx, 2000));
    run_for(fx->base, 300);
    assert_int_equal(count(fx, M_COMPLETE), 1);
    assert_true(jobs_total(fx, "not_found") == 1);
    assert_true(jobs_total(fx, "completed") == 0);
}

/* ---- 7. activation backs off on errors, resets on success, pauses after empty answers ---- */

static void test_activation_backoff(void **state)
{
    fixture *fx = *state;
    fx->cfg.zeebe_backoff_initial_ms = 100;
    fx->cfg.zeebe_backoff_max_ms = 1000;
    for (int i = 0; i < 3; i++)
        then(fx, M_ACTIVATE, SK_GRPC_RESOURCE_EXHAUSTED);
    then_jobs(fx, NULL, 0);
    then(fx, M_ACTIVATE, SK_GRPC_RESOURCE_EXHAUSTED);
    start(fx);
    join(fx, 1);
    assert_true(wait_reqs(fx, M_ACTIVATE, 6, 5000));
    double t[6];
    for (int i = 0; i < 6; i++)
        t[i] = nth(fx, M_ACTIVATE, i)->at_ms;
    /* Equal jitter: attempt n waits within [d/2, d], d = 100 ms * 2^n. */
    assert_true(t[1] - t[0] >= 50 - SLACK);
    assert_true(t[2] - t[1] >= 100 - SLACK);
    assert_true(t[3] - t[2] >= 200 - SLACK);
    /* An empty success: a pause of backoff_initial, never a tight loop of empty polls. */
    assert_true(t[4] - t[3] >= 100 - SLACK);
    assert_true(t[4] - t[3] < 200);
    /* Reset: back to [50, 100] ms; without it the fourth delay would be >= 400 ms. */
    assert_true(t[5] - t[4] >= 50 - SLACK);
    assert_true(t[5] - t[4] < 300);
}

/* ---- 8. stop cancels the long poll, commands carry on ---- */

static void test_stop(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 801, .retries = 3}};
    then_jobs(fx, jobs, 1);
    fx->dflt[M_COMPLETE] = HOLD;
    start(fx);
    join(fx, 2);
    expect_task(fx, "z-801");
    assert_true(wait_reqs(fx, M_ACTIVATE, 2, 2000)); /* the second long poll, pending */
    send_json(fx, "{\"type\":\"complete\",\"id\":\"z-801\"}");
    assert_true(wait_reqs(fx, M_COMPLETE, 1, 2000));
    assert_int_equal(sk_zeebe_pending(fx->z), 1);

    sk_zeebe_stop(fx->z);
    fstream *poll = nth(fx, M_ACTIVATE, 1)->st;
    for (int waited = 0; !poll->closed && waited < 2000; waited += 5)
        run_for(fx->base, 5);
    assert_true(poll->closed);
    assert_int_equal(poll->close_code, NGHTTP2_CANCEL);
    assert_true(fx->srv->rst_received[NGHTTP2_CANCEL] >= 1);
    assert_int_equal(sk_zeebe_pending(fx->z), 1);

    answer_later(fx, nth(fx, M_COMPLETE, 0), SK_GRPC_OK);
    assert_true(wait_idle(fx, 2000));
    assert_true(jobs_total(fx, "completed") == 1);
    run_for(fx->base, 300); /* credits are free again, yet no activation */
    assert_int_equal(count(fx, M_ACTIVATE), 2);
}

/* ---- 9. undecodable jobs fail at once ---- */

static void test_bad_job_fails(void **state)
{
    fixture *fx = *state;
    static const job_spec jobs[] = {
        {.key = 901, .retries = 3, .variables = "[1,2]"},
        {.key = 902, .retries = 5, .headers = "not json"},
        {.key = 903, .retries = 3, .variables = "{\"ok\":true}"},
    };
    then_jobs(fx, jobs, 3);
    start(fx);
    join(fx, 3);
    expect_task(fx, "z-903"); /* the first frame: the bad jobs never reach the handler */
    json_t *more = next_frame(fx, 200);
    assert_null(more);
    assert_true(wait_reqs(fx, M_FAIL, 2, 2000));
    GatewayProtocol__FailJobRequest *q = fail_req(fx, 901);
    assert_int_equal(q->retries, 2);
    assert_non_null(strstr(q->errormessage, "JSON object"));
    gateway_protocol__fail_job_request__free_unpacked(q, NULL);
    q = fail_req(fx, 902);
    assert_int_equal(q->retries, 4);
    assert_non_null(strstr(q->errormessage, "custom headers"));
    gateway_protocol__fail_job_request__free_unpacked(q, NULL);
    assert_true(wait_idle(fx, 2000));
    assert_true(jobs_total(fx, "failed") == 2);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_no_handler_no_activation),
        T(test_max_jobs_active_bounds_activation),
        T(test_open_jobs_use_up_credits),
        T(test_results_become_commands),
        T(test_handler_gone_abandons),
        T(test_command_retried_until_ok),
        T(test_command_gives_up_at_deadline),
        T(test_not_found_not_retried),
        T(test_activation_backoff),
        T(test_stop),
        T(test_bad_job_fails),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
