/* OTLP protobuf encoding of a batch of spans (proto/otlp_trace.proto). */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "trace/internal.h"

#define MAX_RESOURCE_ATTRS 32

/* The request is written straight from the spans in one pass over an exactly sized buffer:
 * every message's size is computed first (protobuf length prefixes), fields in field-number
 * order and proto3 defaults left out, as protobuf-c packs them (tests unpack it with
 * protobuf-c). Building protobuf-c's message tree instead cost a zeroed kilobyte array per span
 * and reflection per field, most of a traced skiff's encoding CPU. */

typedef struct kv {
    const char *key, *str; /* str NULL: an integer */
    int64_t num;
} kv;

static size_t vlen(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Size of a length-delimited field with a one-byte tag and a body of n bytes. */
static size_t ld(size_t n)
{
    return 1 + vlen(n) + n;
}

static size_t str_field(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n ? ld(n) : 0;
}

static size_t any_size(const kv *k)
{
    return k->str ? ld(strlen(k->str)) : 1 + vlen((uint64_t)k->num);
}

static size_t kv_size(const kv *k)
{
    return str_field(k->key) + ld(any_size(k));
}

static uint8_t *put_varint(uint8_t *p, uint64_t v)
{
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

static uint8_t *put_bytes(uint8_t *p, uint8_t tag, const void *b, size_t n)
{
    *p++ = tag;
    p = put_varint(p, n);
    memcpy(p, b, n);
    return p + n;
}

static uint8_t *put_str(uint8_t *p, uint8_t tag, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    return n ? put_bytes(p, tag, s, n) : p;
}

static uint8_t *put_fixed(uint8_t *p, uint64_t v, int bytes)
{
    for (int i = 0; i < bytes; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

/* A KeyValue as field tag of its parent. */
static uint8_t *put_kv(uint8_t *p, uint8_t tag, const kv *k)
{
    *p++ = tag;
    p = put_varint(p, kv_size(k));
    p = put_str(p, 0x0a, k->key);
    *p++ = 0x12;
    p = put_varint(p, any_size(k));
    if (k->str)
        return put_bytes(p, 0x0a, k->str, strlen(k->str));
    *p++ = 0x18;
    return put_varint(p, (uint64_t)k->num);
}

static kv span_kv(const sk_span *s, unsigned i)
{
    return (kv){s->attrs[i].key, s->attrs[i].str, s->attrs[i].num};
}

static size_t status_size(const sk_span *s)
{
    return str_field(s->message) + (s->error ? 2 : 0);
}

static size_t span_size(const sk_span *s)
{
    size_t n = ld(16) + ld(8) + str_field(s->ctx.tracestate) + (s->has_parent ? ld(8) : 0) +
               str_field(s->name) + (s->kind ? 1 + vlen((uint64_t)s->kind) : 0) +
               (s->start_ns ? 9 : 0) + (s->end_ns ? 9 : 0) + ld(status_size(s)) +
               (s->dropped_attrs ? 1 + vlen(s->dropped_attrs) : 0) + (s->ctx.flags ? 6 : 0);
    for (unsigned i = 0; i < s->nattrs; i++) {
        kv k = span_kv(s, i);
        n += ld(kv_size(&k));
    }
    return n;
}

static uint8_t *put_span(uint8_t *p, const sk_span *s, size_t size)
{
    *p++ = 0x12; /* ScopeSpans.spans */
    p = put_varint(p, size);
    p = put_bytes(p, 0x0a, s->ctx.trace_id, 16);
    p = put_bytes(p, 0x12, s->ctx.span_id, 8);
    p = put_str(p, 0x1a, s->ctx.tracestate);
    if (s->has_parent)
        p = put_bytes(p, 0x22, s->parent_span_id, 8);
    p = put_str(p, 0x2a, s->name);
    if (s->kind) {
        *p++ = 0x30;
        p = put_varint(p, (uint64_t)s->kind);
    }
    if (s->start_ns) {
        *p++ = 0x39;
        p = put_fixed(p, s->start_ns, 8);
    }
    if (s->end_ns) {
        *p++ = 0x41;
        p = put_fixed(p, s->end_ns, 8);
    }
    for (unsigned i = 0; i < s->nattrs; i++) {
        kv k = span_kv(s, i);
        p = put_kv(p, 0x4a, &k);
    }
    if (s->dropped_attrs) {
        *p++ = 0x50;
        p = put_varint(p, s->dropped_attrs);
    }
    *p++ = 0x7a; /* status, always present */
    p = put_varint(p, status_size(s));
    p = put_str(p, 0x12, s->message);
    if (s->error) {
        *p++ = 0x18;
        *p++ = 2; /* STATUS_CODE_ERROR */
    }
    if (s->ctx.flags) {
        *p++ = 0x85; /* field 16, fixed32: a two-byte tag */
        *p++ = 0x01;
        p = put_fixed(p, s->ctx.flags, 4);
    }
    return p;
}

static int hexdigit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

void sk_trace_unescape(char *s)
{
    char *o = s;
    for (; *s; s++) {
        int hi, lo;
        if (*s == '%' && (hi = hexdigit(s[1])) >= 0 && (lo = hexdigit(s[2])) >= 0) {
            *o++ = (char)(hi << 4 | lo);
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o = '\0';
}

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && s[n - 1] == ' ')
        s[--n] = '\0';
    return s;
}

/* Resource attributes from "k=v,k=v" (copy in buf, modified) and service.name; a member
 * without '=' or with an empty key is skipped, service.name from the configuration wins.
 * Returns how many. */
static size_t resource_kvs(kv *k, char *buf, const char *service_name)
{
    size_t n = 0;
    k[n++] = (kv){"service.name", service_name, 0};
    k[n++] = (kv){"telemetry.sdk.name", "skiff", 0};
    k[n++] = (kv){"telemetry.sdk.language", "c", 0};
    for (char *save = NULL, *m = strtok_r(buf, ",", &save); m && n < MAX_RESOURCE_ATTRS;
         m = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(m, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *key = trim(m), *val = trim(eq + 1);
        sk_trace_unescape(val);
        if (*key && strcmp(key, "service.name") != 0)
            k[n++] = (kv){key, val, 0};
    }
    return n;
}

/* The message sizes of a request: resource, scope, scope spans, resource spans. */
typedef struct sizes {
    size_t res, scope, ss, rs;
} sizes;

static sizes request_sizes(const kv *res, size_t nres, const size_t *span_sizes, size_t n)
{
    sizes z = {0, str_field("skiff") + str_field(SKIFF_VERSION), 0, 0};
    for (size_t i = 0; i < nres; i++)
        z.res += ld(kv_size(&res[i]));
    z.ss = ld(z.scope);
    for (size_t i = 0; i < n; i++)
        z.ss += ld(span_sizes[i]);
    z.rs = ld(z.res) + ld(z.ss);
    return z;
}

uint8_t *sk_otlp_encode(sk_span *const *spans, size_t n, const char *service_name,
                        const char *resource_attributes, size_t *len)
{
    kv res[MAX_RESOURCE_ATTRS];
    char *rbuf = strdup(resource_attributes ? resource_attributes : "");
    size_t *span_sizes = malloc((n ? n : 1) * sizeof(*span_sizes));
    uint8_t *out = NULL;
    if (rbuf && span_sizes) {
        size_t nres = resource_kvs(res, rbuf, service_name);
        for (size_t i = 0; i < n; i++)
            span_sizes[i] = span_size(spans[i]);
        sizes z = request_sizes(res, nres, span_sizes, n);
        *len = ld(z.rs);
        if ((out = malloc(*len))) {
            uint8_t *p = out;
            *p++ = 0x0a; /* ExportTraceServiceRequest.resource_spans */
            p = put_varint(p, z.rs);
            *p++ = 0x0a; /* ResourceSpans.resource */
            p = put_varint(p, z.res);
            for (size_t i = 0; i < nres; i++)
                p = put_kv(p, 0x0a, &res[i]);
            *p++ = 0x12; /* ResourceSpans.scope_spans */
            p = put_varint(p, z.ss);
            *p++ = 0x0a; /* ScopeSpans.scope */
            p = put_varint(p, z.scope);
            p = put_str(p, 0x0a, "skiff");
            p = put_str(p, 0x12, SKIFF_VERSION);
            for (size_t i = 0; i < n; i++)
                p = put_span(p, spans[i], span_sizes[i]);
        }
    }
    free(rbuf);
    free(span_sizes);
    return out;
}

uint8_t *sk_trace_gzip(const uint8_t *in, size_t len, size_t *out_len)
{
    z_stream z = {0};
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return NULL;
    uLong cap = deflateBound(&z, (uLong)len);
    uint8_t *out = malloc(cap);
    if (out) {
        z.next_in = (Bytef *)in;
        z.avail_in = (uInt)len;
        z.next_out = out;
        z.avail_out = (uInt)cap;
        if (deflate(&z, Z_FINISH) == Z_STREAM_END) {
            *out_len = (size_t)z.total_out;
        } else {
            free(out);
            out = NULL;
        }
    }
    deflateEnd(&z);
    return out;
}

int sk_otlp_grpc_retryable(int code)
{
    return code == SK_GRPC_CANCELLED || code == SK_GRPC_DEADLINE_EXCEEDED ||
           code == SK_GRPC_ABORTED || code == SK_GRPC_OUT_OF_RANGE || code == SK_GRPC_UNAVAILABLE ||
           code == SK_GRPC_DATA_LOSS;
}
