/* Avro binary -> compact JSON text without a tree (avro_text.h). The checks mirror
 * avro_decode.c's one for one (lengths, depth, the zero-byte budget, ranges, UTF-8, uuid), so
 * that the direct writer succeeds exactly where the tree path does; any failure only declines,
 * and the tree path then produces the error message. */
#include "schema/avro_text.h"

#include <math.h>
#include <string.h>

#include "core/text.h"
#include "schema/avro_internal.h"

typedef struct text_reader {
    const uint8_t *p;
    size_t len, pos;
    size_t budget; /* values still allowed to take no input bytes */
    int depth;
    sk_jtext *t;
} text_reader;

static int get_long(text_reader *r, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10 && r->pos < r->len; i++) {
        uint8_t b = r->p[r->pos++];
        if (i == 9 && b > 1)
            return -1;
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return -1;
}

static int get_bytes(text_reader *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return -1;
    *out = r->p + r->pos;
    r->pos += n;
    return 0;
}

static int get_length(text_reader *r, size_t *n)
{
    int64_t v;
    if (get_long(r, &v) < 0 || v < 0 || (uint64_t)v > SK_AVRO_MAX_BYTES ||
        (uint64_t)v > r->len - r->pos)
        return -1;
    *n = (size_t)v;
    return 0;
}

/* ---- text: jansson's compact string escaping (\uXXXX in upper case, '/' and DEL as is) ---- */

static void put_escaped(sk_jtext *t, const uint8_t *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t from = 0;
    for (size_t i = sk_json_plain_prefix(s, n); i < n;
         i += 1 + sk_json_plain_prefix(s + i + 1, n - i - 1)) {
        uint8_t c = s[i];
        sk_jtext_raw(t, (const char *)s + from, i - from);
        from = i + 1;
        const char *named = c == '"'    ? "\\\""
                            : c == '\\' ? "\\\\"
                            : c == '\b' ? "\\b"
                            : c == '\f' ? "\\f"
                            : c == '\n' ? "\\n"
                            : c == '\r' ? "\\r"
                            : c == '\t' ? "\\t"
                                        : NULL;
        char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        sk_jtext_raw(t, named ? named : u, named ? 2 : 6);
    }
    sk_jtext_raw(t, (const char *)s + from, n - from);
}

static void put_quoted(sk_jtext *t, const uint8_t *s, size_t n)
{
    sk_jtext_raw(t, "\"", 1);
    put_escaped(t, s, n);
    sk_jtext_raw(t, "\"", 1);
}

/* Avro bytes as a string of code points U+0000..U+00FF (sk_avro_bytes_to_json), in UTF-8. */
static void put_bytes(sk_jtext *t, const uint8_t *b, size_t n)
{
    uint8_t buf[128];
    size_t k = 0;
    sk_jtext_raw(t, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        if (k + 2 > sizeof buf) {
            put_escaped(t, buf, k);
            k = 0;
        }
        if (b[i] < 0x80) {
            buf[k++] = b[i];
        } else {
            buf[k++] = (uint8_t)(0xc0 | b[i] >> 6);
            buf[k++] = (uint8_t)(0x80 | (b[i] & 0x3f));
        }
    }
    put_escaped(t, buf, k);
    sk_jtext_raw(t, "\"", 1);
}

/* A jansson value (a logical type's text, a finite real) written the tree path's way. */
static int put_json(sk_jtext *t, json_t *v)
{
    if (!v)
        return -1;
    sk_jtext_json(t, v);
    json_decref(v);
    return 0;
}

/* A logical type's text (digits, '-', '.', ':', 'T', 'Z': nothing to escape) as a JSON
 * string; len 0: the value has no text (out of range), -1. */
static int put_plain(sk_jtext *t, const char *text, size_t len)
{
    if (len == 0)
        return -1;
    sk_jtext_raw(t, "\"", 1);
    sk_jtext_raw(t, text, len);
    sk_jtext_raw(t, "\"", 1);
    return 0;
}

/* ---- values ------------------------------------------------------------------------------ */

static int value(text_reader *r, const node *n);

static int put_real(text_reader *r, const node *n)
{
    const uint8_t *b = NULL;
    size_t sz = n->k == K_FLOAT ? 4 : 8;
    if (get_bytes(r, sz, &b) < 0)
        return -1;
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
    if (isnan(d) || isinf(d)) {
        sk_jtext_lit(r->t, isnan(d) ? "\"NaN\"" : d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
        return 0;
    }
    return put_json(r->t, json_real(d));
}

static int put_binary(text_reader *r, const node *n)
{
    size_t len = n->size;
    const uint8_t *b = NULL;
    if ((n->k == K_BYTES && get_length(r, &len) < 0) || get_bytes(r, len, &b) < 0)
        return -1;
    if (n->lt != L_DECIMAL) {
        put_bytes(r->t, b, len);
        return 0;
    }
    if (len > DEC_MAX_BYTES)
        return -1;
    char text[SK_AVRO_DECIMAL_TEXT_MAX];
    return put_plain(r->t, text, sk_avro_decimal_text(b, len, n->scale, text));
}

static int read_text(text_reader *r, const uint8_t **b, size_t *len)
{
    if (get_length(r, len) < 0 || get_bytes(r, *len, b) < 0)
        return -1;
    return sk_avro_utf8_valid(*b, *len) ? 0 : -1;
}

static int put_string(text_reader *r, const node *n)
{
    size_t len;
    const uint8_t *b = NULL;
    if (read_text(r, &b, &len) < 0 ||
        (n->lt == L_UUID && !sk_avro_uuid_valid((const char *)b, len)))
        return -1;
    put_quoted(r->t, b, len);
    return 0;
}

static int put_integer(text_reader *r, const node *n)
{
    int64_t v;
    if (get_long(r, &v) < 0 || (n->k == K_INT && (v < INT32_MIN || v > INT32_MAX)))
        return -1;
    char text[40];
    if (n->lt == L_DATE)
        return put_plain(r->t, text, sk_avro_date_text(v, text));
    if (n->lt == L_TS_MILLIS || n->lt == L_TS_MICROS)
        return put_plain(r->t, text,
                         sk_avro_timestamp_text(v, n->lt == L_TS_MILLIS ? 1000 : 1000000,
                                                n->lt == L_TS_MILLIS ? 3 : 6, text));
    sk_jtext_int(r->t, v);
    return 0;
}

static int maybe_empty(const node *n)
{
    return n->k == K_NULL || n->k == K_RECORD || (n->k == K_FIXED && n->size == 0);
}

static int block_count(text_reader *r, const node *items, size_t *count)
{
    int64_t c;
    if (get_long(r, &c) < 0)
        return -1;
    if (c < 0) {
        size_t bytes;
        if (c == INT64_MIN || get_length(r, &bytes) < 0)
            return -1;
        c = -c;
    }
    uint64_t room = r->len - r->pos;
    if ((uint64_t)c > (maybe_empty(items) ? room + r->budget : room))
        return -1;
    *count = (size_t)c;
    return 0;
}

static int put_array(text_reader *r, const node *n)
{
    size_t count, i = 0;
    sk_jtext_raw(r->t, "[", 1);
    while (block_count(r, n->items, &count) == 0) {
        if (count == 0) {
            sk_jtext_raw(r->t, "]", 1);
            return 0;
        }
        for (size_t end = i + count; i < end; i++) {
            if (i > 0)
                sk_jtext_raw(r->t, ",", 1);
            if (value(r, n->items) < 0)
                return -1;
        }
    }
    return -1;
}

/* Keys are kept (pointers into the input) to refuse duplicates as the tree path does; a map
 * longer than SK_AVRO_TEXT_MAX_MAP declines. */
static int put_map(text_reader *r, const node *n)
{
    struct {
        const uint8_t *b;
        size_t len;
    } keys[SK_AVRO_TEXT_MAX_MAP];
    size_t count, nkeys = 0;
    sk_jtext_raw(r->t, "{", 1);
    while (block_count(r, n->items, &count) == 0) {
        if (count == 0) {
            sk_jtext_raw(r->t, "}", 1);
            return 0;
        }
        for (size_t i = 0; i < count; i++) {
            const uint8_t *b = NULL;
            size_t len;
            if (nkeys == SK_AVRO_TEXT_MAX_MAP || read_text(r, &b, &len) < 0 || memchr(b, 0, len))
                return -1;
            for (size_t j = 0; j < nkeys; j++)
                if (keys[j].len == len && memcmp(keys[j].b, b, len) == 0)
                    return -1;
            keys[nkeys].b = b;
            keys[nkeys++].len = len;
            if (nkeys > 1)
                sk_jtext_raw(r->t, ",", 1);
            put_quoted(r->t, b, len);
            sk_jtext_raw(r->t, ":", 1);
            if (value(r, n->items) < 0)
                return -1;
        }
    }
    return -1;
}

static int put_record(text_reader *r, const node *n)
{
    sk_jtext_raw(r->t, "{", 1);
    for (size_t i = 0; i < n->n; i++) {
        const field *f = &n->fields[i]; /* the first member without its ',' */
        sk_jtext_raw(r->t, f->key + (i == 0), f->key_len - (i == 0));
        if (value(r, n->fields[i].type) < 0)
            return -1;
    }
    sk_jtext_raw(r->t, "}", 1);
    return 0;
}

static int put_union(text_reader *r, const node *n)
{
    int64_t idx;
    if (get_long(r, &idx) < 0 || idx < 0 || (uint64_t)idx >= n->n)
        return -1;
    const node *b = n->branches[idx];
    if (n->nu_other >= 0 || b->k == K_NULL)
        return value(r, b);
    const char *name = sk_avro_type_name(b);
    sk_jtext_raw(r->t, "{", 1);
    put_quoted(r->t, (const uint8_t *)name, strlen(name));
    sk_jtext_raw(r->t, ":", 1);
    if (value(r, b) < 0)
        return -1;
    sk_jtext_raw(r->t, "}", 1);
    return 0;
}

static int put_value(text_reader *r, const node *n)
{
    const uint8_t *b = NULL;
    int64_t idx;
    switch (n->k) {
    case K_NULL:
        sk_jtext_raw(r->t, "null", 4);
        return 0;
    case K_BOOLEAN:
        if (get_bytes(r, 1, &b) < 0 || *b > 1)
            return -1;
        sk_jtext_lit(r->t, *b ? "true" : "false");
        return 0;
    case K_INT:
    case K_LONG:
        return put_integer(r, n);
    case K_FLOAT:
    case K_DOUBLE:
        return put_real(r, n);
    case K_BYTES:
    case K_FIXED:
        return put_binary(r, n);
    case K_STRING:
        return put_string(r, n);
    case K_ENUM:
        if (get_long(r, &idx) < 0 || idx < 0 || (uint64_t)idx >= n->n)
            return -1;
        put_quoted(r->t, (const uint8_t *)n->symbols[idx], strlen(n->symbols[idx]));
        return 0;
    case K_ARRAY:
        return put_array(r, n);
    case K_MAP:
        return put_map(r, n);
    case K_RECORD:
        return put_record(r, n);
    case K_UNION:
        return put_union(r, n);
    }
    return -1;
}

static int value(text_reader *r, const node *n)
{
    int container = n->k == K_RECORD || n->k == K_ARRAY || n->k == K_MAP;
    if (container && r->depth >= SK_AVRO_MAX_DEPTH)
        return -1;
    r->depth += container;
    size_t start = r->pos;
    int rc = put_value(r, n);
    r->depth -= container;
    if (rc == 0 && r->pos == start && r->budget-- == 0)
        return -1;
    return rc;
}

/* ---- public ------------------------------------------------------------------------------ */

int sk_avro_text_direct(const sk_avro_schema *s, const uint8_t *buf, size_t len, sk_jtext *t)
{
    size_t mark = t->len;
    text_reader r = {.p = buf, .len = len, .budget = SK_AVRO_MAX_EMPTY, .t = t};
    if (len <= SK_AVRO_MAX_BYTES && value(&r, s->root) == 0 && r.pos == len)
        return 0;
    if (!t->failed) /* declined: as it was (an out-of-memory stays visible) */
        t->len = mark;
    return -1;
}

int sk_avro_to_jtext(const sk_avro_schema *s, const uint8_t *buf, size_t len, sk_jtext *t,
                     char *err, size_t errlen)
{
    if (sk_avro_text_direct(s, buf, len, t) == 0 || t->failed)
        return 0;
    json_t *v = sk_avro_to_json(s, buf, len, err, errlen);
    if (!v)
        return -1;
    sk_jtext_json(t, v);
    json_decref(v);
    return 0;
}
