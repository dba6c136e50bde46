/* Job commands: CompleteJob, FailJob, ThrowError, retried on transient gateway errors with
 * jittered backoff until the job deadline and no longer. */
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <event2/event.h>

#include "core/log.h"
#include "gateway.pb-c.h"
#include "zeebe/internal.h"

typedef struct cmd {
    sk_zeebe *z;
    zjob *job;
    const char *method;  /* gRPC path */
    const char *outcome; /* metric label when acknowledged */
    uint8_t *req;
    size_t len;
    sk_backoff bo;
    struct event *timer;
    sk_grpc_call *call;
    unsigned attempts;
    struct cmd *next, *prev;
} cmd;

static void send_cmd(cmd *c);

double sk_zeebe_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

int sk_zeebe_transient(int code)
{
    return code == SK_GRPC_UNAVAILABLE || code == SK_GRPC_RESOURCE_EXHAUSTED ||
           code == SK_GRPC_DEADLINE_EXCEEDED || code == SK_GRPC_CANCELLED ||
           code == SK_GRPC_ABORTED;
}

static void count_job(sk_zeebe *z, const zjob *j, const char *outcome)
{
    const char *const labels[] = {j->type, outcome, NULL};
    sk_series_add(sk_metric_series(z->m_jobs, labels), 1);
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
    free(c->req);
    free(c->job);
    free(c);
}

static void retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    send_cmd(arg);
}

static void on_close(void *ud, int code, const char *message)
{
    cmd *c = ud;
    sk_zeebe *z = c->z;
    zjob *j = c->job;
    c->call = NULL;
    sk_zeebe_count_request(z, c->method, code);
    if (code == SK_GRPC_OK) {
        count_job(z, j, c->outcome);
        const char *const labels[] = {j->type, NULL};
        sk_series_observe(sk_metric_series(z->m_latency, labels), sk_zeebe_now() - j->activated_at);
    } else if (code == SK_GRPC_NOT_FOUND) {
        count_job(z, j, "not_found");
        SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "job %lld is gone (timed out or cancelled): %s", (long long)j->key, message);
    } else if (sk_zeebe_transient(code) && !z->closing) {
        int64_t delay = sk_backoff_next(&c->bo);
        if (sk_zeebe_now() * 1000 + (double)delay < (double)j->deadline_ms) {
            struct timeval tv = {delay / 1000, (delay % 1000) * 1000};
            evtimer_add(c->timer, &tv);
            return;
        }
        count_job(z, j, "deadline_passed");
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "giving up on job %lld after %u attempts: deadline passed (%s: %s)",
               (long long)j->key, c->attempts, sk_grpc_code_name(code), message);
    } else {
        count_job(z, j, "rejected");
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type, "command", c->outcome),
               "gateway rejected the %s of job %lld: %s %s", c->outcome, (long long)j->key,
               sk_grpc_code_name(code), message);
    }
    sk_zeebe_job_done(j);
    cmd_free(c);
}

static void send_cmd(cmd *c)
{
    c->attempts++;
    int64_t left = c->job->deadline_ms - (int64_t)(sk_zeebe_now() * 1000);
    int64_t timeout = left > 30000 ? 30000 : left > 1000 ? left : 1000;
    c->call = sk_grpc_call_start(c->z->ch, c->method, c->req, c->len, timeout, NULL, 0, NULL,
                                 on_close, c);
    if (!c->call)
        on_close(c, SK_GRPC_RESOURCE_EXHAUSTED, "out of memory");
}

/* Takes ownership of j and req. */
static void start(sk_zeebe *z, zjob *j, const char *method, const char *outcome, uint8_t *req,
                  size_t len)
{
    cmd *c = calloc(1, sizeof(*c));
    z->pending++;
    if (!c || !req || !(c->timer = evtimer_new(z->base, retry_cb, c))) {
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type),
               "out of memory sending the %s of job %lld", outcome, (long long)j->key);
        z->pending--;
        free(c);
        free(req);
        sk_zeebe_job_done(j);
        free(j);
        return;
    }
    *c = (cmd){.z = z,
               .job = j,
               .method = method,
               .outcome = outcome,
               .req = req,
               .len = len,
               .timer = c->timer,
               .next = z->cmds};
    if (z->cmds)
        z->cmds->prev = c;
    z->cmds = c;
    sk_backoff_init(&c->bo, z->cfg->zeebe_backoff_initial_ms, z->cfg->zeebe_backoff_max_ms,
                    (uint64_t)j->key);
    send_cmd(c);
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(msg, buf);
    return buf;
}

void sk_zeebe_complete(sk_zeebe *z, zjob *j, const char *variables)
{
    GatewayProtocol__CompleteJobRequest r = GATEWAY_PROTOCOL__COMPLETE_JOB_REQUEST__INIT;
    r.jobkey = j->key;
    r.variables = (char *)(variables ? variables : "");
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    start(z, j, "/gateway_protocol.Gateway/CompleteJob", "completed", req, len);
}

void sk_zeebe_fail(sk_zeebe *z, zjob *j, int32_t retries, const char *message, int64_t backoff_ms,
                   const char *variables)
{
    GatewayProtocol__FailJobRequest r = GATEWAY_PROTOCOL__FAIL_JOB_REQUEST__INIT;
    r.jobkey = j->key;
    r.retries = retries;
    r.errormessage = (char *)(message ? message : "");
    r.retrybackoff = backoff_ms;
    r.variables = (char *)(variables ? variables : "");
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    start(z, j, "/gateway_protocol.Gateway/FailJob", "failed", req, len);
}

void sk_zeebe_throw(sk_zeebe *z, zjob *j, const char *code, const char *message,
                    const char *variables)
{
    GatewayProtocol__ThrowErrorRequest r = GATEWAY_PROTOCOL__THROW_ERROR_REQUEST__INIT;
    r.jobkey = j->key;
    r.errorcode = (char *)code;
    r.errormessage = (char *)(message ? message : "");
    r.variables = (char *)(variables ? variables : "");
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    start(z, j, "/gateway_protocol.Gateway/ThrowError", "bpmn_error", req, len);
}

void sk_zeebe_cmds_free(sk_zeebe *z)
{
    while (z->cmds) {
        cmd *c = z->cmds;
        if (c->call)
            sk_grpc_call_cancel(c->call);
        SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", c->job->type, "command", c->outcome),
               "stopping with the %s of job %lld unsent; the engine will time the job out",
               c->outcome, (long long)c->job->key);
        cmd_free(c);
    }
}
