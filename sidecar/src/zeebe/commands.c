/* Gateway commands: CompleteJob, FailJob, ThrowError (a job's result), UpdateJobTimeout (a
 * handler's extend) and PublishMessage (a handler's call), retried on transient gateway errors
 * with jittered backoff until their deadline and no longer.
 *
 * Each command is one CLIENT span (OpenTelemetry RPC conventions) covering its attempts, child
 * of the active span (the task's, set by the dispatcher around the result) or of the handler
 * call's context; every attempt carries it as W3C `traceparent` metadata. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/clock.h"
#include "core/log.h"
#include "trace/context.h"
#include "trace/trace.h"
#include "zeebe/internal.h"

typedef enum { CMD_RESULT, CMD_EXTEND, CMD_PUBLISH } cmd_kind;

typedef struct cmd {
    sk_zeebe *z;
    cmd_kind kind;
    zjob *job;           /* RESULT: its life; EXTEND: a reference; PUBLISH: NULL */
    const char *method;  /* gRPC path */
    const char *outcome; /* RESULT: metric label when acknowledged */
    uint8_t *req;
    size_t len;
    int64_t deadline_ms; /* epoch ms: transient errors are retried until then */
    int64_t timeout_ms;  /* EXTEND: the job's new timeout */
    sk_reply *reply;     /* EXTEND (optional), PUBLISH */
    uint8_t *resp;       /* PUBLISH: the response message */
    size_t resp_len;
    sk_backoff bo;
    struct event *timer;
    sk_grpc_call *call;
    unsigned attempts;
    double sent_at; /* sk_mono_s() of the attempt in flight */
    sk_span *span;  /* CLIENT span, NULL when out of memory */
    struct cmd *next, *prev;
} cmd;

static void send_cmd(cmd *c);

/* server.address and server.port from zeebe.address ("host:port", "dns:///host:port",
 * "[v6]:port"). */
static void set_server(sk_span *s, const char *target)
{
    char host[256];
    if (strncmp(target, "dns:///", 7) == 0)
        target += 7;
    const char *colon = strrchr(target, ':');
    size_t n = colon ? (size_t)(colon - target) : strlen(target);
    if (n >= 2 && target[0] == '[' && target[n - 1] == ']') {
        target++;
        n -= 2;
    }
    snprintf(host, sizeof host, "%.*s", (int)n, target);
    sk_span_set_str(s, "server.address", host);
    if (colon)
        sk_span_set_int(s, "server.port", strtol(colon + 1, NULL, 10));
}

sk_span *sk_zeebe_cmd_span(sk_zeebe *z, const char *method, const sk_trace_ctx *parent)
{
    const char *name = method[0] == '/' ? method + 1 : method; /* "service/Method" */
    const char *slash = strchr(name, '/');
    sk_span *s = sk_span_start(sk_span_parent_or_active(parent), name, SK_SPAN_CLIENT);
    if (!s || !slash)
        return s;
    char service[128];
    snprintf(service, sizeof service, "%.*s", (int)(slash - name), name);
    sk_span_set_str(s, "rpc.system", "grpc");
    sk_span_set_str(s, "rpc.service", service);
    sk_span_set_str(s, "rpc.method", slash + 1);
    set_server(s, z->cfg->zeebe_address);
    return s;
}

/* The command's final status on its span, which ends. */
static void span_done(sk_span *s, int code, const char *message)
{
    if (!s)
        return;
    sk_span_set_int(s, "rpc.grpc.status_code", code);
    if (code != SK_GRPC_OK)
        sk_span_set_error(s, sk_grpc_code_name(code), message);
    sk_span_end(s);
}

int sk_zeebe_transient(int code)
{
    return code == SK_GRPC_UNAVAILABLE || code == SK_GRPC_RESOURCE_EXHAUSTED ||
           code == SK_GRPC_DEADLINE_EXCEEDED || code == SK_GRPC_CANCELLED ||
           code == SK_GRPC_ABORTED || code == SK_GRPC_UNAUTHENTICATED;
}

static void cmd_free(cmd *c)
{
    sk_zeebe *z = c->z;
    z->pending--;
    if (c->prev)
        c->prev->next = c->next;
    else
        z->cmds = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->timer)
        event_free(c->timer);
    if (c->span) {
        sk_span_set_error(c->span, "abandoned", "skiff stopped before the gateway answered");
        sk_span_end(c->span);
    }
    sk_reply_drop(c->reply);
    free(c->req);
    free(c->resp);
    free(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_cmd(arg);
}

/* The exemplar of a result command's latency: the trace of its sampled CLIENT span s and the
 * task span it was sent from (its parent; s itself when it has none). "" when not sampled. */
static void exemplar_ids(const sk_span *s, char trace[33], char span[17])
{
    trace[0] = span[0] = '\0';
    if (!s || !(s->ctx.flags & SK_TRACE_SAMPLED))
        return;
    memcpy(trace, s->trace_hex, 33);
    if (s->has_parent)
        sk_trace_hex(s->parent_span_id, 8, span);
    else
        memcpy(span, s->span_hex, 17);
}

/* A job's result command is over (acknowledged or given up); trace and span: the exemplar of
 * the job's latency ("": none). */
static void result_done(cmd *c, int code, const char *message, const char *trace, const char *span)
{
    sk_zeebe *z = c->z;
    zjob *j = c->job;
    if (code == SK_GRPC_OK) {
        sk_zeebe_count_job(z, j->type, c->outcome);
        const char *const labels[] = {j->type, NULL};
        sk_series *lat = sk_metric_series(z->m_latency, labels);
        double v = sk_mono_s() - j->activated_at;
        if (trace[0])
            sk_series_observe_exemplar(lat, v, trace, span);
        else
            sk_series_observe(lat, v);
    } else if (code == SK_GRPC_NOT_FOUND) {
        sk_zeebe_count_job(z, j->type, "not_found");
        SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "job %lld is gone (timed out or cancelled): %s", (long long)j->key, message);
    } else if (sk_zeebe_transient(code)) {
        sk_zeebe_count_job(z, j->type, "deadline_passed");
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "giving up on job %lld after %u attempts: deadline passed (%s: %s)",
               (long long)j->key, c->attempts, sk_grpc_code_name(code), message);
    } else {
        sk_zeebe_count_job(z, j->type, "rejected");
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "gateway rejected the %s of job %lld: %s %s", c->outcome, (long long)j->key,
               sk_grpc_code_name(code), message);
    }
    sk_zeebe_job_end(j);
}

static void extend_done(cmd *c, int code, const char *message)
{
    zjob *j = c->job;
    sk_reply *r = c->reply;
    c->reply = NULL;
    if (code == SK_GRPC_OK) {
        if (!j->gone)
            sk_zeebe_job_extended(j, c->timeout_ms);
        sk_reply_ok(r, json_pack("{s:I}", "deadline", (json_int_t)(sk_wall_ms() + c->timeout_ms)));
    } else if (code == SK_GRPC_NOT_FOUND) {
        sk_reply_error(r, "not_found", "the engine no longer has job %" PRId64 " (%s)", j->key,
                       message);
        if (!j->gone)
            sk_zeebe_job_gone(j);
    } else {
        SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", j->type, "task_id", j->id),
               "could not extend the job: %s %s", sk_grpc_code_name(code), message);
        sk_reply_error(r, sk_zeebe_transient(code) ? "unavailable" : "rejected", "%s: %s",
                       sk_grpc_code_name(code), message);
    }
    sk_zeebe_job_release(j);
}

static void publish_done(cmd *c, int code, const char *message)
{
    sk_reply *r = c->reply;
    c->reply = NULL;
    GatewayProtocol__PublishMessageResponse *resp =
        code == SK_GRPC_OK
            ? gateway_protocol__publish_message_response__unpack(NULL, c->resp_len, c->resp)
            : NULL;
    if (resp) {
        char key[24];
        snprintf(key, sizeof key, "%" PRId64, resp->key);
        sk_reply_ok(r, json_pack("{s:s, s:s}", "key", key, "tenant_id",
                                 resp->tenantid ? resp->tenantid : ""));
        gateway_protocol__publish_message_response__free_unpacked(resp, NULL);
    } else if (code == SK_GRPC_OK) {
        sk_reply_error(r, "rejected", "undecodable PublishMessageResponse (%zu bytes)",
                       c->resp_len);
    } else if (code == SK_GRPC_ALREADY_EXISTS) {
        sk_reply_error(r, "already_exists", "%s", message);
    } else {
        sk_reply_error(r, sk_zeebe_transient(code) ? "unavailable" : "rejected", "%s: %s",
                       sk_grpc_code_name(code), message);
    }
}

static void on_message(void *ud, const uint8_t *msg, size_t len)
{
    cmd *c = ud;
    free(c->resp);
    c->resp_len = 0;
    if ((c->resp = malloc(len ? len : 1))) {
        memcpy(c->resp, msg, len);
        c->resp_len = len;
    }
}

static void on_close(void *ud, int code, const char *message)
{
    cmd *c = ud;
    sk_zeebe *z = c->z;
    c->call = NULL;
    sk_zeebe_count_request(z, c->method, code);
    sk_zeebe_observe_command(z, c->method, sk_mono_s() - c->sent_at);
    if (sk_zeebe_transient(code) && !z->closing) {
        int64_t delay = sk_backoff_next(&c->bo);
        if (sk_wall_ms() + delay < c->deadline_ms) {
            struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
            evtimer_add(c->timer, &tv);
            return;
        }
    }
    char trace[33], span[17];
    exemplar_ids(c->span, trace, span); /* before the span ends */
    span_done(c->span, code, message);
    c->span = NULL;
    if (c->kind == CMD_RESULT)
        result_done(c, code, message, trace, span);
    else if (c->kind == CMD_EXTEND)
        extend_done(c, code, message);
    else
        publish_done(c, code, message);
    cmd_free(c);
}

static void send_cmd(cmd *c)
{
    c->attempts++;
    int64_t left = c->deadline_ms - sk_wall_ms();
    int64_t timeout = left > 30000 ? 30000 : left > 1000 ? left : 1000;
    char tp[SK_TRACEPARENT_LEN + 1];
    sk_grpc_metadata md[2] = {{"traceparent", tp}, {"tracestate", ""}};
    size_t nmd = 0;
    if (c->span) {
        sk_span_traceparent(c->span, tp);
        md[1].value = c->span->ctx.tracestate;
        nmd = c->span->ctx.tracestate[0] ? 2 : 1;
    }
    c->sent_at = sk_mono_s();
    c->call = sk_grpc_call_start(c->z->ch, c->method, c->req, c->len, timeout, md, nmd,
                                 c->kind == CMD_PUBLISH ? on_message : NULL, on_close, c);
    if (!c->call)
        on_close(c, SK_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* Starts command c (filled by the caller: kind, job, method, outcome, deadline, reply, span:
 * NULL for a child of the active span) with request req (taken). */
static void start(sk_zeebe *z, cmd c, uint8_t *req, size_t len)
{
    if (!c.span)
        c.span = sk_zeebe_cmd_span(z, c.method, NULL);
    cmd *p = calloc(1, sizeof(*p));
    struct event *timer = p ? evtimer_new(z->base, retry_cb, p) : NULL;
    if (!timer || !req) {
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("method", c.method),
               "out of memory sending a command");
        free(p);
        free(req);
        if (c.kind == CMD_RESULT)
            sk_zeebe_job_end(c.job);
        else if (c.kind == CMD_EXTEND)
            sk_zeebe_job_release(c.job);
        sk_reply_error(c.reply, "unavailable", "skiff is out of memory");
        sk_span_free(c.span);
        return;
    }
    *p = c;
    p->z = z;
    p->req = req;
    p->len = len;
    p->timer = timer;
    p->next = z->cmds;
    if (z->cmds)
        z->cmds->prev = p;
    z->cmds = p;
    z->pending++;
    sk_backoff_init(&p->bo, z->cfg->zeebe_backoff_initial_ms, z->cfg->zeebe_backoff_max_ms,
                    (uint64_t)(uintptr_t)p);
    send_cmd(p);
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(msg, buf);
    return buf;
}

static void start_result(sk_zeebe *z, zjob *j, const char *method, const char *outcome,
                         const ProtobufCMessage *msg)
{
    size_t len;
    uint8_t *req = pack(msg, &len);
    start(z,
          (cmd){.kind = CMD_RESULT,
                .job = j,
                .method = method,
                .outcome = outcome,
                .deadline_ms = j->deadline_ms},
          req, len);
}

void sk_zeebe_complete(sk_zeebe *z, zjob *j, const char *variables)
{
    GatewayProtocol__CompleteJobRequest r = GATEWAY_PROTOCOL__COMPLETE_JOB_REQUEST__INIT;
    r.jobkey = j->key;
    r.variables = (char *)(variables ? variables : "");
    start_result(z, j, "/gateway_protocol.Gateway/CompleteJob", "completed", &r.base);
}

void sk_zeebe_fail(sk_zeebe *z, zjob *j, int32_t retries, const char *message, int64_t backoff_ms,
                   const char *variables, const char *outcome)
{
    GatewayProtocol__FailJobRequest r = GATEWAY_PROTOCOL__FAIL_JOB_REQUEST__INIT;
    r.jobkey = j->key;
    r.retries = retries;
    r.errormessage = (char *)(message ? message : "");
    r.retrybackoff = backoff_ms;
    r.variables = (char *)(variables ? variables : "");
    start_result(z, j, "/gateway_protocol.Gateway/FailJob", outcome, &r.base);
}

void sk_zeebe_throw(sk_zeebe *z, zjob *j, const char *code, const char *message,
                    const char *variables)
{
    GatewayProtocol__ThrowErrorRequest r = GATEWAY_PROTOCOL__THROW_ERROR_REQUEST__INIT;
    r.jobkey = j->key;
    r.errorcode = (char *)code;
    r.errormessage = (char *)(message ? message : "");
    r.variables = (char *)(variables ? variables : "");
    start_result(z, j, "/gateway_protocol.Gateway/ThrowError", "bpmn_error", &r.base);
}

void sk_zeebe_update_timeout(sk_zeebe *z, zjob *j, int64_t timeout_ms, sk_reply *reply)
{
    GatewayProtocol__UpdateJobTimeoutRequest r = GATEWAY_PROTOCOL__UPDATE_JOB_TIMEOUT_REQUEST__INIT;
    r.jobkey = j->key;
    r.timeout = timeout_ms;
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    j->refs++;
    /* Retried until the current deadline: after it the job may be someone else's. */
    int64_t deadline = j->deadline_ms > sk_wall_ms() ? j->deadline_ms : sk_wall_ms() + 1000;
    start(z,
          (cmd){.kind = CMD_EXTEND,
                .job = j,
                .method = "/gateway_protocol.Gateway/UpdateJobTimeout",
                .deadline_ms = deadline,
                .timeout_ms = timeout_ms,
                .reply = reply},
          req, len);
}

void sk_zeebe_publish_send(sk_zeebe *z, uint8_t *req, size_t len, int64_t deadline_ms,
                           sk_reply *reply, sk_span *span)
{
    start(z,
          (cmd){.kind = CMD_PUBLISH,
                .method = SK_ZEEBE_PUBLISH_METHOD,
                .deadline_ms = deadline_ms,
                .reply = reply,
                .span = span},
          req, len);
}

void sk_zeebe_cmds_free(sk_zeebe *z)
{
    while (z->cmds) {
        cmd *c = z->cmds;
        if (c->call)
            sk_grpc_call_cancel(c->call);
        if (c->kind == CMD_RESULT) {
            SK_LOG(SK_LOG_ERROR, "zeebe", NULL,
                   SK_KV("job_type", c->job->type, "command", c->outcome),
                   "stopping with the %s of job %lld unsent; the engine will time the job out",
                   c->outcome, (long long)c->job->key);
            sk_zeebe_job_release(c->job);
        } else if (c->kind == CMD_EXTEND) {
            sk_zeebe_job_release(c->job);
        }
        cmd_free(c);
    }
}
