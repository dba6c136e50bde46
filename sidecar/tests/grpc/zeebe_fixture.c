#include "zeebe_fixture.h"

#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>
#include <nghttp2/nghttp2.h>

#include "core/log.h"

static const char *const paths[M_COUNT] = {
    ":path: /gateway_protocol.Gateway/ActivateJobs\n",
    ":path: /gateway_protocol.Gateway/CompleteJob\n",
    ":path: /gateway_protocol.Gateway/FailJob\n",
    ":path: /gateway_protocol.Gateway/ThrowError\n",
    ":path: /gateway_protocol.Gateway/UpdateJobTimeout\n",
    ":path: /gateway_protocol.Gateway/PublishMessage\n",
    ":path: /gateway_protocol.Gateway/StreamActivatedJobs\n",
};

double zf_now_ms(void)
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

void zf_run_for(struct event_base *base, int ms)
{
    int expired = 0;
    struct event *t = evtimer_new(base, on_timeout, &expired);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    evtimer_add(t, &tv);
    while (!expired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(t);
}

int zf_count(const zf_fixture *fx, int method)
{
    int n = 0;
    for (int i = 0; i < fx->nreqs; i++)
        n += fx->reqs[i].method == method;
    return n;
}

seen *zf_nth(zf_fixture *fx, int method, int i)
{
    for (int k = 0; k < fx->nreqs; k++)
        if (fx->reqs[k].method == method && i-- == 0)
            return &fx->reqs[k];
    fail_msg("request %d of method %d never arrived", i, method);
    return NULL;
}

int zf_wait_reqs(zf_fixture *fx, int method, int n, int ms)
{
    for (int waited = 0; zf_count(fx, method) < n && waited < ms; waited += 5)
        zf_run_for(fx->base, 5);
    return zf_count(fx, method) >= n;
}

int zf_wait_idle(zf_fixture *fx, int ms)
{
    for (int waited = 0; sk_zeebe_pending(fx->z) > 0 && waited < ms; waited += 5)
        zf_run_for(fx->base, 5);
    return sk_zeebe_pending(fx->z) == 0;
}

int zf_wait_closed(zf_fixture *fx, int method, int i, int ms)
{
    fstream *st = zf_nth(fx, method, i)->st;
    for (int waited = 0; !st->closed && waited < ms; waited += 5)
        zf_run_for(fx->base, 5);
    return st->closed;
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

/* m as one gRPC message (5-byte prefix) in a new buffer. */
static uint8_t *frame_message(const ProtobufCMessage *m, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = malloc(n + 5);
    assert_non_null(buf);
    sk_grpc_frame_header(buf, n);
    protobuf_c_message_pack(m, buf + 5);
    *len = n + 5;
    return buf;
}

static void send_message(fstream *st, const ProtobufCMessage *m)
{
    size_t len;
    uint8_t *buf = frame_message(m, &len);
    respond(st, "200", "application/grpc", buf, len, 0, NULL);
    free(buf);
}

static void send_jobs(zf_fixture *fx, fstream *st, const reply *r)
{
    GatewayProtocol__ActivatedJob jobs[MAX_JOBS], *ptrs[MAX_JOBS];
    GatewayProtocol__ActivateJobsResponse res = GATEWAY_PROTOCOL__ACTIVATE_JOBS_RESPONSE__INIT;
    assert_true(r->njobs <= MAX_JOBS);
    int64_t now = (int64_t)zf_now_ms();
    for (size_t i = 0; i < r->njobs; i++) {
        fill_job(&jobs[i], &r->jobs[i], now);
        ptrs[i] = &jobs[i];
        fx->last_deadline = jobs[i].deadline;
    }
    res.n_jobs = r->njobs;
    res.jobs = ptrs;
    size_t len;
    uint8_t *buf = frame_message(&res.base, &len);
    if (fx->garble)
        memset(buf + 5, 0xff, len - 5);
    respond(st, "200", "application/grpc", buf, len, 0, NULL);
    free(buf);
}

/* PublishMessage: the key PUBLISH_KEY and the request's tenant ("<default>" when none). */
static void send_published(fstream *st)
{
    GatewayProtocol__PublishMessageRequest *q =
        (GatewayProtocol__PublishMessageRequest *)protobuf_c_message_unpack(
            &gateway_protocol__publish_message_request__descriptor, NULL, st->in_len - 5,
            st->in + 5);
    assert_non_null(q);
    GatewayProtocol__PublishMessageResponse res = GATEWAY_PROTOCOL__PUBLISH_MESSAGE_RESPONSE__INIT;
    res.key = PUBLISH_KEY;
    res.tenantid = *q->tenantid ? q->tenantid : "<default>";
    send_message(st, &res.base);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* ---- job streams ---- */

static ssize_t push_read(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)ud;
    push *p = src->ptr;
    size_t n = p->len - p->off;
    if (n == 0 && p->end_code < 0)
        return NGHTTP2_ERR_DEFERRED;
    if (n > len)
        n = len;
    if (n)
        memcpy(buf, p->out + p->off, n);
    p->off += n;
    if (p->off == p->len && p->end_code >= 0) {
        char code[12];
        snprintf(code, sizeof code, "%d", p->end_code);
        nghttp2_nv tr[] = {{(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), 0}};
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(h2, id, tr, 1);
    }
    return (ssize_t)n;
}

/* Response headers now; messages whenever the test pushes them. */
static push *open_stream(zf_fixture *fx, fstream *st)
{
    assert_true(fx->npushes < MAX_PUSH);
    push *p = &fx->pushes[fx->npushes++];
    *p = (push){.st = st, .end_code = -1};
    nghttp2_nv hdrs[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
    };
    nghttp2_data_provider prd = {.source.ptr = p, .read_callback = push_read};
    assert_int_equal(nghttp2_submit_response(st->conn->h2, st->id, hdrs, 2, &prd), 0);
    return p;
}

static void push_append(push *p, const void *data, size_t len)
{
    if (p->len + len > p->cap) {
        p->cap = 2 * (p->len + len);
        p->out = realloc(p->out, p->cap);
        assert_non_null(p->out);
    }
    memcpy(p->out + p->len, data, len);
    p->len += len;
}

/* Wakes the data provider of a stream (an error once the client has reset it: ignored). */
static void push_kick(zf_fixture *fx, push *p)
{
    if (!p->st->closed && !p->st->conn->closed)
        nghttp2_session_resume_data(p->st->conn->h2, p->st->id);
    fserver_flush(fx->srv);
}

static void push_jobs(zf_fixture *fx, push *p, const job_spec *jobs, size_t n)
{
    int64_t now = (int64_t)zf_now_ms();
    for (size_t i = 0; i < n; i++) {
        GatewayProtocol__ActivatedJob j;
        fill_job(&j, &jobs[i], now);
        fx->last_deadline = j.deadline;
        size_t len;
        uint8_t *buf = frame_message(&j.base, &len);
        push_append(p, buf, len);
        free(buf);
    }
    push_kick(fx, p);
}

void zf_push(zf_fixture *fx, int i, const job_spec *jobs, size_t n)
{
    seen *r = zf_nth(fx, M_STREAM, i);
    assert_non_null(r->push);
    push_jobs(fx, r->push, jobs, n);
}

void zf_end_stream(zf_fixture *fx, int i, int code)
{
    seen *r = zf_nth(fx, M_STREAM, i);
    assert_non_null(r->push);
    r->push->end_code = code;
    push_kick(fx, r->push);
}

/* ---- scripted answers ---- */

static void answer(zf_fixture *fx, seen *q, const reply *r)
{
    char code[12];
    if (q->method == M_STREAM && (r->code == HOLD || r->code == SK_GRPC_OK)) {
        q->push = open_stream(fx, q->st);
        if (r->njobs)
            push_jobs(fx, q->push, r->jobs, r->njobs);
        return;
    }
    if (r->code == HOLD)
        return;
    if (r->code != SK_GRPC_OK) {
        snprintf(code, sizeof code, "%d", r->code);
        respond_headers_only(q->st, "200", code, "scripted%20failure");
    } else if (q->method == M_ACTIVATE) {
        send_jobs(fx, q->st, r);
    } else if (q->method == M_PUBLISH) {
        send_published(q->st);
    } else { /* the other responses are empty messages */
        respond(q->st, "200", "application/grpc", "\0\0\0\0\0", 5, 0, NULL);
    }
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
    zf_fixture *fx = srv->ud;
    int m = method_of(st);
    assert_true(m >= 0 && fx->nreqs < MAX_REQS);
    seen *q = &fx->reqs[fx->nreqs++];
    *q = (seen){.st = st, .method = m, .at_ms = zf_now_ms()};
    reply r = {.code = fx->dflt[m]};
    if (fx->next[m] < fx->nscript[m])
        r = fx->script[m][fx->next[m]++];
    answer(fx, q, &r);
}

void zf_then(zf_fixture *fx, int method, int code)
{
    assert_true(fx->nscript[method] < MAX_SCRIPT);
    fx->script[method][fx->nscript[method]++] = (reply){.code = code};
}

void zf_then_jobs(zf_fixture *fx, int method, const job_spec *jobs, size_t n)
{
    assert_true(fx->nscript[method] < MAX_SCRIPT);
    fx->script[method][fx->nscript[method]++] = (reply){.jobs = jobs, .njobs = n};
}

void zf_answer_later(zf_fixture *fx, seen *r, int code)
{
    answer(fx, r, &(reply){.code = code});
    fserver_flush(fx->srv);
}

void zf_answer_jobs_later(zf_fixture *fx, seen *r, const job_spec *jobs, size_t n)
{
    answer(fx, r, &(reply){.jobs = jobs, .njobs = n});
    fserver_flush(fx->srv);
}

const char *zf_header(const seen *r, const char *name)
{
    static char value[256];
    char key[64];
    snprintf(key, sizeof key, "%s: ", name);
    const char *h = r->st->headers, *p = h;
    while ((p = strstr(p, key)) != NULL && p != h && p[-1] != '\n')
        p++;
    value[0] = 0;
    if (p)
        snprintf(value, sizeof value, "%.*s", (int)strcspn(p + strlen(key), "\n"), p + strlen(key));
    return value;
}

void *zf_request(zf_fixture *fx, int method, int i, const ProtobufCMessageDescriptor *desc)
{
    const fstream *st = zf_nth(fx, method, i)->st;
    assert_true(st->in_len >= 5);
    assert_int_equal(st->in[0], 0); /* uncompressed */
    ProtobufCMessage *q = protobuf_c_message_unpack(desc, NULL, st->in_len - 5, st->in + 5);
    assert_non_null(q);
    return q;
}

GatewayProtocol__ActivateJobsRequest *zf_activate_req(zf_fixture *fx, int i)
{
    return zf_request(fx, M_ACTIVATE, i, &gateway_protocol__activate_jobs_request__descriptor);
}

int32_t zf_max_jobs(zf_fixture *fx, int i)
{
    GatewayProtocol__ActivateJobsRequest *q = zf_activate_req(fx, i);
    int32_t n = q->maxjobstoactivate;
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return n;
}

GatewayProtocol__CompleteJobRequest *zf_complete_req(zf_fixture *fx, int i)
{
    return zf_request(fx, M_COMPLETE, i, &gateway_protocol__complete_job_request__descriptor);
}

GatewayProtocol__FailJobRequest *zf_fail_req(zf_fixture *fx, int64_t key)
{
    for (int i = 0; i < zf_count(fx, M_FAIL); i++) {
        GatewayProtocol__FailJobRequest *q =
            zf_request(fx, M_FAIL, i, &gateway_protocol__fail_job_request__descriptor);
        if (q->jobkey == key)
            return q;
        protobuf_c_message_free_unpacked(&q->base, NULL);
    }
    fail_msg("no FailJob for job %lld", (long long)key);
    return NULL;
}

GatewayProtocol__ThrowErrorRequest *zf_throw_req(zf_fixture *fx, int i)
{
    return zf_request(fx, M_THROW, i, &gateway_protocol__throw_error_request__descriptor);
}

void zf_assert_json(const char *text, const char *expected)
{
    json_t *a = json_loads(text, JSON_ALLOW_NUL, NULL),
           *b = json_loads(expected, JSON_ALLOW_NUL, NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_true(json_equal(a, b));
    json_decref(a);
    json_decref(b);
}

void zf_assert_strings(char **got, size_t ngot, const char *const *expected, size_t n)
{
    assert_int_equal(ngot, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(got[i], expected[i]);
}

/* ---- the handler ---- */

static void on_closed(void *ud, sk_session *s)
{
    (void)s;
    ((zf_fixture *)ud)->closed = 1;
}

void zf_send_json(zf_fixture *fx, const char *json)
{
    size_t n = strlen(json);
    uint8_t hdr[4] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n};
    assert_int_equal(write(fx->fd, hdr, 4), 4);
    assert_int_equal(write(fx->fd, json, n), (ssize_t)n);
    zf_run_for(fx->base, 5);
}

/* A whole frame already received from skiff, or NULL. */
static json_t *pop_frame(zf_fixture *fx)
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
    /* As the protocol asks of handlers: a string may hold U+0000. */
    json_t *f = json_loadb((const char *)fx->in + 4, n, JSON_ALLOW_NUL, NULL);
    assert_non_null(f);
    fx->inlen -= 4 + n;
    memmove(fx->in, fx->in + 4 + n, fx->inlen);
    return f;
}

json_t *zf_next_frame(zf_fixture *fx, int ms)
{
    json_t *f;
    for (int waited = 0; !(f = pop_frame(fx)) && waited < ms; waited += 5)
        zf_run_for(fx->base, 5);
    return f;
}

json_t *zf_expect_frame(zf_fixture *fx, const char *type)
{
    json_t *f = zf_next_frame(fx, 2000);
    assert_non_null(f);
    assert_string_equal(json_string_value(json_object_get(f, "type")), type);
    return f;
}

void zf_join_features(zf_fixture *fx, int capacity, const char *features)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    sk_session_opts o = {.max_frame = 65536, .hello_timeout_ms = 5000};
    fx->s = sk_session_new(fx->base, sv[0], fx->d, &o, fx->metrics, on_closed, fx);
    assert_non_null(fx->s);
    fx->fd = sv[1];
    char hello[200];
    snprintf(hello, sizeof hello,
             "{\"type\":\"hello\",\"version\":1,\"name\":\"t\",\"capacity\":%d,"
             "\"job_types\":[\"work\"]%s%s}",
             capacity, features ? ",\"features\":" : "", features ? features : "");
    zf_send_json(fx, hello);
    json_decref(zf_expect_frame(fx, "welcome"));
}

void zf_join(zf_fixture *fx, int capacity)
{
    zf_join_features(fx, capacity, NULL);
}

void zf_expect_task(zf_fixture *fx, const char *id)
{
    json_t *t = zf_expect_frame(fx, "task");
    assert_string_equal(json_string_value(json_object_get(t, "id")), id);
    json_decref(t);
}

json_t *zf_expect_reply(zf_fixture *fx, const char *ref, const char *error_code)
{
    json_t *f = zf_expect_frame(fx, "reply");
    assert_string_equal(json_string_value(json_object_get(f, "ref")), ref);
    json_t *out = NULL;
    if (error_code) {
        assert_true(json_is_false(json_object_get(f, "ok")));
        json_t *e = json_object_get(f, "error");
        assert_string_equal(json_string_value(json_object_get(e, "code")), error_code);
        assert_true(json_string_length(json_object_get(e, "message")) > 0);
    } else {
        assert_true(json_is_true(json_object_get(f, "ok")));
        out = json_incref(json_object_get(f, "result"));
        assert_true(json_is_object(out));
    }
    json_decref(f);
    return out;
}

/* ---- metrics ---- */

double zf_sample(zf_fixture *fx, const char *sample)
{
    size_t len, n = strlen(sample);
    char *text = sk_metrics_render(fx->metrics, &len);
    assert_non_null(text);
    double v = 0;
    for (const char *line = text; *line;) {
        if (strncmp(line, sample, n) == 0 && line[n] == ' ') {
            v = strtod(line + n + 1, NULL);
            break;
        }
        const char *nl = strchr(line, '\n');
        if (!nl)
            break;
        line = nl + 1;
    }
    free(text);
    return v;
}

double zf_jobs_total(zf_fixture *fx, const char *outcome)
{
    char sample[160];
    snprintf(sample, sizeof sample, "skiff_zeebe_jobs_total{job_type=\"work\",outcome=\"%s\"}",
             outcome);
    return zf_sample(fx, sample);
}

/* ---- setup ---- */

int zf_setup(void **state)
{
    zf_fixture *fx = calloc(1, sizeof *fx);
    sk_log_init("test", SK_LOG_ERROR, stderr);
    signal(SIGPIPE, SIG_IGN); /* a write to a closed peer fails the test, not the process */
    fx->base = event_base_new();
    fx->srv = fserver_new(fx->base, MODE_H2, s_gateway);
    fx->srv->ud = fx;
    fx->metrics = sk_metrics_new();
    fx->d = sk_dispatcher_new(fx->metrics, 65536);
    fx->fd = -1;
    fx->dflt[M_ACTIVATE] = HOLD; /* a long poll with nothing to hand out */
    fx->dflt[M_STREAM] = HOLD;   /* a job stream with nothing to push yet */
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

void zf_start(zf_fixture *fx)
{
    char err[128];
    fx->z = sk_zeebe_new(fx->base, &fx->cfg, fx->d, fx->metrics, NULL, err, sizeof err);
    assert_non_null(fx->z);
}

int zf_teardown(void **state)
{
    zf_fixture *fx = *state;
    if (fx->s != NULL && !fx->closed)
        sk_session_free(fx->s);
    sk_zeebe_free(fx->z);
    zf_run_for(fx->base, 20); /* deferred frees (channel, closed session) */
    sk_dispatcher_free(fx->d);
    fserver_free(fx->srv);
    for (int i = 0; i < fx->npushes; i++)
        free(fx->pushes[i].out);
    sk_metrics_free(fx->metrics);
    event_base_free(fx->base);
    if (fx->fd >= 0)
        close(fx->fd);
    free(fx);
    return 0;
}
