/* Reader schemas (kafka.reader_schemas): the schema each topic's handlers expect, loaded from its
 * file at start, and the resolution plans from the writers' schemas to it, built once per writer
 * schema id and kept (the ids of the registry are immutable), the refusals too. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kafka/internal.h"
#include "schema/avro_resolve.h"

#define KREADER_MAX_FILE (1u << 20) /* a reader schema file */
#define KREADER_MAX_PLANS 4096      /* writer ids kept per topic; beyond, plans are not kept */

typedef struct kplan {
    int32_t writer_id;
    sk_avro_plan *plan; /* NULL: the writer's schema cannot be resolved to the reader's */
    char *err;          /* why not */
} kplan;

struct kreader {
    char *topic;
    sk_avro_schema *schema;
    kplan *plans;
    size_t n, cap;
    kreader *next;
};

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

/* One "<topic>=file:<path>" item (checked by the configuration). */
static kreader *load_one(const char *item, char *err, size_t errlen)
{
    const char *eq = strchr(item, '=');
    const char *path = eq + 6;
    size_t len;
    char perr[300];
    kreader *kr = calloc(1, sizeof *kr);
    char *text = kr ? read_text(path, &len, perr, sizeof perr) : NULL;
    if (kr && text) {
        kr->topic = strndup(item, (size_t)(eq - item));
        kr->schema = sk_avro_schema_parse(text, len, perr, sizeof perr);
    }
    free(text);
    if (kr && kr->topic && kr->schema)
        return kr;
    snprintf(err, errlen, "kafka.reader_schemas: topic %.*s, %s", (int)(eq - item), item,
             kr ? perr : "out of memory");
    kreader_free_all(kr);
    return NULL;
}

int kreader_load(sk_kafka *k, char *err, size_t errlen)
{
    for (size_t i = 0; i < k->cfg->kafka_reader_schemas_len; i++) {
        kreader *kr = load_one(k->cfg->kafka_reader_schemas[i], err, errlen);
        if (!kr)
            return -1;
        kr->next = k->readers;
        k->readers = kr;
        SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("topic", kr->topic),
               "values are resolved to the reader schema %s",
               strchr(k->cfg->kafka_reader_schemas[i], '=') + 6);
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
        sk_avro_schema_free(kr->schema);
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
