/* An activated job: from the wire to a dispatcher task, the handler's result to a command, and
 * the watch on its deadline while a handler holds it. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/text.h"
#include "zeebe/internal.h"

/* A job that can never reach a handler because of its content: logged with its key, and
 * failed with why as the engine's error message (retries - 1, so an incident shows it once
 * they run out). The caller has counted it. */
static void undeliverable(zjob *j, const char *reason, const char *why)
{
    char key[24];
    snprintf(key, sizeof key, "%" PRId64, j->key);
    SK_LOG(SK_LOG_WARN, "zeebe", NULL,
           SK_KV("job_type", j->type, "job_key", key, "task_id", j->id, "reason", reason),
           "job %s not delivered to a handler, failed in the engine: %s", key, why);
    sk_zeebe_fail(j->w->z, j, j->retries > 0 ? j->retries - 1 : 0, why, 0, NULL, "undeliverable");
}

/* The handler's result: the job leaves the handler for its command. */
static zjob *take(void *ctx)
{
    zjob *j = ctx;
    j->held = 0;
    event_del(j->deadline);
    return j;
}

/* The result's variables as the command's JSON text in *out (NULL when it has none). -1 when
 * they cannot be encoded: the job is then failed (logged, counted) instead of its command
 * going out without them. */
static int result_variables(void *source, zjob *j, const sk_msg *m, char **out)
{
    sk_zeebe *z = source;
    *out = m->variables ? json_dumps(m->variables, JSON_COMPACT) : NULL;
    if (!m->variables || *out)
        return 0;
    char key[24];
    snprintf(key, sizeof key, "%" PRId64, j->key);
    const char *const labels[] = {j->type, NULL};
    sk_series_add(sk_metric_series(z->m_unenc, labels), 1);
    SK_LOG(SK_LOG_ERROR, "zeebe", NULL, SK_KV("job_type", j->type, "job_key", key),
           "the handler's result for job %s cannot be encoded (out of memory): job failed", key);
    sk_zeebe_fail(z, j, j->retries > 0 ? j->retries - 1 : 0,
                  "skiff could not encode the handler's result variables (out of memory)", 0, NULL,
                  "failed");
    return -1;
}

/* The result's message as a C string for the command: a NUL inside it (valid JSON) would cut
 * it short, so each one becomes U+FFFD. Returns m->message itself when it has none, else a
 * copy in *copy (to free). */
static const char *result_message(const sk_msg *m, char **copy)
{
    *copy = NULL;
    if (!m->message || strlen(m->message) == m->message_len)
        return m->message;
    *copy = sk_text_replace_nul(m->message, m->message_len);
    return *copy ? *copy : "";
}

static void op_complete(void *source, void *ctx, const sk_msg *m)
{
    zjob *j = take(ctx);
    char *vars;
    if (result_variables(source, j, m, &vars) != 0)
        return;
    sk_zeebe_complete(source, j, vars);
    free(vars);
}

static void op_fail(void *source, void *ctx, const sk_msg *m)
{
    zjob *j = take(ctx);
    int32_t retries = m->has_retries ? (int32_t)m->retries : (j->retries > 0 ? j->retries - 1 : 0);
    char *vars, *copy;
    if (result_variables(source, j, m, &vars) != 0)
        return;
    sk_zeebe_fail(source, j, retries, result_message(m, &copy), m->retry_backoff_ms, vars,
                  "failed");
    free(vars);
    free(copy);
}

static void op_error(void *source, void *ctx, const sk_msg *m)
{
    zjob *j = take(ctx);
    char *vars, *copy;
    if (result_variables(source, j, m, &vars) != 0)
        return;
    sk_zeebe_throw(source, j, m->code, result_message(m, &copy), vars);
    free(vars);
    free(copy);
}

static void op_reject(void *source, void *ctx, const char *reason, const char *why)
{
    (void)source;
    undeliverable(take(ctx), reason, why);
}

/* Gives the job back at once with its retries unchanged, so it is activated again now. */
static void op_abandon(void *source, void *ctx, const char *why)
{
    zjob *j = take(ctx);
    sk_zeebe_fail(source, j, j->retries, why, 0, NULL, "abandoned");
}

static void op_extend(void *source, void *ctx, int64_t timeout_ms, sk_reply *reply)
{
    sk_zeebe_update_timeout(source, ctx, timeout_ms, reply);
}

static const sk_source_ops zeebe_ops = {
    .name = "zeebe",
    .results = SK_RESULT(SK_MSG_COMPLETE) | SK_RESULT(SK_MSG_FAIL) | SK_RESULT(SK_MSG_BPMN_ERROR),
    .complete = op_complete,
    .fail = op_fail,
    .error = op_error,
    .abandon = op_abandon,
    .reject = op_reject,
    .extend = op_extend,
};

void sk_zeebe_job_release(zjob *j)
{
    if (--j->refs > 0)
        return;
    event_free(j->deadline);
    free(j);
}

void sk_zeebe_job_end(zjob *j)
{
    worker *w = j->w;
    j->gone = 1;
    j->held = 0;
    event_del(j->deadline);
    w->open--;
    sk_series_set(w->m_open, (double)w->open);
    sk_zeebe_job_release(j);
    sk_zeebe_worker_credit(w);
}

/* The watch runs on skiff's own clock, timeout_ms from now: comparing the gateway's deadline
 * with skiff's wall clock would cancel early by any clock skew between the two. It fires a
 * network delay after the engine's deadline, never before. */
static void arm_deadline(zjob *j, int64_t timeout_ms)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    event_add(j->deadline, &tv);
}

/* The handler kept the job past its deadline: Zeebe may give it to another worker now. */
static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    zjob *j = arg;
    sk_zeebe *z = j->w->z;
    const char *const labels[] = {j->type, NULL};
    sk_series_add(sk_metric_series(z->m_overdue, labels), 1);
    int told = sk_dispatcher_cancel(z->d, j->id, "deadline");
    SK_LOG(SK_LOG_WARN, "zeebe", NULL, SK_KV("job_type", j->type, "task_id", j->id),
           "job deadline passed while its handler held it; %s",
           told ? "handler told to stop (cancel)"
                : "the handler does not accept cancel, its late result will be forwarded");
    if (told) {
        sk_zeebe_count_job(z, j->type, "timed_out");
        sk_zeebe_job_end(j);
    }
}

void sk_zeebe_job_extended(zjob *j, int64_t timeout_ms)
{
    j->deadline_ms = sk_wall_ms() + timeout_ms;
    if (j->held)
        arm_deadline(j, timeout_ms);
}

void sk_zeebe_job_gone(zjob *j)
{
    if (j->held && sk_dispatcher_cancel(j->w->z->d, j->id, "job_gone")) {
        sk_zeebe_count_job(j->w->z, j->type, "not_found");
        sk_zeebe_job_end(j);
    }
}

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

/* The job's variables or custom headers (what names them) as a JSON object; "" is {}. NULL
 * with why saying what is wrong and where. A string may hold U+0000 ("\u0000" is valid
 * JSON): it is kept, and the task frame carries it escaped again, byte for byte. */
static json_t *parse_object(const char *text, const char *what, char *why, size_t whylen)
{
    json_error_t e;
    if (!text || !*text)
        return json_object();
    json_t *v = json_loads(text, JSON_ALLOW_NUL, &e);
    if (!v) {
        snprintf(why, whylen,
                 "skiff could not decode the job's %s: invalid JSON at line %d, column %d "
                 "(character %d): %s",
                 what, e.line, e.column, e.position, e.text);
        return NULL;
    }
    if (!json_is_object(v)) {
        snprintf(why, whylen, "skiff could not decode the job's %s: %s, not a JSON object", what,
                 json_kind(v));
        json_decref(v);
        return NULL;
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

static zjob *job_new(worker *w, const GatewayProtocol__ActivatedJob *job)
{
    sk_zeebe *z = w->z;
    zjob *j = calloc(1, sizeof(*j));
    if (j && !(j->deadline = evtimer_new(z->base, deadline_cb, j))) {
        free(j);
        j = NULL;
    }
    if (!j) {
        SK_ERROR("zeebe", "out of memory: job %lld will time out", (long long)job->key);
        return NULL;
    }
    j->w = w;
    j->type = w->type;
    j->key = job->key;
    j->retries = job->retries;
    j->deadline_ms = job->deadline;
    j->activated_at = sk_mono_s();
    j->refs = 1;
    snprintf(j->id, sizeof(j->id), "z-%" PRId64, job->key);
    /* The engine handed the job out again while a handler (one that cannot be told to stop)
     * still holds the earlier activation: both run, the first result wins. */
    if (sk_dispatcher_is_open(z->d, j->id))
        snprintf(j->id, sizeof(j->id), "z-%" PRId64 "-%" PRId64, job->key, job->deadline);
    w->open++;
    sk_series_set(w->m_open, (double)w->open);
    sk_zeebe_count_job(z, w->type, "activated");
    return j;
}

void sk_zeebe_submit(worker *w, const GatewayProtocol__ActivatedJob *job, double received_at)
{
    sk_zeebe *z = w->z;
    zjob *j = job_new(w, job);
    if (!j)
        return;
    char why[300];
    json_t *vars = parse_object(job->variables, "variables", why, sizeof why);
    json_t *headers =
        vars ? parse_object(job->customheaders, "custom headers", why, sizeof why) : NULL;
    if (!headers) {
        json_decref(vars);
        sk_dispatcher_undeliverable(z->d, "zeebe", w->type, "undecodable");
        undeliverable(j, "undecodable", why);
        return;
    }
    j->held = 1;
    arm_deadline(j, w->jc->job_timeout_ms);
    sk_dispatcher_submit(z->d, &zeebe_ops, z, j, w->type, j->id, job->deadline,
                         job_payload(job, vars, headers), received_at);
}

void sk_zeebe_yield(worker *w, const GatewayProtocol__ActivatedJob *job)
{
    zjob *j = job_new(w, job);
    if (j)
        sk_zeebe_fail(w->z, j, j->retries, "skiff: no free handler capacity, job given back", 0,
                      NULL, "yielded");
}
