/* Shared between the Schema Registry client's files.
 *
 *   registry.c          the caches (ids, subjects), the lookups and their delivery, the public
 *                       calls by id and for "latest"
 *   registry_fetch.c    one HTTP request to the registry and the verdict on its answer
 *   registry_version.c  the lookup of one version of a subject
 *
 * Loop thread only, like the client. */
#ifndef SK_REGISTRY_INTERNAL_H
#define SK_REGISTRY_INTERNAL_H

#include <jansson.h>
#include <sys/queue.h>

#include "net/http.h"
#include "schema/registry.h"

#define REG_COMPONENT "schema_registry"
#define REG_MAX_SUBJECT_LEN 1024
#define REG_ERR_LEN 512

typedef struct fetch fetch;

/* One id. PENDING only while its first fetch is in flight; the other states are final, except
 * that a "latest" (or by-version) answer may turn NOT_FOUND into OK or INVALID. */
enum id_state { ID_PENDING, ID_OK, ID_NOT_FOUND, ID_INVALID };

typedef struct id_entry {
    int32_t id;
    enum id_state state;
    sk_avro_schema *schema; /* ID_OK */
    char *err;              /* ID_NOT_FOUND, ID_INVALID */
    char *old_err;          /* a NOT_FOUND message handed out before an upgrade */
    fetch *f;
    struct id_entry *next;
} id_entry;

enum subject_state { SUBJ_NONE, SUBJ_FOUND, SUBJ_NOT_FOUND };

typedef struct subject {
    char *name;
    enum subject_state state;
    id_entry *entry; /* SUBJ_FOUND: an ID_OK or ID_INVALID entry */
    char *err;       /* SUBJ_NOT_FOUND */
    int64_t fetched_ms;
    fetch *f;
    struct subject *next;
} subject;

TAILQ_HEAD(lookup_list, sk_registry_lookup);

typedef void (*fetch_done_fn)(fetch *f, const sk_http_result *res);

/* One HTTP request and the lookups waiting for it: by id (entry), latest (subj), or one version
 * of a subject (what names it). */
struct fetch {
    sk_registry *reg;
    sk_http_req *req;
    fetch_done_fn done;
    id_entry *entry;
    subject *subj;
    char *what; /* by version: "version N of subject \"S\"" */
    double started;
    struct lookup_list waiters;
    TAILQ_ENTRY(fetch) link; /* by version: in reg->version_fetches */
};

TAILQ_HEAD(fetch_list, fetch);

struct sk_registry_lookup {
    sk_registry *reg;
    fetch *f; /* waiting on f; NULL once answered (in reg->ready) */
    int delivering;
    sk_registry_cb cb;
    void *ud;
    sk_reg_status st;
    int32_t id;
    const sk_avro_schema *schema;
    char err[REG_ERR_LEN];
    TAILQ_ENTRY(sk_registry_lookup) link;
};

#define ID_BUCKETS 4096 /* power of two */
#define SUBJECT_BUCKETS 256

struct sk_registry {
    sk_http *http;
    char *base_url;            /* without trailing slashes */
    char *username;            /* basic auth, or NULL */
    const sk_secret *password; /* with username; NULL = "" */
    int64_t ttl_ms, timeout_ms;
    size_t max_ids, nids, nsubjects;
    id_entry *ids[ID_BUCKETS];
    subject *subjects[SUBJECT_BUCKETS];
    struct fetch_list version_fetches; /* by-version requests in flight */
    struct lookup_list ready;          /* answered, callback not run yet */
    struct event *deliver;
    int delivering, closed;
    sk_series *m_result[4]; /* by sk_reg_status */
    sk_series *m_seconds, *m_full, *m_cached;
};

/* The verdict on one HTTP answer; json is the parsed body of a 200. */
typedef struct answer {
    sk_reg_status st;
    json_t *json;
    char err[REG_ERR_LEN];
} answer;

/* ---- registry_fetch.c ---- */
/* Starts GET base_url + path with the registry's credentials; done runs from the loop with the
 * answer (f->req is then NULL). NULL when the request cannot start. */
fetch *reg_fetch_start(sk_registry *r, const char *path, fetch_done_fn done);
/* Frees f (and its what) and the lookups still waiting on it (their callbacks not called). */
void reg_fetch_free(fetch *f);
/* Counts the answer and logs a failure. */
void reg_record(sk_registry *r, const fetch *f, const answer *a);
/* The verdict on res shared by every endpoint; nf1, nf2: the Confluent error codes that mean
 * "not found" on this one. what names what was asked for in the messages. */
void reg_classify(const sk_http_result *res, const char *what, long nf1, long nf2, answer *a);
/* Parses the "schema" of a 200 answer: OK, INVALID (not Avro, or a bad schema) or UNAVAILABLE
 * (no schema in the answer). */
sk_reg_status reg_parse_schema(const json_t *j, const char *what, sk_avro_schema **out, char *err,
                               size_t errlen);
/* "/subjects/" + name percent-encoded (all but RFC 3986 unreserved characters) + tail into
 * out of size bytes (REG_MAX_SUBJECT_LEN * 3 + 64 hold any subject; a longer one is cut). */
void reg_subject_path(const char *name, const char *tail, char *out, size_t size);

/* ---- registry.c ---- */
sk_registry_lookup *reg_lookup_new(sk_registry *r, sk_registry_cb cb, void *ud);
/* Queues the answer; the callback runs from the deliver event. */
void reg_finish(sk_registry_lookup *l, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                const char *err);
void reg_answer_entry(sk_registry_lookup *l, const id_entry *e);
void reg_attach(sk_registry_lookup *l, fetch *f);
/* The id entry an answer carrying "id" and "schema" (latest or a version) points to: found in
 * the cache, or parsed into a new (or upgraded NOT_FOUND) entry. Returns OK or INVALID with *out
 * set, or UNAVAILABLE. */
sk_reg_status reg_answer_id(sk_registry *r, const json_t *j, const char *what, id_entry **out,
                            char *err, size_t errlen);

/* ---- registry_version.c ---- */
/* Drops the by-version requests in flight (the registry is being freed). */
void reg_versions_release(sk_registry *r);

#endif
