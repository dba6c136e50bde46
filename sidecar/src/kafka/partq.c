/* Held records live in a ring indexed by a push sequence number (seq & (cap - 1)); seqs never
 * change when the ring grows or shrinks, so the other structures refer to records by seq.
 *
 * Startable records (READY and allowed by the mode) sit in a binary min-heap of seqs, so take
 * is a pop; seq order is offset order. A record's eligibility changes only when its own state
 * changes, when it becomes the first of its key's FIFO (key mode), or when it becomes the head
 * of the ring (partition mode); `refresh` re-evaluates it at exactly those points.
 *
 * Key mode: a chained hash map from key bytes to the FIFO (doubly linked through the records)
 * of the not-DONE records with that key; the entry is freed when its FIFO empties. */
#include <stdlib.h>
#include <string.h>

#include "kafka/partq.h"

enum { PENDING, READY, RUNNING, DONE };

#define NOSEQ UINT64_MAX
#define NOHEAP SIZE_MAX
#define MIN_CAP 16
#define MIN_BUCKETS 16

typedef struct keyent {
    struct keyent *chain;
    uint64_t hash;
    uint64_t first, last; /* FIFO of the not-DONE records with this key */
    size_t len;
    unsigned char bytes[];
} keyent;

typedef struct rec {
    int64_t offset;
    void *ud;
    keyent *key;         /* NULL: no key, not key mode, or DONE */
    uint64_t prev, next; /* neighbours in the key's FIFO */
    size_t heap_at;      /* index in heap, NOHEAP when not startable */
    int state;
} rec;

struct sk_partq {
    sk_order order;
    rec *ring;      /* cap slots, cap a power of two */
    uint64_t *heap; /* at least cap slots: never full, so ready/done cannot fail */
    size_t cap, nheap;
    uint64_t head, tail; /* held records: seqs [head, tail); head is never DONE */
    keyent **buckets;
    size_t nbuckets, nkeys;
    size_t open, unstarted;
    int64_t last; /* last pushed offset, -1 before the first push */
};

/* FNV-1a with a 64-bit finaliser so that the low bits used for buckets are mixed. */
static uint64_t key_hash(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* Tests substitute a colliding hash to prove keys are compared by bytes. */
#ifndef SK_PARTQ_HASH
#define SK_PARTQ_HASH key_hash
#endif

static rec *at(const sk_partq *q, uint64_t seq)
{
    return &q->ring[seq & (q->cap - 1)];
}

/* ---- startable heap ---- */

static void heap_set(sk_partq *q, size_t i, uint64_t seq)
{
    q->heap[i] = seq;
    at(q, seq)->heap_at = i;
}

static size_t heap_up(sk_partq *q, size_t i)
{
    uint64_t seq = q->heap[i];
    while (i > 0 && q->heap[(i - 1) / 2] > seq) {
        heap_set(q, i, q->heap[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    heap_set(q, i, seq);
    return i;
}

static void heap_down(sk_partq *q, size_t i)
{
    uint64_t seq = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->nheap)
            break;
        if (c + 1 < q->nheap && q->heap[c + 1] < q->heap[c])
            c++;
        if (seq < q->heap[c])
            break;
        heap_set(q, i, q->heap[c]);
        i = c;
    }
    heap_set(q, i, seq);
}

static void heap_remove(sk_partq *q, rec *r)
{
    size_t i = r->heap_at;
    r->heap_at = NOHEAP;
    q->nheap--;
    if (i == q->nheap)
        return;
    q->heap[i] = q->heap[q->nheap];
    heap_down(q, heap_up(q, i));
}

static int startable(const sk_partq *q, uint64_t seq)
{
    const rec *r = at(q, seq);
    if (r->state != READY)
        return 0;
    if (q->order == SK_ORDER_PARTITION)
        return seq == q->head;
    return !r->key || r->key->first == seq;
}

/* Puts seq in the heap or takes it out to match its current eligibility. */
static void refresh(sk_partq *q, uint64_t seq)
{
    rec *r = at(q, seq);
    int want = startable(q, seq);
    if (want && r->heap_at == NOHEAP) {
        q->heap[q->nheap] = seq;
        heap_up(q, q->nheap++);
    } else if (!want && r->heap_at != NOHEAP) {
        heap_remove(q, r);
    }
}

/* ---- ring ---- */

/* Moves the held records to a ring of cap slots (cap >= held). -1 on out of memory, q
 * unchanged. */
static int resize(sk_partq *q, size_t cap)
{
    rec *ring = malloc(cap * sizeof(*ring));
    if (!ring)
        return -1;
    uint64_t *heap = realloc(q->heap, cap * sizeof(*heap));
    if (!heap && cap > q->cap) {
        free(ring);
        return -1;
    }
    if (heap)
        q->heap = heap;
    for (uint64_t s = q->head; s < q->tail; s++)
        ring[s & (cap - 1)] = *at(q, s);
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    return 0;
}

/* The seq of the held record with this offset, or NOSEQ. Offsets strictly increase, so the
 * record is at most (offset - first) slots past the head: without gaps exactly there. */
static uint64_t find(const sk_partq *q, int64_t offset)
{
    if (q->head == q->tail)
        return NOSEQ;
    int64_t first = at(q, q->head)->offset;
    if (offset < first || offset > q->last)
        return NOSEQ;
    uint64_t lo = q->head, hi = q->tail;
    if ((uint64_t)(offset - first) < hi - lo) {
        hi = lo + (uint64_t)(offset - first) + 1;
        if (at(q, hi - 1)->offset == offset)
            return hi - 1;
    }
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        int64_t o = at(q, mid)->offset;
        if (o == offset)
            return mid;
        if (o < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NOSEQ;
}

/* Frees the DONE records at the head and gives back ring space once mostly empty. */
static void release(sk_partq *q)
{
    while (q->head < q->tail && at(q, q->head)->state == DONE)
        q->head++;
    size_t held = (size_t)(q->tail - q->head), cap = q->cap;
    while (cap > MIN_CAP && held <= cap / 4)
        cap /= 2;
    /* A failed shrink only keeps the larger ring. */
    if (cap != q->cap)
        (void)resize(q, cap);
    if (q->order == SK_ORDER_PARTITION && q->head < q->tail)
        refresh(q, q->head);
}

/* ---- keys ---- */

static keyent **key_slot(const sk_partq *q, uint64_t hash, const void *key, size_t len)
{
    keyent **e = &q->buckets[hash & (q->nbuckets - 1)];
    while (*e && !((*e)->hash == hash && (*e)->len == len && memcmp((*e)->bytes, key, len) == 0))
        e = &(*e)->chain;
    return e;
}

/* Doubles the buckets; on out of memory the chains just stay longer. */
static void key_grow(sk_partq *q)
{
    size_t n = q->nbuckets * 2;
    keyent **b = calloc(n, sizeof(*b));
    if (!b)
        return;
    for (size_t i = 0; i < q->nbuckets; i++) {
        for (keyent *e = q->buckets[i], *next; e; e = next) {
            next = e->chain;
            e->chain = b[e->hash & (n - 1)];
            b[e->hash & (n - 1)] = e;
        }
    }
    free(q->buckets);
    q->buckets = b;
    q->nbuckets = n;
}

/* The entry for a key, created with an empty FIFO if absent; NULL on out of memory. */
static keyent *key_get(sk_partq *q, const void *key, size_t len)
{
    uint64_t hash = SK_PARTQ_HASH(key, len);
    keyent **slot = key_slot(q, hash, key, len);
    if (*slot)
        return *slot;
    keyent *e = malloc(sizeof(*e) + len);
    if (!e)
        return NULL;
    e->chain = NULL;
    e->hash = hash;
    e->first = e->last = NOSEQ;
    e->len = len;
    memcpy(e->bytes, key, len);
    *slot = e;
    if (++q->nkeys > q->nbuckets)
        key_grow(q);
    return e;
}

static void key_drop(sk_partq *q, keyent *e)
{
    keyent **slot = &q->buckets[e->hash & (q->nbuckets - 1)];
    while (*slot != e)
        slot = &(*slot)->chain;
    *slot = e->chain;
    q->nkeys--;
    free(e);
}

static void fifo_append(sk_partq *q, keyent *e, uint64_t seq)
{
    rec *r = at(q, seq);
    r->key = e;
    r->prev = e->last;
    r->next = NOSEQ;
    if (e->last != NOSEQ)
        at(q, e->last)->next = seq;
    else
        e->first = seq;
    e->last = seq;
}

/* Takes a record out of its key's FIFO; the next one may become startable. */
static void fifo_unlink(sk_partq *q, rec *r)
{
    keyent *e = r->key;
    if (!e)
        return;
    r->key = NULL;
    if (r->prev != NOSEQ)
        at(q, r->prev)->next = r->next;
    else
        e->first = r->next;
    if (r->next != NOSEQ)
        at(q, r->next)->prev = r->prev;
    else
        e->last = r->prev;
    if (e->first == NOSEQ)
        key_drop(q, e);
    else if (r->prev == NOSEQ)
        refresh(q, e->first);
}

/* ---- public ---- */

sk_partq *sk_partq_new(sk_order order)
{
    if (order != SK_ORDER_KEY && order != SK_ORDER_PARTITION && order != SK_ORDER_NONE)
        return NULL;
    sk_partq *q = calloc(1, sizeof(*q));
    if (!q)
        return NULL;
    q->order = order;
    q->last = -1;
    if (resize(q, MIN_CAP) < 0)
        goto fail;
    if (order == SK_ORDER_KEY) {
        q->buckets = calloc(MIN_BUCKETS, sizeof(*q->buckets));
        if (!q->buckets)
            goto fail;
        q->nbuckets = MIN_BUCKETS;
    }
    return q;
fail:
    sk_partq_free(q);
    return NULL;
}

void sk_partq_free(sk_partq *q)
{
    if (!q)
        return;
    for (size_t i = 0; i < q->nbuckets; i++) {
        for (keyent *e = q->buckets[i], *next; e; e = next) {
            next = e->chain;
            free(e);
        }
    }
    free(q->buckets);
    free(q->ring);
    free(q->heap);
    free(q);
}

int sk_partq_push(sk_partq *q, int64_t offset, const void *key, size_t keylen, void *ud)
{
    if (offset < 0 || offset == INT64_MAX || offset <= q->last)
        return -1;
    if (q->tail - q->head == q->cap && resize(q, q->cap * 2) < 0)
        return -1;
    keyent *e = NULL;
    if (q->order == SK_ORDER_KEY && key && !(e = key_get(q, key, keylen)))
        return -1;
    uint64_t seq = q->tail++;
    *at(q, seq) = (rec){.offset = offset,
                        .ud = ud,
                        .prev = NOSEQ,
                        .next = NOSEQ,
                        .heap_at = NOHEAP,
                        .state = PENDING};
    if (e)
        fifo_append(q, e, seq);
    q->open++;
    q->unstarted++;
    q->last = offset;
    return 0;
}

int sk_partq_ready(sk_partq *q, int64_t offset)
{
    uint64_t seq = find(q, offset);
    if (seq == NOSEQ || at(q, seq)->state != PENDING)
        return -1;
    at(q, seq)->state = READY;
    refresh(q, seq);
    return 0;
}

int sk_partq_hold(sk_partq *q, int64_t offset)
{
    uint64_t seq = find(q, offset);
    if (seq == NOSEQ || at(q, seq)->state != RUNNING)
        return -1;
    at(q, seq)->state = PENDING;
    q->unstarted++;
    return 0;
}

int sk_partq_done(sk_partq *q, int64_t offset)
{
    uint64_t seq = find(q, offset);
    if (seq == NOSEQ)
        return -1;
    rec *r = at(q, seq);
    if (r->state == DONE)
        return -1;
    if (r->heap_at != NOHEAP)
        heap_remove(q, r);
    if (r->state != RUNNING)
        q->unstarted--;
    r->state = DONE;
    r->ud = NULL;
    q->open--;
    fifo_unlink(q, r);
    if (seq == q->head)
        release(q);
    return 0;
}

void *sk_partq_take(sk_partq *q, int64_t *offset)
{
    if (q->nheap == 0) {
        if (offset)
            *offset = -1;
        return NULL;
    }
    rec *r = at(q, q->heap[0]);
    heap_remove(q, r);
    r->state = RUNNING;
    q->unstarted--;
    if (offset)
        *offset = r->offset;
    return r->ud;
}

int64_t sk_partq_position(const sk_partq *q)
{
    if (q->head < q->tail)
        return at(q, q->head)->offset;
    return q->last < 0 ? -1 : q->last + 1;
}

size_t sk_partq_open(const sk_partq *q)
{
    return q->open;
}

size_t sk_partq_unstarted(const sk_partq *q)
{
    return q->unstarted;
}

size_t sk_partq_held(const sk_partq *q)
{
    return (size_t)(q->tail - q->head);
}

void *sk_partq_get(const sk_partq *q, int64_t offset)
{
    uint64_t seq = find(q, offset);
    if (seq == NOSEQ || at(q, seq)->state == DONE)
        return NULL;
    return at(q, seq)->ud;
}

void sk_partq_foreach(const sk_partq *q, void (*fn)(void *ctx, int64_t offset, void *ud), void *ctx)
{
    for (uint64_t s = q->head; s < q->tail; s++) {
        const rec *r = at(q, s);
        if (r->state != DONE)
            fn(ctx, r->offset, r->ud);
    }
}
