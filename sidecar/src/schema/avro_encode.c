/* JSON -> Avro binary: the growing binary writer, the encoder (decimal encoding included),
 * field defaults compiled at schema parse time, and sk_avro_from_json. */
#include "schema/avro_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        return sk_avro_fail(&w->e, &w->p, "encoded value exceeds %u bytes", SK_AVRO_MAX_BYTES);
    if (w->len + n > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->len + n)
            cap *= 2;
        uint8_t *d = realloc(w->d, cap);
        if (!d)
            return sk_avro_fail(&w->e, &w->p, "out of memory");
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

/* A JSON string whose text a C string would cut short: a NUL byte is never part of a decimal,
 * a date, a timestamp or an enum symbol. */
static int cut_by_nul(const json_t *v)
{
    return json_is_string(v) && strlen(json_string_value(v)) != json_string_length(v);
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
    } else if (cut_by_nul(v)) {
        return sk_avro_fail(&w->e, &w->p, "decimal \"%.40s\" contains a NUL byte", s);
    }
    char dig[1024];
    int neg;
    const char *msg;
    if (sk_avro_decimal_digits(s, n->scale, n->precision, dig, sizeof(dig), &neg, &msg) < 0)
        return sk_avro_fail(&w->e, &w->p, "%s: \"%.40s\"", msg, s);
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
        return sk_avro_fail(&w->e, &w->p, "decimal does not fit in fixed(%zu)", n->size);
    uint8_t pad = (b[off] & 0x80) ? 0xff : 0x00;
    for (size_t i = need; i < n->size; i++)
        if (put(w, &pad, 1) < 0)
            return -1;
    return put(w, b + off, need);
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
    return sk_avro_fail(&w->e, &w->p, "expected %s, got %s", sk_avro_kind_names[n->k],
                        json_kind(v));
}

static int encode(writer *w, const node *n, const json_t *v);

static int encode_integer(writer *w, const node *n, const json_t *v)
{
    int64_t x;
    const char *s = json_string_value(v);
    if (s && !w->defmode && n->lt != L_NONE && cut_by_nul(v))
        return sk_avro_fail(&w->e, &w->p, "\"%.40s\" contains a NUL byte", s);
    if (s && !w->defmode && n->lt == L_DATE) {
        if (sk_avro_parse_date(s, &x) < 0 || s[10])
            return sk_avro_fail(&w->e, &w->p, "invalid date \"%.40s\" (want YYYY-MM-DD)", s);
    } else if (s && !w->defmode && (n->lt == L_TS_MILLIS || n->lt == L_TS_MICROS)) {
        int ms = n->lt == L_TS_MILLIS;
        if (sk_avro_parse_timestamp(s, ms ? 1000 : 1000000, ms ? 3 : 6, &x) < 0)
            return sk_avro_fail(&w->e, &w->p,
                                "invalid timestamp \"%.40s\" (want RFC 3339, e.g. %s)", s,
                                ms ? "2024-01-02T03:04:05.123Z" : "2024-01-02T03:04:05.123456Z");
    } else if (json_is_integer(v)) {
        x = json_integer_value(v);
    } else {
        return mismatch(w, n, v);
    }
    if (n->k == K_INT && (x < INT32_MIN || x > INT32_MAX))
        return sk_avro_fail(&w->e, &w->p, "%lld out of range for int", (long long)x);
    return put_long(w, x);
}

static int encode_real(writer *w, const node *n, const json_t *v)
{
    if (!json_is_number(v))
        return mismatch(w, n, v);
    double d = json_number_value(v);
    if (!isfinite(d) || (n->k == K_FLOAT && fabs(d) > 3.4028234663852886e38))
        return sk_avro_fail(&w->e, &w->p, "%g out of range for %s", d, sk_avro_kind_names[n->k]);
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
    uint8_t *b = sk_avro_json_to_bytes(v, &len, &bad);
    int rc;
    if (!b && bad)
        rc = sk_avro_fail(&w->e, &w->p, "%s holds a code point above U+00FF",
                          sk_avro_kind_names[n->k]);
    else if (!b)
        rc = sk_avro_fail(&w->e, &w->p, "out of memory");
    else if (n->k == K_FIXED && len != n->size)
        rc = sk_avro_fail(&w->e, &w->p, "fixed(%zu) needs %zu bytes, got %zu", n->size, n->size,
                          len);
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
    if (!sk_avro_utf8_valid((const uint8_t *)s, len))
        return sk_avro_fail(&w->e, &w->p, "string is not valid UTF-8");
    if (n->lt == L_UUID && !w->defmode && !sk_avro_uuid_valid(s, len))
        return sk_avro_fail(&w->e, &w->p, "invalid uuid \"%.40s\"", s);
    return put_blob(w, s, len);
}

static int encode_enum(writer *w, const node *n, const json_t *v)
{
    if (!json_is_string(v))
        return mismatch(w, n, v);
    if (cut_by_nul(v))
        return sk_avro_fail(&w->e, &w->p, "\"%.40s\" contains a NUL byte", json_string_value(v));
    for (size_t i = 0; i < n->n; i++)
        if (strcmp(n->symbols[i], json_string_value(v)) == 0)
            return put_long(w, (int64_t)i);
    return sk_avro_fail(&w->e, &w->p, "\"%.40s\" is not a symbol of enum %s", json_string_value(v),
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
        size_t saved = sk_avro_path_push(&w->p, "[%zu]", i);
        int rc = encode(w, n->items, json_array_get(v, i));
        sk_avro_path_pop(&w->p, saved);
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
        size_t saved = sk_avro_path_push(&w->p, ".%s", k);
        int rc = -1;
        if (!sk_avro_utf8_valid((const uint8_t *)k, strlen(k)))
            sk_avro_fail(&w->e, &w->p, "map key is not valid UTF-8");
        else if (put_blob(w, k, strlen(k)) == 0)
            rc = encode(w, n->items, item);
        sk_avro_path_pop(&w->p, saved);
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
        return sk_avro_fail(&w->e, &w->p, "missing required field");
    int saved = w->defmode; /* schema compilation: a default that uses another default */
    w->defmode = 1;
    int rc = encode(w, f->type, f->def_json);
    w->defmode = saved;
    return rc;
}

static int encode_record(writer *w, const node *n, const json_t *v)
{
    if (!json_is_object(v))
        return sk_avro_fail(&w->e, &w->p, "expected object (record %s), got %s", n->name,
                            json_kind(v));
    size_t matched = 0;
    for (size_t i = 0; i < n->n; i++) {
        json_t *fv = json_object_get(v, n->fields[i].name);
        matched += fv != NULL;
        size_t saved = sk_avro_path_push(&w->p, ".%s", n->fields[i].name);
        int rc = encode_field(w, &n->fields[i], fv);
        sk_avro_path_pop(&w->p, saved);
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
            sk_avro_path_push(&w->p, ".%s", k);
            return sk_avro_fail(&w->e, &w->p, "unknown field (not in record %s)", n->name);
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
        if (strcmp(sk_avro_type_name(n->branches[i]), k) == 0) {
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
                                  sk_avro_type_name(n->branches[b]));
        return sk_avro_fail(&w->e, &w->p,
                            "union value must be %s{\"<type>\": value} with <type> one of: %s"
                            "; got %s",
                            nb >= 0 ? "null or " : "", names, json_kind(v));
    }
    size_t saved = sk_avro_path_push(&w->p, ".%s", sk_avro_type_name(n->branches[i]));
    int rc = encode_branch(w, n, i, inner);
    sk_avro_path_pop(&w->p, saved);
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
        return sk_avro_fail(&w->e, &w->p, "missing value");
    int container = n->k == K_RECORD || n->k == K_ARRAY || n->k == K_MAP;
    if (container && w->depth >= SK_AVRO_MAX_DEPTH)
        return sk_avro_fail(&w->e, &w->p, "nested deeper than %d", SK_AVRO_MAX_DEPTH);
    w->depth += container;
    int rc = encode_value(w, n, v);
    w->depth -= container;
    return rc;
}

static void writer_init(writer *w, char *err, size_t errlen)
{
    memset(w, 0, sizeof(*w));
    w->p.buf[0] = '$';
    w->p.len = 1;
    w->e.err = err;
    w->e.errlen = errlen;
}

/* Encodes every field default once (Avro JSON encoding, union defaults use branch 0). */
int sk_avro_compile_defaults(compiler *c)
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
                return sk_avro_fail(&c->e, NULL, "record %s, field %s: invalid default: %s",
                                    n->name, fd->name, err);
            }
            fd->def = w.d ? w.d : malloc(1);
            fd->def_len = w.len;
            if (!fd->def)
                return sk_avro_fail(&c->e, NULL, "out of memory");
        }
    }
    for (size_t i = 0; i < c->s->n_all; i++)
        for (size_t f = 0; c->s->all[i]->k == K_RECORD && f < c->s->all[i]->n; f++)
            c->s->all[i]->fields[f].def_json = NULL;
    return 0;
}

/* ---- public API -------------------------------------------------------------------------- */

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
