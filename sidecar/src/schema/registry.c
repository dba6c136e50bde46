/* Schema Registry client: the caches, the lookups and their delivery (see registry.h). */
#include "schema/registry.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "schema/registry_internal.h"

#define DEFAULT_TIMEOUT_MS 10000

static const char *const result_names[] = {"ok", "not_found", "invalid", "unavailable"};

/* ---- tables ---- */

static id_entry **id_slot(sk_registry *r, int32_t id)
{
    uint32_t h = (uint32_t)id * 2654435761u;
    return &r->ids[h >> 20 & (ID_BUCKETS - 1)];
}

static id_entry *id_find(sk_registry *r, int32_t id)
{
    id_entry *e = *id_slot(r, id);
    while (e && e->id != id)
        e = e->next;
    return e;
}

static id_entry *id_add(sk_registry *r, int32_t id)
{
    id_entry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    id_entry **slot = id_slot(r, id);
    *e = (id_entry){.id = id, .state = ID_PENDING, .next = *slot};
    *slot = e;
    sk_series_set(r->m_cached, (double)++r->nids);
    return e;
}

static void id_entry_free(id_entry *e)
{
    sk_avro_schema_free(e->schema);
    free(e->err);
    free(e->old_err);
    free(e);
}

static void id_remove(sk_registry *r, id_entry *e)
{
    id_entry **p = id_slot(r, e->id);
    while (*p != e)
        p = &(*p)->next;
    *p = e->next;
    id_entry_free(e);
    sk_series_set(r->m_cached, (double)--r->nids);
}

static subject **subject_slot(sk_registry *r, const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 16777619u;
    return &r->subjects[h % SUBJECT_BUCKETS];
}

static subject *subject_find(sk_registry *r, const char *name)
{
    subject *s = *subject_slot(r, name);
    while (s && strcmp(s->name, name) != 0)
        s = s->next;
    return s;
}

static subject *subject_add(sk_registry *r, const char *name)
{
    subject *s = calloc(1, sizeof *s);
    if (!s || !(s->name = strdup(name))) {
        free(s);
        return NULL;
    }
    subject **slot = subject_slot(r, name);
    s->next = *slot;
    *slot = s;
    r->nsubjects++;
    return s;
}

static void subject_remove(sk_registry *r, subject *s)
{
    subject **p = subject_slot(r, s->name);
    while (*p != s)
        p = &(*p)->next;
    *p = s->next;
    free(s->name);
    free(s->err);
    free(s);
    r->nsubjects--;
}

static int64_t now_ms(void)
{
    return (int64_t)(sk_mono_s() * 1000);
}

static int subject_fresh(const sk_registry *r, const subject *s)
{
    return s->state != SUBJ_NONE && r->ttl_ms > 0 && now_ms() - s->fetched_ms < r->ttl_ms;
}

/* Makes room in a full subject table by dropping one expired subject nobody waits for. */
static int subject_evict(sk_registry *r)
{
    for (size_t i = 0; i < SUBJECT_BUCKETS; i++)
        for (subject *s = r->subjects[i]; s; s = s->next)
            if (!s->f && !subject_fresh(r, s)) {
                subject_remove(r, s);
                return 0;
            }
    return -1;
}

/* ---- lookups and their delivery ---- */

sk_registry_lookup *reg_lookup_new(sk_registry *r, sk_registry_cb cb, void *ud)
{
    sk_registry_lookup *l = calloc(1, sizeof *l);
    if (l)
        *l = (sk_registry_lookup){.reg = r, .cb = cb, .ud = ud};
    return l;
}

/* Queues the answer; the callback runs from the deliver event. */
void reg_finish(sk_registry_lookup *l, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                const char *err)
{
    l->st = st;
    l->id = id;
    l->schema = schema;
    snprintf(l->err, sizeof l->err, "%s", err ? err : "");
    l->f = NULL;
    TAILQ_INSERT_TAIL(&l->reg->ready, l, link);
    event_active(l->reg->deliver, EV_TIMEOUT, 1);
}

void reg_answer_entry(sk_registry_lookup *l, const id_entry *e)
{
    if (e->state == ID_OK)
        reg_finish(l, SK_REG_OK, e->id, e->schema, NULL);
    else
        reg_finish(l, e->state == ID_INVALID ? SK_REG_INVALID : SK_REG_NOT_FOUND, e->id, NULL,
                   e->err ? e->err : "out of memory");
}

static void answer_subject(sk_registry_lookup *l, const subject *s)
{
    if (s->state == SUBJ_FOUND)
        reg_answer_entry(l, s->entry);
    else
        reg_finish(l, SK_REG_NOT_FOUND, 0, NULL, s->err ? s->err : "out of memory");
}

void reg_attach(sk_registry_lookup *l, fetch *f)
{
    l->f = f;
    TAILQ_INSERT_TAIL(&f->waiters, l, link);
}

static void destroy(sk_registry *r)
{
    if (r->deliver)
        event_free(r->deliver);
    free(r);
}

/* Runs the callbacks of answered lookups. A callback may free the registry: release_all has
 * then emptied the queue, and the memory goes once the loop below is left. */
static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_registry *r = arg;
    sk_registry_lookup *l;
    r->delivering = 1;
    while (!r->closed && (l = TAILQ_FIRST(&r->ready)) != NULL) {
        TAILQ_REMOVE(&r->ready, l, link);
        l->delivering = 1;
        l->cb(l->ud, l->st, l->id, l->schema, l->st == SK_REG_OK ? NULL : l->err);
        free(l);
    }
    r->delivering = 0;
    if (r->closed)
        destroy(r);
}

/* ---- answers from the registry ---- */

/* Settles an entry with a parsed verdict (OK or INVALID); keeps a NOT_FOUND message callers
 * may hold. */
static void settle(id_entry *e, sk_reg_status st, sk_avro_schema *schema, const char *err)
{
    if (e->state == ID_NOT_FOUND) {
        e->old_err = e->err;
        e->err = NULL;
    }
    if (st == SK_REG_OK) {
        e->state = ID_OK;
        e->schema = schema;
    } else {
        e->state = st == SK_REG_INVALID ? ID_INVALID : ID_NOT_FOUND;
        e->err = strdup(err);
    }
}

static void id_done(fetch *f, const sk_http_result *res)
{
    sk_registry *r = f->reg;
    id_entry *e = f->entry;
    char what[64];
    answer a;
    sk_avro_schema *schema = NULL;
    snprintf(what, sizeof what, "schema id %d", (int)e->id);
    reg_classify(res, what, 40403, 0, &a);
    if (a.st == SK_REG_OK) {
        a.st = reg_parse_schema(a.json, what, &schema, a.err, sizeof a.err);
        json_decref(a.json);
    }
    reg_record(r, f, &a);
    /* A "latest" answer may have settled the entry meanwhile. */
    if (e->state == ID_PENDING && a.st != SK_REG_UNAVAILABLE)
        settle(e, a.st, schema, a.err);
    else
        sk_avro_schema_free(schema);
    e->f = NULL;
    sk_registry_lookup *l;
    while ((l = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, l, link);
        if (e->state == ID_PENDING)
            reg_finish(l, SK_REG_UNAVAILABLE, e->id, NULL, a.err);
        else
            reg_answer_entry(l, e);
    }
    if (e->state == ID_PENDING)
        id_remove(r, e);
    reg_fetch_free(f);
}

static void cache_full(sk_registry *r, const char *what, char *err, size_t errlen)
{
    sk_series_add(r->m_full, 1);
    snprintf(err, errlen, "%.300s: schema cache full (%zu ids)", what, r->max_ids);
}

/* The id entry a "latest" answer points to: found in the cache, or parsed into a new (or
 * upgraded NOT_FOUND) entry. Returns OK or INVALID with *out set, or UNAVAILABLE. */
sk_reg_status reg_answer_id(sk_registry *r, const json_t *j, const char *what, id_entry **out,
                            char *err, size_t errlen)
{
    json_t *jid = json_object_get(j, "id");
    json_int_t v = json_integer_value(jid);
    if (!json_is_integer(jid) || v < 0 || v > INT32_MAX) {
        snprintf(err, errlen, "%.300s: unparseable response from the schema registry (no id)",
                 what);
        return SK_REG_UNAVAILABLE;
    }
    id_entry *e = id_find(r, (int32_t)v);
    if (e && (e->state == ID_OK || e->state == ID_INVALID)) {
        *out = e;
        return e->state == ID_OK ? SK_REG_OK : SK_REG_INVALID;
    }
    char idwhat[REG_MAX_SUBJECT_LEN + 64];
    snprintf(idwhat, sizeof idwhat, "schema id %d (%s)", (int)v, what);
    if (!e && r->nids >= r->max_ids) {
        cache_full(r, idwhat, err, errlen);
        return SK_REG_UNAVAILABLE;
    }
    sk_avro_schema *schema;
    sk_reg_status st = reg_parse_schema(j, idwhat, &schema, err, errlen);
    if (st == SK_REG_UNAVAILABLE)
        return st;
    if (!e && !(e = id_add(r, (int32_t)v))) {
        sk_avro_schema_free(schema);
        snprintf(err, errlen, "%.300s: out of memory", what);
        return SK_REG_UNAVAILABLE;
    }
    settle(e, st, schema, err);
    *out = e;
    return st;
}

static void latest_done(fetch *f, const sk_http_result *res)
{
    sk_registry *r = f->reg;
    subject *s = f->subj;
    char what[REG_MAX_SUBJECT_LEN + 40];
    answer a;
    id_entry *e = NULL;
    snprintf(what, sizeof what, "latest schema of subject \"%s\"", s->name);
    reg_classify(res, what, 40401, 40402, &a);
    if (a.st == SK_REG_OK) {
        a.st = reg_answer_id(r, a.json, what, &e, a.err, sizeof a.err);
        json_decref(a.json);
    }
    reg_record(r, f, &a);
    s->f = NULL;
    if (a.st != SK_REG_UNAVAILABLE) {
        free(s->err);
        s->err = a.st == SK_REG_NOT_FOUND ? strdup(a.err) : NULL;
        s->state = a.st == SK_REG_NOT_FOUND ? SUBJ_NOT_FOUND : SUBJ_FOUND;
        s->entry = e;
        s->fetched_ms = now_ms();
    }
    sk_registry_lookup *l;
    while ((l = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, l, link);
        if (a.st == SK_REG_UNAVAILABLE)
            reg_finish(l, SK_REG_UNAVAILABLE, 0, NULL, a.err);
        else
            answer_subject(l, s);
    }
    if (a.st == SK_REG_UNAVAILABLE && s->state == SUBJ_NONE)
        subject_remove(r, s);
    reg_fetch_free(f);
}

/* ---- lookups ---- */

sk_registry_lookup *sk_registry_by_id(sk_registry *r, int32_t id, sk_registry_cb cb, void *ud)
{
    if (!r || r->closed || !cb)
        return NULL;
    sk_registry_lookup *l = reg_lookup_new(r, cb, ud);
    if (!l)
        return NULL;
    id_entry *e = id_find(r, id);
    if (e && e->state != ID_PENDING) {
        reg_answer_entry(l, e);
    } else if (e) {
        l->id = id;
        reg_attach(l, e->f);
    } else if (r->nids >= r->max_ids) {
        char what[32], err[REG_ERR_LEN];
        snprintf(what, sizeof what, "schema id %d", (int)id);
        cache_full(r, what, err, sizeof err);
        SK_WARN(REG_COMPONENT, "%s", err);
        reg_finish(l, SK_REG_UNAVAILABLE, id, NULL, err);
    } else {
        char path[64];
        snprintf(path, sizeof path, "/schemas/ids/%d", (int)id);
        if (!(e = id_add(r, id)) || !(e->f = reg_fetch_start(r, path, id_done))) {
            if (e)
                id_remove(r, e);
            free(l);
            return NULL;
        }
        e->f->entry = e;
        l->id = id;
        reg_attach(l, e->f);
    }
    return l;
}

static int start_latest(sk_registry *r, subject *s)
{
    char path[REG_MAX_SUBJECT_LEN * 3 + 64];
    reg_subject_path(s->name, "/versions/latest", path, sizeof path);
    if (!(s->f = reg_fetch_start(r, path, latest_done)))
        return -1;
    s->f->subj = s;
    return 0;
}

sk_registry_lookup *sk_registry_latest(sk_registry *r, const char *subject_name, sk_registry_cb cb,
                                       void *ud)
{
    size_t len = subject_name ? strlen(subject_name) : 0;
    if (!r || r->closed || !cb || len == 0 || len > REG_MAX_SUBJECT_LEN)
        return NULL;
    sk_registry_lookup *l = reg_lookup_new(r, cb, ud);
    if (!l)
        return NULL;
    subject *s = subject_find(r, subject_name);
    if (s && subject_fresh(r, s)) {
        answer_subject(l, s);
        return l;
    }
    if (!s && r->nsubjects >= SK_REGISTRY_MAX_SUBJECTS && subject_evict(r) < 0) {
        char err[REG_ERR_LEN];
        sk_series_add(r->m_full, 1);
        snprintf(err, sizeof err, "latest schema of subject \"%s\": subject cache full (%d)",
                 subject_name, SK_REGISTRY_MAX_SUBJECTS);
        SK_WARN(REG_COMPONENT, "%s", err);
        reg_finish(l, SK_REG_UNAVAILABLE, 0, NULL, err);
        return l;
    }
    if (!s && !(s = subject_add(r, subject_name)))
        goto fail;
    if (!s->f && start_latest(r, s) < 0) {
        if (s->state == SUBJ_NONE)
            subject_remove(r, s);
        goto fail;
    }
    reg_attach(l, s->f);
    return l;
fail:
    free(l);
    return NULL;
}

void sk_registry_cancel(sk_registry_lookup *l)
{
    if (!l || l->delivering)
        return;
    if (l->f)
        TAILQ_REMOVE(&l->f->waiters, l, link);
    else
        TAILQ_REMOVE(&l->reg->ready, l, link);
    free(l);
}

const sk_avro_schema *sk_registry_cached(sk_registry *r, int32_t id, sk_reg_status *st,
                                         const char **err)
{
    id_entry *e = r ? id_find(r, id) : NULL;
    sk_reg_status v = SK_REG_UNAVAILABLE;
    if (e && e->state == ID_OK)
        v = SK_REG_OK;
    else if (e && e->state != ID_PENDING)
        v = e->state == ID_INVALID ? SK_REG_INVALID : SK_REG_NOT_FOUND;
    if (st)
        *st = v;
    if (err)
        *err = (v == SK_REG_NOT_FOUND || v == SK_REG_INVALID) ? e->err : NULL;
    return v == SK_REG_OK ? e->schema : NULL;
}

const sk_avro_schema *sk_registry_cached_latest(sk_registry *r, const char *subject_name,
                                                int32_t *id)
{
    subject *s = r && subject_name ? subject_find(r, subject_name) : NULL;
    if (!s || !subject_fresh(r, s) || s->state != SUBJ_FOUND || s->entry->state != ID_OK)
        return NULL;
    if (id)
        *id = s->entry->id;
    return s->entry->schema;
}

/* ---- registry ---- */

static void setup_metrics(sk_registry *r, sk_metrics *m)
{
    static const char *const labels[] = {"result", NULL};
    sk_metric *req = sk_metrics_counter(m, "skiff_schema_registry_requests_total",
                                        "Schema Registry HTTP requests by result.", labels);
    for (size_t i = 0; i < 4; i++)
        r->m_result[i] = sk_metric_series(req, (const char *const[]){result_names[i]});
    r->m_seconds = sk_metric_series(
        sk_metrics_histogram(m, "skiff_schema_registry_request_seconds",
                             "Duration of Schema Registry HTTP requests.", NULL,
                             sk_metrics_latency_buckets, sk_metrics_latency_nbuckets),
        NULL);
    r->m_full = sk_metric_series(
        sk_metrics_counter(m, "skiff_schema_registry_cache_full_total",
                           "Schema lookups refused because the schema cache is full.", NULL),
        NULL);
    r->m_cached = sk_metric_series(
        sk_metrics_gauge(m, "skiff_schema_registry_cached_ids", "Schema ids in the cache.", NULL),
        NULL);
}

sk_registry *sk_registry_new(struct event_base *base, const sk_registry_opts *o, sk_metrics *m,
                             char *err, size_t errlen)
{
    if (!o || !o->url || !*o->url) {
        snprintf(err, errlen, "schema registry: no URL");
        return NULL;
    }
    sk_registry *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(err, errlen, "schema registry: out of memory");
        return NULL;
    }
    TAILQ_INIT(&r->ready);
    TAILQ_INIT(&r->version_fetches);
    r->ttl_ms = o->latest_ttl_ms;
    r->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    r->max_ids = o->max_ids ? o->max_ids : SK_REGISTRY_MAX_IDS;
    if (!(r->base_url = strdup(o->url)))
        goto oom;
    r->password = o->password;
    if (o->username && *o->username && !(r->username = strdup(o->username)))
        goto oom;
    size_t n = strlen(r->base_url);
    while (n > 0 && r->base_url[n - 1] == '/')
        r->base_url[--n] = '\0';
    if (!(r->http = sk_http_new(base, err, errlen)))
        goto fail;
    sk_http_set_tls(r->http, o->tls);
    sk_http_set_observe(r->http, m, "registry", 1);
    if (!(r->deliver = event_new(base, -1, 0, on_deliver, r)))
        goto oom;
    setup_metrics(r, m);
    return r;
oom:
    snprintf(err, errlen, "schema registry: out of memory");
fail:
    sk_registry_free(r);
    return NULL;
}

/* Drops every lookup, fetch and cached schema (the HTTP client is gone already). */
static void release_all(sk_registry *r)
{
    sk_registry_lookup *l;
    while ((l = TAILQ_FIRST(&r->ready)) != NULL) {
        TAILQ_REMOVE(&r->ready, l, link);
        free(l);
    }
    reg_versions_release(r);
    for (size_t i = 0; i < SUBJECT_BUCKETS; i++)
        while (r->subjects[i]) {
            if (r->subjects[i]->f)
                reg_fetch_free(r->subjects[i]->f);
            subject_remove(r, r->subjects[i]);
        }
    for (size_t i = 0; i < ID_BUCKETS; i++)
        while (r->ids[i]) {
            if (r->ids[i]->f)
                reg_fetch_free(r->ids[i]->f);
            id_remove(r, r->ids[i]);
        }
}

void sk_registry_free(sk_registry *r)
{
    if (!r || r->closed)
        return;
    r->closed = 1;
    sk_http_free(r->http);
    r->http = NULL;
    r->m_cached = NULL; /* the metrics registry may be gone already */
    release_all(r);
    free(r->base_url);
    free(r->username);
    r->base_url = r->username = NULL;
    if (!r->delivering)
        destroy(r);
}
