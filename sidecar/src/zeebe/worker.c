/* One worker per job type: a long-poll ActivateJobs loop, and (zeebe.streaming) a
 * StreamActivatedJobs stream for the jobs created while it is open. Neither ever takes more
 * jobs than the handlers have free credits for. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "grpc/transport.h"
#include "net/peer_tls.h"
#include "net/tls.h"
#include "zeebe/internal.h"

/* Activation asks again once this share of the worker's limit is free (Camunda's clients poll
 * again when fewer than 30 % of max jobs active remain). */
#define REFILL_SHARE 0.3

static void schedule(worker *w, int64_t delay_ms);
static void poll_jobs(worker *w);
static void stream_open(worker *w);

void sk_zeebe_count_request(sk_zeebe *z, const char *method, int code)
{
    const char *slash = strrchr(method, '/');
    const char *const labels[] = {slash ? slash + 1 : method, sk_grpc_code_name(code), NULL};
    sk_series_add(sk_metric_series(z->m_requests, labels), 1);
}

void sk_zeebe_observe_command(sk_zeebe *z, const char *method, double seconds)
{
    const char *slash = strrchr(method, '/');
    const char *const labels[] = {slash ? slash + 1 : method, NULL};
    sk_series_observe(sk_metric_series(z->m_cmd_s, labels), seconds);
}

void sk_zeebe_count_job(sk_zeebe *z, const char *type, const char *outcome)
{
    const char *const labels[] = {type, outcome, NULL};
    sk_series_add(sk_metric_series(z->m_jobs, labels), 1);
}

/* Jobs this worker may take now: free handler credits, within max_jobs_active. */
static int64_t free_credits(const worker *w)
{
    int64_t credits = sk_dispatcher_credits(w->z->d, w->type);
    int64_t room = w->jc->max_jobs_active - w->open;
    return credits < room ? credits : room;
}

/* Free credits worth an activation: REFILL_SHARE of what the worker could hold at most. */
static int worth_asking(const worker *w)
{
    int64_t limit = sk_dispatcher_capacity(w->z->d, w->type);
    if (limit > w->jc->max_jobs_active)
        limit = w->jc->max_jobs_active;
    int64_t need = (int64_t)((double)limit * REFILL_SHARE + 0.999);
    int64_t credits = free_credits(w);
    return credits > 0 && credits >= (need > 1 ? need : 1);
}

void sk_zeebe_worker_credit(worker *w)
{
    poll_jobs(w);
    stream_open(w);
}

static void set_backoff(worker *w, int64_t delay_ms)
{
    sk_series_set(w->m_backoff, (double)delay_ms / 1000.0);
}

/* A job off the wire: taken if a handler has a free credit for it, else given back at once,
 * never buffered. (The stream and a long poll may both deliver against the same credits.) */
static void take_or_yield(worker *w, const GatewayProtocol__ActivatedJob *job, double received_at)
{
    if (free_credits(w) > 0)
        sk_zeebe_submit(w, job, received_at);
    else
        sk_zeebe_yield(w, job);
}

/* A gateway message skiff cannot decode: the jobs in it (how many is unknown) stay activated
 * in the engine until their timeout, then come back. */
static void undecodable_message(worker *w, const char *what, size_t len)
{
    sk_dispatcher_undeliverable(w->z->d, "zeebe", w->type, "undecodable_response");
    SK_LOG(SK_LOG_ERROR, "zeebe", NULL,
           SK_KV("job_type", w->type, "reason", "undecodable_response"),
           "undecodable %s (%zu bytes): its jobs return after their timeout", what, len);
}

/* ---- long polling ---- */

static void on_jobs(void *ud, const uint8_t *msg, size_t len)
{
    worker *w = ud;
    GatewayProtocol__ActivateJobsResponse *r =
        gateway_protocol__activate_jobs_response__unpack(NULL, len, msg);
    double received_at = sk_mono_s();
    if (!r) {
        undecodable_message(w, "ActivateJobsResponse", len);
        return;
    }
    w->received += r->n_jobs;
    for (size_t i = 0; i < r->n_jobs; i++)
        take_or_yield(w, r->jobs[i], received_at);
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
        set_backoff(w, 0);
        schedule(w, w->received ? 0 : w->z->cfg->zeebe_backoff_initial_ms);
        return;
    }
    int64_t delay = sk_backoff_next(&w->bo);
    set_backoff(w, delay);
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", w->type, "code", sk_grpc_code_name(code)),
           "job activation failed: %s; retrying in %lld ms", message, (long long)delay);
    schedule(w, delay);
}

static uint8_t *pack(const ProtobufCMessage *msg, size_t *len)
{
    *len = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(*len ? *len : 1);
    if (buf)
        protobuf_c_message_pack(msg, buf);
    return buf;
}

/* Issues ActivateJobs for as many jobs as handlers can take now, if that is worth it. */
static void poll_jobs(worker *w)
{
    sk_zeebe *z = w->z;
    const sk_job_type_config *jc = w->jc;
    if (w->call || z->stopping || evtimer_pending(w->timer, NULL) || !worth_asking(w))
        return;
    GatewayProtocol__ActivateJobsRequest r = GATEWAY_PROTOCOL__ACTIVATE_JOBS_REQUEST__INIT;
    r.type = (char *)w->type;
    r.worker = jc->worker_name;
    r.timeout = jc->job_timeout_ms;
    r.maxjobstoactivate = (int32_t)free_credits(w);
    r.requesttimeout = jc->request_timeout_ms;
    r.fetchvariable = jc->fetch_variables;
    r.n_fetchvariable = jc->fetch_variables_len;
    r.tenantids = jc->tenant_ids;
    r.n_tenantids = jc->tenant_ids_len;
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    if (!req) {
        schedule(w, 1000);
        return;
    }
    /* The gateway answers a long poll after requestTimeout; leave it room before our deadline. */
    int64_t timeout = jc->request_timeout_ms + 10000;
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

/* ---- job stream ---- */

static void stream_close(worker *w)
{
    if (!w->stream)
        return;
    sk_grpc_call_cancel(w->stream);
    w->stream = NULL;
    w->stream_paused = 0;
    sk_series_set(w->m_streams, 0);
}

static void stream_after(worker *w, int64_t delay_ms)
{
    struct timeval tv = {delay_ms / 1000, (delay_ms % 1000) * 1000};
    evtimer_add(w->stream_timer, &tv);
}

/* A pushed job. When the last credit is used the stream is paused (HTTP/2 flow control: the
 * gateway can send at most one more window, then yields the jobs it cannot push back to the
 * engine for other workers or for polling) and resumed once enough credits are free again.
 * Closing it instead would lose the jobs already on the wire until their timeout. */
static void on_streamed(void *ud, const uint8_t *msg, size_t len)
{
    worker *w = ud;
    GatewayProtocol__ActivatedJob *job = gateway_protocol__activated_job__unpack(NULL, len, msg);
    double received_at = sk_mono_s();
    if (!job) {
        undecodable_message(w, "ActivatedJob (job stream)", len);
        return;
    }
    sk_series_add(w->m_streamed, 1);
    sk_backoff_reset(&w->stream_bo);
    take_or_yield(w, job, received_at);
    gateway_protocol__activated_job__free_unpacked(job, NULL);
    if (free_credits(w) <= 0 && w->stream) {
        sk_grpc_call_pause(w->stream, 1);
        w->stream_paused = 1;
    }
}

static void on_stream_done(void *ud, int code, const char *message)
{
    worker *w = ud;
    w->stream = NULL;
    w->stream_paused = 0;
    sk_series_set(w->m_streams, 0);
    sk_zeebe_count_request(w->z, "StreamActivatedJobs", code);
    if (w->z->stopping)
        return;
    int64_t delay = sk_backoff_next(&w->stream_bo);
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", w->type, "code", sk_grpc_code_name(code)),
           "job stream closed: %s; reopening in %lld ms", message, (long long)delay);
    stream_after(w, delay);
}

static void stream_open(worker *w)
{
    sk_zeebe *z = w->z;
    const sk_job_type_config *jc = w->jc;
    if (w->stream && w->stream_paused && worth_asking(w)) {
        sk_grpc_call_pause(w->stream, 0);
        w->stream_paused = 0;
    }
    if (!jc->streaming || w->stream || z->stopping || evtimer_pending(w->stream_timer, NULL) ||
        !worth_asking(w))
        return;
    GatewayProtocol__StreamActivatedJobsRequest r =
        GATEWAY_PROTOCOL__STREAM_ACTIVATED_JOBS_REQUEST__INIT;
    r.type = (char *)w->type;
    r.worker = jc->worker_name;
    r.timeout = jc->job_timeout_ms;
    r.fetchvariable = jc->fetch_variables;
    r.n_fetchvariable = jc->fetch_variables_len;
    r.tenantids = jc->tenant_ids;
    r.n_tenantids = jc->tenant_ids_len;
    size_t len;
    uint8_t *req = pack(&r.base, &len);
    w->stream = req ? sk_grpc_call_start(z->ch, "/gateway_protocol.Gateway/StreamActivatedJobs",
                                         req, len, 0, NULL, 0, on_streamed, on_stream_done, w)
                    : NULL;
    free(req);
    if (!w->stream) {
        stream_after(w, 1000);
        return;
    }
    sk_series_set(w->m_streams, 1);
    if (z->cfg->zeebe_stream_recycle_ms > 0)
        stream_after(w, z->cfg->zeebe_stream_recycle_ms);
}

/* Reopen after an error, or recycle an open stream so load spreads over the gateways. */
static void stream_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker *w = arg;
    if (w->stream && w->stream_paused) { /* closing now would lose what is on the wire */
        stream_after(w, w->z->cfg->zeebe_stream_recycle_ms);
        return;
    }
    if (w->stream)
        sk_backoff_reset(&w->stream_bo);
    stream_close(w);
    stream_open(w);
}

/* ---- lifecycle ---- */

static void on_credit(void *ud)
{
    sk_zeebe *z = ud;
    for (size_t i = 0; i < z->nworkers; i++)
        sk_zeebe_worker_credit(z->workers[i]);
}

static void worker_free(worker *w)
{
    if (!w)
        return;
    if (w->call)
        sk_grpc_call_cancel(w->call);
    if (w->stream)
        sk_grpc_call_cancel(w->stream);
    if (w->timer)
        event_free(w->timer);
    if (w->stream_timer)
        event_free(w->stream_timer);
    free(w);
}

static worker *worker_new(sk_zeebe *z, const sk_job_type_config *jc, uint64_t seed)
{
    worker *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->z = z;
    w->jc = jc;
    w->type = jc->type;
    w->timer = evtimer_new(z->base, timer_cb, w);
    w->stream_timer = evtimer_new(z->base, stream_timer_cb, w);
    const char *const labels[] = {jc->type, NULL};
    w->m_open = sk_metric_series(z->m_open, labels);
    w->m_backoff = sk_metric_series(z->m_backoff, labels);
    w->m_streamed = sk_metric_series(z->m_streamed, labels);
    w->m_streams = sk_metric_series(z->m_streams, labels);
    if (!w->timer || !w->stream_timer || !w->m_open || !w->m_backoff || !w->m_streamed ||
        !w->m_streams) {
        worker_free(w);
        return NULL;
    }
    const sk_config *cfg = z->cfg;
    sk_backoff_init(&w->bo, cfg->zeebe_backoff_initial_ms, cfg->zeebe_backoff_max_ms, seed);
    sk_backoff_init(&w->stream_bo, cfg->zeebe_backoff_initial_ms, cfg->zeebe_backoff_max_ms,
                    seed ^ 0x5eed);
    return w;
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

static void on_error(void *ud, const char *why, int64_t retry_ms)
{
    sk_zeebe *z = ud;
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("address", z->cfg->zeebe_address),
           "gateway: %s; next attempt in %lld ms", why, (long long)retry_ms);
}

/* New client certificate or key in force: a fresh connection shows it (before the old
 * certificate expires); the old connection finishes its calls first. */
static void on_tls_change(void *ud, int changed_cert)
{
    sk_zeebe *z = ud;
    if (changed_cert) {
        SK_INFO("zeebe", "new client certificate: replacing the gateway connection");
        sk_grpc_channel_reconnect(z->ch);
    }
}

/* zeebe.tls: the material and the transport of the channel. */
static int setup_tls(sk_zeebe *z, sk_metrics *metrics, char *err, size_t errlen)
{
    sk_tls_opts o;
    if (!sk_peer_tls_opts(z->cfg, "zeebe", &o))
        return 0;
    if (!(z->tls = sk_tls_new(&o, z->base, z->cfg->tls_reload_ms, metrics, err, errlen)))
        return -1;
    sk_tls_on_change(z->tls, on_tls_change, z);
    if (!(z->tp = sk_grpc_transport_tls(z->tls))) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static int register_metrics(sk_zeebe *z, sk_metrics *m)
{
    z->m_requests = sk_metrics_counter(m, "skiff_zeebe_gateway_requests_total",
                                       "Gateway calls answered, by method and gRPC code.",
                                       SK_KV("method", "code"));
    z->m_jobs = sk_metrics_counter(
        m, "skiff_zeebe_jobs_total",
        "Jobs by outcome: activated; then completed, failed, bpmn_error, abandoned, yielded, "
        "undeliverable, timed_out, not_found, rejected or deadline_passed.",
        SK_KV("job_type", "outcome"));
    z->m_latency = sk_metrics_histogram(m, "skiff_zeebe_job_latency_seconds",
                                        "Time from job activation to its command acknowledged.",
                                        SK_KV("job_type"), sk_metrics_latency_buckets,
                                        sk_metrics_latency_nbuckets);
    z->m_open = sk_metrics_gauge(m, "skiff_zeebe_jobs_in_flight", "Activated jobs held by skiff.",
                                 SK_KV("job_type"));
    z->m_backoff = sk_metrics_gauge(m, "skiff_zeebe_activation_backoff_seconds",
                                    "Delay before the next activation after gateway errors; 0 "
                                    "when activation is healthy.",
                                    SK_KV("job_type"));
    z->m_streamed =
        sk_metrics_counter(m, "skiff_zeebe_streamed_jobs_total",
                           "Jobs pushed by the gateway on the job stream.", SK_KV("job_type"));
    z->m_streams = sk_metrics_gauge(m, "skiff_zeebe_job_streams_open",
                                    "Job streams open (0 or 1 per job type).", SK_KV("job_type"));
    z->m_overdue = sk_metrics_counter(m, "skiff_zeebe_jobs_overdue_total",
                                      "Jobs whose deadline passed while a handler held them.",
                                      SK_KV("job_type"));
    z->m_unenc = sk_metrics_counter(
        m, "skiff_zeebe_results_unencodable_total",
        "Handler results whose variables could not be encoded for the engine (the job is "
        "failed instead).",
        SK_KV("job_type"));
    z->m_cmd_s = sk_metrics_histogram(
        m, "skiff_zeebe_command_duration_seconds",
        "One attempt of a gateway command (CompleteJob, FailJob, ThrowError, UpdateJobTimeout, "
        "PublishMessage): sent to answered, by method.",
        SK_KV("method"), sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    return z->m_requests && z->m_jobs && z->m_latency && z->m_open && z->m_backoff &&
                   z->m_streamed && z->m_streams && z->m_overdue && z->m_unenc && z->m_cmd_s
               ? 0
               : -1;
}

/* ---- credentials: the token service as the channel's auth source ---- */

static void wipe_bearer(sk_zeebe *z)
{
    if (z->bearer) {
        explicit_bzero(z->bearer, strlen(z->bearer));
        free(z->bearer);
    }
    z->bearer = NULL;
}

static const char *auth_value(void *ud)
{
    sk_zeebe *z = ud;
    const char *t = sk_oauth_token_get(z->token);
    if (!t)
        return NULL;
    if (!z->bearer || strcmp(z->bearer + 7, t) != 0) {
        wipe_bearer(z);
        size_t n = strlen(t) + 8;
        if (!(z->bearer = malloc(n)))
            return NULL;
        snprintf(z->bearer, n, "Bearer %s", t);
    }
    return z->bearer;
}

static void auth_rejected(void *ud, const char *value)
{
    sk_zeebe *z = ud;
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("address", z->cfg->zeebe_address),
           "gateway answered UNAUTHENTICATED: getting a new access token");
    sk_oauth_token_rejected(z->token, value + 7);
}

static void on_token(void *ud)
{
    sk_zeebe *z = ud;
    sk_grpc_channel_auth_changed(z->ch);
}

sk_zeebe *sk_zeebe_new(struct event_base *base, const sk_config *cfg, sk_dispatcher *d,
                       sk_metrics *metrics, sk_oauth_client *token, char *err, size_t errlen)
{
    sk_zeebe *z = calloc(1, sizeof(*z));
    if (!z || !(z->workers = calloc(cfg->zeebe_jobs_len + 1, sizeof(worker *))))
        goto oom;
    z->base = base;
    z->d = d;
    z->cfg = cfg;
    if (register_metrics(z, metrics) != 0)
        goto oom;
    for (size_t i = 0; i < cfg->zeebe_jobs_len; i++) {
        const sk_job_type_config *jc = &cfg->zeebe_jobs[i];
        if (!(z->workers[i] = worker_new(z, jc, (uint64_t)(uintptr_t)z + i)) ||
            sk_dispatcher_add_route(d, "zeebe", jc->type) != 0)
            goto oom;
        z->nworkers++;
    }
    if (setup_tls(z, metrics, err, errlen) != 0) {
        sk_zeebe_free(z);
        return NULL;
    }
    sk_grpc_channel_opts o = {
        .target = cfg->zeebe_address,
        .transport = z->tp,
        .on_error = on_error,
        .max_message_bytes = (size_t)cfg->grpc_max_message_bytes,
        .keepalive_ms = cfg->grpc_keepalive_ms,
        .connect_timeout_ms = 5000,
        .reconnect_initial_ms = cfg->zeebe_backoff_initial_ms,
        .reconnect_max_ms = cfg->zeebe_backoff_max_ms,
        /* Without job types the gateway is only needed for the handlers' calls. */
        .lazy = cfg->zeebe_jobs_len == 0,
        .auth = token ? &z->auth : NULL,
    };
    z->token = token;
    z->auth = (sk_grpc_auth){.value = auth_value, .rejected = auth_rejected, .ud = z};
    if (token && sk_oauth_listen(token, on_token, z) != 0)
        goto oom;
    if (!(z->ch = sk_grpc_channel_new(base, &o, on_state, z))) {
        snprintf(err, errlen, "cannot create the gateway channel to %s", cfg->zeebe_address);
        sk_zeebe_free(z);
        return NULL;
    }
    if (sk_dispatcher_watch(d, on_credit, z) != 0 ||
        sk_dispatcher_add_method(d, "publish_message", sk_zeebe_publish_call, z) != 0)
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

const char *sk_zeebe_last_error(const sk_zeebe *z)
{
    return sk_grpc_channel_last_error(z->ch);
}

void sk_zeebe_stop(sk_zeebe *z)
{
    z->stopping = 1;
    for (size_t i = 0; i < z->nworkers; i++) {
        worker *w = z->workers[i];
        if (w->call)
            sk_grpc_call_cancel(w->call);
        w->call = NULL;
        stream_close(w);
        evtimer_del(w->timer);
        evtimer_del(w->stream_timer);
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
    if (z->token)
        sk_oauth_unlisten(z->token, on_token, z);
    wipe_bearer(z);
    sk_grpc_transport_free(z->tp);
    sk_tls_free(z->tls);
    free(z->workers);
    free(z);
}
