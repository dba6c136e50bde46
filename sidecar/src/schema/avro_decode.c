/* Avro binary -> JSON: the bounded binary reader, the decoder, sk_avro_to_json and the
 * Confluent wire-format helpers. */
#include "schema/avro_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- binary reader ----------------------------------------------------------------------- */

static int get_long(reader *r, int64_t *out)
{
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (r->pos >= r->len)
            return sk_avro_fail(&r->e, &r->path, "truncated varint at byte %zu", r->pos);
        uint8_t b = r->p[r->pos++];
        if (i == 9 && b > 1)
            return sk_avro_fail(&r->e, &r->path, "varint overflows 64 bits at byte %zu",
                                r->pos - 1);
        v |= (uint64_t)(b & 0x7f) << (7 * i);
        if (!(b & 0x80)) {
            *out = (int64_t)(v >> 1) ^ -(int64_t)(v & 1);
            return 0;
        }
    }
    return sk_avro_fail(&r->e, &r->path, "varint overflows 64 bits");
}

static int get_bytes(reader *r, size_t n, const uint8_t **out)
{
    if (n > r->len - r->pos)
        return sk_avro_fail(&r->e, &r->path, "truncated: %zu bytes needed at byte %zu, %zu left", n,
                            r->pos, r->len - r->pos);
    *out = r->p + r->pos;
    r->pos += n;
    return 0;
}

/* A length prefix: non-negative, within the remaining input and the global cap. */
static int get_length(reader *r, size_t *n)
{
    int64_t v;
    /* sk_avro_fail's -1 is out of the optimiser's sight (another file): at -O3 it would take
     * a failed read for a success and report *n as possibly unset. */
    *n = 0;
    if (get_long(r, &v) < 0)
        return -1;
    if (v < 0)
        return sk_avro_fail(&r->e, &r->path, "negative length %lld", (long long)v);
    if ((uint64_t)v > SK_AVRO_MAX_BYTES || (uint64_t)v > r->len - r->pos)
        return sk_avro_fail(&r->e, &r->path, "length %lld exceeds the %zu remaining bytes",
                            (long long)v, r->len - r->pos);
    *n = (size_t)v;
    return 0;
}

/* ---- decoder: Avro binary -> JSON -------------------------------------------------------- */

static json_t *oom(reader *r)
{
    sk_avro_fail(&r->e, &r->path, "out of memory");
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
        return sk_avro_bytes_to_json(b, len);
    if (len > DEC_MAX_BYTES) {
        sk_avro_fail(&r->e, &r->path, "decimal of %zu bytes exceeds %d", len, DEC_MAX_BYTES);
        return NULL;
    }
    return sk_avro_decimal_to_json(b, len, n->scale);
}

static int read_text(reader *r, const uint8_t **b, size_t *len)
{
    if (get_length(r, len) < 0 || get_bytes(r, *len, b) < 0)
        return -1;
    if (!sk_avro_utf8_valid(*b, *len))
        return sk_avro_fail(&r->e, &r->path, "string is not valid UTF-8");
    return 0;
}

static json_t *decode_string(reader *r, const node *n)
{
    size_t len;
    const uint8_t *b = NULL;
    if (read_text(r, &b, &len) < 0)
        return NULL;
    if (n->lt == L_UUID && !sk_avro_uuid_valid((const char *)b, len)) {
        sk_avro_fail(&r->e, &r->path, "invalid uuid");
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
        sk_avro_fail(&r->e, &r->path, "int out of range: %lld", (long long)v);
    else if (n->lt == L_DATE && !(j = sk_avro_date_to_json(v)))
        sk_avro_fail(&r->e, &r->path, "date %lld outside years 0001..9999", (long long)v);
    else if ((n->lt == L_TS_MILLIS || n->lt == L_TS_MICROS) &&
             !(j = sk_avro_timestamp_to_json(v, n->lt == L_TS_MILLIS ? 1000 : 1000000,
                                             n->lt == L_TS_MILLIS ? 3 : 6)))
        sk_avro_fail(&r->e, &r->path, "timestamp %lld outside years 0001..9999", (long long)v);
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
            return sk_avro_fail(&r->e, &r->path, "bad block count");
        c = -c;
    }
    uint64_t room = r->len - r->pos;
    if ((uint64_t)c > (maybe_empty(items) ? room + r->budget : room))
        return sk_avro_fail(&r->e, &r->path, "block count %lld exceeds the remaining input",
                            (long long)c);
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
            size_t saved = sk_avro_path_push(&r->path, "[%zu]", i);
            json_t *item = decode(r, n->items);
            sk_avro_path_pop(&r->path, saved);
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
        return sk_avro_fail(&r->e, &r->path, "map key holds NUL");
    char *k = malloc(len + 1);
    if (!k)
        return sk_avro_fail(&r->e, &r->path, "out of memory");
    memcpy(k, b, len);
    k[len] = '\0';
    size_t saved = sk_avro_path_push(&r->path, ".%s", k);
    json_t *v = NULL;
    if (json_object_get(o, k))
        sk_avro_fail(&r->e, &r->path, "duplicate map key");
    else
        v = decode(r, n->items);
    sk_avro_path_pop(&r->path, saved);
    int rc = v && json_object_set_new(o, k, v) == 0 ? 0 : -1;
    if (v && rc < 0)
        sk_avro_fail(&r->e, &r->path, "out of memory");
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
        size_t saved = sk_avro_path_push(&r->path, ".%s", n->fields[i].name);
        json_t *v = decode(r, n->fields[i].type);
        sk_avro_path_pop(&r->path, saved);
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
        sk_avro_fail(&r->e, &r->path, "union branch %lld out of range (%zu branches)",
                     (long long)idx, n->n);
        return NULL;
    }
    const node *b = n->branches[idx];
    json_t *v = decode(r, b);
    if (!v || n->nu_other >= 0 || b->k == K_NULL)
        return v;
    json_t *o = json_object();
    if (!o || json_object_set_new(o, sk_avro_type_name(b), v) < 0) {
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
        sk_avro_fail(&r->e, &r->path, "enum index %lld out of range (%zu symbols)", (long long)idx,
                     n->n);
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
            sk_avro_fail(&r->e, &r->path, "boolean byte %u is not 0 or 1", *b);
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
        sk_avro_fail(&r->e, &r->path, "nested deeper than %d", SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    r->depth += container;
    size_t start = r->pos;
    json_t *v = decode_value(r, n);
    r->depth -= container;
    if (v && r->pos == start && r->budget-- == 0) {
        json_decref(v);
        sk_avro_fail(&r->e, &r->path, "more than %d values encoded in zero bytes",
                     SK_AVRO_MAX_EMPTY);
        return NULL;
    }
    if (!v && !r->e.set)
        return oom(r);
    return v;
}

/* ---- for avro_resolve.c: the reader's steps ---------------------------------------------- */

json_t *sk_avro_read_value(reader *r, const node *n)
{
    return decode(r, n);
}

int sk_avro_read_long(reader *r, int64_t *out)
{
    return get_long(r, out);
}

int sk_avro_read_bytes(reader *r, size_t n, const uint8_t **out)
{
    return get_bytes(r, n, out);
}

int sk_avro_read_text(reader *r, const uint8_t **b, size_t *len)
{
    return read_text(r, b, len);
}

int sk_avro_read_block(reader *r, const node *items, size_t *count)
{
    return block_count(r, items, count);
}

/* ---- public API -------------------------------------------------------------------------- */

json_t *sk_avro_to_json(const sk_avro_schema *s, const uint8_t *buf, size_t len, char *err,
                        size_t errlen)
{
    reader r = {.p = buf, .len = len, .e = {.err = err, .errlen = errlen}};
    r.budget = SK_AVRO_MAX_EMPTY;
    r.path.buf[0] = '$';
    r.path.len = 1;
    if (len > SK_AVRO_MAX_BYTES) {
        sk_avro_fail(&r.e, NULL, "body of %zu bytes exceeds %u", len, SK_AVRO_MAX_BYTES);
        return NULL;
    }
    json_t *v = decode(&r, s->root);
    if (v && r.pos != len) {
        sk_avro_fail(&r.e, NULL, "%zu trailing bytes after the value", len - r.pos);
        json_decref(v);
        return NULL;
    }
    return v;
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
