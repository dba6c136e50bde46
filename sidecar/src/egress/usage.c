/* Token usage from responses, estimate from requests: see usage.h. */
#define _GNU_SOURCE /* memmem */
#include "egress/usage.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_COUNT 9007199254740992.0 /* 2^53 */

enum { MODE_NONE, MODE_JSON, MODE_SSE };

/* SSE line states */
enum { LINE_START, FIELD, VALUE_FIRST, VALUE, SKIP_LINE };

struct sk_usage {
    int mode;
    size_t max;
    char *buf; /* JSON: the body; SSE: the current event's data */
    size_t len, cap;
    int dead;  /* JSON: not usable, nothing more kept */
    int state; /* SSE */
    char field[5];
    size_t flen;  /* 5: longer than "data" */
    int has_data; /* the event has a data line */
    int overflow; /* the event's data outgrew max */
    int cr;       /* the last byte was CR (a following LF ends nothing) */
    int found;
    int64_t in, out;
    uint64_t skipped;
};

static int mode_of(const char *ct)
{
    if (!ct)
        return MODE_JSON;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    size_t n = strcspn(ct, "; \t");
    if (n == 0 || (n == 16 && strncasecmp(ct, "application/json", n) == 0) ||
        (n > 5 && strncasecmp(ct + n - 5, "+json", 5) == 0))
        return MODE_JSON;
    if (n == 17 && strncasecmp(ct, "text/event-stream", n) == 0)
        return MODE_SSE;
    return MODE_NONE;
}

sk_usage *sk_usage_new(const char *content_type, size_t max_bytes)
{
    sk_usage *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    u->mode = mode_of(content_type);
    u->max = max_bytes ? max_bytes : SK_USAGE_DEFAULT_MAX;
    return u;
}

void sk_usage_free(sk_usage *u)
{
    if (!u)
        return;
    free(u->buf);
    free(u);
}

/* Appends to buf within max; -1 (nothing appended) when it would outgrow max or memory. */
static int append(sk_usage *u, const char *p, size_t n)
{
    if (n > u->max - u->len)
        return -1;
    if (u->len + n > u->cap) {
        size_t cap = u->cap ? u->cap : 256;
        while (cap < u->len + n)
            cap *= 2;
        if (cap > u->max)
            cap = u->max;
        char *b = realloc(u->buf, cap);
        if (!b)
            return -1;
        u->buf = b;
        u->cap = cap;
    }
    memcpy(u->buf + u->len, p, n);
    u->len += n;
    return 0;
}

/* A usage count: a non-negative integral number below 2^53. */
static int count_of(json_t *v, int64_t *out)
{
    if (!json_is_number(v))
        return 0;
    double d = json_number_value(v);
    if (!(d >= 0 && d < MAX_COUNT) || d != (double)(int64_t)d)
        return 0;
    *out = (int64_t)d;
    return 1;
}

/* Reads the usage object of doc, if any, into in/out (a field present replaces the value). */
static int read_usage(json_t *doc, int64_t *in, int64_t *out)
{
    json_t *usage = json_object_get(doc, "usage");
    if (!json_is_object(usage))
        usage = json_object_get(json_object_get(doc, "response"), "usage");
    if (!json_is_object(usage))
        usage = json_object_get(json_object_get(doc, "message"), "usage");
    if (!json_is_object(usage))
        return 0;
    int got = count_of(json_object_get(usage, "prompt_tokens"), in);
    got |= count_of(json_object_get(usage, "input_tokens"), in);
    got |= count_of(json_object_get(usage, "completion_tokens"), out);
    got |= count_of(json_object_get(usage, "output_tokens"), out);
    return got;
}

static json_t *parse(const char *p, size_t n)
{
    json_error_t e;
    return json_loadb(p, n, JSON_DECODE_INT_AS_REAL, &e);
}

/* ---- JSON bodies ---- */

static void feed_json(sk_usage *u, const char *p, size_t n)
{
    if (u->dead)
        return;
    if (u->len == 0) {
        while (n && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) {
            p++;
            n--;
        }
        if (n && *p != '{')
            u->dead = 1;
    }
    if (!u->dead && n && append(u, p, n) < 0)
        u->dead = 1;
    if (u->dead) {
        free(u->buf);
        u->buf = NULL;
        u->len = u->cap = 0;
    }
}

/* ---- Server-Sent Events ---- */

static void event_data(sk_usage *u, const char *p, size_t n)
{
    if (!u->overflow && append(u, p, n) < 0)
        u->overflow = 1;
}

/* A data line starts: lines after the first are joined with LF. */
static void data_line(sk_usage *u)
{
    if (u->has_data)
        event_data(u, "\n", 1);
    u->has_data = 1;
}

/* Does the data hold `"usage"` followed by an object? (OpenAI sends "usage":null in every
 * chunk of a stream with include_usage; those are not worth a parse.) */
static int has_usage_object(const char *p, size_t n)
{
    const char *end = p + n, *q = p;
    while ((q = memmem(q, (size_t)(end - q), "\"usage\"", 7))) {
        q += 7;
        while (q < end && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r' || *q == ':'))
            q++;
        if (q < end && *q == '{')
            return 1;
    }
    return 0;
}

/* A blank line: the event is complete. Only data that may hold a usage object is parsed. */
static void dispatch(sk_usage *u)
{
    size_t i = 0;
    while (i < u->len && (u->buf[i] == ' ' || u->buf[i] == '\n' || u->buf[i] == '\t'))
        i++;
    if (u->overflow) {
        u->skipped++;
    } else if (u->has_data && i < u->len && u->buf[i] == '{' &&
               has_usage_object(u->buf + i, u->len - i)) {
        json_t *doc = parse(u->buf + i, u->len - i);
        if (doc && read_usage(doc, &u->in, &u->out))
            u->found = 1;
        json_decref(doc);
    }
    u->len = 0;
    u->has_data = u->overflow = 0;
}

/* Bytes up to the next line end (not included). */
static size_t run_length(const char *p, size_t n)
{
    size_t i = 0;
    while (i < n && p[i] != '\n' && p[i] != '\r')
        i++;
    return i;
}

/* One byte that is not a line end, in the states that look at single bytes. */
static void sse_byte(sk_usage *u, char c)
{
    switch (u->state) {
    case LINE_START:
        u->state = c == ':' ? SKIP_LINE : FIELD;
        u->field[0] = c;
        u->flen = 1;
        break;
    case FIELD:
        if (c != ':') {
            if (u->flen < 5)
                u->field[u->flen] = c;
            u->flen += u->flen < 5;
        } else if (u->flen == 4 && memcmp(u->field, "data", 4) == 0) {
            data_line(u);
            u->state = VALUE_FIRST;
        } else {
            u->state = SKIP_LINE;
        }
        break;
    case VALUE_FIRST: /* one space after the colon is not part of the value */
        u->state = VALUE;
        if (c != ' ')
            event_data(u, &c, 1);
        break;
    }
}

static void sse_line_end(sk_usage *u)
{
    if (u->state == LINE_START)
        dispatch(u);
    else if (u->state == FIELD && u->flen == 4 && memcmp(u->field, "data", 4) == 0)
        data_line(u); /* "data" alone: an empty data line */
    u->state = LINE_START;
}

static void feed_sse(sk_usage *u, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        char c = p[i];
        if (c == '\n' || c == '\r') {
            if (!(c == '\n' && u->cr))
                sse_line_end(u);
            u->cr = c == '\r';
            i++;
            continue;
        }
        u->cr = 0;
        if (u->state == VALUE || u->state == SKIP_LINE) {
            size_t run = run_length(p + i, n - i);
            if (u->state == VALUE)
                event_data(u, p + i, run);
            i += run;
            continue;
        }
        sse_byte(u, c);
        i++;
    }
}

void sk_usage_feed(sk_usage *u, const char *chunk, size_t len)
{
    if (u->mode == MODE_JSON)
        feed_json(u, chunk, len);
    else if (u->mode == MODE_SSE)
        feed_sse(u, chunk, len);
}

int sk_usage_result(const sk_usage *u, int64_t *input, int64_t *output)
{
    int64_t in = 0, out = 0;
    int found = 0;
    if (u->mode == MODE_SSE && u->found) {
        in = u->in;
        out = u->out;
        found = 1;
    } else if (u->mode == MODE_JSON && !u->dead && u->len) {
        json_t *doc = parse(u->buf, u->len);
        found = doc && read_usage(doc, &in, &out);
        json_decref(doc);
    }
    *input = found ? in : 0;
    *output = found ? out : 0;
    return found;
}

uint64_t sk_usage_skipped(const sk_usage *u)
{
    return u->skipped;
}

/* ---- estimate ---- */

/* Text bytes under v: strings, `text` and `content` of objects, numbers as token ids. */
static double text_bytes(json_t *v, int depth)
{
    if (depth > 64)
        return 0;
    if (json_is_string(v))
        return (double)json_string_length(v);
    if (json_is_number(v))
        return 4;
    double sum = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            sum += text_bytes(json_array_get(v, i), depth + 1);
    } else if (json_is_object(v)) {
        json_t *t = json_object_get(v, "text");
        sum += json_is_string(t) ? (double)json_string_length(t) : 0;
        sum += text_bytes(json_object_get(v, "content"), depth + 1);
    }
    return sum;
}

static const char *const text_keys[] = {"messages", "prompt", "input", "instructions", "system"};
static const char *const output_keys[] = {"max_tokens", "max_completion_tokens",
                                          "max_output_tokens"};

int64_t sk_usage_estimate(const char *body, size_t len)
{
    double text = (double)len, asked = 0;
    json_t *doc = len ? parse(body, len) : NULL;
    if (json_is_object(doc)) {
        double sum = 0;
        int any = 0;
        for (size_t i = 0; i < sizeof text_keys / sizeof text_keys[0]; i++) {
            json_t *v = json_object_get(doc, text_keys[i]);
            any |= v != NULL;
            sum += text_bytes(v, 0);
        }
        if (any)
            text = sum;
        for (size_t i = 0; i < sizeof output_keys / sizeof output_keys[0]; i++) {
            int64_t n;
            if (count_of(json_object_get(doc, output_keys[i]), &n)) {
                asked = (double)n;
                break;
            }
        }
    }
    json_decref(doc);
    double est = ceil(text / 4) + asked;
    return est < MAX_COUNT ? (int64_t)est : (int64_t)MAX_COUNT;
}
