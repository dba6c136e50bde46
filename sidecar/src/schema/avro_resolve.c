/* Avro schema resolution: the plan builder (writer node x reader node -> step, memoized so that
 * recursive types and unions stay linear) and the resolving decoder that applies a plan. */
#include "schema/avro_resolve.h"

#include "schema/avro_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum {
    OP_READ,   /* same encoding: decode with the reader's node */
    OP_READ_W, /* float -> double: decode with the writer's node */
    OP_REAL,   /* int or long -> float or double */
    OP_TEXT,   /* bytes -> string: the bytes must be UTF-8 */
    OP_RECORD,
    OP_ENUM,
    OP_ARRAY,
    OP_MAP,
    OP_WUNION, /* writer union: the branch written decides */
    OP_RUNION, /* reader union: one branch chosen when the plan is built */
} op;

typedef struct step step;
struct step {
    op op;
    const node *w, *r;
    step **sub; /* record: per writer field (NULL: skipped); writer union: per branch (NULL: no
                   match); else [0] */
    int *to;    /* record: writer field -> reader field or -1; enum: writer -> reader symbol */
    int branch; /* reader union */
    int failed; /* the build of this pair failed (memo) */
    char *why;  /* failed builds */
};

typedef struct slot {
    const node *w, *r;
    step *s;
} slot;

struct sk_avro_plan {
    step *root;
    slot *memo; /* open addressing on (w, r) */
    size_t cap, n;
};

typedef struct builder {
    sk_avro_plan *p;
    errbuf e;
    path path;
    int depth;
} builder;

/* ---- the memo ------------------------------------------------------------------------------ */

static size_t hash(const node *w, const node *r, size_t cap)
{
    uint64_t h = (uint64_t)(uintptr_t)w * 0x9e3779b97f4a7c15u ^ (uint64_t)(uintptr_t)r;
    h ^= h >> 29;
    return (size_t)(h * 0xbf58476d1ce4e5b9u >> 7) & (cap - 1);
}

static slot *memo_find(const sk_avro_plan *p, const node *w, const node *r)
{
    for (size_t i = hash(w, r, p->cap);; i = (i + 1) & (p->cap - 1))
        if (!p->memo[i].s || (p->memo[i].w == w && p->memo[i].r == r))
            return &p->memo[i];
}

static int memo_grow(sk_avro_plan *p)
{
    sk_avro_plan old = *p;
    p->cap = old.cap ? old.cap * 2 : 64;
    if (!(p->memo = calloc(p->cap, sizeof(slot)))) {
        *p = old;
        return -1;
    }
    for (size_t i = 0; i < old.cap; i++)
        if (old.memo[i].s)
            *memo_find(p, old.memo[i].w, old.memo[i].r) = old.memo[i];
    free(old.memo);
    return 0;
}

/* A new step for (w, r), entered in the memo before its parts are built (recursive types). */
static step *new_step(builder *b, op o, const node *w, const node *r)
{
    sk_avro_plan *p = b->p;
    if (p->n >= SK_AVRO_PLAN_MAX_STEPS) {
        sk_avro_fail(&b->e, &b->path, "schemas too large to resolve (%d pairs of types)",
                     SK_AVRO_PLAN_MAX_STEPS);
        return NULL;
    }
    step *s = calloc(1, sizeof(*s));
    if (!s || ((p->n + 1) * 2 > p->cap && memo_grow(p) < 0)) {
        free(s);
        sk_avro_fail(&b->e, &b->path, "out of memory");
        return NULL;
    }
    *s = (step){.op = o, .w = w, .r = r};
    *memo_find(p, w, r) = (slot){w, r, s};
    p->n++;
    return s;
}

/* ---- the plan builder ------------------------------------------------------------------------ */

static const char *unqualified(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot ? dot + 1 : name;
}

static int same_name(const char *a, const char *b)
{
    return strcmp(a, b) == 0 || strcmp(unqualified(a), unqualified(b)) == 0;
}

/* Named types match by full or unqualified name, or by one of the reader's aliases. */
static int names_match(const node *w, const node *r)
{
    if (!w->name || !r->name)
        return 0;
    if (same_name(w->name, r->name))
        return 1;
    for (size_t i = 0; r->aliases && r->aliases[i]; i++)
        if (same_name(w->name, r->aliases[i]))
            return 1;
    return 0;
}

static step *build(builder *b, const node *w, const node *r);

/* Builds (w, r) on trial: a failure leaves the caller's error untouched. */
static step *try_build(builder *b, const node *w, const node *r, char *why, size_t whylen)
{
    errbuf saved = b->e;
    b->e = (errbuf){.err = why, .errlen = whylen};
    step *s = build(b, w, r);
    b->e = saved;
    return s;
}

static int field_matches(const field *rf, const char *wname)
{
    if (strcmp(rf->name, wname) == 0)
        return 1;
    for (size_t i = 0; rf->aliases && rf->aliases[i]; i++)
        if (strcmp(rf->aliases[i], wname) == 0)
            return 1;
    return 0;
}

static int build_record(builder *b, step *s)
{
    const node *w = s->w, *r = s->r;
    if (!(s->sub = calloc(w->n + 1, sizeof(step *))) || !(s->to = calloc(w->n + 1, sizeof(int))))
        return sk_avro_fail(&b->e, &b->path, "out of memory");
    char *taken = calloc(r->n + 1, 1);
    if (!taken)
        return sk_avro_fail(&b->e, &b->path, "out of memory");
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < w->n; i++) {
        s->to[i] = -1;
        for (size_t j = 0; s->to[i] < 0 && j < r->n; j++)
            if (!taken[j] && field_matches(&r->fields[j], w->fields[i].name))
                s->to[i] = (int)j;
        if (s->to[i] < 0)
            continue; /* a writer field the reader does not have: skipped */
        taken[s->to[i]] = 1;
        size_t saved = sk_avro_path_push(&b->path, ".%s", r->fields[s->to[i]].name);
        if (!(s->sub[i] = build(b, w->fields[i].type, r->fields[s->to[i]].type)))
            rc = -1;
        sk_avro_path_pop(&b->path, saved);
    }
    for (size_t j = 0; rc == 0 && j < r->n; j++)
        if (!taken[j] && !r->fields[j].def) {
            size_t saved = sk_avro_path_push(&b->path, ".%s", r->fields[j].name);
            rc = sk_avro_fail(&b->e, &b->path,
                              "reader field has no default and the writer's %s has no such field",
                              sk_avro_type_name(w));
            sk_avro_path_pop(&b->path, saved);
        }
    free(taken);
    return rc;
}

static int build_enum(builder *b, step *s)
{
    const node *w = s->w, *r = s->r;
    if (!(s->to = calloc(w->n + 1, sizeof(int))))
        return sk_avro_fail(&b->e, &b->path, "out of memory");
    for (size_t i = 0; i < w->n; i++) {
        s->to[i] = r->enum_def;
        for (size_t j = 0; j < r->n; j++)
            if (strcmp(w->symbols[i], r->symbols[j]) == 0)
                s->to[i] = (int)j;
    }
    return 0;
}

/* A writer union: every branch resolved on its own; one that matches nothing fails only when a
 * value is written with it. At least one branch must match. */
static int build_wunion(builder *b, step *s)
{
    const node *w = s->w;
    int matched = 0;
    char why[256];
    if (!(s->sub = calloc(w->n + 1, sizeof(step *))))
        return sk_avro_fail(&b->e, &b->path, "out of memory");
    for (size_t i = 0; i < w->n; i++)
        matched += (s->sub[i] = try_build(b, w->branches[i], s->r, why, sizeof why)) != NULL;
    if (!matched)
        return sk_avro_fail(&b->e, &b->path,
                            "no branch of the writer's union matches the reader's %s",
                            sk_avro_type_name(s->r));
    return 0;
}

/* Pass 0: the same type and full name; 1: the same type, names matching by unqualified name or
 * alias; 2: anything that resolves (promotions). */
static int branch_fits(int pass, const node *w, const node *r)
{
    if (pass == 0)
        return w->k == r->k && (!w->name || (r->name && strcmp(w->name, r->name) == 0));
    if (pass == 1)
        return w->k == r->k && (!w->name || names_match(w, r));
    return 1;
}

/* A reader union: the first branch of the same type, else the first one reachable by a
 * promotion. */
static int build_runion(builder *b, step *s)
{
    const node *r = s->r;
    char why[256];
    if (!(s->sub = calloc(1, sizeof(step *))))
        return sk_avro_fail(&b->e, &b->path, "out of memory");
    for (int pass = 0; pass < 3; pass++)
        for (size_t i = 0; i < r->n; i++) {
            if (!branch_fits(pass, s->w, r->branches[i]))
                continue;
            if ((s->sub[0] = try_build(b, s->w, r->branches[i], why, sizeof why))) {
                s->branch = (int)i;
                return 0;
            }
        }
    return sk_avro_fail(&b->e, &b->path, "no branch of the reader's union matches the writer's %s",
                        sk_avro_type_name(s->w));
}

/* The step for primitives, fixed, enum and records / arrays / maps whose kinds agree; -1 when
 * the writer's type cannot be read as the reader's. */
static int leaf_op(const node *w, const node *r, op *o)
{
    kind wk = w->k, rk = r->k;
    int named = wk == K_RECORD || wk == K_ENUM || wk == K_FIXED;
    if (wk == rk && (!named || names_match(w, r)) && (wk != K_FIXED || w->size == r->size)) {
        static const op same[] = {
            [K_RECORD] = OP_RECORD, [K_ENUM] = OP_ENUM, [K_ARRAY] = OP_ARRAY, [K_MAP] = OP_MAP};
        *o = (wk == K_RECORD || wk == K_ENUM || wk == K_ARRAY || wk == K_MAP) ? same[wk] : OP_READ;
        return 0;
    }
    if ((wk == K_INT && rk == K_LONG) || (wk == K_STRING && rk == K_BYTES))
        *o = OP_READ;
    else if ((wk == K_INT || wk == K_LONG) && (rk == K_FLOAT || rk == K_DOUBLE))
        *o = OP_REAL;
    else if (wk == K_FLOAT && rk == K_DOUBLE)
        *o = OP_READ_W;
    else if (wk == K_BYTES && rk == K_STRING)
        *o = OP_TEXT;
    else
        return -1;
    return 0;
}

static const char *logical_name(const node *n)
{
    static const char *const names[] = {[L_NONE] = "",
                                        [L_DECIMAL] = " (decimal)",
                                        [L_DATE] = " (date)",
                                        [L_TS_MILLIS] = " (timestamp-millis)",
                                        [L_TS_MICROS] = " (timestamp-micros)",
                                        [L_UUID] = " (uuid)"};
    return names[n->lt];
}

static int build_parts(builder *b, step *s)
{
    switch (s->op) {
    case OP_RECORD:
        return build_record(b, s);
    case OP_ENUM:
        return build_enum(b, s);
    case OP_WUNION:
        return build_wunion(b, s);
    case OP_RUNION:
        return build_runion(b, s);
    case OP_ARRAY:
    case OP_MAP:
        if (!(s->sub = calloc(1, sizeof(step *))))
            return sk_avro_fail(&b->e, &b->path, "out of memory");
        return (s->sub[0] = build(b, s->w->items, s->r->items)) ? 0 : -1;
    default:
        return 0;
    }
}

/* Two logical types on the same encoding that would show a value wrongly (a decimal of another
 * scale, millis as micros, days as a timestamp) do not resolve; one plain side does. */
static int logical_conflict(const node *w, const node *r)
{
    if (w->lt == L_NONE || r->lt == L_NONE)
        return 0;
    return w->lt != r->lt || (w->lt == L_DECIMAL && w->scale != r->scale);
}

static step *build_new(builder *b, const node *w, const node *r)
{
    op o;
    if (w->k == K_UNION)
        o = OP_WUNION;
    else if (r->k == K_UNION)
        o = OP_RUNION;
    else if (leaf_op(w, r, &o) < 0 || logical_conflict(w, r)) {
        sk_avro_fail(&b->e, &b->path, "the writer's %s%s cannot be read as the reader's %s%s",
                     sk_avro_type_name(w), logical_name(w), sk_avro_type_name(r), logical_name(r));
        return NULL;
    }
    step *s = new_step(b, o, w, r);
    if (!s || build_parts(b, s) == 0)
        return s;
    s->failed = 1;
    s->why = strdup(b->e.set && b->e.err ? b->e.err : "incompatible");
    return NULL;
}

static step *build(builder *b, const node *w, const node *r)
{
    if (b->depth > 2 * SK_AVRO_MAX_DEPTH) {
        sk_avro_fail(&b->e, &b->path, "schemas nested deeper than %d", 2 * SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    if (b->p->cap) {
        slot *m = memo_find(b->p, w, r);
        if (m->s && m->s->failed && !b->e.set && b->e.err && b->e.errlen) {
            snprintf(b->e.err, b->e.errlen, "%s", m->s->why ? m->s->why : "incompatible");
            b->e.set = 1;
        }
        if (m->s)
            return m->s->failed ? NULL : m->s;
    }
    b->depth++;
    step *s = build_new(b, w, r);
    b->depth--;
    return s;
}

sk_avro_plan *sk_avro_plan_new(const sk_avro_schema *ws, const sk_avro_schema *rs, char *err,
                               size_t errlen)
{
    builder b = {.e = {.err = err, .errlen = errlen}};
    b.path.buf[0] = '$';
    b.path.len = 1;
    if (!(b.p = calloc(1, sizeof(*b.p)))) {
        sk_avro_fail(&b.e, NULL, "out of memory");
        return NULL;
    }
    if (!(b.p->root = build(&b, ws->root, rs->root))) {
        sk_avro_plan_free(b.p);
        return NULL;
    }
    return b.p;
}

void sk_avro_plan_free(sk_avro_plan *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->cap; i++) {
        step *s = p->memo[i].s;
        if (!s)
            continue;
        free(s->sub);
        free(s->to);
        free(s->why);
        free(s);
    }
    free(p->memo);
    free(p);
}

/* ---- the resolving decoder ------------------------------------------------------------------- */

static json_t *apply(reader *r, const step *s);

static json_t *incompatible(reader *r, const char *fmt, const char *a, const char *b)
{
    r->incompatible = 1;
    sk_avro_fail(&r->e, &r->path, fmt, a, b);
    return NULL;
}

static json_t *apply_real(reader *r, const step *s)
{
    int64_t v;
    if (sk_avro_read_long(r, &v) < 0)
        return NULL;
    if (s->w->k == K_INT && (v < INT32_MIN || v > INT32_MAX)) {
        sk_avro_fail(&r->e, &r->path, "int out of range: %lld", (long long)v);
        return NULL;
    }
    return json_real(s->r->k == K_FLOAT ? (double)(float)v : (double)v);
}

static json_t *apply_text(reader *r)
{
    size_t len;
    const uint8_t *b = NULL;
    int64_t n;
    if (sk_avro_read_long(r, &n) < 0)
        return NULL;
    if (n < 0 || (uint64_t)n > r->len - r->pos) {
        sk_avro_fail(&r->e, &r->path, "bad length %lld", (long long)n);
        return NULL;
    }
    len = (size_t)n;
    if (sk_avro_read_bytes(r, len, &b) < 0)
        return NULL;
    if (!sk_avro_utf8_valid(b, len))
        return incompatible(r, "%s%s", "bytes are not valid UTF-8 for the reader's string", "");
    return json_stringn((const char *)b, len);
}

/* A reader field absent from the writer: its default, decoded with the reader's type. */
static json_t *field_default(reader *r, const field *f)
{
    reader d = {.p = f->def, .len = f->def_len, .budget = SK_AVRO_MAX_EMPTY, .path = r->path};
    d.e = (errbuf){.err = r->e.err, .errlen = r->e.errlen};
    json_t *v = sk_avro_read_value(&d, f->type);
    r->e.set |= d.e.set;
    return v;
}

static json_t *record_object(reader *r, const node *rn, json_t **slots)
{
    json_t *o = json_object();
    int ok = o != NULL;
    for (size_t j = 0; j < rn->n; j++) {
        if (ok && !slots[j]) {
            size_t saved = sk_avro_path_push(&r->path, ".%s", rn->fields[j].name);
            slots[j] = field_default(r, &rn->fields[j]);
            sk_avro_path_pop(&r->path, saved);
        }
        ok = ok && slots[j] && json_object_set_new(o, rn->fields[j].name, slots[j]) == 0;
        if (!ok)
            json_decref(slots[j]);
        slots[j] = NULL;
    }
    if (ok)
        return o;
    json_decref(o);
    return NULL;
}

static json_t *apply_record(reader *r, const step *s)
{
    const node *w = s->w;
    json_t **slots = calloc(s->r->n + 1, sizeof(json_t *));
    if (!slots)
        return NULL;
    int ok = 1;
    for (size_t i = 0; ok && i < w->n; i++) {
        size_t saved = sk_avro_path_push(&r->path, ".%s", w->fields[i].name);
        json_t *v = s->sub[i] ? apply(r, s->sub[i]) : sk_avro_read_value(r, w->fields[i].type);
        sk_avro_path_pop(&r->path, saved);
        ok = v != NULL;
        if (s->to[i] >= 0)
            slots[s->to[i]] = v;
        else
            json_decref(v);
    }
    json_t *o = NULL;
    if (ok)
        o = record_object(r, s->r, slots);
    for (size_t j = 0; !ok && j < s->r->n; j++)
        json_decref(slots[j]);
    free(slots);
    return o;
}

static json_t *apply_enum(reader *r, const step *s)
{
    int64_t idx;
    if (sk_avro_read_long(r, &idx) < 0)
        return NULL;
    if (idx < 0 || (uint64_t)idx >= s->w->n) {
        sk_avro_fail(&r->e, &r->path, "enum index %lld out of range (%zu symbols)", (long long)idx,
                     s->w->n);
        return NULL;
    }
    if (s->to[idx] < 0)
        return incompatible(r, "symbol \"%s\" is not in the reader's enum %s, which has no default",
                            s->w->symbols[idx], s->r->name);
    return json_string(s->r->symbols[s->to[idx]]);
}

/* Items [*i, *i + count) of an array into a. */
static int array_block(reader *r, const step *s, json_t *a, size_t *i, size_t count)
{
    for (size_t end = *i + count; *i < end; (*i)++) {
        size_t saved = sk_avro_path_push(&r->path, "[%zu]", *i);
        json_t *item = apply(r, s->sub[0]);
        sk_avro_path_pop(&r->path, saved);
        if (!item || json_array_append_new(a, item) < 0)
            return -1;
    }
    return 0;
}

static json_t *apply_array(reader *r, const step *s)
{
    json_t *a = json_array();
    size_t count, i = 0;
    while (a && sk_avro_read_block(r, s->w->items, &count) == 0) {
        if (count == 0)
            return a;
        if (array_block(r, s, a, &i, count) < 0)
            break;
    }
    json_decref(a);
    return NULL;
}

/* One map entry into o; keys unique and without NUL (JSON object keys). */
static int map_entry(reader *r, const step *s, json_t *o)
{
    size_t len;
    const uint8_t *b = NULL;
    if (sk_avro_read_text(r, &b, &len) < 0)
        return -1;
    if (memchr(b, 0, len))
        return sk_avro_fail(&r->e, &r->path, "map key holds NUL");
    char *k = malloc(len + 1);
    if (!k)
        return -1;
    memcpy(k, b, len);
    k[len] = '\0';
    size_t saved = sk_avro_path_push(&r->path, ".%s", k);
    json_t *v = NULL;
    if (json_object_get(o, k))
        sk_avro_fail(&r->e, &r->path, "duplicate map key");
    else
        v = apply(r, s->sub[0]);
    sk_avro_path_pop(&r->path, saved);
    int rc = v && json_object_set_new(o, k, v) == 0 ? 0 : -1;
    free(k);
    return rc;
}

static json_t *apply_map(reader *r, const step *s)
{
    json_t *o = json_object();
    size_t count;
    while (o && sk_avro_read_block(r, s->w->items, &count) == 0) {
        if (count == 0)
            return o;
        size_t i = 0;
        while (i < count && map_entry(r, s, o) == 0)
            i++;
        if (i < count)
            break;
    }
    json_decref(o);
    return NULL;
}

static json_t *apply_wunion(reader *r, const step *s)
{
    int64_t idx;
    if (sk_avro_read_long(r, &idx) < 0)
        return NULL;
    if (idx < 0 || (uint64_t)idx >= s->w->n) {
        sk_avro_fail(&r->e, &r->path, "union branch %lld out of range (%zu branches)",
                     (long long)idx, s->w->n);
        return NULL;
    }
    if (!s->sub[idx])
        return incompatible(r, "the writer's union branch %s cannot be read as the reader's %s",
                            sk_avro_type_name(s->w->branches[idx]), sk_avro_type_name(s->r));
    return apply(r, s->sub[idx]);
}

/* The reader's union in the JSON mapping: a nullable union or null as is, else wrapped in
 * {"<branch type>": value}. */
static json_t *apply_runion(reader *r, const step *s)
{
    json_t *v = apply(r, s->sub[0]);
    const node *b = s->r->branches[s->branch];
    if (!v || s->r->nu_other >= 0 || b->k == K_NULL)
        return v;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, sk_avro_type_name(b), v) < 0) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static json_t *apply_op(reader *r, const step *s)
{
    switch (s->op) {
    case OP_READ:
        return sk_avro_read_value(r, s->r);
    case OP_READ_W:
        return sk_avro_read_value(r, s->w);
    case OP_REAL:
        return apply_real(r, s);
    case OP_TEXT:
        return apply_text(r);
    case OP_RECORD:
        return apply_record(r, s);
    case OP_ENUM:
        return apply_enum(r, s);
    case OP_ARRAY:
        return apply_array(r, s);
    case OP_MAP:
        return apply_map(r, s);
    case OP_WUNION:
        return apply_wunion(r, s);
    case OP_RUNION:
        return apply_runion(r, s);
    }
    return NULL;
}

/* Depth and the zero-byte budget as in the plain decoder (leaf reads count their own). */
static json_t *apply(reader *r, const step *s)
{
    if (s->failed)
        return incompatible(r, "%s%s", s->why ? s->why : "incompatible types", "");
    int container = s->op == OP_RECORD || s->op == OP_ARRAY || s->op == OP_MAP;
    if (container && r->depth >= SK_AVRO_MAX_DEPTH) {
        sk_avro_fail(&r->e, &r->path, "nested deeper than %d", SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    r->depth += container;
    size_t start = r->pos;
    json_t *v = apply_op(r, s);
    r->depth -= container;
    if (v && container && r->pos == start && r->budget-- == 0) {
        json_decref(v);
        sk_avro_fail(&r->e, &r->path, "more than %d values encoded in zero bytes",
                     SK_AVRO_MAX_EMPTY);
        return NULL;
    }
    if (!v && !r->e.set)
        sk_avro_fail(&r->e, &r->path, "out of memory");
    return v;
}

json_t *sk_avro_resolve(const sk_avro_plan *p, const uint8_t *buf, size_t len, int *incompat,
                        char *err, size_t errlen)
{
    reader r = {.p = buf, .len = len, .budget = SK_AVRO_MAX_EMPTY};
    r.e = (errbuf){.err = err, .errlen = errlen};
    r.path.buf[0] = '$';
    r.path.len = 1;
    json_t *v = NULL;
    if (len > SK_AVRO_MAX_BYTES)
        sk_avro_fail(&r.e, NULL, "body of %zu bytes exceeds %u", len, SK_AVRO_MAX_BYTES);
    else
        v = apply(&r, p->root);
    if (v && r.pos != len) {
        sk_avro_fail(&r.e, NULL, "%zu trailing bytes after the value", len - r.pos);
        json_decref(v);
        v = NULL;
    }
    if (incompat)
        *incompat = !v && r.incompatible;
    return v;
}
