#include "core/log.h"
#include "core/text.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* Messages longer than this are cut (on a character boundary) and marked with "...". */
#define MSG_MAX 8192
/* Any other string field (kv values, component) is cut at this many bytes. */
#define FIELD_MAX 4096

static struct {
    char service[256];
    sk_log_level level;
    FILE *out;
} g = {"skiff", SK_LOG_INFO, NULL};

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* Field names written by the logger itself; a kv pair may not reuse them. */
static const char *const reserved[] = {"timestamp", "level",    "service_name", "component",
                                       "message",   "trace_id", "span_id",      NULL};

void sk_log_init(const char *service_name, sk_log_level level, FILE *out)
{
    snprintf(g.service, sizeof g.service, "%s", service_name ? service_name : "skiff");
    g.level = level;
    g.out = out;
}

int sk_log_enabled(sk_log_level level)
{
    return level >= g.level;
}

int sk_log_level_parse(const char *name)
{
    if (!name)
        return -1;
    for (int i = 0; i < 4; i++)
        if (strcasecmp(name, level_names[i]) == 0)
            return i;
    if (strcasecmp(name, "warning") == 0)
        return SK_LOG_WARN;
    return -1;
}

/* A growable line buffer; `failed` latches an allocation failure so that the line is dropped
 * instead of written half-built. */
typedef struct {
    char *p;
    size_t len, cap;
    int failed;
    char stack[2048];
} linebuf;

static void lb_put(linebuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap * 2;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *np = b->p == b->stack ? malloc(cap) : realloc(b->p, cap);
        if (!np) {
            b->failed = 1;
            return;
        }
        if (b->p == b->stack)
            memcpy(np, b->stack, b->len);
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void lb_puts(linebuf *b, const char *s)
{
    lb_put(b, s, strlen(s));
}

/* Appends s[0..n) as a JSON string: quotes, backslashes and control characters escaped,
 * ill-formed UTF-8 replaced by U+FFFD, cut after `max` input bytes. */
static void lb_json_str(linebuf *b, const char *s, size_t n, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    int cut = n > max;
    if (cut)
        n = max;
    lb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\', esc[1] = (char)c;
            lb_put(b, esc, 2);
        } else if (c == '\n') {
            lb_put(b, "\\n", 2);
        } else if (c == '\r') {
            lb_put(b, "\\r", 2);
        } else if (c == '\t') {
            lb_put(b, "\\t", 2);
        } else if (c < 0x20 || c == 0x7f) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            lb_put(b, esc, 6);
        } else {
            size_t len = sk_utf8_len(u + i, n - i);
            if (len == 0) {
                /* A sequence cut by truncation is dropped, not replaced. */
                if (cut && n - i < 4 && c >= 0xc2)
                    break;
                lb_put(b, "\xef\xbf\xbd", 3);
                i++;
                continue;
            }
            lb_put(b, s + i, len);
            i += len;
            continue;
        }
        i++;
    }
    if (cut)
        lb_put(b, "...", 3);
    lb_put(b, "\"", 1);
}

static void lb_field(linebuf *b, const char *key, const char *val, size_t max)
{
    lb_put(b, ",", 1);
    lb_json_str(b, key, strlen(key), FIELD_MAX);
    lb_put(b, ":", 1);
    lb_json_str(b, val ? val : "", val ? strlen(val) : 0, max);
}

static int is_reserved(const char *key)
{
    for (int i = 0; reserved[i]; i++)
        if (strcmp(key, reserved[i]) == 0)
            return 1;
    return 0;
}

static void lb_timestamp(linebuf *b)
{
    struct timespec ts;
    struct tm tm;
    char buf[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, sizeof buf - n, ".%03dZ", (int)(ts.tv_nsec / 1000000));
    lb_puts(b, "{\"timestamp\":\"");
    lb_puts(b, buf);
    lb_puts(b, "\"");
}

/* A JSON number as JSON writes it: [-]digits[.digits]. */
static int is_number(const char *s)
{
    s += *s == '-';
    if (*s < '0' || *s > '9')
        return 0;
    s += strspn(s, "0123456789");
    if (*s == '.' && s[1] >= '0' && s[1] <= '9')
        s += 1 + strspn(s + 1, "0123456789");
    return *s == '\0';
}

/* kv pairs whose key collides with a field of the logger are written as "kv_<key>"; a key
 * "#<name>" writes <name> with its value as a JSON number (a string if it is not one). */
static void lb_kv(linebuf *b, const char *const *kv)
{
    for (size_t i = 0; kv && kv[i]; i += 2) {
        const char *key = kv[i], *val = kv[i + 1];
        int num = key[0] == '#';
        key += num;
        if (num && val && is_number(val) && !is_reserved(key)) {
            lb_put(b, ",", 1);
            lb_json_str(b, key, strlen(key), FIELD_MAX);
            lb_put(b, ":", 1);
            lb_puts(b, val);
        } else if (is_reserved(key)) {
            char k[64];
            snprintf(k, sizeof k, "kv_%s", key);
            lb_field(b, k, val, FIELD_MAX);
        } else {
            lb_field(b, key, val, FIELD_MAX);
        }
        if (!val)
            break;
    }
}

static const sk_log_trace *current_trace;

const sk_log_trace *sk_log_set_current(const sk_log_trace *trace)
{
    const sk_log_trace *before = current_trace;
    current_trace = trace;
    return before;
}

void sk_log_write(sk_log_level level, const char *component, const sk_log_trace *trace,
                  const char *const *kv, const char *fmt, ...)
{
    if (!sk_log_enabled(level))
        return;
    char msg[MSG_MAX + 1];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t mlen = n < 0 ? 0 : (size_t)n;

    linebuf b = {.cap = sizeof b.stack};
    b.p = b.stack;
    lb_timestamp(&b);
    unsigned li = (unsigned)level < 4 ? (unsigned)level : SK_LOG_ERROR;
    lb_field(&b, "level", level_names[li], FIELD_MAX);
    lb_field(&b, "service_name", g.service, FIELD_MAX);
    lb_field(&b, "component", component ? component : "", FIELD_MAX);
    lb_put(&b, ",\"message\":", 11);
    lb_json_str(&b, msg, mlen, MSG_MAX);
    if (!trace)
        trace = current_trace;
    lb_field(&b, "trace_id", trace ? trace->trace_id : NULL, 64);
    lb_field(&b, "span_id", trace ? trace->span_id : NULL, 64);
    lb_kv(&b, kv);
    lb_put(&b, "}\n", 2);

    if (!b.failed) {
        FILE *out = g.out ? g.out : stderr;
        /* Nothing sensible is left to do when the log stream itself fails. */
        (void)fwrite(b.p, 1, b.len, out);
        (void)fflush(out);
    }
    if (b.p != b.stack)
        free(b.p);
}
