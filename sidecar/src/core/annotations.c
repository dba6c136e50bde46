#include "core/annotations.h"
#include "core/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Reads n hex digits at s into *v; -1 when one is not a hex digit or missing. */
static int read_hex(const char *s, const char *end, int n, uint32_t *v)
{
    *v = 0;
    for (int i = 0; i < n; i++) {
        if (s + i >= end || sk_hexval(s[i]) < 0)
            return -1;
        *v = *v * 16 + (uint32_t)sk_hexval(s[i]);
    }
    return 0;
}

static size_t utf8_put(char *out, uint32_t r)
{
    if (r < 0x80) {
        out[0] = (char)r;
        return 1;
    }
    if (r < 0x800) {
        out[0] = (char)(0xc0 | (r >> 6));
        out[1] = (char)(0x80 | (r & 0x3f));
        return 2;
    }
    if (r < 0x10000) {
        out[0] = (char)(0xe0 | (r >> 12));
        out[1] = (char)(0x80 | ((r >> 6) & 0x3f));
        out[2] = (char)(0x80 | (r & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | (r >> 18));
    out[1] = (char)(0x80 | ((r >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((r >> 6) & 0x3f));
    out[3] = (char)(0x80 | (r & 0x3f));
    return 4;
}

static int simple_escape(char c)
{
    static const char from[] = "abfnrtv\\\"", to[] = "\a\b\f\n\r\t\v\\\"";
    const char *hit = c ? strchr(from, c) : NULL;
    return hit ? to[hit - from] : -1;
}

/* Decodes one escape sequence starting after the backslash at *p; appends its bytes at *o.
 * Returns NULL on success, else the reason. */
static const char *unescape(const char **p, const char *end, char **o)
{
    const char *s = *p;
    uint32_t v;
    if (s >= end)
        return "unterminated quoted value";
    if (simple_escape(*s) >= 0) {
        *(*o)++ = (char)simple_escape(*s);
        *p = s + 1;
        return NULL;
    }
    if (*s == 'x') {
        if (read_hex(s + 1, end, 2, &v) < 0)
            return "bad \\x escape: expected two hex digits";
        *p = s + 3;
    } else if (*s >= '0' && *s <= '7') {
        v = 0;
        for (int i = 0; i < 3; i++, s++) {
            if (s >= end || *s < '0' || *s > '7')
                return "bad octal escape: expected three octal digits";
            v = v * 8 + (uint32_t)(*s - '0');
        }
        if (v > 255)
            return "bad octal escape: value above \\377";
        *p = s;
    } else if (*s == 'u' || *s == 'U') {
        int n = *s == 'u' ? 4 : 8;
        if (read_hex(s + 1, end, n, &v) < 0)
            return n == 4 ? "bad \\u escape: expected four hex digits"
                          : "bad \\U escape: expected eight hex digits";
        if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return "bad unicode escape: not a valid code point";
        if (v == 0)
            return "NUL character in value";
        *o += utf8_put(*o, v);
        *p = s + 1 + n;
        return NULL;
    } else {
        return "bad escape sequence";
    }
    if (v == 0)
        return "NUL character in value";
    *(*o)++ = (char)v;
    return NULL;
}

/* Decodes the quoted value at [s, end) into out (room for end - s bytes plus NUL). */
static const char *parse_value(const char *s, const char *end, char *out)
{
    if (s >= end || *s != '"')
        return "value is not a quoted string";
    char *o = out;
    for (s++; s < end && *s != '"';) {
        if (*s == '\0')
            return "NUL character in value";
        if (*s != '\\') {
            *o++ = *s++;
            continue;
        }
        s++;
        const char *why = unescape(&s, end, &o);
        if (why)
            return why;
    }
    if (s >= end)
        return "unterminated quoted value";
    for (s++; s < end; s++)
        if (*s != ' ' && *s != '\t')
            return "unexpected text after the closing quote";
    *o = '\0';
    return NULL;
}

static const char *parse_key(const char *s, const char *eq, char *out)
{
    if (s == eq)
        return "empty key";
    for (const char *p = s; p < eq; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == 0x7f)
            return "invalid character in key";
    memcpy(out, s, (size_t)(eq - s));
    out[eq - s] = '\0';
    return NULL;
}

static int is_blank(const char *s, const char *end)
{
    for (; s < end; s++)
        if (*s != ' ' && *s != '\t')
            return 0;
    return 1;
}

/* One line without its terminator; calls cb or on_error. Returns 1 when malformed. */
static int parse_line(const char *s, const char *end, int line, char *scratch,
                      sk_annotation_line_cb cb, sk_annotation_err_cb on_error, void *ud)
{
    if (is_blank(s, end))
        return 0;
    const char *eq = memchr(s, '=', (size_t)(end - s));
    const char *why = eq ? NULL : "missing '='";
    char *key = scratch, *value = scratch + (end - s) + 1;
    if (!why)
        why = parse_key(s, eq, key);
    if (!why)
        why = parse_value(eq + 1, end, value);
    if (why) {
        if (on_error)
            on_error(ud, line, why);
        return 1;
    }
    if (cb)
        cb(ud, line, key, value);
    return 0;
}

int sk_annotations_parse_lines(const char *text, size_t len, sk_annotation_line_cb cb,
                               sk_annotation_err_cb on_error, void *ud)
{
    char *scratch = malloc(2 * len + 2);
    if (!scratch) {
        if (on_error)
            on_error(ud, 0, "out of memory");
        return 1;
    }
    int bad = 0, line = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        const char *stop = eol > p && eol[-1] == '\r' ? eol - 1 : eol;
        bad += parse_line(p, stop, ++line, scratch, cb, on_error, ud);
        p = nl ? nl + 1 : end;
    }
    free(scratch);
    return bad;
}

typedef struct {
    sk_annotation_cb cb;
    sk_annotation_err_cb on_error;
    void *ud;
} plain_ctx;

static void plain_cb(void *ud, int line, const char *key, const char *value)
{
    plain_ctx *c = ud;
    (void)line;
    if (c->cb)
        c->cb(c->ud, key, value);
}

static void plain_err(void *ud, int line, const char *why)
{
    plain_ctx *c = ud;
    if (c->on_error)
        c->on_error(c->ud, line, why);
}

int sk_annotations_parse(const char *text, size_t len, sk_annotation_cb cb,
                         sk_annotation_err_cb on_error, void *ud)
{
    plain_ctx c = {.cb = cb, .on_error = on_error, .ud = ud};
    return sk_annotations_parse_lines(text, len, plain_cb, plain_err, &c);
}
