#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trace/internal.h"

_Static_assert(sizeof(sk_span) <= 1032, "a span beyond glibc's per-thread cache (trace.h)");

static sk_tracer *current;

void sk_tracer_install(sk_tracer *t)
{
    current = t;
}
sk_tracer *sk_tracer_current(void)
{
    return current;
}

uint64_t sk_trace_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int sk_sampler_parse(sk_sampler *s, const char *name, const char *arg)
{
    static const char *const roots[] = {"always_on", "always_off", "traceidratio"};
    s->parent_based = strncmp(name, "parentbased_", 12) == 0;
    const char *root = s->parent_based ? name + 12 : name;
    s->ratio = 1.0;
    for (int i = 0; i < 3; i++) {
        if (strcmp(root, roots[i]) != 0)
            continue;
        s->root = (sk_sample_root)i;
        if (s->root != SK_SAMPLE_RATIO || !arg || !*arg)
            return 0;
        char *end;
        s->ratio = strtod(arg, &end);
        return *end || !(s->ratio >= 0.0 && s->ratio <= 1.0) ? -1 : 0;
    }
    return -1;
}

int sk_sampler_decide(const sk_sampler *s, const uint8_t trace_id[16], const sk_trace_ctx *parent)
{
    if (!s)
        return parent ? (parent->flags & SK_TRACE_SAMPLED) != 0 : 1;
    if (parent && s->parent_based)
        return (parent->flags & SK_TRACE_SAMPLED) != 0;
    if (s->root != SK_SAMPLE_RATIO)
        return s->root == SK_SAMPLE_ALWAYS_ON;
    uint64_t low = 0; /* the random right half of the trace id */
    for (int i = 8; i < 16; i++)
        low = low << 8 | trace_id[i];
    return (double)(low >> 11) < s->ratio * 9007199254740992.0; /* 2^53 */
}

sk_span *sk_span_start(const sk_trace_ctx *parent, const char *name, sk_span_kind kind)
{
    sk_span *s = calloc(1, sizeof(*s));
    if (!s || (name && !(s->name = strdup(name)))) {
        free(s);
        return NULL;
    }
    if (parent) {
        memcpy(s->ctx.trace_id, parent->trace_id, 16);
        memcpy(s->parent_span_id, parent->span_id, 8);
        memcpy(s->ctx.tracestate, parent->tracestate, sizeof(s->ctx.tracestate));
        s->has_parent = 1;
    } else {
        sk_trace_new_trace_id(s->ctx.trace_id);
    }
    sk_trace_new_span_id(s->ctx.span_id);
    const sk_sampler *smp = current ? sk_tracer_sampler(current) : NULL;
    s->ctx.flags = sk_sampler_decide(smp, s->ctx.trace_id, parent) ? SK_TRACE_SAMPLED : 0;
    s->kind = kind;
    if (sk_span_read(s)) /* the clock only for a span that will be exported */
        s->start_ns = sk_trace_now_ns();
    sk_trace_hex(s->ctx.trace_id, 16, s->trace_hex);
    sk_trace_hex(s->ctx.span_id, 8, s->span_hex);
    return s;
}

int sk_span_name(sk_span *s, const char *prefix, const char *rest)
{
    size_t a = strlen(prefix), b = strlen(rest);
    char *name = malloc(a + b + 1);
    if (!name)
        return -1;
    memcpy(name, prefix, a);
    memcpy(name + a, rest, b + 1);
    free(s->name);
    s->name = name;
    return 0;
}

static sk_span_scope cur; /* the active context */
static sk_log_trace cur_log = {cur.trace_hex, cur.span_hex};

/* A context copied without the unused tail of its tracestate (most often empty: a whole copy
 * of its 513 bytes was most of a scope's cost, three of them per task). */
static void ctx_copy(sk_trace_ctx *to, const sk_trace_ctx *from)
{
    memcpy(to->trace_id, from->trace_id, sizeof to->trace_id);
    memcpy(to->span_id, from->span_id, sizeof to->span_id);
    to->flags = from->flags;
    size_t n = strnlen(from->tracestate, sizeof from->tracestate - 1);
    memcpy(to->tracestate, from->tracestate, n);
    to->tracestate[n] = '\0';
}

void sk_span_enter(const sk_span *s, sk_span_scope *prev)
{
    prev->set = cur.set;
    if (cur.set) {
        ctx_copy(&prev->ctx, &cur.ctx);
        memcpy(prev->trace_hex, cur.trace_hex, sizeof cur.trace_hex);
        memcpy(prev->span_hex, cur.span_hex, sizeof cur.span_hex);
    }
    cur.set = s != NULL;
    if (s) {
        ctx_copy(&cur.ctx, &s->ctx);
        memcpy(cur.trace_hex, s->trace_hex, sizeof cur.trace_hex);
        memcpy(cur.span_hex, s->span_hex, sizeof cur.span_hex);
    }
    sk_log_set_current(cur.set ? &cur_log : NULL);
}

void sk_span_leave(const sk_span_scope *prev)
{
    cur.set = prev->set;
    if (prev->set) {
        ctx_copy(&cur.ctx, &prev->ctx);
        memcpy(cur.trace_hex, prev->trace_hex, sizeof cur.trace_hex);
        memcpy(cur.span_hex, prev->span_hex, sizeof cur.span_hex);
    }
    sk_log_set_current(cur.set ? &cur_log : NULL);
}

const sk_trace_ctx *sk_span_parent_or_active(const sk_trace_ctx *ctx)
{
    return ctx ? ctx : cur.set ? &cur.ctx : NULL;
}

static sk_span_attr *attr_slot(sk_span *s, const char *key)
{
    for (unsigned i = 0; i < s->nattrs; i++)
        if (strcmp(s->attrs[i].key, key) == 0) {
            free(s->attrs[i].str);
            s->attrs[i].str = NULL;
            return &s->attrs[i];
        }
    if (s->nattrs == SK_SPAN_MAX_ATTRS) {
        s->dropped_attrs++;
        return NULL;
    }
    s->attrs[s->nattrs].key = key;
    return &s->attrs[s->nattrs++];
}

void sk_span_set_str(sk_span *s, const char *key, const char *value)
{
    sk_span_attr *a = value ? attr_slot(s, key) : NULL;
    if (a)
        a->str = strdup(value); /* out of memory: the value reads as 0 */
}

void sk_span_set_int(sk_span *s, const char *key, int64_t value)
{
    sk_span_attr *a = attr_slot(s, key);
    if (a)
        a->num = value;
}

void sk_span_set_error(sk_span *s, const char *type, const char *message)
{
    s->error = 1;
    sk_span_set_str(s, "error.type", type);
    free(s->message);
    s->message = message ? strdup(message) : NULL;
}

void sk_span_traceparent(const sk_span *s, char out[SK_TRACEPARENT_LEN + 1])
{
    sk_traceparent_format(s->ctx.trace_id, s->ctx.span_id, s->ctx.flags, out);
}

void sk_span_free(sk_span *s)
{
    if (!s)
        return;
    for (unsigned i = 0; i < s->nattrs; i++)
        free(s->attrs[i].str);
    free(s->name);
    free(s->message);
    free(s);
}

int sk_span_read(const sk_span *s)
{
    return (s->ctx.flags & SK_TRACE_SAMPLED) && (!current || current->exporting);
}

void sk_span_end(sk_span *s)
{
    if (sk_span_read(s))
        s->end_ns = sk_trace_now_ns();
    if (current && (s->ctx.flags & SK_TRACE_SAMPLED))
        sk_tracer_enqueue(current, s);
    else
        sk_span_free(s);
}
