/* The records of one assigned Kafka partition that skiff holds, in offset order, each with a
 * state. A pure data structure (no I/O): it says which record may start now under the ordering
 * mode, and which offset may be committed. Loop thread only; not thread-safe.
 *
 * States: PENDING (pushed, not ready: schema being fetched, retry backoff), READY, RUNNING (with
 * a handler, or being written to the dead-letter queue), DONE. A record that is not DONE blocks
 * later records with the same key (SK_ORDER_KEY) or all later records (SK_ORDER_PARTITION).
 *
 * Commit position: offset of the first record that is not DONE; last pushed offset + 1 when all
 * are DONE; -1 before the first push. DONE records at the head are released as it moves.
 *
 * Cost (n = records held, k = key length): push O(k) amortized; ready, hold, done, take, get
 * O(log n) (done also releases the DONE head, amortized O(1) per record); position, open,
 * unstarted, held O(1); foreach O(n). Memory: one ~56-byte slot per held record plus one entry
 * per distinct key among records not DONE (key mode only). */
#ifndef SK_PARTQ_H
#define SK_PARTQ_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    SK_ORDER_KEY,       /* same key: one at a time, in offset order; no key (NULL): unordered */
    SK_ORDER_PARTITION, /* one at a time, in offset order */
    SK_ORDER_NONE       /* any READY record may start */
} sk_order;

typedef struct sk_partq sk_partq;

/* NULL when out of memory or order is not one of the sk_order values. */
sk_partq *sk_partq_new(sk_order order);
/* Frees q and every record it holds. Accepts NULL; never touches the records' ud. */
void sk_partq_free(sk_partq *q);

/* Appends a PENDING record; ud is the caller's and comes back from take/get/foreach. key NULL
 * means no key (keylen ignored); a non-NULL key of length 0 is the empty key, a real key. The
 * key bytes are copied; keys are equal when their bytes are. Returns 0, or -1 (q unchanged) if
 * offset < 0, offset == INT64_MAX, offset <= the last pushed offset, or out of memory. */
int sk_partq_push(sk_partq *q, int64_t offset, const void *key, size_t keylen, void *ud);
/* PENDING -> READY. -1 if no record held has this offset or it is not PENDING. */
int sk_partq_ready(sk_partq *q, int64_t offset);
/* RUNNING -> PENDING (retry backoff): the record keeps its place and keeps blocking the
 * records it blocked. -1 if unknown offset or not RUNNING. */
int sk_partq_hold(sk_partq *q, int64_t offset);
/* PENDING, READY or RUNNING -> DONE; may move the position. -1 if unknown offset or already
 * DONE. The record's ud is forgotten: the caller frees it. */
int sk_partq_done(sk_partq *q, int64_t offset);
/* The lowest-offset READY record that the ordering mode lets start now; it becomes RUNNING.
 * Returns its ud and sets *offset to its offset; when none can start returns NULL and sets
 * *offset to -1 (which tells the two apart if a ud may be NULL). offset may be NULL. */
void *sk_partq_take(sk_partq *q, int64_t *offset);

/* The offset to commit (see above). */
int64_t sk_partq_position(const sk_partq *q);
/* Records not DONE. */
size_t sk_partq_open(const sk_partq *q);
/* PENDING + READY records: held but not running. */
size_t sk_partq_unstarted(const sk_partq *q);
/* Records in memory: from the position to the last pushed, DONE ones included (the figure to
 * bound when deciding to pause fetching). */
size_t sk_partq_held(const sk_partq *q);
/* ud of the record with this offset if it is held and not DONE, else NULL. */
void *sk_partq_get(const sk_partq *q, int64_t offset);
/* Calls fn for every record not DONE, in offset order (revocation, shutdown). fn must not
 * modify q. */
void sk_partq_foreach(const sk_partq *q, void (*fn)(void *ctx, int64_t offset, void *ud),
                      void *ctx);

#endif
