/* libFuzzer target: a sequence of operations on a partition queue, every answer checked
 * against a naive model (an array of every record ever pushed, scanned each time).
 *
 * Input: byte 0 picks the mode (% 3) and, with bit 0x08, a hash under which all keys of one
 * length collide. Then one operation per byte (% 8): 0-1 push, 2 ready, 3 hold, 4 done, 5-6
 * take, 7 get + foreach; operands follow the operation byte. Includes partq.c to substitute
 * the hash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int weak_hash;
static uint64_t fuzz_hash(const void *key, size_t len);
#define SK_PARTQ_HASH fuzz_hash
#include "kafka/partq.c"

static uint64_t fuzz_hash(const void *key, size_t len)
{
    return weak_hash ? (uint64_t)len : key_hash(key, len);
}

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_partq: %s (line %d)\n", #c, __LINE__);                           \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#define MAXREC 1024
#define UD(i) ((void *)(uintptr_t)((i) + 1))

typedef struct mrec {
    int64_t offset;
    int haskey;
    size_t keylen;
    unsigned char key[3];
    int state;
} mrec;

typedef struct model {
    sk_order order;
    mrec r[MAXREC];
    size_t n;
} model;

typedef struct input {
    const uint8_t *p;
    size_t n;
} input;

static uint8_t next(input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* ---- the model ---- */

static long mfind(const model *m, int64_t offset)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->r[i].offset == offset)
            return (long)i;
    return -1;
}

static size_t mfirst_open(const model *m)
{
    size_t i = 0;
    while (i < m->n && m->r[i].state == DONE)
        i++;
    return i;
}

static int same_key(const mrec *a, const mrec *b)
{
    return a->haskey && b->haskey && a->keylen == b->keylen &&
           memcmp(a->key, b->key, a->keylen) == 0;
}

/* Whether every record before i that the mode orders i against is DONE. */
static int mallowed(const model *m, size_t i)
{
    if (m->order == SK_ORDER_NONE)
        return 1;
    for (size_t j = mfirst_open(m); j < i; j++) {
        if (m->r[j].state == DONE)
            continue;
        if (m->order == SK_ORDER_PARTITION || same_key(&m->r[j], &m->r[i]))
            return 0;
    }
    return 1;
}

static long mtake(const model *m)
{
    for (size_t i = mfirst_open(m); i < m->n; i++)
        if (m->r[i].state == READY && mallowed(m, i))
            return (long)i;
    return -1;
}

/* Moves a record from one state to another as the real queue should; -1 when it must refuse. */
static int mmove(model *m, int64_t offset, int from_mask, int to)
{
    long i = mfind(m, offset);
    if (i < 0 || !(from_mask & (1 << m->r[i].state)))
        return -1;
    m->r[i].state = to;
    return 0;
}

/* ---- checks ---- */

static void check_counters(const sk_partq *q, const model *m)
{
    size_t open = 0, unstarted = 0, first = mfirst_open(m);
    for (size_t i = 0; i < m->n; i++) {
        open += m->r[i].state != DONE;
        unstarted += m->r[i].state == PENDING || m->r[i].state == READY;
    }
    int64_t pos = first < m->n ? m->r[first].offset : m->n ? m->r[m->n - 1].offset + 1 : -1;
    CHECK(sk_partq_position(q) == pos);
    CHECK(sk_partq_open(q) == open);
    CHECK(sk_partq_unstarted(q) == unstarted);
    CHECK(sk_partq_held(q) == m->n - first);
}

/* Independent of mtake: the record now RUNNING breaks no ordering rule. */
static void check_order(const model *m, size_t i)
{
    for (size_t j = 0; j < m->n; j++) {
        if (j == i || m->r[j].state == DONE)
            continue;
        if (m->order == SK_ORDER_PARTITION)
            CHECK(j > i && m->r[j].state != RUNNING);
        if (m->order == SK_ORDER_KEY && same_key(&m->r[i], &m->r[j]))
            CHECK(j > i && m->r[j].state != RUNNING);
    }
}

typedef struct walk {
    const model *m;
    size_t at;
} walk;

static void walk_fn(void *ctx, int64_t offset, void *ud)
{
    walk *w = ctx;
    while (w->at < w->m->n && w->m->r[w->at].state == DONE)
        w->at++;
    CHECK(w->at < w->m->n);
    CHECK(w->m->r[w->at].offset == offset && ud == UD(w->at));
    w->at++;
}

static void check_foreach(const sk_partq *q, const model *m)
{
    walk w = {m, 0};
    sk_partq_foreach(q, walk_fn, &w);
    while (w.at < m->n && m->r[w.at].state == DONE)
        w.at++;
    CHECK(w.at == m->n);
}

/* ---- operations ---- */

static int64_t pick(input *in, const model *m)
{
    uint8_t b = next(in);
    if (m->n == 0 || b >= 0xf0)
        return (int64_t)next(in) - 1; /* anything, often not a held offset */
    if (b & 0x80)
        return m->r[m->n - 1 - (b & 0x0f) % m->n].offset;
    return m->r[b % m->n].offset;
}

static void op_push_bad(input *in, sk_partq *q, const model *m)
{
    int64_t last = m->n ? m->r[m->n - 1].offset : -1;
    int64_t bad[] = {last, last - 1, -1 - (int64_t)next(in), INT64_MAX};
    CHECK(sk_partq_push(q, bad[next(in) % 4], "k", 1, UD(0)) == -1);
}

static void op_push(input *in, sk_partq *q, model *m)
{
    uint8_t g = next(in);
    if (g == 0xff) {
        op_push_bad(in, q, m);
        return;
    }
    if (m->n == MAXREC)
        return;
    mrec *r = &m->r[m->n];
    int64_t base = m->n ? m->r[m->n - 1].offset + 1 : 0;
    r->offset = base + (g & 3) + ((g & 0x40) ? 100000 : 0);
    uint8_t kb = next(in);
    r->haskey = kb % 5 != 0;
    r->keylen = r->haskey ? (kb >> 3) % 4 : 0;
    for (size_t i = 0; i < r->keylen; i++)
        r->key[i] = next(in) % 3;
    r->state = PENDING;
    CHECK(sk_partq_push(q, r->offset, r->haskey ? r->key : NULL, r->keylen, UD(m->n)) == 0);
    m->n++;
}

static void op_take(sk_partq *q, model *m)
{
    long want = mtake(m);
    int64_t off;
    void *ud = sk_partq_take(q, &off);
    if (want < 0) {
        CHECK(ud == NULL && off == -1);
        return;
    }
    CHECK(ud == UD(want) && off == m->r[want].offset);
    m->r[want].state = RUNNING;
    check_order(m, (size_t)want);
}

static void op_get(input *in, const sk_partq *q, const model *m)
{
    int64_t off = pick(in, m);
    long i = mfind(m, off);
    void *want = i >= 0 && m->r[i].state != DONE ? UD(i) : NULL;
    CHECK(sk_partq_get(q, off) == want);
    check_foreach(q, m);
}

static void step(input *in, sk_partq *q, model *m)
{
    int64_t off;
    switch (next(in) % 8) {
    case 0:
    case 1:
        op_push(in, q, m);
        break;
    case 2:
        off = pick(in, m);
        CHECK(sk_partq_ready(q, off) == mmove(m, off, 1 << PENDING, READY));
        break;
    case 3:
        off = pick(in, m);
        CHECK(sk_partq_hold(q, off) == mmove(m, off, 1 << RUNNING, PENDING));
        break;
    case 4:
        off = pick(in, m);
        CHECK(sk_partq_done(q, off) ==
              mmove(m, off, (1 << PENDING) | (1 << READY) | (1 << RUNNING), DONE));
        break;
    case 5:
    case 6:
        op_take(q, m);
        break;
    default:
        op_get(in, q, m);
        break;
    }
    check_counters(q, m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static model m;
    m.order = (sk_order)(data[0] % 3);
    m.n = 0;
    weak_hash = (data[0] & 0x08) != 0;
    sk_partq *q = sk_partq_new(m.order);
    CHECK(q != NULL);
    input in = {data + 1, size - 1};
    while (in.n > 0)
        step(&in, q, &m);
    check_foreach(q, &m);
    sk_partq_free(q);
    return 0;
}
