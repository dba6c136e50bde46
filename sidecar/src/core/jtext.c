#include "core/jtext.h"

#include <stdlib.h>
#include <string.h>

#include "core/text.h"

static int grow_slow(sk_jtext *t, size_t n)
{
    if (t->failed)
        return -1;
    size_t cap = t->cap ? t->cap : 1024;
    while (cap < t->len + n)
        cap *= 2;
    char *b = realloc(t->buf, cap);
    if (!b) {
        t->failed = 1;
        return -1;
    }
    t->buf = b;
    t->cap = cap;
    return 0;
}

/* Room for n more bytes: 0, or -1 once out of memory. The check that nearly always passes
 * stays inline in the writers, the realloc out of line. */
static inline int grow(sk_jtext *t, size_t n)
{
    return !t->failed && t->len + n <= t->cap ? 0 : grow_slow(t, n);
}

void sk_jtext_reset(sk_jtext *t)
{
    t->len = 0;
    t->failed = 0;
}

void sk_jtext_free(sk_jtext *t)
{
    free(t->buf);
    *t = (sk_jtext){0};
}

void sk_jtext_raw(sk_jtext *t, const char *s, size_t n)
{
    if (grow(t, n) == 0) {
        memcpy(t->buf + t->len, s, n);
        t->len += n;
    }
}

void sk_jtext_lit(sk_jtext *t, const char *s)
{
    sk_jtext_raw(t, s, strlen(s));
}

/* Bytes of the escaped form of c (1 when it needs none). */
static size_t escape(unsigned char c, char out[6])
{
    static const char hex[] = "0123456789abcdef";
    const char *named = c == '"'    ? "\\\""
                        : c == '\\' ? "\\\\"
                        : c == '\n' ? "\\n"
                        : c == '\r' ? "\\r"
                        : c == '\t' ? "\\t"
                        : c == '\b' ? "\\b"
                        : c == '\f' ? "\\f"
                                    : NULL;
    if (named) {
        memcpy(out, named, 2);
        return 2;
    }
    if (c >= 0x20) {
        out[0] = (char)c;
        return 1;
    }
    memcpy(out, "\\u00", 4);
    out[4] = hex[c >> 4];
    out[5] = hex[c & 15];
    return 6;
}

int sk_jtext_str(sk_jtext *t, const void *s, size_t n)
{
    const unsigned char *p = s ? s : (const unsigned char *)"";
    if (!sk_utf8_valid(p, n))
        return -1;
    if (grow(t, 6 * n + 2) != 0)
        return 0;
    char *o = t->buf + t->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        size_t k = sk_json_plain_prefix(p + i, n - i); /* the runs between escapes, copied */
        memcpy(o, p + i, k);
        o += k;
        i += k;
        if (i < n)
            o += escape(p[i], o);
    }
    *o++ = '"';
    t->len = (size_t)(o - t->buf);
    return 0;
}

void sk_jtext_base64(sk_jtext *t, const void *s, size_t n)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = s;
    if (grow(t, 4 * ((n + 2) / 3) + 2) != 0)
        return;
    char *o = t->buf + t->len;
    *o++ = '"';
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) |
                     (i + 2 < n ? p[i + 2] : 0);
        *o++ = abc[v >> 18 & 63];
        *o++ = abc[v >> 12 & 63];
        *o++ = i + 1 < n ? abc[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? abc[v & 63] : '=';
    }
    *o++ = '"';
    t->len = (size_t)(o - t->buf);
}

/* Digits written backwards by hand: a handful per Kafka task frame, and snprintf's format
 * machinery cost more than the digits. */
void sk_jtext_int(sk_jtext *t, int64_t v)
{
    char num[24], *p = num + sizeof num;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v; /* INT64_MIN has no int64 opposite */
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    sk_jtext_raw(t, p, (size_t)(num + sizeof num - p));
}

static int dump_cb(const char *buf, size_t size, void *data)
{
    sk_jtext *t = data;
    sk_jtext_raw(t, buf, size);
    return t->failed ? -1 : 0;
}

void sk_jtext_json(sk_jtext *t, const json_t *v)
{
    if (!t->failed && json_dump_callback(v, dump_cb, t, JSON_COMPACT | JSON_ENCODE_ANY) != 0)
        t->failed = 1;
}
