/* Confluent Schema Registry client (Avro only) on the libevent loop, over net/http.
 *
 * Schemas by id are immutable: a schema is fetched and parsed once per id and kept until
 * sk_registry_free, and so are the permanent verdicts NOT_FOUND (40403) and INVALID. "Latest"
 * per subject is kept for latest_ttl_ms, also when the subject is not found (40401/40402), and
 * refers to the by-id entry of its id; a "latest" answer naming an id cached as NOT_FOUND
 * replaces that verdict with the schema it carries. UNAVAILABLE is never cached: the next lookup
 * asks again. Concurrent lookups of one id or one subject share one HTTP request. A version of a
 * subject (sk_registry_version) is asked for each time (callers look one up once, at start); the
 * schema it answers with is kept by id like any other.
 *
 * Bounds: at most max_ids ids (default SK_REGISTRY_MAX_IDS) and SK_REGISTRY_MAX_SUBJECTS
 * subjects are cached. Good schemas are never evicted (callers hold their pointers), so a lookup
 * of a new id once the id cache is full answers UNAVAILABLE ("cache full", counted in
 * skiff_schema_registry_cache_full_total); a full subject cache first drops an expired subject.
 *
 * Metrics: skiff_schema_registry_requests_total{result} (ok, not_found, invalid, unavailable)
 * and skiff_schema_registry_request_seconds, one observation per HTTP request.
 *
 * Loop thread only. Messages never contain the password. */
#ifndef SK_REGISTRY_H
#define SK_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "schema/avro_json.h"
#include "secrets/secret.h"

struct event_base;

#define SK_REGISTRY_MAX_IDS 10000
#define SK_REGISTRY_MAX_SUBJECTS 1024

/* NOT_FOUND and INVALID are permanent for an id; UNAVAILABLE is retriable (transport error,
 * timeout, 5xx, 401/403, an unexpected answer, cache full). */
typedef enum { SK_REG_OK, SK_REG_NOT_FOUND, SK_REG_INVALID, SK_REG_UNAVAILABLE } sk_reg_status;

typedef struct sk_registry_opts {
    const char *url;      /* base URL, e.g. http://127.0.0.1:28081 (trailing slash tolerated) */
    const char *username; /* basic auth; NULL or "" = none */
    const sk_secret *password; /* NULL = ""; borrowed: must outlive the registry */
    int64_t latest_ttl_ms;     /* how long "latest" of a subject is kept; <= 0: not kept */
    int64_t timeout_ms;        /* per HTTP request; <= 0: 10 s */
    size_t max_ids;            /* ids kept; 0: SK_REGISTRY_MAX_IDS */
    struct sk_tls *tls;        /* https: the TLS layer's material (must outlive the client); NULL:
                                  libcurl's defaults */
} sk_registry_opts;

typedef struct sk_registry sk_registry;
typedef struct sk_registry_lookup sk_registry_lookup;

/* st: the verdict. id: the id asked for, or for "latest" the subject's current id (0 when
 * unknown). schema: set when st is SK_REG_OK, owned by the registry, valid until
 * sk_registry_free. err: NULL when st is SK_REG_OK, else a message naming the id or subject and
 * the cause; valid during the callback only. */
typedef void (*sk_registry_cb)(void *ud, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                               const char *err);

/* Copies the options. m: NULL or the registry to count into. NULL with err set on failure (no
 * URL, out of memory). */
sk_registry *sk_registry_new(struct event_base *base, const sk_registry_opts *o, sk_metrics *m,
                             char *err, size_t errlen);

/* Cancels every lookup (callbacks not called) and frees every cached schema. Accepts NULL. May
 * be called from inside a lookup callback; the memory goes when that callback returns. */
void sk_registry_free(sk_registry *r);

/* Cache only, no I/O. Returns the schema of id when it is known good, else NULL. st (optional)
 * gets the cached verdict: SK_REG_OK, SK_REG_NOT_FOUND or SK_REG_INVALID, or SK_REG_UNAVAILABLE
 * when nothing is cached yet (unknown id, or a fetch in flight): ask sk_registry_by_id. err
 * (optional) gets the message of a cached NOT_FOUND / INVALID (NULL otherwise), valid until
 * sk_registry_free. */
const sk_avro_schema *sk_registry_cached(sk_registry *r, int32_t id, sk_reg_status *st,
                                         const char **err);

/* Cache only, no I/O: the latest schema of subject while its TTL holds (its id in *id when id
 * is not NULL), else NULL. */
const sk_avro_schema *sk_registry_cached_latest(sk_registry *r, const char *subject, int32_t *id);

/* Asynchronous lookups. cb runs later from the loop, exactly once unless the lookup is cancelled
 * or the registry freed, even when the answer is cached. Returns NULL only on bad arguments or
 * out of memory (cb never called); a subject is 1 to 1024 bytes, URL-escaped in the path. The
 * handle is valid until cb returns or the lookup is cancelled. Inside cb it is allowed to start
 * lookups, to cancel other lookups and to free the registry. */
sk_registry_lookup *sk_registry_by_id(sk_registry *r, int32_t id, sk_registry_cb cb, void *ud);
sk_registry_lookup *sk_registry_latest(sk_registry *r, const char *subject, sk_registry_cb cb,
                                       void *ud);

/* One version (>= 1) of subject: its id and schema. NOT_FOUND when the registry knows neither
 * the subject (40401) nor that version of it (40402); the verdict is not cached. Same contract as
 * the lookups above; "latest" (-1) is sk_registry_latest's. */
sk_registry_lookup *sk_registry_version(sk_registry *r, const char *subject, int32_t version,
                                        sk_registry_cb cb, void *ud);

/* Drops a lookup: its callback is not called (the shared HTTP request, if any, still fills the
 * cache). Accepts NULL; cancelling the lookup being delivered does nothing. */
void sk_registry_cancel(sk_registry_lookup *l);

#endif
