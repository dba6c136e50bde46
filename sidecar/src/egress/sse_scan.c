/* Secret scan over the decoded text of a Server-Sent Events stream (see sse_scan.h). */
#include "egress/sse_scan.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "egress/guard.h"

/* A complete event still held: where it starts in the raw stream, where its decoded text ends
 * in the decoded one. */
typedef struct held_event {
    uint64_t raw_start, dec_end;
} held_event;

struct sk_sse_scan {
    sk_scan *text;             /* over the decoded text */
    uint64_t fed, event_start; /* raw offsets: bytes fed, start of the event being read */
    uint64_t dec;              /* decoded bytes fed to text */
    char *line, *data;         /* the line being read; the event's data */
    size_t line_len, data_len; /* both within SK_SSE_MAX_EVENT together */
    size_t line_cap, data_cap;
    int have_data, after_cr; /* a data field seen; the last byte was CR */
    int first_line, found, gave_up;
    held_event *ev;
    size_t nev, cap;
};

void sk_sse_scan_free(sk_sse_scan *s)
{
    if (!s)
        return;
    sk_scan_free(s->text);
    free(s->line);
    free(s->data);
    free(s->ev);
    free(s);
}

sk_sse_scan *sk_sse_scan_new(const char *const *needles, const size_t *lens, size_t n)
{
    sk_sse_scan *s = calloc(1, sizeof *s);
    if (!s || !(s->text = sk_scan_new(needles, lens, n))) {
        sk_sse_scan_free(s);
        return NULL;
    }
    s->first_line = 1;
    return s;
}

/* Room for need bytes in *buf (doubling); 0, or -1 out of memory. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 256;
    while (n < need)
        n *= 2;
    char *b = realloc(*buf, n);
    if (!b)
        return -1;
    *buf = b;
    *cap = n;
    return 0;
}

static void give_up(sk_sse_scan *s)
{
    s->gave_up = 1;
    s->nev = 0;
}

static void feed_text(sk_sse_scan *s, json_t *v)
{
    if (!json_is_string(v) || s->found)
        return;
    size_t n = json_string_length(v);
    s->found = sk_scan_feed(s->text, json_string_value(v), n);
    s->dec += n;
}

/* The text of one event's JSON data, in the order a client appends it. */
static void feed_event_json(sk_sse_scan *s, json_t *j)
{
    size_t i, k;
    json_t *ch, *tc;
    json_array_foreach(json_object_get(j, "choices"), i, ch)
    {
        json_t *delta = json_object_get(ch, "delta");
        feed_text(s, json_object_get(delta, "content"));
        feed_text(s, json_object_get(ch, "text"));
        json_array_foreach(json_object_get(delta, "tool_calls"), k, tc)
        {
            feed_text(s, json_object_get(json_object_get(tc, "function"), "arguments"));
        }
    }
    json_t *delta = json_object_get(j, "delta");
    feed_text(s, json_is_object(delta) ? json_object_get(delta, "text") : delta);
}

/* Drops the held events that hold no decoded byte the text scan still withholds. */
static void trim(sk_sse_scan *s)
{
    uint64_t keep_from = s->dec - sk_scan_hold(s->text);
    size_t drop = 0;
    while (drop < s->nev && s->ev[drop].dec_end <= keep_from)
        drop++;
    memmove(s->ev, s->ev + drop, (s->nev - drop) * sizeof *s->ev);
    s->nev -= drop;
}

/* The event that started at event_start ends at raw offset end. */
static void dispatch(sk_sse_scan *s, uint64_t end)
{
    if (s->have_data) {
        json_t *j = json_loadb(s->data, s->data_len ? s->data_len - 1 : 0, JSON_ALLOW_NUL, NULL);
        feed_event_json(s, j);
        json_decref(j);
    }
    if (s->nev == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        held_event *ev = realloc(s->ev, cap * sizeof *ev);
        if (!ev) {
            give_up(s);
            return;
        }
        s->ev = ev;
        s->cap = cap;
    }
    s->ev[s->nev++] = (held_event){s->event_start, s->dec};
    s->event_start = end;
    s->data_len = 0;
    s->have_data = 0;
    trim(s);
}

/* A complete line (without its end), the line ending at raw offset end. */
static void on_line(sk_sse_scan *s, const char *line, size_t len, uint64_t end)
{
    if (s->first_line && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    s->first_line = 0;
    if (len == 0) {
        dispatch(s, end);
        return;
    }
    const char *colon = memchr(line, ':', len);
    size_t name = colon ? (size_t)(colon - line) : len;
    if (name != 4 || memcmp(line, "data", 4) != 0)
        return; /* a comment (name 0) or another field */
    const char *v = colon ? colon + 1 : line + len;
    if (v < line + len && *v == ' ')
        v++;
    size_t vlen = (size_t)(line + len - v);
    if (reserve(&s->data, &s->data_cap, s->data_len + vlen + 1) != 0) {
        give_up(s);
        return;
    }
    memcpy(s->data + s->data_len, v, vlen);
    s->data_len += vlen;
    s->data[s->data_len++] = '\n';
    s->have_data = 1;
}

/* Appends raw[0..n) to the line being read; 0, or -1 past the bound or out of memory. */
static int add_to_line(sk_sse_scan *s, const char *raw, size_t n)
{
    if (s->line_len + n + s->data_len > SK_SSE_MAX_EVENT ||
        reserve(&s->line, &s->line_cap, s->line_len + n + 1) != 0)
        return -1;
    memcpy(s->line + s->line_len, raw, n);
    s->line_len += n;
    return 0;
}

int sk_sse_scan_feed(sk_sse_scan *s, const char *chunk, size_t len)
{
    size_t i = 0;
    while (i < len && !s->gave_up && !s->found) {
        if (s->after_cr && chunk[i] == '\n') {
            s->after_cr = 0;
            i++;
            continue;
        }
        s->after_cr = 0;
        size_t j = i;
        while (j < len && chunk[j] != '\n' && chunk[j] != '\r')
            j++;
        if (add_to_line(s, chunk + i, j - i) != 0) {
            give_up(s);
            break;
        }
        if (j == len)
            break;
        s->after_cr = chunk[j] == '\r';
        on_line(s, s->line, s->line_len, s->fed + j + 1);
        s->line_len = 0;
        i = j + 1;
    }
    s->fed += len;
    return s->found;
}

int sk_sse_scan_finish(sk_sse_scan *s)
{
    if (s->gave_up || s->found)
        return s->found;
    if (s->line_len)
        on_line(s, s->line, s->line_len, s->fed);
    s->line_len = 0;
    if (s->have_data)
        dispatch(s, s->fed);
    return s->found;
}

size_t sk_sse_scan_hold(const sk_sse_scan *s)
{
    if (s->gave_up)
        return 0;
    return (size_t)(s->fed - (s->nev ? s->ev[0].raw_start : s->event_start));
}

int sk_sse_scan_gave_up(const sk_sse_scan *s)
{
    return s->gave_up;
}
