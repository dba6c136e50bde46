/* Reader schemas (kafka.reader_schemas): the schema each topic's handlers expect, loaded from its
 * file at start or fetched from the Schema Registry (one version of a subject) before the
 * consumer joins its group, and the resolution plans from the writers' schemas to it, built once
 * per writer schema id and kept (the ids of the registry are immutable), the refusals too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/log.h"
#include "core/reader_item.h"
#include "kafka/internal.h"
#include "schema/avro_resolve.h"

#define KREADER_MAX_FILE (1u << 20) /* a reader schema file */
#define KREADER_MAX_PLANS 4096      /* writer ids kept per topic; beyond, plans are not kept */
#define KREADER_RETRY_INITIAL_MS 1000
#define KREADER_RETRY_MAX_MS 30000

typedef struct kplan {
    int32_t writer_id;
    sk_avro_plan *plan; /* NULL: the writer's schema cannot be resolved to the reader's */
    char *err;          /* why not */
} kplan;

struct kreader {
    sk_kafka *k;
    char *topic;
    sk_avro_schema *owned;        /* a file's schema */
    const sk_avro_schema *schema; /* the reader's: owned, or the registry's; NULL until known */
    char *subject;                /* a registry subject (else NULL) */
    int32_t version;              /* its version */
    struct event *timer;          /* the next lookup */
    sk_backoff bo;
    int unusable;       /* the registry's schema is not usable Avro: never asked again */
    char why[600];      /* the last failure, for /readyz */
    sk_series *m_st[4]; /* skiff_kafka_reader_schema_lookups_total by sk_reg_status */
    kplan *plans;
    size_t n, cap;
    kreader *next;
};

static const char *const lookup_results[] = {"ok", "not_found", "invalid", "unavailable"};

static char *read_text(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return NULL;
    }
    char *buf = malloc(KREADER_MAX_FILE + 1);
    *len = buf ? fread(buf, 1, KREADER_MAX_FILE + 1, f) : 0;
    int bad = ferror(f) || *len > KREADER_MAX_FILE;
    fclose(f);
    if (!buf || bad) {
        snprintf(err, errlen, "%s: %s", path,
                 !buf  ? "out of memory"
                 : bad ? "unreadable or over 1 MiB"
                       : "");
        free(buf);
        return NULL;
    }
    return buf;
}

static int load_file(kreader *kr, const char *path, char *err, size_t errlen)
{
    size_t len;
    char *text = read_text(path, &len, err, errlen);
    if (text)
        kr->schema = kr->owned = sk_avro_schema_parse(text, len, err, errlen);
    free(text);
    return kr->schema ? 0 : -1;
}

/* One item (checked by the configuration); a subject's schema is fetched by kreader_fetch. */
static kreader *load_one(sk_kafka *k, const char *item, char *err, size_t errlen)
{
    sk_reader_item ri;
    char perr[300] = "out of memory";
    kreader *kr = NULL;
    if (sk_reader_item_parse(item, &ri, perr, sizeof perr) == 0 && (kr = calloc(1, sizeof *kr)) &&
        (kr->topic = strndup(ri.topic, ri.topic_len))) {
        kr->k = k;
        if (ri.kind == SK_READER_FILE && load_file(kr, ri.path, perr, sizeof perr) == 0)
            return kr;
        if (ri.kind == SK_READER_SUBJECT && (kr->subject = strndup(ri.subject, ri.subject_len))) {
            kr->version = ri.version;
            return kr;
        }
    }
    const char *eq = strchr(item, '=');
    snprintf(err, errlen, "kafka.reader_schemas: topic %.*s, %s", eq ? (int)(eq - item) : 0, item,
             perr);
    kreader_free_all(kr);
    return NULL;
}

int kreader_load(sk_kafka *k, char *err, size_t errlen)
{
    for (size_t i = 0; i < k->cfg->kafka_reader_schemas_len; i++) {
        kreader *kr = load_one(k, k->cfg->kafka_reader_schemas[i], err, errlen);
        if (!kr)
            return -1;
        kr->next = k->readers;
        k->readers = kr;
        if (kr->subject)
            SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("topic", kr->topic),
                   "values are resolved to version %d of subject \"%s\", fetched from the schema "
                   "registry before the consumer joins its group",
                   (int)kr->version, kr->subject);
        else
            SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("topic", kr->topic),
                   "values are resolved to the reader schema %s",
                   strchr(k->cfg->kafka_reader_schemas[i], '=') + 6);
    }
    return 0;
}

/* ---- a subject's version from the registry ---- */

static void lookup_start(kreader *kr);

/* Every reader schema known: the consumer joins its group. */
static void all_known(sk_kafka *k)
{
    for (kreader *kr = k->readers; kr; kr = kr->next)
        if (!kr->schema)
            return;
    char err[256];
    if (kconsumer_subscribe(k, err, sizeof err) != 0) {
        snprintf(k->fatal, sizeof k->fatal, "%s", err);
        SK_ERROR("kafka", "%s", err);
    }
}

static void retry_later(kreader *kr, sk_reg_status st)
{
    int64_t ms = sk_backoff_next(&kr->bo);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000 * 1000)};
    SK_LOG(st == SK_REG_NOT_FOUND ? SK_LOG_ERROR : SK_LOG_WARN, "kafka", NULL,
           SK_KV("topic", kr->topic),
           "reader schema of topic %s: %s; the consumer waits before joining its group (not "
           "ready), next try in %.1f s",
           kr->topic, kr->why, (double)ms / 1000);
    if (evtimer_add(kr->timer, &tv) != 0)
        SK_ERROR("kafka", "reader schema of topic %s: cannot arm the retry timer", kr->topic);
}

static void on_lookup(void *ud, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                      const char *err)
{
    kreader *kr = ud;
    sk_series_add(kr->m_st[st], 1);
    if (kr->k->stopping)
        return;
    if (st == SK_REG_OK) {
        kr->schema = schema;
        kr->why[0] = '\0';
        SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("topic", kr->topic),
               "values are resolved to the reader schema version %d of subject \"%s\" (schema id "
               "%d)",
               (int)kr->version, kr->subject, (int)id);
        all_known(kr->k);
        return;
    }
    snprintf(kr->why, sizeof kr->why, "%s", err);
    if (st != SK_REG_INVALID) {
        retry_later(kr, st);
        return;
    }
    kr->unusable = 1;
    SK_ERROR("kafka",
             "reader schema of topic %s: %s; the consumer does not join its group: name a usable "
             "Avro version in kafka.reader_schemas and restart skiff",
             kr->topic, kr->why);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kreader *kr = arg;
    if (!kr->k->stopping)
        lookup_start(kr);
}

static void lookup_start(kreader *kr)
{
    /* The lookup is not kept: it ends with its callback, or with the registry, which is freed
     * before the readers (sk_kafka_free). */
    if (sk_registry_version(kr->k->registry, kr->subject, kr->version, on_lookup, kr))
        return;
    snprintf(kr->why, sizeof kr->why, "version %d of subject \"%s\": out of memory",
             (int)kr->version, kr->subject);
    retry_later(kr, SK_REG_UNAVAILABLE);
}

int kreader_fetch(sk_kafka *k, char *err, size_t errlen)
{
    static const char *const labels[] = {"topic", "result", NULL};
    sk_metric *m = NULL;
    int waiting = 0;
    for (kreader *kr = k->readers; kr; kr = kr->next) {
        if (kr->schema)
            continue;
        if (!m)
            m = sk_metrics_counter(
                k->metrics, "skiff_kafka_reader_schema_lookups_total",
                "Lookups of reader schemas named by subject and version, by topic and result.",
                labels);
        for (size_t i = 0; i < 4; i++)
            kr->m_st[i] = sk_metric_series(m, (const char *const[]){kr->topic, lookup_results[i]});
        if (!(kr->timer = evtimer_new(k->base, on_timer, kr))) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        sk_backoff_init(&kr->bo, KREADER_RETRY_INITIAL_MS, KREADER_RETRY_MAX_MS,
                        (uint64_t)(uintptr_t)kr);
        snprintf(kr->why, sizeof kr->why, "version %d of subject \"%s\": asking the registry",
                 (int)kr->version, kr->subject);
        lookup_start(kr);
        waiting++;
    }
    return waiting;
}

int kreader_waiting(const sk_kafka *k, char *why, size_t whylen)
{
    for (const kreader *kr = k->readers; kr; kr = kr->next)
        if (!kr->schema) {
            snprintf(why, whylen,
                     "Kafka consumer has not joined group %s: %s reader schema of topic %s: %s",
                     k->cfg->kafka_group_id, kr->unusable ? "no usable" : "waiting for the",
                     kr->topic, kr->why);
            return 1;
        }
    return 0;
}

void kreader_free_all(kreader *kr)
{
    while (kr) {
        kreader *next = kr->next;
        for (size_t i = 0; i < kr->n; i++) {
            sk_avro_plan_free(kr->plans[i].plan);
            free(kr->plans[i].err);
        }
        free(kr->plans);
        sk_avro_schema_free(kr->owned);
        if (kr->timer)
            event_free(kr->timer);
        free(kr->subject);
        free(kr->topic);
        free(kr);
        kr = next;
    }
}

kreader *kreader_find(const sk_kafka *k, const char *topic)
{
    for (kreader *kr = k->readers; kr; kr = kr->next)
        if (strcmp(kr->topic, topic) == 0)
            return kr;
    return NULL;
}

/* The kept plan (or refusal) for writer_id, built now when new. */
static kplan *plan_for(kreader *kr, int32_t writer_id, const sk_avro_schema *writer, kplan *tmp)
{
    for (size_t i = 0; i < kr->n; i++)
        if (kr->plans[i].writer_id == writer_id)
            return &kr->plans[i];
    char err[400];
    kplan p = {.writer_id = writer_id,
               .plan = sk_avro_plan_new(writer, kr->schema, err, sizeof err)};
    if (!p.plan)
        p.err = strdup(err);
    if (kr->n == kr->cap && kr->n < KREADER_MAX_PLANS) {
        size_t cap = kr->cap ? kr->cap * 2 : 8;
        kplan *plans = realloc(kr->plans, cap * sizeof *plans);
        if (plans) {
            kr->plans = plans;
            kr->cap = cap;
        }
    }
    if (kr->n < kr->cap) {
        kr->plans[kr->n] = p;
        return &kr->plans[kr->n++];
    }
    *tmp = p; /* not kept: the caller frees it */
    return tmp;
}

json_t *kreader_decode(kreader *kr, int32_t writer_id, const sk_avro_schema *writer,
                       const uint8_t *body, size_t len, int *incompatible, char *err, size_t errlen)
{
    kplan tmp = {0};
    kplan *p = plan_for(kr, writer_id, writer, &tmp);
    json_t *v = NULL;
    *incompatible = 1;
    if (!p->plan)
        snprintf(err, errlen, "%s", p->err ? p->err : "out of memory");
    else
        v = sk_avro_resolve(p->plan, body, len, incompatible, err, errlen);
    sk_avro_plan_free(tmp.plan);
    free(tmp.err);
    return v;
}
