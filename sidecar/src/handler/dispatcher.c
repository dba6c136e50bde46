#include "handler/dispatcher.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "handler/session.h"
#include "trace/task.h"

typedef struct task {
    struct task *next_hash;       /* id table chain */
    unsigned h;                   /* hash(id), computed once */
    struct task *next_q, *prev_q; /* queue (waiting) or session list links */
    const sk_source_ops *ops;
    void *source, *ctx;
    sk_session *session; /* NULL while queued */
    char *id, *route;    /* in text, allocated with the task */
    uint8_t *frame;      /* encoded task frame, until sent */
    int borrowed;        /* frame is the source's (sent at once, never freed here) */
    size_t frame_len;
    double received_at, sent_at; /* sk_mono_s() */
    sk_span *span;               /* the task's span (trace/task.h), NULL when out of memory */
    char text[];                 /* id and route, NUL-terminated */
} task;

typedef struct slot { /* one attached session */
    sk_session *session;
    char **routes;
    size_t nroutes;
    int64_t capacity, open;
    struct slot *next;
} slot;

typedef struct watcher {
    sk_credit_cb cb;
    void *ud;
    struct watcher *next;
} watcher;

typedef struct method {
    char *name;
    sk_method_fn fn;
    void *ud;
    struct method *next;
} method;

struct sk_reply {
    sk_dispatcher *d;
    unsigned long session; /* serial of the session owed the reply */
    char *ref;
};

#define NBUCKETS 1024

/* A route and the source serving it; names are unique across sources (config checks). */
typedef struct route_def {
    char *source, *name;
} route_def;

struct sk_dispatcher {
    task *buckets[NBUCKETS];
    route_def *routes; /* routes some source serves */
    size_t nroutes;
    size_t max_frame;
    task *queue_head, *queue_tail;
    slot *slots;
    watcher *watchers;
    method *methods;
    size_t open;
    int nsessions;
    int draining;
    sk_series *m_sessions, *m_open;
    sk_metric *m_duration, *m_results, *m_abandoned, *m_cancelled, *m_overhead, *m_undeliverable;
};

/* Upper bounds (seconds) of skiff_task_overhead_seconds: skiff's own time per task is in µs,
 * but a dispatch also waits behind earlier frames a slow handler has not read yet, and a cold
 * start or a sanitizer build runs slower: up to 1 s, so that a p99 is a figure, not "> 10 ms". */
static const double overhead_buckets[] = {0.000005, 0.00001, 0.000025, 0.00005, 0.000075, 0.0001,
                                          0.00015,  0.00025, 0.0005,   0.001,   0.0025,   0.005,
                                          0.01,     0.025,   0.1,      1};

static sk_series *overhead(const sk_dispatcher *d, const task *t, const char *phase)
{
    const char *const labels[] = {t->ops->name, phase, NULL};
    return sk_metric_series(d->m_overhead, labels);
}

/* The task span's ids when it is sampled (its trace is exported), else NULL: an exemplar
 * must lead to a trace the backend has. */
static const char *sampled_trace(const task *t)
{
    return t->span && (t->span->ctx.flags & SK_TRACE_SAMPLED) ? t->span->trace_hex : NULL;
}

static const char *sampled_span(const task *t)
{
    return sampled_trace(t) ? t->span->span_hex : NULL;
}

/* Observes one of the task's latencies, with its trace as the bucket's exemplar. */
static void observe_task(sk_series *s, const task *t, double v)
{
    if (sampled_trace(t))
        sk_series_observe_exemplar(s, v, sampled_trace(t), sampled_span(t));
    else
        sk_series_observe(s, v);
}

/* FNV-1a of a task id, all 32 bits: the bucket is h % NBUCKETS, and a chain's other ids are
 * told apart by h before their text (the ids of a topic share a long prefix). */
static unsigned hash(const char *s)
{
    unsigned h = 2166136261u;
    while (*s)
        h = (h ^ (unsigned char)*s++) * 16777619u;
    return h;
}

static task *lookup(const sk_dispatcher *d, const char *id, unsigned h)
{
    for (task *t = d->buckets[h % NBUCKETS]; t; t = t->next_hash)
        if (t->h == h && strcmp(t->id, id) == 0)
            return t;
    return NULL;
}

static void unlink_hash(sk_dispatcher *d, task *t)
{
    task **pp = &d->buckets[t->h % NBUCKETS];
    while (*pp != t)
        pp = &(*pp)->next_hash;
    *pp = t->next_hash;
}

static void queue_remove(sk_dispatcher *d, task *t)
{
    if (t->prev_q)
        t->prev_q->next_q = t->next_q;
    else
        d->queue_head = t->next_q;
    if (t->next_q)
        t->next_q->prev_q = t->prev_q;
    else
        d->queue_tail = t->prev_q;
    t->next_q = t->prev_q = NULL;
}

static void queue_append(sk_dispatcher *d, task *t)
{
    t->prev_q = d->queue_tail;
    t->next_q = NULL;
    if (d->queue_tail)
        d->queue_tail->next_q = t;
    else
        d->queue_head = t;
    d->queue_tail = t;
}

static slot *find_slot(const sk_dispatcher *d, const sk_session *s)
{
    for (slot *sl = d->slots; sl; sl = sl->next)
        if (sl->session == s)
            return sl;
    return NULL;
}

static int serves(const slot *sl, const char *route)
{
    for (size_t i = 0; i < sl->nroutes; i++)
        if (strcmp(sl->routes[i], route) == 0)
            return 1;
    return 0;
}

/* The session serving route with the most free credits, or NULL. */
static slot *pick(const sk_dispatcher *d, const char *route, int *any)
{
    slot *best = NULL;
    *any = 0;
    for (slot *sl = d->slots; sl; sl = sl->next) {
        if (!serves(sl, route))
            continue;
        *any = 1;
        if (sl->open < sl->capacity &&
            (!best || sl->capacity - sl->open > best->capacity - best->open))
            best = sl;
    }
    return best;
}

/* Removes t from every structure and frees it; the caller has called (or will not call) the op. */
static void task_free(sk_dispatcher *d, task *t)
{
    unlink_hash(d, t);
    d->open--;
    sk_series_set(d->m_open, (double)d->open);
    if (t->span)
        sk_span_end(t->span);
    free(t->frame);
    free(t);
}

static void finish_slot(sk_dispatcher *d, task *t)
{
    slot *sl = t->session ? find_slot(d, t->session) : NULL;
    if (sl)
        sl->open--;
    if (!t->session)
        queue_remove(d, t);
}

static void abandon(sk_dispatcher *d, task *t, const char *why)
{
    finish_slot(d, t);
    const char *const labels[] = {t->ops->name, NULL};
    sk_series_add(sk_metric_series(d->m_abandoned, labels), 1);
    if (t->span)
        sk_span_set_error(t->span, "abandoned", why);
    sk_span_scope prev;
    sk_span_enter(t->span, &prev);
    t->ops->abandon(t->source, t->ctx, why);
    sk_span_leave(&prev);
    task_free(d, t);
}

static void notify(sk_dispatcher *d)
{
    for (watcher *w = d->watchers; w; w = w->next)
        w->cb(w->ud);
}

static void send_to(sk_dispatcher *d, slot *sl, task *t)
{
    t->session = sl->session;
    sl->open++;
    t->sent_at = sk_mono_s();
    sk_session_write_task(sl->session, t->frame, t->frame_len, t->received_at,
                          overhead(d, t, "dispatch"), sampled_trace(t), sampled_span(t));
    if (!t->borrowed)
        free(t->frame);
    t->frame = NULL;
    t->borrowed = 0;
}

/* Moves queued tasks to sessions that can take them; abandons those nobody serves. */
static void pump(sk_dispatcher *d)
{
    task *t = d->queue_head;
    while (t) {
        task *next = t->next_q;
        int any;
        slot *sl = pick(d, t->route, &any);
        if (!any || d->draining) {
            abandon(d, t, d->draining ? "skiff is shutting down" : "no handler serves this task");
        } else if (sl) {
            queue_remove(d, t);
            send_to(d, sl, t);
        }
        t = next;
    }
}

sk_dispatcher *sk_dispatcher_new(sk_metrics *metrics, size_t max_frame)
{
    sk_dispatcher *d = calloc(1, sizeof(*d));
    if (!d)
        return NULL;
    d->max_frame = max_frame;
    d->m_sessions =
        sk_metric_series(sk_metrics_gauge(metrics, "skiff_handler_sessions",
                                          "Handler connections past the handshake.", NULL),
                         NULL);
    d->m_open = sk_metric_series(
        sk_metrics_gauge(metrics, "skiff_tasks_open",
                         "Tasks held by skiff: sent to a handler or waiting for one.", NULL),
        NULL);
    d->m_duration = sk_metrics_histogram(metrics, "skiff_handler_duration_seconds",
                                         "Time from task frame written to result frame read.",
                                         SK_KV("source", "route", "result"),
                                         sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    d->m_results = sk_metrics_counter(metrics, "skiff_handler_results_total",
                                      "Result frames received from handlers.",
                                      SK_KV("source", "route", "result"));
    d->m_abandoned = sk_metrics_counter(
        metrics, "skiff_tasks_abandoned_total",
        "Tasks given back to their source unfinished (handler gone, shutdown).", SK_KV("source"));
    d->m_cancelled = sk_metrics_counter(metrics, "skiff_tasks_cancelled_total",
                                        "Tasks closed by their source while a handler held them "
                                        "(handler told with a cancel frame), by reason.",
                                        SK_KV("source", "reason"));
    d->m_overhead = sk_metrics_histogram(
        metrics, "skiff_task_overhead_seconds",
        "skiff's own time per task: dispatch (task off the wire to its frame written to the "
        "handler socket), result (result frame read to the engine request handed to HTTP/2).",
        SK_KV("source", "phase"), overhead_buckets,
        sizeof overhead_buckets / sizeof overhead_buckets[0]);
    d->m_undeliverable = sk_metrics_counter(
        metrics, "skiff_tasks_undeliverable_total",
        "Jobs and records refused because of their content, never handed to a handler: "
        "undecodable (variables, headers or value), too_large (task frame over "
        "handler.max_frame), unencodable (task frame could not be built), undecodable_response "
        "(a gateway message with jobs).",
        SK_KV("source", "route", "reason"));
    if (!d->m_sessions || !d->m_open || !d->m_duration || !d->m_results || !d->m_abandoned ||
        !d->m_cancelled || !d->m_overhead || !d->m_undeliverable) {
        free(d);
        return NULL;
    }
    return d;
}

void sk_dispatcher_free(sk_dispatcher *d)
{
    if (!d)
        return;
    sk_dispatcher_abandon_all(d, "skiff is stopping");
    while (d->slots) {
        slot *sl = d->slots;
        d->slots = sl->next;
        for (size_t i = 0; i < sl->nroutes; i++)
            free(sl->routes[i]);
        free(sl->routes);
        free(sl);
    }
    for (size_t i = 0; i < d->nroutes; i++) {
        free(d->routes[i].source);
        free(d->routes[i].name);
    }
    free(d->routes);
    while (d->watchers) {
        watcher *w = d->watchers;
        d->watchers = w->next;
        free(w);
    }
    while (d->methods) {
        method *m = d->methods;
        d->methods = m->next;
        free(m->name);
        free(m);
    }
    free(d);
}

int sk_dispatcher_add_method(sk_dispatcher *d, const char *name, sk_method_fn fn, void *ud)
{
    method *m = malloc(sizeof(*m));
    if (!m || !(m->name = strdup(name))) {
        free(m);
        return -1;
    }
    m->fn = fn;
    m->ud = ud;
    m->next = d->methods;
    d->methods = m;
    return 0;
}

json_t *sk_dispatcher_methods(const sk_dispatcher *d)
{
    json_t *a = json_array();
    for (const method *m = d->methods; m && a; m = m->next)
        json_array_append_new(a, json_string(m->name));
    return a;
}

static sk_session *session_by_serial(const sk_dispatcher *d, unsigned long serial)
{
    for (slot *sl = d->slots; sl; sl = sl->next)
        if (sk_session_serial(sl->session) == serial)
            return sl->session;
    return NULL;
}

static sk_reply *reply_new(sk_dispatcher *d, sk_session *s, const char *ref)
{
    sk_reply *r = malloc(sizeof(*r));
    if (!r || !(r->ref = strdup(ref))) {
        free(r);
        return NULL;
    }
    r->d = d;
    r->session = sk_session_serial(s);
    return r;
}

void sk_reply_drop(sk_reply *r)
{
    if (!r)
        return;
    free(r->ref);
    free(r);
}

/* Sends the reply frame f (stolen) if the session is still there, then frees r. */
static void reply_send(sk_reply *r, json_t *f)
{
    sk_session *s = session_by_serial(r->d, r->session);
    if (f && s)
        sk_session_send(s, f);
    json_decref(f);
    sk_reply_drop(r);
}

void sk_reply_ok(sk_reply *r, json_t *result)
{
    if (!r) {
        json_decref(result);
        return;
    }
    reply_send(r, json_pack("{s:s, s:s, s:b, s:o}", "type", "reply", "ref", r->ref, "ok", 1,
                            "result", result ? result : json_object()));
}

void sk_reply_error(sk_reply *r, const char *code, const char *fmt, ...)
{
    if (!r)
        return;
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    reply_send(r, json_pack("{s:s, s:s, s:b, s:{s:s, s:s}}", "type", "reply", "ref", r->ref, "ok",
                            0, "error", "code", code, "message", message));
}

void sk_dispatcher_call(sk_dispatcher *d, sk_session *s, const sk_msg *m)
{
    const method *me = d->methods;
    while (me && strcmp(me->name, m->method) != 0)
        me = me->next;
    sk_reply *r = reply_new(d, s, m->ref);
    if (!r) {
        SK_ERROR("dispatcher", "out of memory answering call %s", m->ref);
        return;
    }
    if (me)
        me->fn(me->ud, m->params, r);
    else
        sk_reply_error(r, "unknown_method", "method \"%.64s\" is not available in this skiff",
                       m->method);
}

int sk_dispatcher_watch(sk_dispatcher *d, sk_credit_cb cb, void *ud)
{
    watcher *w = malloc(sizeof(*w));
    if (!w)
        return -1;
    *w = (watcher){.cb = cb, .ud = ud, .next = d->watchers};
    d->watchers = w;
    return 0;
}

int sk_dispatcher_add_route(sk_dispatcher *d, const char *source, const char *name)
{
    route_def *routes = realloc(d->routes, (d->nroutes + 1) * sizeof(route_def));
    if (!routes)
        return -1;
    d->routes = routes;
    route_def *r = &routes[d->nroutes];
    r->source = strdup(source);
    r->name = strdup(name);
    if (!r->source || !r->name) {
        free(r->source);
        free(r->name);
        return -1;
    }
    d->nroutes++;
    return 0;
}

int sk_dispatcher_has_route(const sk_dispatcher *d, const char *source, const char *name)
{
    for (size_t i = 0; i < d->nroutes; i++)
        if (strcmp(d->routes[i].name, name) == 0 && strcmp(d->routes[i].source, source) == 0)
            return 1;
    return 0;
}

int64_t sk_dispatcher_capacity(const sk_dispatcher *d, const char *route)
{
    int64_t capacity = 0;
    for (slot *sl = d->slots; sl && !d->draining; sl = sl->next)
        if (serves(sl, route))
            capacity += sl->capacity;
    return capacity;
}

int64_t sk_dispatcher_credits(const sk_dispatcher *d, const char *route)
{
    if (d->draining)
        return 0;
    int64_t free_credits = 0;
    for (slot *sl = d->slots; sl; sl = sl->next)
        if (serves(sl, route) && sl->open < sl->capacity)
            free_credits += sl->capacity - sl->open;
    for (task *t = d->queue_head; t; t = t->next_q)
        if (strcmp(t->route, route) == 0)
            free_credits--;
    return free_credits > 0 ? free_credits : 0;
}

int sk_dispatcher_sessions(const sk_dispatcher *d)
{
    return d->nsessions;
}

size_t sk_dispatcher_open(const sk_dispatcher *d)
{
    return d->open;
}

int sk_dispatcher_is_open(const sk_dispatcher *d, const char *id)
{
    return lookup(d, id, hash(id)) != NULL;
}

/* Encodes the task frame: the common members, then the source's payload (stolen). */
static uint8_t *task_frame(const sk_source_ops *ops, const char *id, int64_t deadline_ms,
                           json_t *payload, size_t *len)
{
    uint8_t *buf = NULL;
    json_t *f = json_pack("{s:s, s:s, s:s, s:I}", "type", "task", "id", id, "source", ops->name,
                          "deadline", (json_int_t)deadline_ms);
    if (f && payload && json_object_update(f, payload) == 0)
        buf = sk_frame_encode(f, len);
    json_decref(f);
    json_decref(payload);
    return buf;
}

void sk_dispatcher_undeliverable(sk_dispatcher *d, const char *source, const char *route,
                                 const char *reason)
{
    const char *const labels[] = {source, route, reason, NULL};
    sk_series_add(sk_metric_series(d->m_undeliverable, labels), 1);
}

/* A task that can never be sent: counted, then ended by its source (which logs it). */
static void reject(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                   const char *route, const char *reason, const char *why)
{
    sk_dispatcher_undeliverable(d, ops->name, route, reason);
    ops->reject(source, ctx, reason, why);
}

/* A task that never opened: the active span goes back, then its span ends (with the error
 * set). */
static void submit_end(sk_span *span, const sk_span_scope *prev)
{
    sk_span_leave(prev);
    if (span)
        sk_span_end(span);
}

/* Takes the encoded frame (NULL when it could not be built) of a task and its span (owned,
 * may be NULL) and sends or queues it. The frame is malloc'ed and owned from here on, or with
 * borrowed the source's: written at once when the task can go now (no copy), else copied. */
static void accept(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                   const char *route, const char *id, uint8_t *frame, size_t len,
                   double received_at, sk_span *span, int borrowed)
{
    char why[200];
    sk_span_scope prev;
    sk_span_enter(span, &prev);
    int any;
    slot *now = !d->queue_head && !d->draining ? pick(d, route, &any) : NULL;
    if (frame && borrowed && (!now || len - SK_FRAME_HEADER > d->max_frame)) {
        uint8_t *copy = malloc(len); /* NULL: refused below as unencodable (out of memory) */
        if (copy)
            memcpy(copy, frame, len);
        frame = copy;
        borrowed = 0;
    }
    if (!frame) {
        snprintf(why, sizeof(why),
                 "skiff could not encode the task frame (a member is not "
                 "valid UTF-8, or out of memory)");
        if (span)
            sk_span_set_error(span, "unencodable", why);
        reject(d, ops, source, ctx, route, "unencodable", why);
        submit_end(span, &prev);
        return;
    }
    if (len - SK_FRAME_HEADER > d->max_frame) {
        snprintf(why, sizeof(why),
                 "the task frame of %zu bytes exceeds handler.max_frame (%zu bytes): the job's "
                 "variables and headers (or the record's value) are too large for the handler",
                 len - SK_FRAME_HEADER, d->max_frame);
        free(frame);
        if (span)
            sk_span_set_error(span, "frame_too_large", why);
        reject(d, ops, source, ctx, route, "too_large", why);
        submit_end(span, &prev);
        return;
    }
    /* One allocation per task: its id and route follow it. */
    size_t idlen = strlen(id) + 1, routelen = strlen(route) + 1;
    unsigned h = hash(id);
    task *t = !lookup(d, id, h) ? malloc(sizeof(*t) + idlen + routelen) : NULL;
    if (!t) {
        if (!borrowed)
            free(frame);
        SK_LOG(SK_LOG_ERROR, "dispatcher", NULL, SK_KV("task_id", id),
               "cannot accept task (out of memory or duplicate id); giving it back");
        ops->abandon(source, ctx, "skiff could not accept the task");
        submit_end(span, &prev);
        return;
    }
    *t = (task){.ops = ops,
                .source = source,
                .ctx = ctx,
                .id = t->text,
                .route = t->text + idlen,
                .frame = frame,
                .borrowed = borrowed,
                .frame_len = len,
                .received_at = received_at,
                .span = span,
                .h = h};
    memcpy(t->text, id, idlen);
    memcpy(t->text + idlen, route, routelen);
    t->next_hash = d->buckets[h % NBUCKETS];
    d->buckets[h % NBUCKETS] = t;
    d->open++;
    sk_series_set(d->m_open, (double)d->open);
    if (now) { /* nothing queued before it, a session has a credit: straight to it */
        send_to(d, now, t);
    } else {
        queue_append(d, t);
        pump(d);
    }
    sk_span_leave(&prev);
}

void sk_dispatcher_submit(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                          const char *route, const char *id, int64_t deadline_ms, json_t *payload,
                          double received_at)
{
    size_t len = 0;
    sk_span *span = payload ? sk_trace_task_begin(ops->name, route, payload) : NULL;
    uint8_t *frame = task_frame(ops, id, deadline_ms, payload, &len);
    accept(d, ops, source, ctx, route, id, frame, len, received_at, span, 0);
}

void sk_dispatcher_submit_frame(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                                const char *route, const char *id, const uint8_t *frame, size_t len,
                                double received_at, sk_span *span)
{
    accept(d, ops, source, ctx, route, id,
           frame && len >= SK_FRAME_HEADER ? (uint8_t *)(uintptr_t)frame : NULL, len, received_at,
           span, 1);
}

int sk_dispatcher_cancel(sk_dispatcher *d, const char *id, const char *reason)
{
    task *t = lookup(d, id, hash(id));
    if (!t || (t->session && !sk_session_accepts_cancel(t->session)))
        return 0;
    if (t->session) {
        const char *const labels[] = {t->ops->name, reason, NULL};
        sk_series_add(sk_metric_series(d->m_cancelled, labels), 1);
        sk_session_cancel(t->session, id, reason);
    }
    if (t->span)
        sk_span_set_error(t->span, "cancelled", reason);
    finish_slot(d, t);
    task_free(d, t);
    pump(d);
    notify(d);
    return 1;
}

void sk_dispatcher_drain(sk_dispatcher *d, int64_t deadline_ms)
{
    d->draining = 1;
    json_t *f = json_pack("{s:s, s:I}", "type", "drain", "deadline", (json_int_t)deadline_ms);
    for (slot *sl = d->slots; sl && f; sl = sl->next)
        sk_session_send(sl->session, f);
    json_decref(f);
    pump(d);
}

void sk_dispatcher_abandon_all(sk_dispatcher *d, const char *why)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        while (d->buckets[i])
            abandon(d, d->buckets[i], why);
}

int sk_dispatcher_attach(sk_dispatcher *d, sk_session *s, json_t *routes, int64_t capacity)
{
    slot *sl = calloc(1, sizeof(*sl));
    size_t n = json_array_size(routes);
    if (!sl || !(sl->routes = calloc(n ? n : 1, sizeof(char *)))) {
        free(sl);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        if (!(sl->routes[sl->nroutes] = strdup(json_string_value(json_array_get(routes, i)))))
            break;
        sl->nroutes++;
    }
    sl->session = s;
    sl->capacity = capacity;
    sl->next = d->slots;
    d->slots = sl;
    sk_series_set(d->m_sessions, ++d->nsessions);
    pump(d);
    notify(d);
    return 0;
}

void sk_dispatcher_detach(sk_dispatcher *d, sk_session *s)
{
    slot **pp = &d->slots;
    while (*pp && (*pp)->session != s)
        pp = &(*pp)->next;
    slot *sl = *pp;
    if (!sl)
        return;
    /* Unlinked first: a source that gives a task straight back must not see s again. */
    *pp = sl->next;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        task *t = d->buckets[i];
        while (t) {
            task *next = t->next_hash;
            if (t->session == s)
                abandon(d, t, "handler connection closed");
            t = next;
        }
    }
    for (size_t i = 0; i < sl->nroutes; i++)
        free(sl->routes[i]);
    free(sl->routes);
    free(sl);
    sk_series_set(d->m_sessions, --d->nsessions);
    pump(d);
}

static const char *result_name(sk_msg_type type)
{
    switch (type) {
    case SK_MSG_COMPLETE:
        return "complete";
    case SK_MSG_FAIL:
        return "fail";
    case SK_MSG_BPMN_ERROR:
        return "bpmn_error";
    case SK_MSG_ACK:
        return "ack";
    case SK_MSG_NACK:
        return "nack";
    default:
        return "other";
    }
}

int sk_dispatcher_result(sk_dispatcher *d, sk_session *s, const sk_msg *m, double received_at)
{
    task *t = lookup(d, m->id, hash(m->id));
    if (!t || t->session != s)
        return -1;
    if (m->type == SK_MSG_EXTEND) {
        if (!t->ops->extend)
            return -2;
        sk_reply *r = m->ref ? reply_new(d, s, m->ref) : NULL;
        sk_span_scope prev;
        sk_span_enter(t->span, &prev);
        t->ops->extend(t->source, t->ctx, m->timeout_ms, r);
        sk_span_leave(&prev);
        return 0;
    }
    if (!(t->ops->results & SK_RESULT(m->type)))
        return -3;
    const char *const labels[] = {t->ops->name, t->route, result_name(m->type), NULL};
    observe_task(sk_metric_series(d->m_duration, labels), t, received_at - t->sent_at);
    sk_series_add(sk_metric_series(d->m_results, labels), 1);
    finish_slot(d, t);
    sk_trace_task_result(t->span, m);
    sk_span_scope prev;
    sk_span_enter(t->span, &prev);
    if (m->type == SK_MSG_COMPLETE || m->type == SK_MSG_ACK)
        t->ops->complete(t->source, t->ctx, m);
    else if (m->type == SK_MSG_FAIL || m->type == SK_MSG_NACK)
        t->ops->fail(t->source, t->ctx, m);
    else
        t->ops->error(t->source, t->ctx, m);
    sk_span_leave(&prev);
    observe_task(overhead(d, t, "result"), t, sk_mono_s() - received_at);
    task_free(d, t);
    pump(d);
    notify(d);
    return 0;
}
