#include "kafka/avro_json.h"

#include <avro.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled schema --------------------------------------------------------------------- */

typedef enum {
    K_NULL,
    K_BOOLEAN,
    K_INT,
    K_LONG,
    K_FLOAT,
    K_DOUBLE,
    K_BYTES,
    K_STRING,
    K_RECORD,
    K_ENUM,
    K_ARRAY,
    K_MAP,
    K_UNION,
    K_FIXED,
} kind;

static const char *const kind_names[] = {"null",   "boolean", "int",    "long",   "float",
                                         "double", "bytes",   "string", "record", "enum",
                                         "array",  "map",     "union",  "fixed"};

typedef enum { L_NONE, L_DECIMAL, L_DATE, L_TS_MILLIS, L_TS_MICROS, L_UUID } logical;

typedef struct node node;

typedef struct field {
    char *name;
    node *type;
    uint8_t *def; /* pre-encoded default, NULL when the field has none */
    size_t def_len;
    json_t *def_json; /* kept until the defaults are compiled */
} field;

struct node {
    kind k;
    logical lt;
    int precision, scale;
    char *name;  /* full name of a named type; NULL otherwise */
    size_t size; /* fixed */
    size_t n;    /* fields, symbols or branches */
    field *fields;
    char **symbols;
    node **branches;
    node *items;  /* array items, map values */
    int nu_other; /* union ["null", X] / [X, "null"]: index of X, else -1 */
};

struct sk_avro_schema {
    node *root;
    node **all; /* every node, for freeing; named types are looked up here too */
    size_t n_all, cap_all;
};

/* ---- errors and paths -------------------------------------------------------------------- */

typedef struct path {
    char buf[512];
    size_t len;
} path;

static size_t path_push(path *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static size_t path_push(path *p, const char *fmt, ...)
{
    size_t saved = p->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        p->len += (size_t)n < sizeof(p->buf) - p->len ? (size_t)n : sizeof(p->buf) - p->len - 1;
    return saved;
}

static void path_pop(path *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

typedef struct errbuf {
    char *err;
    size_t errlen;
    int set;
} errbuf;

static int fail(errbuf *e, const path *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(errbuf *e, const path *p, const char *fmt, ...)
{
    if (e->set || !e->err || e->errlen == 0)
        return -1;
    e->set = 1;
    int n;
    if (p && p->len > 120) /* keep the message visible: elide the middle of a deep path */
        n = snprintf(e->err, e->errlen, "%.40s...%s: ", p->buf, p->buf + p->len - 60);
    else
        n = snprintf(e->err, e->errlen, "%s: ", p ? p->buf : "$");
    if (n < 0 || (size_t)n >= e->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- avro-c allocator: one allocation never exceeds SK_AVRO_MAX_BYTES -------------------- */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > SK_AVRO_MAX_BYTES)
        return NULL;
    return realloc(ptr, nsize);
}

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

static void install_allocator(void)
{
    avro_set_allocator(capped_alloc, NULL);
}

/* ---- schema compiler --------------------------------------------------------------------- */

typedef struct compiler {
    sk_avro_schema *s;
    errbuf e;
} compiler;

static node *new_node(compiler *c, kind k)
{
    sk_avro_schema *s = c->s;
    if (s->n_all == s->cap_all) {
        size_t cap = s->cap_all ? s->cap_all * 2 : 16;
        node **all = realloc(s->all, cap * sizeof(*all));
        if (!all)
            return NULL;
        s->all = all;
        s->cap_all = cap;
    }
    node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->k = k;
    n->nu_other = -1;
    s->all[s->n_all++] = n;
    return n;
}

static node *lookup_named(const sk_avro_schema *s, const char *full)
{
    for (size_t i = 0; i < s->n_all; i++)
        if (s->all[i]->name && strcmp(s->all[i]->name, full) == 0)
            return s->all[i];
    return NULL;
}

static int primitive_kind(const char *t)
{
    for (int k = K_NULL; k <= K_STRING; k++)
        if (strcmp(t, kind_names[k]) == 0)
            return k;
    return -1;
}

static node *resolve_ref(compiler *c, const char *name, const char *ns)
{
    int pk = primitive_kind(name);
    if (pk >= 0)
        return new_node(c, (kind)pk);
    node *n = NULL;
    if (!strchr(name, '.') && ns && *ns) {
        char full[512];
        snprintf(full, sizeof(full), "%s.%s", ns, name);
        n = lookup_named(c->s, full);
    }
    if (!n)
        n = lookup_named(c->s, name);
    if (!n)
        fail(&c->e, NULL, "unknown type \"%s\"", name);
    return n;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Full name and namespace of a named type (Avro's rules); 0 or -1. */
static int full_name(compiler *c, json_t *o, const char *ns, char **full, char **own_ns)
{
    const char *name = jstr(o, "name");
    if (!name || !*name)
        return fail(&c->e, NULL, "named type without a name");
    const char *dot = strrchr(name, '.');
    const char *nsv = json_is_string(json_object_get(o, "namespace")) ? jstr(o, "namespace") : ns;
    size_t need = strlen(name) + (nsv ? strlen(nsv) : 0) + 2;
    char *f = malloc(need);
    *own_ns = malloc(need);
    if (!f || !*own_ns) {
        free(f);
        return fail(&c->e, NULL, "out of memory");
    }
    if (dot) {
        snprintf(f, need, "%s", name);
        snprintf(*own_ns, need, "%.*s", (int)(dot - name), name);
    } else {
        snprintf(f, need, "%s%s%s", nsv && *nsv ? nsv : "", nsv && *nsv ? "." : "", name);
        snprintf(*own_ns, need, "%s", nsv ? nsv : "");
    }
    if (lookup_named(c->s, f)) {
        fail(&c->e, NULL, "type \"%s\" defined twice", f);
        free(f);
        return -1;
    }
    *full = f;
    return 0;
}

static node *compile(compiler *c, json_t *j, const char *ns, int depth);

static int compile_fields(compiler *c, node *n, json_t *fields, const char *ns, int depth)
{
    if (!json_is_array(fields))
        return fail(&c->e, NULL, "record \"%s\" without a fields array", n->name);
    n->fields = calloc(json_array_size(fields) + 1, sizeof(field));
    if (!n->fields)
        return fail(&c->e, NULL, "out of memory");
    size_t i;
    json_t *f;
    json_array_foreach(fields, i, f)
    {
        const char *fname = jstr(f, "name");
        if (!fname)
            return fail(&c->e, NULL, "record \"%s\": field without a name", n->name);
        field *fd = &n->fields[n->n++];
        fd->name = strdup(fname);
        fd->type = compile(c, json_object_get(f, "type"), ns, depth + 1);
        if (!fd->name || !fd->type)
            return -1;
        fd->def_json = json_object_get(f, "default");
    }
    return 0;
}

static int compile_named(compiler *c, node *n, json_t *o, const char *ns, int depth)
{
    char *own_ns = NULL;
    int rc = full_name(c, o, ns, &n->name, &own_ns);
    if (rc == 0 && n->k == K_RECORD) {
        rc = compile_fields(c, n, json_object_get(o, "fields"), own_ns, depth);
    } else if (rc == 0 && n->k == K_ENUM) {
        json_t *syms = json_object_get(o, "symbols");
        n->symbols = calloc(json_array_size(syms) + 1, sizeof(char *));
        if (!json_is_array(syms) || !n->symbols)
            rc = fail(&c->e, NULL, "enum \"%s\" without symbols", n->name);
        for (size_t i = 0; rc == 0 && i < json_array_size(syms); i++) {
            const char *sym = json_string_value(json_array_get(syms, i));
            if (!sym || !(n->symbols[n->n++] = strdup(sym)))
                rc = fail(&c->e, NULL, "enum \"%s\": bad symbol", n->name);
        }
    } else if (rc == 0) {
        json_t *size = json_object_get(o, "size");
        json_int_t sz = json_integer_value(size);
        if (!json_is_integer(size) || sz < 0 || sz > 1 << 20)
            rc = fail(&c->e, NULL, "fixed \"%s\": bad size", n->name);
        n->size = (size_t)sz;
    }
    free(own_ns);
    return rc;
}

/* Logical types we map; an invalid or unknown annotation leaves the underlying type (spec). */
static void set_logical(node *n, json_t *o)
{
    const char *lt = jstr(o, "logicalType");
    if (!lt)
        return;
    if (strcmp(lt, "decimal") == 0 && (n->k == K_BYTES || n->k == K_FIXED)) {
        json_int_t p = json_integer_value(json_object_get(o, "precision"));
        json_int_t sc = json_integer_value(json_object_get(o, "scale"));
        if (p <= 0 || p > 600 || sc < 0 || sc > p)
            return;
        n->lt = L_DECIMAL;
        n->precision = (int)p;
        n->scale = (int)sc;
    } else if (strcmp(lt, "date") == 0 && n->k == K_INT) {
        n->lt = L_DATE;
    } else if (strcmp(lt, "timestamp-millis") == 0 && n->k == K_LONG) {
        n->lt = L_TS_MILLIS;
    } else if (strcmp(lt, "timestamp-micros") == 0 && n->k == K_LONG) {
        n->lt = L_TS_MICROS;
    } else if (strcmp(lt, "uuid") == 0 && n->k == K_STRING) {
        n->lt = L_UUID;
    }
}

static node *compile_union(compiler *c, json_t *j, const char *ns, int depth)
{
    node *n = new_node(c, K_UNION);
    if (!n || !(n->branches = calloc(json_array_size(j) + 1, sizeof(node *))))
        return NULL;
    size_t i;
    json_t *b;
    int nulls = 0;
    json_array_foreach(j, i, b)
    {
        if (!(n->branches[n->n++] = compile(c, b, ns, depth + 1)))
            return NULL;
        nulls += n->branches[i]->k == K_NULL;
    }
    if (n->n == 2 && nulls == 1)
        n->nu_other = n->branches[0]->k == K_NULL ? 1 : 0;
    return n;
}

static node *compile_object(compiler *c, json_t *o, const char *ns, int depth)
{
    json_t *type = json_object_get(o, "type");
    if (!json_is_string(type))
        return compile(c, type, ns, depth + 1);
    const char *t = json_string_value(type);
    node *n = NULL;
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0 || strcmp(t, "enum") == 0 ||
        strcmp(t, "fixed") == 0) {
        n = new_node(c, t[0] == 'f' ? K_FIXED : t[0] == 'e' && t[1] == 'n' ? K_ENUM : K_RECORD);
        if (!n || compile_named(c, n, o, ns, depth) < 0)
            return NULL;
    } else if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        n = new_node(c, t[0] == 'a' ? K_ARRAY : K_MAP);
        if (!n || !(n->items = compile(c, json_object_get(o, t[0] == 'a' ? "items" : "values"), ns,
                                       depth + 1)))
            return NULL;
    } else if (!(n = resolve_ref(c, t, ns))) {
        return NULL;
    } else if (n->name) {
        return n; /* {"type": "SomeNamedType"}: annotations belong to the definition */
    }
    set_logical(n, o);
    return n;
}

static node *compile(compiler *c, json_t *j, const char *ns, int depth)
{
    if (depth > 2 * SK_AVRO_MAX_DEPTH) {
        fail(&c->e, NULL, "schema nested deeper than %d", 2 * SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    if (json_is_string(j))
        return resolve_ref(c, json_string_value(j), ns);
    if (json_is_array(j))
        return compile_union(c, j, ns, depth);
    if (json_is_object(j))
        return compile_object(c, j, ns, depth);
    fail(&c->e, NULL, "invalid schema element");
    return NULL;
}

/* ---- binary writer ----------------------------------------------------------------------- */

typedef struct writer {
    uint8_t *d;
    size_t len, cap;
    int depth;
    int defmode; /* encoding a schema default: unions take branch 0, logical types are raw */
    path p;
    errbuf e;
} writer;

static int put(writer *w, const void *src, size_t n)
{
    if (n > SK_AVRO_MAX_BYTES - w->len)
        return fail(&w->e, &w->p, "encoded value exceeds %u bytes", SK_AVRO_MAX_BYTES);
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *d = realloc(w->d, cap);
        if (!d)
            return fail(&w->e, &w->p, "out of memory");
        w->d = d;
        w->cap = cap;
    }
    if (n)
        memcpy(w->d + w->len, src, n);
    w->len += n;
    return 0;
}

static int put_long(writer *w, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    uint8_t b[10];
    size_t n = 0;
    do {
        b[n] = (uint8_t)(z & 0x7f);
        z >>= 7;
        if (z)
            b[n] |= 0x80;
        n++;
    } while (z);
    return put(w, b, n);
}

static int put_blob(writer *w, const void *src, size_t n)
{
    return put_long(w, (int64_t)n) < 0 ? -1 : put(w, src, n);
}

/* ---- binary reader ----------------------------------------------------------------------- */

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
    size_t budget; /* values still allowed to take no input bytes (null, empty record...) */
    int depth;
    path path;
    errbuf e;
} reader;

static int get_long(reader *r, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->pos >= r->len)
            return fail(&r->e, &r->path, "truncated varint at byte %zu", r->pos);
        uint8_t b = r->p[r->pos++];
        if (i == 9 && b > 1)
            return fail(&r->e, &r->path, "varint overflows 64 bits at byte %zu", r->pos - 1);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return fail(&r->e, &r->path, "varint overflows 64 bits");
}

static int get_bytes(reader *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return fail(&r->e, &r->path, "truncated: %zu bytes needed at byte %zu, %zu left", n, r->pos,
                    r->len - r->pos);
    *out = r->p + r->pos;
    r->pos += n;
    return 0;
}

/* A length prefix: non-negative, within the remaining input and the global cap. */
static int get_length(reader *r, size_t *n)
{
    int64_t v;
    if (get_long(r, &v) < 0)
        return -1;
    if (v < 0)
        return fail(&r->e, &r->path, "negative length %lld", (long long)v);
    if ((uint64_t)v > SK_AVRO_MAX_BYTES || (uint64_t)v > r->len - r->pos)
        return fail(&r->e, &r->path, "length %lld exceeds the %zu remaining bytes", (long long)v,
                    r->len - r->pos);
    *n = (size_t)v;
    return 0;
}

/* ---- text helpers ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (code point in *cp), 0 when invalid. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

static int utf8_valid(const uint8_t *s, size_t n)
{
    uint32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_next(s + i, n - i, &cp)))
            return 0;
    return 1;
}

/* bytes -> JSON string of code points U+0000..U+00FF. */
static json_t *bytes_to_json(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < 0x80) {
            s[o++] = (char)b[i];
        } else {
            s[o++] = (char)(0xc0 | b[i] >> 6);
            s[o++] = (char)(0x80 | (b[i] & 0x3f));
        }
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

/* JSON string of code points <= U+00FF -> bytes (malloc'ed, *n). NULL when a code point is
 * above U+00FF (*bad set) or on allocation failure. */
static uint8_t *json_to_bytes(const json_t *j, size_t *n, int *bad)
{
    const uint8_t *s = (const uint8_t *)json_string_value(j);
    size_t len = json_string_length(j);
    uint8_t *b = malloc(len + 1);
    *bad = 0;
    *n = 0;
    if (!b)
        return NULL;
    uint32_t cp;
    for (size_t i = 0, k; i < len; i += k) {
        k = utf8_next(s + i, len - i, &cp);
        if (!k || cp > 0xff) {
            *bad = 1;
            free(b);
            return NULL;
        }
        b[(*n)++] = (uint8_t)cp;
    }
    return b;
}

static int uuid_valid(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        int hyphen = i == 8 || i == 13 || i == 18 || i == 23;
        if (hyphen ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
            return 0;
    }
    return 1;
}

/* ---- decimal: two's-complement big-endian unscaled integer <-> "123.45" ------------------ */

#define DEC_MAX_BYTES 256

/* Decimal text of the unscaled value in b[0..n) with `scale` fraction digits. */
static json_t *decimal_to_json(const uint8_t *b, size_t n, int scale)
{
    uint8_t mag[DEC_MAX_BYTES];
    char dig[DEC_MAX_BYTES * 3 + 8];
    int neg = n > 0 && (b[0] & 0x80);
    memcpy(mag, b, n);
    if (neg) { /* magnitude = ~x + 1 */
        unsigned carry = 1;
        for (size_t i = n; i-- > 0;) {
            unsigned v = (uint8_t)~mag[i] + carry;
            mag[i] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    size_t nd = 0, start = 0;
    while (start < n && mag[start] == 0)
        start++;
    while (start < n) { /* repeated division by 10; digits come out least significant first */
        unsigned rem = 0;
        for (size_t i = start; i < n; i++) {
            unsigned v = rem << 8 | mag[i];
            mag[i] = (uint8_t)(v / 10);
            rem = v % 10;
        }
        dig[nd++] = (char)('0' + rem);
        while (start < n && mag[start] == 0)
            start++;
    }
    while (nd <= (size_t)scale)
        dig[nd++] = '0';
    char out[DEC_MAX_BYTES * 3 + 16];
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    for (size_t i = nd; i-- > 0;) {
        out[o++] = dig[i];
        if (i == (size_t)scale && scale > 0)
            out[o++] = '.';
    }
    return json_stringn(out, o);
}

/* Parses "[-]digits[.digits]" into unscaled digits (no leading zeros, "" for 0); -1 + msg. */
static int decimal_digits(const char *s, int scale, int precision, char *dig, size_t cap, int *neg,
                          const char **msg)
{
    *neg = *s == '-';
    s += *s == '-' || *s == '+';
    size_t nd = 0, frac = 0;
    int seen_dot = 0, any = 0;
    for (; *s; s++) {
        if (*s == '.' && !seen_dot && any) {
            seen_dot = 1;
            continue;
        }
        if (*s < '0' || *s > '9' || nd + 1 >= cap)
            return *msg = "invalid decimal", -1;
        any = 1;
        frac += seen_dot;
        if (nd > 0 || *s != '0')
            dig[nd++] = *s;
    }
    if (!any || (seen_dot && s[-1] == '.'))
        return *msg = "invalid decimal", -1;
    if (frac > (size_t)scale)
        return *msg = "more fraction digits than the schema's scale", -1;
    for (; frac < (size_t)scale && nd > 0; frac++) {
        if (nd + 1 >= cap)
            return *msg = "invalid decimal", -1;
        dig[nd++] = '0';
    }
    if (nd > (size_t)precision)
        return *msg = "more digits than the schema's precision", -1;
    dig[nd] = '\0';
    return 0;
}

/* Encodes a decimal (string, or integer) as two's complement: minimal length when size is 0,
 * else sign-extended to exactly `size` bytes. */
static int decimal_from_json(writer *w, const node *n, const json_t *v)
{
    char text[64];
    const char *s = json_string_value(v);
    if (json_is_integer(v)) {
        snprintf(text, sizeof(text), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        s = text;
    } else if (!s) {
        return -2;
    }
    char dig[1024];
    int neg;
    const char *msg;
    if (decimal_digits(s, n->scale, n->precision, dig, sizeof(dig), &neg, &msg) < 0)
        return fail(&w->e, &w->p, "%s: \"%.40s\"", msg, s);
    uint8_t b[DEC_MAX_BYTES + 1] = {0};
    size_t len = sizeof(b);
    for (const char *d = dig; *d; d++) { /* b = b * 10 + digit */
        unsigned carry = (unsigned)(*d - '0');
        for (size_t i = len; i-- > 0;) {
            unsigned x = b[i] * 10u + carry;
            b[i] = (uint8_t)x;
            carry = x >> 8;
        }
    }
    if (neg) {
        unsigned carry = 1;
        for (size_t i = len; i-- > 0;) {
            unsigned x = (uint8_t)~b[i] + carry;
            b[i] = (uint8_t)x;
            carry = x >> 8;
        }
    }
    size_t off = 0;
    while (len - off > 1 &&
           ((b[off] == 0 && !(b[off + 1] & 0x80)) || (b[off] == 0xff && (b[off + 1] & 0x80))))
        off++;
    if (n->k == K_BYTES)
        return put_blob(w, b + off, len - off);
    size_t need = len - off;
    if (need > n->size)
        return fail(&w->e, &w->p, "decimal does not fit in fixed(%zu)", n->size);
    uint8_t pad = (b[off] & 0x80) ? 0xff : 0x00;
    for (size_t i = need; i < n->size; i++)
        if (put(w, &pad, 1) < 0)
            return -1;
    return put(w, b + off, need);
}

/* ---- dates and timestamps (proleptic Gregorian, years 0001..9999) ------------------------ */

#define DAY_MIN (-719162LL) /* 0001-01-01 */
#define DAY_MAX 2932896LL   /* 9999-12-31 */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

static json_t *date_to_json(int64_t days)
{
    if (days < DAY_MIN || days > DAY_MAX)
        return NULL;
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char s[16];
    snprintf(s, sizeof(s), "%04d-%02u-%02u", y, m, d);
    return json_string(s);
}

static json_t *timestamp_to_json(int64_t v, int64_t unit, int digits)
{
    int64_t secs = floor_div(v, unit), frac = v - secs * unit;
    int64_t days = floor_div(secs, 86400), sod = secs - days * 86400;
    if (days < DAY_MIN || days > DAY_MAX)
        return NULL;
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char s[40];
    snprintf(s, sizeof(s), "%04d-%02u-%02uT%02d:%02d:%02d.%0*lldZ", y, m, d, (int)(sod / 3600),
             (int)(sod / 60 % 60), (int)(sod % 60), digits, (long long)frac);
    return json_string(s);
}

static int digits_at(const char *s, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *out = *out * 10 + (s[i] - '0');
    }
    return 0;
}

/* "YYYY-MM-DD" -> days since the epoch; -1 when invalid. */
static int parse_date(const char *s, int64_t *days)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (digits_at(s, 4, &y) < 0 || s[4] != '-' || digits_at(s + 5, 2, &m) < 0 || s[7] != '-' ||
        digits_at(s + 8, 2, &d) < 0 || y < 1 || m < 1 || m > 12 || d < 1 ||
        (unsigned)d > mdays[m - 1])
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return -1;
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.f](Z|+hh:mm|-hh:mm)" -> units since the epoch (UTC). */
static int parse_timestamp(const char *s, int64_t unit, int digits, int64_t *out)
{
    int64_t days;
    int hh, mi, ss;
    if (parse_date(s, &days) < 0 || (s[10] != 'T' && s[10] != 't') ||
        digits_at(s + 11, 2, &hh) < 0 || s[13] != ':' || digits_at(s + 14, 2, &mi) < 0 ||
        s[16] != ':' || digits_at(s + 17, 2, &ss) < 0 || hh > 23 || mi > 59 || ss > 59)
        return -1;
    s += 19;
    int64_t frac = 0;
    int nf = 0;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, nf++)
            frac = nf < digits ? frac * 10 + (*s - '0') : frac;
        if (nf == 0 || nf > digits)
            return -1;
        for (int i = nf; i < digits; i++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*s == '+' || *s == '-') {
        int oh, om;
        if (digits_at(s + 1, 2, &oh) < 0 || s[3] != ':' || digits_at(s + 4, 2, &om) < 0 ||
            oh > 23 || om > 59 || s[6])
            return -1;
        off = (*s == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    } else if ((*s != 'Z' && *s != 'z') || s[1]) {
        return -1;
    }
    *out = ((days * 86400 + hh * 3600 + mi * 60 + ss) - off) * unit + frac;
    return 0;
}

/* ---- decoder: Avro binary -> JSON -------------------------------------------------------- */

static const char *type_name(const node *n)
{
    return n->name ? n->name : kind_names[n->k];
}

static json_t *oom(reader *r)
{
    fail(&r->e, &r->path, "out of memory");
    return NULL;
}

static json_t *decode(reader *r, const node *n);

static json_t *decode_real(reader *r, const node *n)
{
    const uint8_t *b = NULL;
    size_t sz = n->k == K_FLOAT ? 4 : 8;
    if (get_bytes(r, sz, &b) < 0)
        return NULL;
    uint64_t bits = 0;
    for (size_t i = sz; i-- > 0;)
        bits = bits << 8 | b[i];
    double d;
    if (sz == 4) {
        uint32_t u = (uint32_t)bits;
        float f;
        memcpy(&f, &u, sizeof(f));
        d = f;
    } else {
        memcpy(&d, &bits, sizeof(d));
    }
    if (isnan(d))
        return json_string("NaN");
    if (isinf(d))
        return json_string(d > 0 ? "Infinity" : "-Infinity");
    return json_real(d);
}

static json_t *decode_binary(reader *r, const node *n)
{
    size_t len = n->size;
    const uint8_t *b = NULL;
    if ((n->k == K_BYTES && get_length(r, &len) < 0) || get_bytes(r, len, &b) < 0)
        return NULL;
    if (n->lt != L_DECIMAL)
        return bytes_to_json(b, len);
    if (len > DEC_MAX_BYTES) {
        fail(&r->e, &r->path, "decimal of %zu bytes exceeds %d", len, DEC_MAX_BYTES);
        return NULL;
    }
    return decimal_to_json(b, len, n->scale);
}

static int read_text(reader *r, const uint8_t **b, size_t *len)
{
    if (get_length(r, len) < 0 || get_bytes(r, *len, b) < 0)
        return -1;
    if (!utf8_valid(*b, *len))
        return fail(&r->e, &r->path, "string is not valid UTF-8");
    return 0;
}

static json_t *decode_string(reader *r, const node *n)
{
    size_t len;
    const uint8_t *b = NULL;
    if (read_text(r, &b, &len) < 0)
        return NULL;
    if (n->lt == L_UUID && !uuid_valid((const char *)b, len)) {
        fail(&r->e, &r->path, "invalid uuid");
        return NULL;
    }
    return json_stringn((const char *)b, len);
}

static json_t *decode_integer(reader *r, const node *n)
{
    int64_t v;
    if (get_long(r, &v) < 0)
        return NULL;
    json_t *j = NULL;
    if (n->k == K_INT && (v < INT32_MIN || v > INT32_MAX))
        fail(&r->e, &r->path, "int out of range: %lld", (long long)v);
    else if (n->lt == L_DATE && !(j = date_to_json(v)))
        fail(&r->e, &r->path, "date %lld outside years 0001..9999", (long long)v);
    else if ((n->lt == L_TS_MILLIS || n->lt == L_TS_MICROS) &&
             !(j = timestamp_to_json(v, n->lt == L_TS_MILLIS ? 1000 : 1000000,
                                     n->lt == L_TS_MILLIS ? 3 : 6)))
        fail(&r->e, &r->path, "timestamp %lld outside years 0001..9999", (long long)v);
    else if (!j)
        j = json_integer(v);
    return j;
}

/* Values that may be encoded in zero bytes: only a budget bounds how many a body can hold. */
static int maybe_empty(const node *n)
{
    return n->k == K_NULL || n->k == K_RECORD || (n->k == K_FIXED && n->size == 0);
}

/* Reads the next block count of an array or map: 0 ends; a negative count is followed by the
 * block's byte size. A count above what the remaining input (or the budget) can hold fails
 * before anything is allocated. */
static int block_count(reader *r, const node *items, size_t *count)
{
    int64_t c;
    if (get_long(r, &c) < 0)
        return -1;
    if (c < 0) {
        size_t bytes;
        if (c == INT64_MIN || get_length(r, &bytes) < 0)
            return fail(&r->e, &r->path, "bad block count");
        c = -c;
    }
    uint64_t room = r->len - r->pos;
    if ((uint64_t)c > (maybe_empty(items) ? room + r->budget : room))
        return fail(&r->e, &r->path, "block count %lld exceeds the remaining input", (long long)c);
    *count = (size_t)c;
    return 0;
}

static json_t *decode_array(reader *r, const node *n)
{
    json_t *a = json_array();
    size_t count, i = 0;
    while (a && block_count(r, n->items, &count) == 0) {
        if (count == 0)
            return a;
        for (size_t end = i + count; i < end; i++) {
            size_t saved = path_push(&r->path, "[%zu]", i);
            json_t *item = decode(r, n->items);
            path_pop(&r->path, saved);
            if (!item || json_array_append_new(a, item) < 0) {
                json_decref(a);
                return NULL;
            }
        }
    }
    json_decref(a);
    return NULL;
}

/* One map entry into o; keys must be unique and hold no NUL (JSON object keys). */
static int decode_entry(reader *r, const node *n, json_t *o)
{
    size_t len;
    const uint8_t *b = NULL;
    if (read_text(r, &b, &len) < 0)
        return -1;
    if (memchr(b, 0, len))
        return fail(&r->e, &r->path, "map key holds NUL");
    char *k = malloc(len + 1);
    if (!k)
        return fail(&r->e, &r->path, "out of memory");
    memcpy(k, b, len);
    k[len] = '\0';
    size_t saved = path_push(&r->path, ".%s", k);
    json_t *v = NULL;
    if (json_object_get(o, k))
        fail(&r->e, &r->path, "duplicate map key");
    else
        v = decode(r, n->items);
    path_pop(&r->path, saved);
    int rc = v && json_object_set_new(o, k, v) == 0 ? 0 : -1;
    if (v && rc < 0)
        fail(&r->e, &r->path, "out of memory");
    free(k);
    return rc;
}

static json_t *decode_map(reader *r, const node *n)
{
    json_t *o = json_object();
    size_t count;
    while (o && block_count(r, n->items, &count) == 0) {
        if (count == 0)
            return o;
        for (size_t i = 0; i < count; i++)
            if (decode_entry(r, n, o) < 0) {
                json_decref(o);
                return NULL;
            }
    }
    json_decref(o);
    return NULL;
}

static json_t *decode_record(reader *r, const node *n)
{
    json_t *o = json_object();
    for (size_t i = 0; o && i < n->n; i++) {
        size_t saved = path_push(&r->path, ".%s", n->fields[i].name);
        json_t *v = decode(r, n->fields[i].type);
        path_pop(&r->path, saved);
        if (!v || json_object_set_new(o, n->fields[i].name, v) < 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o ? o : oom(r);
}

static json_t *decode_union(reader *r, const node *n)
{
    int64_t idx;
    if (get_long(r, &idx) < 0)
        return NULL;
    if (idx < 0 || (uint64_t)idx >= n->n) {
        fail(&r->e, &r->path, "union branch %lld out of range (%zu branches)", (long long)idx,
             n->n);
        return NULL;
    }
    const node *b = n->branches[idx];
    json_t *v = decode(r, b);
    if (!v || n->nu_other >= 0 || b->k == K_NULL)
        return v;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, type_name(b), v) < 0) {
        json_decref(o);
        return oom(r);
    }
    return o;
}

static json_t *decode_enum(reader *r, const node *n)
{
    int64_t idx;
    if (get_long(r, &idx) < 0)
        return NULL;
    if (idx < 0 || (uint64_t)idx >= n->n) {
        fail(&r->e, &r->path, "enum index %lld out of range (%zu symbols)", (long long)idx, n->n);
        return NULL;
    }
    return json_string(n->symbols[idx]);
}

static json_t *decode_value(reader *r, const node *n)
{
    const uint8_t *b = NULL;
    switch (n->k) {
    case K_NULL:
        return json_null();
    case K_BOOLEAN:
        if (get_bytes(r, 1, &b) < 0)
            return NULL;
        if (*b > 1) {
            fail(&r->e, &r->path, "boolean byte %u is not 0 or 1", *b);
            return NULL;
        }
        return json_boolean(*b);
    case K_INT:
    case K_LONG:
        return decode_integer(r, n);
    case K_FLOAT:
    case K_DOUBLE:
        return decode_real(r, n);
    case K_BYTES:
    case K_FIXED:
        return decode_binary(r, n);
    case K_STRING:
        return decode_string(r, n);
    case K_ENUM:
        return decode_enum(r, n);
    case K_ARRAY:
        return decode_array(r, n);
    case K_MAP:
        return decode_map(r, n);
    case K_RECORD:
        return decode_record(r, n);
    case K_UNION:
        return decode_union(r, n);
    }
    return NULL;
}

static json_t *decode(reader *r, const node *n)
{
    int container = n->k == K_RECORD || n->k == K_ARRAY || n->k == K_MAP;
    if (container && r->depth >= SK_AVRO_MAX_DEPTH) {
        fail(&r->e, &r->path, "nested deeper than %d", SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    r->depth += container;
    size_t start = r->pos;
    json_t *v = decode_value(r, n);
    r->depth -= container;
    if (v && r->pos == start && r->budget-- == 0) {
        json_decref(v);
        fail(&r->e, &r->path, "more than %d values encoded in zero bytes", SK_AVRO_MAX_EMPTY);
        return NULL;
    }
    if (!v && !r->e.set)
        return oom(r);
    return v;
}

/* ---- encoder: JSON -> Avro binary -------------------------------------------------------- */

static const char *json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        break;
    }
    return "null";
}

static int mismatch(writer *w, const node *n, const json_t *v)
{
    return fail(&w->e, &w->p, "expected %s, got %s", kind_names[n->k], json_kind(v));
}

static int encode(writer *w, const node *n, const json_t *v);

static int encode_integer(writer *w, const node *n, const json_t *v)
{
    int64_t x;
    const char *s = json_string_value(v);
    if (s && !w->defmode && n->lt == L_DATE) {
        if (parse_date(s, &x) < 0 || s[10])
            return fail(&w->e, &w->p, "invalid date \"%.40s\" (want YYYY-MM-DD)", s);
    } else if (s && !w->defmode && (n->lt == L_TS_MILLIS || n->lt == L_TS_MICROS)) {
        int ms = n->lt == L_TS_MILLIS;
        if (parse_timestamp(s, ms ? 1000 : 1000000, ms ? 3 : 6, &x) < 0)
            return fail(&w->e, &w->p, "invalid timestamp \"%.40s\" (want RFC 3339, e.g. %s)", s,
                        ms ? "2024-01-02T03:04:05.123Z" : "2024-01-02T03:04:05.123456Z");
    } else if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else {
        return mismatch(w, n, v);
    }
    if (n->k == K_INT && (x < INT32_MIN || x > INT32_MAX))
        return fail(&w->e, &w->p, "%lld out of range for int", (long long)x);
    return put_long(w, x);
}

static int encode_real(writer *w, const node *n, const json_t *v)
{
    if (!json_is_number(v))
        return mismatch(w, n, v);
    double d = json_number_value(v);
    if (!isfinite(d) || (n->k == K_FLOAT && fabs(d) > 3.4028234663852886e38))
        return fail(&w->e, &w->p, "%g out of range for %s", d, kind_names[n->k]);
    uint8_t b[8];
    uint64_t bits;
    size_t sz = n->k == K_FLOAT ? 4 : 8;
    if (sz == 4) {
        float f = (float)d;
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        bits = u;
    } else {
        memcpy(&bits, &d, sizeof(bits));
    }
    for (size_t i = 0; i < sz; i++)
        b[i] = (uint8_t)(bits >> (8 * i));
    return put(w, b, sz);
}

static int encode_binary(writer *w, const node *n, const json_t *v)
{
    if (n->lt == L_DECIMAL && !w->defmode) {
        int rc = decimal_from_json(w, n, v);
        return rc == -2 ? mismatch(w, n, v) : rc;
    }
    if (!json_is_string(v))
        return mismatch(w, n, v);
    size_t len;
    int bad;
    uint8_t *b = json_to_bytes(v, &len, &bad);
    int rc;
    if (!b && bad)
        rc = fail(&w->e, &w->p, "%s holds a code point above U+00FF", kind_names[n->k]);
    else if (!b)
        rc = fail(&w->e, &w->p, "out of memory");
    else if (n->k == K_FIXED && len != n->size)
        rc = fail(&w->e, &w->p, "fixed(%zu) needs %zu bytes, got %zu", n->size, n->size, len);
    else
        rc = n->k == K_FIXED ? put(w, b, len) : put_blob(w, b, len);
    free(b);
    return rc;
}

static int encode_string(writer *w, const node *n, const json_t *v)
{
    if (!json_is_string(v))
        return mismatch(w, n, v);
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (!utf8_valid((const uint8_t *)s, len))
        return fail(&w->e, &w->p, "string is not valid UTF-8");
    if (n->lt == L_UUID && !w->defmode && !uuid_valid(s, len))
        return fail(&w->e, &w->p, "invalid uuid \"%.40s\"", s);
    return put_blob(w, s, len);
}

static int encode_enum(writer *w, const node *n, const json_t *v)
{
    if (!json_is_string(v))
        return mismatch(w, n, v);
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->symbols[i], json_string_value(v)) == 0)
            return put_long(w, (int64_t)i);
    return fail(&w->e, &w->p, "\"%.40s\" is not a symbol of enum %s", json_string_value(v),
                n->name);
}

static int encode_array(writer *w, const node *n, const json_t *v)
{
    if (!json_is_array(v))
        return mismatch(w, n, v);
    size_t count = json_array_size(v);
    if (count && put_long(w, (int64_t)count) < 0)
        return -1;
    for (size_t i = 0; i < count; i++) {
        size_t saved = path_push(&w->p, "[%zu]", i);
        int rc = encode(w, n->items, json_array_get(v, i));
        path_pop(&w->p, saved);
        if (rc < 0)
            return -1;
    }
    return put_long(w, 0);
}

static int encode_map(writer *w, const node *n, const json_t *v)
{
    if (!json_is_object(v))
        return mismatch(w, n, v);
    if (json_object_size(v) && put_long(w, (int64_t)json_object_size(v)) < 0)
        return -1;
    const char *k;
    json_t *item;
    json_object_foreach((json_t *)v, k, item)
    {
        size_t saved = path_push(&w->p, ".%s", k);
        int rc = -1;
        if (!utf8_valid((const uint8_t *)k, strlen(k)))
            fail(&w->e, &w->p, "map key is not valid UTF-8");
        else if (put_blob(w, k, strlen(k)) == 0)
            rc = encode(w, n->items, item);
        path_pop(&w->p, saved);
        if (rc < 0)
            return -1;
    }
    return put_long(w, 0);
}

static int encode_field(writer *w, const field *f, const json_t *v)
{
    if (v)
        return encode(w, f->type, v);
    if (f->def)
        return put(w, f->def, f->def_len);
    if (!f->def_json)
        return fail(&w->e, &w->p, "missing required field");
    int saved = w->defmode; /* schema compilation: a default that uses another default */
    w->defmode = 1;
    int rc = encode(w, f->type, f->def_json);
    w->defmode = saved;
    return rc;
}

static int encode_record(writer *w, const node *n, const json_t *v)
{
    if (!json_is_object(v))
        return fail(&w->e, &w->p, "expected object (record %s), got %s", n->name, json_kind(v));
    size_t matched = 0;
    for (size_t i = 0; i < n->n; i++) {
        json_t *fv = json_object_get(v, n->fields[i].name);
        matched += fv != NULL;
        size_t saved = path_push(&w->p, ".%s", n->fields[i].name);
        int rc = encode_field(w, &n->fields[i], fv);
        path_pop(&w->p, saved);
        if (rc < 0)
            return -1;
    }
    if (matched == json_object_size(v))
        return 0;
    const char *k;
    json_t *item;
    json_object_foreach((json_t *)v, k, item)
    {
        size_t i = 0;
        while (i < n->n && strcmp(n->fields[i].name, k) != 0)
            i++;
        if (i == n->n) {
            path_push(&w->p, ".%s", k);
            return fail(&w->e, &w->p, "unknown field (not in record %s)", n->name);
        }
    }
    return 0;
}

static int null_branch(const node *n)
{
    for (size_t i = 0; i < n->n; i++)
        if (n->branches[i]->k == K_NULL)
            return (int)i;
    return -1;
}

/* {"<branch type name>": value} -> branch index, or -1. */
static int wrapped_branch(const node *n, const json_t *v, const json_t **inner)
{
    if (!json_is_object(v) || json_object_size(v) != 1)
        return -1;
    const char *k = json_object_iter_key(json_object_iter((json_t *)v));
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(type_name(n->branches[i]), k) == 0) {
            *inner = json_object_get(v, k);
            return (int)i;
        }
    return -1;
}

static int encode_branch(writer *w, const node *n, int i, const json_t *v)
{
    return put_long(w, i) < 0 ? -1 : encode(w, n->branches[i], v);
}

/* ["null", X]: the plain X value wins; the {"X": value} form is tried only when it fails. */
static int encode_null_union(writer *w, const node *n, const json_t *v)
{
    size_t mark = w->len;
    if (encode_branch(w, n, n->nu_other, v) == 0)
        return 0;
    const json_t *inner;
    if (wrapped_branch(n, v, &inner) != n->nu_other)
        return -1;
    char first[256];
    snprintf(first, sizeof(first), "%s", w->e.err ? w->e.err : "");
    w->len = mark;
    w->e.set = 0;
    if (encode_branch(w, n, n->nu_other, inner) == 0)
        return 0;
    if (w->e.err && w->e.errlen)
        snprintf(w->e.err, w->e.errlen, "%s", first);
    return -1;
}

static int encode_union(writer *w, const node *n, const json_t *v)
{
    int nb = null_branch(n);
    if (json_is_null(v) && nb >= 0)
        return put_long(w, nb);
    if (w->defmode)
        return encode_branch(w, n, 0, v);
    if (n->nu_other >= 0)
        return encode_null_union(w, n, v);
    const json_t *inner;
    int i = wrapped_branch(n, v, &inner);
    if (i < 0) {
        char names[200] = "";
        for (size_t b = 0, o = 0; b < n->n && o < sizeof(names); b++)
            o += (size_t)snprintf(names + o, sizeof(names) - o, "%s%s", b ? ", " : "",
                                  type_name(n->branches[b]));
        return fail(&w->e, &w->p,
                    "union value must be %s{\"<type>\": value} with <type> one of: %s"
                    "; got %s",
                    nb >= 0 ? "null or " : "", names, json_kind(v));
    }
    size_t saved = path_push(&w->p, ".%s", type_name(n->branches[i]));
    int rc = encode_branch(w, n, i, inner);
    path_pop(&w->p, saved);
    return rc;
}

static int encode_value(writer *w, const node *n, const json_t *v)
{
    switch (n->k) {
    case K_NULL:
        return json_is_null(v) ? 0 : mismatch(w, n, v);
    case K_BOOLEAN:
        if (!json_is_boolean(v))
            return mismatch(w, n, v);
        return put(w, json_is_true(v) ? "\1" : "\0", 1);
    case K_INT:
    case K_LONG:
        return encode_integer(w, n, v);
    case K_FLOAT:
    case K_DOUBLE:
        return encode_real(w, n, v);
    case K_BYTES:
    case K_FIXED:
        return encode_binary(w, n, v);
    case K_STRING:
        return encode_string(w, n, v);
    case K_ENUM:
        return encode_enum(w, n, v);
    case K_ARRAY:
        return encode_array(w, n, v);
    case K_MAP:
        return encode_map(w, n, v);
    case K_RECORD:
        return encode_record(w, n, v);
    case K_UNION:
        return encode_union(w, n, v);
    }
    return -1;
}

static int encode(writer *w, const node *n, const json_t *v)
{
    if (!v)
        return fail(&w->e, &w->p, "missing value");
    int container = n->k == K_RECORD || n->k == K_ARRAY || n->k == K_MAP;
    if (container && w->depth >= SK_AVRO_MAX_DEPTH)
        return fail(&w->e, &w->p, "nested deeper than %d", SK_AVRO_MAX_DEPTH);
    w->depth += container;
    int rc = encode_value(w, n, v);
    w->depth -= container;
    return rc;
}

/* ---- public API -------------------------------------------------------------------------- */

static void writer_init(writer *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->p.buf[0] = '$';
    w->p.len = 1;
    w->e.err = err;
    w->e.errlen = errlen;
}

/* Encodes every field default once (Avro JSON encoding, union defaults use branch 0). */
static int compile_defaults(compiler *c)
{
    for (size_t i = 0; i < c->s->n_all; i++) {
        node *n = c->s->all[i];
        for (size_t f = 0; n->k == K_RECORD && f < n->n; f++) {
            field *fd = &n->fields[f];
            if (!fd->def_json)
                continue;
            writer w;
            char err[256];
            writer_init(&w, err, sizeof(err));
            w.defmode = 1;
            if (encode(&w, fd->type, fd->def_json) < 0) {
                free(w.d);
                return fail(&c->e, NULL, "record %s, field %s: invalid default: %s", n->name,
                            fd->name, err);
            }
            fd->def = w.d ? w.d : malloc(1);
            fd->def_len = w.len;
            if (!fd->def)
                return fail(&c->e, NULL, "out of memory");
        }
    }
    for (size_t i = 0; i < c->s->n_all; i++)
        for (size_t f = 0; c->s->all[i]->k == K_RECORD && f < c->s->all[i]->n; f++)
            c->s->all[i]->fields[f].def_json = NULL;
    return 0;
}

sk_avro_schema *sk_avro_schema_parse(const char *json, size_t len, char *err, size_t errlen)
{
    compiler c = {.e = {.err = err, .errlen = errlen}};
    pthread_once(&alloc_once, install_allocator);
    avro_schema_t as = NULL;
    if (avro_schema_from_json_length(json, len, &as) != 0) {
        fail(&c.e, NULL, "invalid Avro schema: %.200s", avro_strerror());
        return NULL;
    }
    avro_schema_decref(as);
    json_error_t jerr;
    json_t *j = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
    c.s = calloc(1, sizeof(*c.s));
    if (!j || !c.s) {
        fail(&c.e, NULL, "invalid schema JSON: %s", j ? "out of memory" : jerr.text);
        goto fail;
    }
    c.s->root = compile(&c, j, "", 0);
    if (!c.s->root || compile_defaults(&c) < 0)
        goto fail;
    json_decref(j);
    return c.s;
fail:
    json_decref(j);
    sk_avro_schema_free(c.s);
    return NULL;
}

void sk_avro_schema_free(sk_avro_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_all; i++) {
        node *n = s->all[i];
        for (size_t f = 0; n->fields && f < n->n; f++) {
            free(n->fields[f].name);
            free(n->fields[f].def);
        }
        for (size_t k = 0; n->symbols && k < n->n; k++)
            free(n->symbols[k]);
        free(n->fields);
        free(n->symbols);
        free(n->branches);
        free(n->name);
        free(n);
    }
    free(s->all);
    free(s);
}

json_t *sk_avro_to_json(const sk_avro_schema *s, const uint8_t *buf, size_t len, char *err,
                        size_t errlen)
{
    reader r = {.p = buf, .len = len, .e = {.err = err, .errlen = errlen}};
    r.budget = SK_AVRO_MAX_EMPTY;
    r.path.buf[0] = '$';
    r.path.len = 1;
    if (len > SK_AVRO_MAX_BYTES) {
        fail(&r.e, NULL, "body of %zu bytes exceeds %u", len, SK_AVRO_MAX_BYTES);
        return NULL;
    }
    json_t *v = decode(&r, s->root);
    if (v && r.pos != len) {
        fail(&r.e, NULL, "%zu trailing bytes after the value", len - r.pos);
        json_decref(v);
        return NULL;
    }
    return v;
}

uint8_t *sk_avro_from_json(const sk_avro_schema *s, const json_t *v, size_t *len, char *err,
                           size_t errlen)
{
    writer w;
    writer_init(&w, err, errlen);
    if (encode(&w, s->root, v) < 0) {
        free(w.d);
        return NULL;
    }
    if (!w.d && !(w.d = malloc(1))) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *len = w.len;
    return w.d;
}

int sk_avro_wire_split(const uint8_t *buf, size_t len, uint32_t *schema_id, const uint8_t **body,
                       size_t *body_len, char *err, size_t errlen)
{
    if (len < SK_AVRO_WIRE_HEADER) {
        snprintf(err, errlen, "record of %zu bytes is shorter than the 5-byte Confluent header",
                 len);
        return -1;
    }
    if (buf[0] != 0) {
        snprintf(err, errlen, "magic byte is 0x%02x, not 0x00 (not Confluent wire format)", buf[0]);
        return -1;
    }
    *schema_id = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
    *body = buf + SK_AVRO_WIRE_HEADER;
    *body_len = len - SK_AVRO_WIRE_HEADER;
    return 0;
}

void sk_avro_wire_header(uint32_t schema_id, uint8_t out[SK_AVRO_WIRE_HEADER])
{
    out[0] = 0;
    out[1] = (uint8_t)(schema_id >> 24);
    out[2] = (uint8_t)(schema_id >> 16);
    out[3] = (uint8_t)(schema_id >> 8);
    out[4] = (uint8_t)schema_id;
}
