#include "secrets/secret.h"

#include <errno.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/log.h"

#define DEFAULT_INTERVAL_MS 2000

typedef struct sub {
    sk_secret_cb cb;
    void *ud;
} sub;

struct sk_secret {
    char *name;
    char *origin; /* "file:<path>" or "literal" */
    sk_secret_kind kind;
    char *path; /* file */
    char *value;
    size_t len;
    uint64_t version;
    struct stat st; /* of the file as last read */
    struct event *timer;
    int failing; /* the last reload failed (logged once per streak) */
    sub *subs;
    size_t nsubs, capsubs;
    int notifying;
    sk_series *m_ok, *m_error, *m_changed;
    sk_secret_resolver resolver; /* vault: the one that attached it */
    int pending;                 /* vault: no value read yet */
    sk_secret *prev, *next;      /* every live secret (sk_secret_values) */
};

static sk_secret_resolver g_resolver; /* loop thread only */
static sk_secret *g_live;             /* loop thread only */

static void live_add(sk_secret *s)
{
    s->next = g_live;
    if (g_live)
        g_live->prev = s;
    g_live = s;
}

static void live_remove(sk_secret *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (g_live == s)
        g_live = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

size_t sk_secret_values(sk_secret_kind kind, const char **vals, size_t *lens, size_t max)
{
    size_t n = 0;
    for (const sk_secret *s = g_live; s && n < max; s = s->next)
        if (s->kind == kind && s->value && s->len > 0) {
            vals[n] = s->value;
            lens[n++] = s->len;
        }
    return n;
}

void sk_secret_set_resolver(const sk_secret_resolver *r)
{
    g_resolver = r ? *r : (sk_secret_resolver){0};
}

/* ---- references ---- */

static int has_ctl(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 1;
    return 0;
}

/* vault:<mount>/<path>#<field>: a mount without '/', a path, a field, none empty, none with
 * whitespace or control characters, exactly one '#'. */
static int parse_vault(const char *v, sk_secret_ref *ref, char *err, size_t errlen)
{
    const char *slash = strchr(v, '/'), *hash = strchr(v, '#');
    if (!slash || !hash || hash < slash || strchr(hash + 1, '#') || slash == v ||
        hash == slash + 1 || !hash[1] || strpbrk(v, " \t") || has_ctl(v, strlen(v))) {
        snprintf(err, errlen, "malformed vault reference: expected vault:<mount>/<path>#<field>");
        return -1;
    }
    ref->kind = SK_SECRET_VAULT;
    ref->mount = v;
    ref->mount_len = (size_t)(slash - v);
    ref->path = slash + 1;
    ref->path_len = (size_t)(hash - slash - 1);
    ref->field = hash + 1;
    ref->field_len = strlen(hash + 1);
    for (size_t i = 0; i < ref->path_len; i++)
        if (ref->path[i] == '/' && (i == 0 || i + 1 == ref->path_len || ref->path[i + 1] == '/')) {
            snprintf(err, errlen, "malformed vault reference: empty path segment");
            return -1;
        }
    return 0;
}

int sk_secret_ref_parse(const char *text, sk_secret_ref *ref, char *err, size_t errlen)
{
    *ref = (sk_secret_ref){.kind = SK_SECRET_LITERAL};
    if (!text)
        text = "";
    if (strncmp(text, "file:", 5) == 0) {
        const char *p = text + 5;
        if (!*p || has_ctl(p, strlen(p))) {
            snprintf(err, errlen, "malformed file reference: expected file:<path>");
            return -1;
        }
        ref->kind = SK_SECRET_FILE;
        ref->path = p;
        ref->path_len = strlen(p);
        return 0;
    }
    if (strncmp(text, "vault:", 6) == 0)
        return parse_vault(text + 6, ref, err, errlen);
    ref->path = text;
    ref->path_len = strlen(text);
    return 0;
}

/* ---- values ---- */

static void wipe_free(char *p, size_t n)
{
    if (p) {
        explicit_bzero(p, n);
        free(p);
    }
}

/* Reads a secret file into a new buffer (one trailing "\n" or "\r\n" dropped). */
static char *read_secret_file(const char *path, size_t *len, struct stat *st, char *err,
                              size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "file %s cannot be read: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(SK_SECRET_MAX_BYTES + 1);
    size_t n = buf ? fread(buf, 1, SK_SECRET_MAX_BYTES + 1, f) : 0;
    int bad = !buf || ferror(f) || n > SK_SECRET_MAX_BYTES || fstat(fileno(f), st) != 0;
    if (bad)
        snprintf(err, errlen, "file %s %s", path,
                 !buf                      ? "cannot be read: out of memory"
                 : n > SK_SECRET_MAX_BYTES ? "is larger than 64KiB"
                                           : "cannot be read: read error");
    else if (memchr(buf, '\0', n))
        snprintf(err, errlen, "file %s holds a NUL byte", path), bad = 1;
    fclose(f);
    if (bad) {
        wipe_free(buf, SK_SECRET_MAX_BYTES + 1);
        return NULL;
    }
    if (n && buf[n - 1] == '\n')
        n--;
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    *len = n;
    return buf;
}

/* A vault: secret: empty until its resolver sets the value. */
static sk_secret *attach_vault(sk_secret *s, const char *text, const sk_secret_ref *ref, char *err,
                               size_t errlen)
{
    char why[200];
    if (!(s->origin = strdup(text)) || !(s->value = strdup(""))) {
        snprintf(err, errlen, "%s: out of memory", s->name);
        sk_secret_free(s);
        return NULL;
    }
    if (g_resolver.attach(g_resolver.ud, s, ref, why, sizeof why) != 0) {
        snprintf(err, errlen, "%s: %s", s->name, why);
        sk_secret_free(s);
        return NULL;
    }
    s->resolver = g_resolver;
    s->pending = 1;
    return s;
}

sk_secret *sk_secret_new(const char *name, const char *text, char *err, size_t errlen)
{
    char why[160];
    sk_secret_ref ref;
    if (sk_secret_ref_parse(text, &ref, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return NULL;
    }
    if (ref.kind == SK_SECRET_VAULT && !g_resolver.attach) {
        snprintf(err, errlen, "%s: a vault: reference needs the Vault client (set vault.address)",
                 name);
        return NULL;
    }
    sk_secret *s = calloc(1, sizeof *s);
    if (s)
        live_add(s);
    if (!s || !(s->name = strdup(name)))
        goto oom;
    s->kind = ref.kind;
    s->version = 1;
    if (ref.kind == SK_SECRET_LITERAL) {
        if (!(s->origin = strdup("literal")) || !(s->value = strdup(text)))
            goto oom;
        s->len = strlen(text);
        return s;
    }
    if (ref.kind == SK_SECRET_VAULT)
        return attach_vault(s, text, &ref, err, errlen);
    if (!(s->path = strdup(ref.path)) || !(s->origin = strdup(text)))
        goto oom;
    if (!(s->value = read_secret_file(s->path, &s->len, &s->st, why, sizeof why))) {
        snprintf(err, errlen, "%s: %s", name, why);
        sk_secret_free(s);
        return NULL;
    }
    return s;
oom:
    snprintf(err, errlen, "%s: out of memory", name);
    sk_secret_free(s);
    return NULL;
}

void sk_secret_free(sk_secret *s)
{
    if (!s)
        return;
    live_remove(s);
    if (s->timer)
        event_free(s->timer);
    if (s->resolver.detach)
        s->resolver.detach(s->resolver.ud, s);
    wipe_free(s->value, s->len);
    free(s->name);
    free(s->origin);
    free(s->path);
    free(s->subs);
    free(s);
}

const char *sk_secret_value(const sk_secret *s, size_t *len)
{
    if (len)
        *len = s ? s->len : 0;
    return s ? s->value : "";
}

const char *sk_secret_name(const sk_secret *s)
{
    return s->name;
}

const char *sk_secret_origin(const sk_secret *s)
{
    return s->origin;
}

sk_secret_kind sk_secret_get_kind(const sk_secret *s)
{
    return s->kind;
}

uint64_t sk_secret_version(const sk_secret *s)
{
    return s->version;
}

/* ---- changes ---- */

static void notify(sk_secret *s)
{
    s->notifying = 1;
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i].cb)
            s->subs[i].cb(s->subs[i].ud, s);
    s->notifying = 0;
    size_t k = 0;
    for (size_t i = 0; i < s->nsubs; i++)
        if (s->subs[i].cb)
            s->subs[k++] = s->subs[i];
    s->nsubs = k;
}

static void count(sk_series *m)
{
    if (m)
        sk_series_add(m, 1);
}

int sk_secret_reload(sk_secret *s)
{
    if (!s || s->kind != SK_SECRET_FILE)
        return 0;
    char why[320];
    size_t len;
    struct stat st;
    char *v = read_secret_file(s->path, &len, &st, why, sizeof why);
    if (!v) {
        count(s->m_error);
        if (!s->failing)
            SK_LOG(SK_LOG_WARN, "secret", NULL, SK_KV("secret", s->name),
                   "%s: %s; the previous value stays in use", s->name, why);
        s->failing = 1;
        return -1;
    }
    count(s->m_ok);
    s->failing = 0;
    s->st = st;
    if (len == s->len && memcmp(v, s->value, len) == 0) {
        wipe_free(v, len);
        return 0;
    }
    wipe_free(s->value, s->len);
    s->value = v;
    s->len = len;
    s->version++;
    count(s->m_changed);
    SK_LOG(SK_LOG_INFO, "secret", NULL, SK_KV("secret", s->name), "%s: new value read from %s",
           s->name, s->origin);
    notify(s);
    return 1;
}

static int stat_changed(const struct stat *a, const struct stat *b)
{
    return a->st_dev != b->st_dev || a->st_ino != b->st_ino || a->st_size != b->st_size ||
           a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_secret *s = arg;
    struct stat st;
    /* stat follows the symlinks of a Kubernetes volume (..data -> ..<timestamp>). A file that
     * vanished is read again too, so the failure is logged and counted. */
    if (stat(s->path, &st) != 0 || stat_changed(&st, &s->st) || s->failing)
        sk_secret_reload(s);
}

int sk_secret_watch(sk_secret *s, struct event_base *base, sk_metrics *m, int64_t interval_ms)
{
    if (!s || s->kind != SK_SECRET_FILE || s->timer)
        return 0;
    if (m) {
        sk_metric *f = sk_metrics_counter(
            m, "skiff_secret_reloads_total",
            "Secret files read again after a change, by setting and result (ok: same value, "
            "changed: new value in use, error: unreadable, previous value kept).",
            (const char *const[]){"secret", "result", NULL});
        s->m_ok = sk_metric_series(f, (const char *const[]){s->name, "ok"});
        s->m_changed = sk_metric_series(f, (const char *const[]){s->name, "changed"});
        s->m_error = sk_metric_series(f, (const char *const[]){s->name, "error"});
    }
    if (interval_ms <= 0)
        interval_ms = DEFAULT_INTERVAL_MS;
    struct timeval tv = {.tv_sec = interval_ms / 1000, .tv_usec = (interval_ms % 1000) * 1000};
    if (!(s->timer = event_new(base, -1, EV_PERSIST, on_timer, s)) || event_add(s->timer, &tv))
        return -1;
    return 0;
}

int sk_secret_set_value(sk_secret *s, const char *value, size_t len)
{
    if (!s->pending && len == s->len && memcmp(value, s->value, len) == 0)
        return 0;
    char *v = malloc(len + 1);
    if (!v)
        return -1;
    memcpy(v, value, len);
    v[len] = '\0';
    wipe_free(s->value, s->len);
    s->value = v;
    s->len = len;
    s->version++;
    s->pending = 0;
    notify(s);
    return 1;
}

int sk_secret_pending(const sk_secret *s)
{
    return s && s->pending;
}

void sk_secret_forget_resolver(sk_secret *s)
{
    s->resolver = (sk_secret_resolver){0};
}

int sk_secret_subscribe(sk_secret *s, sk_secret_cb cb, void *ud)
{
    if (s->nsubs == s->capsubs) {
        size_t cap = s->capsubs ? s->capsubs * 2 : 4;
        sub *n = realloc(s->subs, cap * sizeof *n);
        if (!n)
            return -1;
        s->subs = n;
        s->capsubs = cap;
    }
    s->subs[s->nsubs++] = (sub){cb, ud};
    return 0;
}

void sk_secret_unsubscribe(sk_secret *s, sk_secret_cb cb, void *ud)
{
    for (size_t i = 0; s && i < s->nsubs; i++)
        if (s->subs[i].cb == cb && s->subs[i].ud == ud) {
            if (s->notifying) {
                s->subs[i].cb = NULL;
            } else {
                memmove(&s->subs[i], &s->subs[i + 1], (s->nsubs - i - 1) * sizeof(sub));
                s->nsubs--;
            }
            return;
        }
}

void sk_secret_scrub(const sk_secret *s, char *text)
{
    if (!s || !text || s->len < 4)
        return;
    for (char *p = strstr(text, s->value); p; p = strstr(p + s->len, s->value))
        memset(p, '*', s->len);
}
