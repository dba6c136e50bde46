/* OTLP protobuf encoding of a batch of spans (proto/otlp_trace.proto). */
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "otlp_trace.pb-c.h"
#include "trace/internal.h"

#define MAX_RESOURCE_ATTRS 32

typedef struct kvs {
    SkiffOtlp__KeyValue kv[MAX_RESOURCE_ATTRS + SK_SPAN_MAX_ATTRS];
    SkiffOtlp__AnyValue val[MAX_RESOURCE_ATTRS + SK_SPAN_MAX_ATTRS];
    SkiffOtlp__KeyValue *ptr[MAX_RESOURCE_ATTRS + SK_SPAN_MAX_ATTRS];
    size_t n;
} kvs;

static void kv_str(kvs *k, const char *key, const char *value)
{
    SkiffOtlp__KeyValue *kv = &k->kv[k->n];
    SkiffOtlp__AnyValue *v = &k->val[k->n];
    skiff_otlp__key_value__init(kv);
    skiff_otlp__any_value__init(v);
    kv->key = (char *)key;
    kv->value = v;
    v->value_case = SKIFF_OTLP__ANY_VALUE__VALUE_STRING_VALUE;
    v->string_value = (char *)value;
    k->ptr[k->n++] = kv;
}

static void kv_int(kvs *k, const char *key, int64_t value)
{
    kv_str(k, key, "");
    SkiffOtlp__AnyValue *v = &k->val[k->n - 1];
    v->value_case = SKIFF_OTLP__ANY_VALUE__VALUE_INT_VALUE;
    v->int_value = value;
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
 * without '=' or with an empty key is skipped, service.name from the configuration wins. */
static void resource_kvs(kvs *k, char *buf, const char *service_name)
{
    kv_str(k, "service.name", service_name);
    kv_str(k, "telemetry.sdk.name", "skiff");
    kv_str(k, "telemetry.sdk.language", "c");
    for (char *save = NULL, *m = strtok_r(buf, ",", &save); m && k->n < MAX_RESOURCE_ATTRS;
         m = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(m, '=');
        if (!eq)
            continue;
        *eq = '\0';
        char *key = trim(m), *val = trim(eq + 1);
        sk_trace_unescape(val);
        if (*key && strcmp(key, "service.name") != 0)
            kv_str(k, key, val);
    }
}

static void span_msg(SkiffOtlp__Span *o, SkiffOtlp__Status *st, kvs *k, sk_span *s)
{
    skiff_otlp__span__init(o);
    skiff_otlp__status__init(st);
    o->trace_id = (ProtobufCBinaryData){16, s->ctx.trace_id};
    o->span_id = (ProtobufCBinaryData){8, s->ctx.span_id};
    if (s->has_parent)
        o->parent_span_id = (ProtobufCBinaryData){8, s->parent_span_id};
    o->trace_state = s->ctx.tracestate;
    o->name = s->name;
    o->kind = (SkiffOtlp__Span__SpanKind)s->kind;
    o->start_time_unix_nano = s->start_ns;
    o->end_time_unix_nano = s->end_ns;
    o->flags = s->ctx.flags;
    for (unsigned i = 0; i < s->nattrs; i++) {
        if (s->attrs[i].str)
            kv_str(k, s->attrs[i].key, s->attrs[i].str);
        else
            kv_int(k, s->attrs[i].key, s->attrs[i].num);
    }
    o->n_attributes = k->n;
    o->attributes = k->ptr;
    o->dropped_attributes_count = s->dropped_attrs;
    st->code = s->error ? SKIFF_OTLP__STATUS__STATUS_CODE__STATUS_CODE_ERROR
                        : SKIFF_OTLP__STATUS__STATUS_CODE__STATUS_CODE_UNSET;
    st->message = s->message ? s->message : "";
    o->status = st;
}

uint8_t *sk_otlp_encode(sk_span *const *spans, size_t n, const char *service_name,
                        const char *resource_attributes, size_t *len)
{
    kvs *res = calloc(1, sizeof(*res)), *akv = calloc(n ? n : 1, sizeof(*akv));
    SkiffOtlp__Span *o = calloc(n ? n : 1, sizeof(*o)), **op = calloc(n ? n : 1, sizeof(*op));
    SkiffOtlp__Status *st = calloc(n ? n : 1, sizeof(*st));
    char *rbuf = strdup(resource_attributes ? resource_attributes : "");
    uint8_t *out = NULL;
    if (res && akv && o && op && st && rbuf) {
        resource_kvs(res, rbuf, service_name);
        for (size_t i = 0; i < n; i++) {
            span_msg(&o[i], &st[i], &akv[i], spans[i]);
            op[i] = &o[i];
        }
        SkiffOtlp__Resource r = SKIFF_OTLP__RESOURCE__INIT;
        r.n_attributes = res->n;
        r.attributes = res->ptr;
        SkiffOtlp__InstrumentationScope scope = SKIFF_OTLP__INSTRUMENTATION_SCOPE__INIT;
        scope.name = "skiff";
        scope.version = SKIFF_VERSION;
        SkiffOtlp__ScopeSpans ss = SKIFF_OTLP__SCOPE_SPANS__INIT, *ssp = &ss;
        ss.scope = &scope;
        ss.n_spans = n;
        ss.spans = op;
        SkiffOtlp__ResourceSpans rs = SKIFF_OTLP__RESOURCE_SPANS__INIT, *rsp = &rs;
        rs.resource = &r;
        rs.n_scope_spans = 1;
        rs.scope_spans = &ssp;
        SkiffOtlp__ExportTraceServiceRequest req = SKIFF_OTLP__EXPORT_TRACE_SERVICE_REQUEST__INIT;
        req.n_resource_spans = 1;
        req.resource_spans = &rsp;
        *len = skiff_otlp__export_trace_service_request__get_packed_size(&req);
        if ((out = malloc(*len ? *len : 1)))
            skiff_otlp__export_trace_service_request__pack(&req, out);
    }
    free(res);
    free(akv);
    free(o);
    free(op);
    free(st);
    free(rbuf);
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
