/* Activation loops (one per job type) and the dispatcher source ops for Zeebe jobs. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/log.h"
#include "gateway.pb-c.h"
#include "zeebe/internal.h"

struct worker {
    sk_zeebe *z;
    char *type;
    sk_grpc_call *call;  /* the pending ActivateJobs long poll */
    struct event *timer; /* next poll (backoff or next turn) */
    sk_backoff bo;
    int64_t open;    /* jobs of this type held by skiff */
    size_t received; /* jobs received by the pending poll */
    sk_series *m_open;
};

static void schedule(worker *w, int64_t delay_ms);
static void poll_jobs(worker *w);

static char *dump(const json_t *v)
{
    return v ? json_dumps(v, JSON_COMPACT) : NULL;
}

static void op_complete(void *source, void *ctx, const sk_msg *m)
{
    char *vars = dump(m->variables);
    sk_zeebe_complete(source, ctx, vars);
    free(vars);
}

static void op_fail(void *source, void *ctx, const sk_msg *m)
{
    zjob *j = ctx;
    int32_t retries = m->has_retries ? (int32_t)m->retries : (j->retries > 0 ? j->retries - 1 : 0);
    char *vars = dump(m->variables);
    sk_zeebe_fail(source, j, retries, m->message, m->retry_backoff_ms, vars);
    free(vars);
}

static void op_error(void *source, void *ctx, const sk_msg *m)
{
    char *vars = dump(m->variables);
    sk_zeebe_throw(source, ctx, m->code, m->message, vars);
    free(vars);
}

/* Gives the job back at once with its retries unchanged, so it is activated again now. */
static void op_abandon(void *source, void *ctx, const char *why)
{
    zjob *j = ctx;
    sk_zeebe_fail(source, j, j->retries, why, 0, NULL);
}

static const sk_source_ops zeebe_ops = {
    .name = "zeebe",
    .complete = op_complete,
    .fail = op_fail,
    .error = op_error,
    .abandon = op_abandon,
};

void sk_zeebe_job_done(zjob *j)
{
    worker *w = j->w;
    w->open--;
    sk_series_set(w->m_open, (double)w->open);
    poll_jobs(w);
}

static json_t *parse_object(const char *text)
{
    json_t *v = text && *text ? json_loads(text, 0, NULL) : json_object();
    if (v && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static json_t *job_payload(const GatewayProtocol__ActivatedJob *job, json_t *vars, json_t *headers)
{
    char key[24], pik[24], pdk[24], eik[24];
    snprintf(key, sizeof(key), "%" PRId64, job->key);
    snprintf(pik, sizeof(pik), "%" PRId64, job->processinstancekey);
    snprintf(pdk, sizeof(pdk), "%" PRId64, job->processdefinitionkey);
    snprintf(eik, sizeof(eik), "%" PRId64, job->elementinstancekey);
    return json_pack("{s:s, s:o, s:o, s:{s:s, s:s, s:s, s:i, s:s, s:s, s:s, s:i, s:s, s:s}}",
                     "job_type", job->type, "variables", vars, "headers", headers, "zeebe", "key",
                     key, "process_instance_key", pik, "bpmn_process_id", job->bpmnprocessid,
                     "process_definition_version", job->processdefinitionversion,
                     "process_definition_key", pdk, "element_id", job->elementid,
                     "element_instance_key", eik, "retries", job->retries, "worker", job->worker,
                     "tenant_id", job->tenantid ? job->tenantid : "");
}

/* Turns one activated job into a dispatcher task. */
static void submit_job(worker *w, const GatewayProtocol__ActivatedJob *job)
{
    sk_zeebe *z = w->z;
    zjob *j = calloc(1, sizeof(*j));
    if (!j) {
        SK_ERROR("zeebe", "out of memory: job %lld will time out", (long long)job->key);
        return;
    }
    *j = (zjob){.w = w,
                .type = w->type,
                .key = job->key,
                .retries = job->retries,
                .deadline_ms = job->deadline,
                .activated_at = sk_zeebe_now()};
    w->open++;
    sk_series_set(w->m_open, (double)w->open);
    const char *const labels[] = {w->type, "activated", NULL};
    sk_series_add(sk_metric_series(z->m_jobs, labels), 1);
    json_t *vars = parse_object(job->variables), *headers = parse_object(job->customheaders);
    if (!vars || !headers) {
        json_decref(vars);
        json_decref(headers);
        sk_zeebe_fail(
            z, j, j->retries > 0 ? j->retries - 1 : 0,
            "skiff could not decode the job's variables or custom headers as a JSON object", 0,
            NULL);
        return;
    }
    char id[32];
    snprintf(id, sizeof(id), "z-%" PRId64, job->key);
    sk_dispatcher_submit(z->d, &zeebe_ops, z, j, w->type, id, job->deadline,
                         job_payload(job, vars, headers));
}

static void on_jobs(void *ud, const uint8_t *msg, size_t len)
{
    worker *w = ud;
    GatewayProtocol__ActivateJobsResponse *r =
        gateway_protocol__activate_jobs_response__unpack(NULL, len, msg);
    if (!r) {
        SK_ERROR("zeebe", "undecodable ActivateJobsResponse (%zu bytes) for %s", len, w->type);
        return;
    }
    w->received += r->n_jobs;
    for (size_t i = 0; i < r->n_jobs; i++)
        submit_job(w, r->jobs[i]);
    gateway_protocol__activate_jobs_response__free_unpacked(r, NULL);
}

static void on_poll_done(void *ud, int code, const char *message)
{
    worker *w = ud;
    w->call = NULL;
    sk_zeebe_count_request(w->z, "ActivateJobs", code);
    if (w->z->stopping)
        return;
    if (code == SK_GRPC_OK) {
        /* An empty answer comes after the long poll's requestTimeout, or at once from a
         * gateway without long polling: never loop on those without a pause. */
        sk_backoff_reset(&w->bo);
        schedule(w, w->received ? 0 : w->z->cfg->zeebe_backoff_initial_ms);
        return;
    }
    int64_t delay = sk_backoff_next(&w->bo);
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", w->type, "code", sk_grpc_code_name(code)),
           "job activation failed: %s; retrying in %lld ms", message, (long long)delay);
    schedule(w, delay);
}

/* Issues ActivateJobs for as many jobs as handlers can take now, if any. */
static void poll_jobs(worker *w)
{
    sk_zeebe *z = w->z;
    const sk_config *cfg = z->cfg;
    if (w->call || z->stopping || evtimer_pending(w->timer, NULL))
        return;
    int64_t credits = sk_dispatcher_credits(z->d, w->type);
    if (credits > cfg->zeebe_max_jobs_active - w->open)
        credits = cfg->zeebe_max_jobs_active - w->open;
    if (credits <= 0)
        return;
    GatewayProtocol__ActivateJobsRequest r = GATEWAY_PROTOCOL__ACTIVATE_JOBS_REQUEST__INIT;
    r.type = w->type;
    r.worker = cfg->zeebe_worker_name;
    r.timeout = cfg->zeebe_job_timeout_ms;
    r.maxjobstoactivate = (int32_t)credits;
    r.requesttimeout = cfg->zeebe_request_timeout_ms;
    size_t len = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *req = malloc(len ? len : 1);
    if (!req) {
        schedule(w, 1000);
        return;
    }
    protobuf_c_message_pack(&r.base, req);
    /* The gateway answers a long poll after requestTimeout; leave it room before our deadline. */
    int64_t timeout = cfg->zeebe_request_timeout_ms + 10000;
    w->received = 0;
    w->call = sk_grpc_call_start(z->ch, "/gateway_protocol.Gateway/ActivateJobs", req, len, timeout,
                                 NULL, 0, on_jobs, on_poll_done, w);
    free(req);
    if (!w->call)
        schedule(w, 1000);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    poll_jobs(arg);
}

static void schedule(worker *w, int64_t delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
}

static void on_credit(void *ud)
{
    sk_zeebe *z = ud;
    for (size_t i = 0; i < z->nworkers; i++)
        poll_jobs(z->workers[i]);
}

static void worker_free(worker *w)
{
    if (!w)
        return;
    if (w->call)
        sk_grpc_call_cancel(w->call);
    if (w->timer)
        event_free(w->timer);
    free(w->type);
    free(w);
}

static worker *worker_new(sk_zeebe *z, const char *type, uint64_t seed)
{
    worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->z = z;
    w->type = strdup(type);
    w->timer = evtimer_new(z->base, timer_cb, w);
    const char *const labels[] = {type, NULL};
    w->m_open = sk_metric_series(z->m_open, labels);
    if (!w->type || !w->timer || !w->m_open) {
        worker_free(w);
        return NULL;
    }
    sk_backoff_init(&w->bo, z->cfg->zeebe_backoff_initial_ms, z->cfg->zeebe_backoff_max_ms, seed);
    return w;
}

void sk_zeebe_count_request(sk_zeebe *z, const char *method, int code)
{
    const char *slash = strrchr(method, '/');
    const char *const labels[] = {slash ? slash + 1 : method, sk_grpc_code_name(code), NULL};
    sk_series_add(sk_metric_series(z->m_requests, labels), 1);
}

static void on_state(void *ud, int connected)
{
    sk_zeebe *z = ud;
    z->connected = connected;
    SK_LOG(connected ? SK_LOG_INFO : SK_LOG_WARN, "zeebe", NULL,
           SK_KV("address", z->cfg->zeebe_address),
           connected ? "gateway connected" : "gateway connection lost");
    if (connected)
        on_credit(z);
}

static int register_metrics(sk_zeebe *z, sk_metrics *m)
{
    z->m_requests = sk_metrics_counter(m, "skiff_zeebe_gateway_requests_total",
                                       "Gateway calls answered, by method and gRPC code.",
                                       SK_KV("method", "code"));
    z->m_jobs = sk_metrics_counter(m, "skiff_zeebe_jobs_total",
                                   "Jobs by outcome: activated, completed, failed, bpmn_error, "
                                   "not_found (gone from the engine), rejected, deadline_passed.",
                                   SK_KV("job_type", "outcome"));
    z->m_latency = sk_metrics_histogram(m, "skiff_zeebe_job_latency_seconds",
                                        "Time from job activation to its command acknowledged.",
                                        SK_KV("job_type"), sk_metrics_latency_buckets,
                                        sk_metrics_latency_nbuckets);
    z->m_open = sk_metrics_gauge(m, "skiff_zeebe_jobs_in_flight", "Activated jobs held by skiff.",
                                 SK_KV("job_type"));
    return z->m_requests && z->m_jobs && z->m_latency && z->m_open ? 0 : -1;
}

sk_zeebe *sk_zeebe_new(struct event_base *base, const sk_config *cfg, sk_dispatcher *d,
                       sk_metrics *metrics, char *err, size_t errlen)
{
    sk_zeebe *z = calloc(1, sizeof(*z));
    if (!z || !(z->workers = calloc(cfg->zeebe_job_types_len + 1, sizeof(worker *))))
        goto oom;
    z->base = base;
    z->d = d;
    z->cfg = cfg;
    if (register_metrics(z, metrics) != 0)
        goto oom;
    for (size_t i = 0; i < cfg->zeebe_job_types_len; i++) {
        if (!(z->workers[i] = worker_new(z, cfg->zeebe_job_types[i], (uint64_t)(uintptr_t)z + i)) ||
            sk_dispatcher_add_route(d, cfg->zeebe_job_types[i]) != 0)
            goto oom;
        z->nworkers++;
    }
    sk_grpc_channel_opts o = {
        .target = cfg->zeebe_address,
        .max_message_bytes = (size_t)cfg->grpc_max_message_bytes,
        .keepalive_ms = cfg->grpc_keepalive_ms,
        .connect_timeout_ms = 5000,
        .reconnect_initial_ms = cfg->zeebe_backoff_initial_ms,
        .reconnect_max_ms = cfg->zeebe_backoff_max_ms,
    };
    if (!(z->ch = sk_grpc_channel_new(base, &o, on_state, z))) {
        snprintf(err, errlen, "cannot create the gateway channel to %s", cfg->zeebe_address);
        sk_zeebe_free(z);
        return NULL;
    }
    if (sk_dispatcher_watch(d, on_credit, z) != 0)
        goto oom;
    return z;
oom:
    snprintf(err, errlen, "out of memory");
    sk_zeebe_free(z);
    return NULL;
}

int sk_zeebe_connected(const sk_zeebe *z)
{
    return z->connected;
}

void sk_zeebe_stop(sk_zeebe *z)
{
    z->stopping = 1;
    for (size_t i = 0; i < z->nworkers; i++) {
        worker *w = z->workers[i];
        if (w->call)
            sk_grpc_call_cancel(w->call);
        w->call = NULL;
        evtimer_del(w->timer);
    }
}

size_t sk_zeebe_pending(const sk_zeebe *z)
{
    return z->pending;
}

void sk_zeebe_free(sk_zeebe *z)
{
    if (!z)
        return;
    z->stopping = z->closing = 1;
    sk_zeebe_cmds_free(z);
    for (size_t i = 0; i < z->nworkers; i++)
        worker_free(z->workers[i]);
    sk_grpc_channel_free(z->ch);
    free(z->workers);
    free(z);
}
