#include "secrets/grants.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "secrets/secret.h"

#define DEFAULT_TOKEN_WAIT_MS 10000

/* ---- allow-list ---- */

/* The path has no empty, "." or ".." segment (Vault would clean it into another path). */
static int segments_ok(const char *p, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0 || (len == 1 && p[start] == '.') ||
            (len == 2 && p[start] == '.' && p[start + 1] == '.'))
            return 0;
        start = i + 1;
    }
    return 1;
}

static int parse_vault_ref(const char *text, sk_secret_ref *ref, char *err, size_t errlen)
{
    if (sk_secret_ref_parse(text, ref, err, errlen) != 0)
        return -1;
    if (ref->kind != SK_SECRET_VAULT) {
        snprintf(err, errlen, "expected vault:<mount>/<path>#<field>");
        return -1;
    }
    if (!segments_ok(ref->mount, ref->mount_len) || !segments_ok(ref->path, ref->path_len)) {
        snprintf(err, errlen, "a path segment is empty, \".\" or \"..\"");
        return -1;
    }
    return 0;
}

int sk_grant_pattern_check(const char *pattern, char *err, size_t errlen)
{
    sk_secret_ref r;
    if (parse_vault_ref(pattern, &r, err, errlen) != 0)
        return -1;
    const char *star = memchr(r.mount, '*', r.mount_len);
    const char *pstar = memchr(r.path, '*', r.path_len);
    const char *fstar = memchr(r.field, '*', r.field_len);
    int last_segment =
        pstar && pstar == r.path + r.path_len - 1 && (r.path_len == 1 || pstar[-1] == '/');
    if (star || (pstar && !last_segment) || (fstar && r.field_len != 1)) {
        snprintf(err, errlen, "`*` only as the whole field or the whole last path segment");
        return -1;
    }
    return 0;
}

int sk_grant_reference_check(const char *reference, char *err, size_t errlen)
{
    sk_secret_ref r;
    if (parse_vault_ref(reference, &r, err, errlen) != 0)
        return -1;
    if (strchr(reference, '*')) {
        snprintf(err, errlen, "`*` in a reference");
        return -1;
    }
    return 0;
}

int sk_grant_match(const char *pattern, const char *reference)
{
    sk_secret_ref p, r;
    char err[160];
    if (sk_grant_pattern_check(pattern, err, sizeof err) != 0 ||
        sk_grant_reference_check(reference, err, sizeof err) != 0)
        return 0;
    sk_secret_ref_parse(pattern, &p, err, sizeof err);
    sk_secret_ref_parse(reference, &r, err, sizeof err);
    if (p.mount_len != r.mount_len || memcmp(p.mount, r.mount, p.mount_len) != 0)
        return 0;
    if (!(p.field_len == 1 && p.field[0] == '*') &&
        (p.field_len != r.field_len || memcmp(p.field, r.field, p.field_len) != 0))
        return 0;
    if (p.path[p.path_len - 1] != '*')
        return p.path_len == r.path_len && memcmp(p.path, r.path, p.path_len) == 0;
    size_t prefix = p.path_len - 1; /* the pattern path without its final star */
    return r.path_len > prefix && memcmp(p.path, r.path, prefix) == 0;
}

/* ---- state ---- */

typedef struct waiter {
    sk_reply *reply;
    struct event *timer; /* the longest wait (token calls; secret calls waiting for a login) */
    struct audience *aud;
    struct cached *c;
    struct waiter *next;
} waiter;

/* A reference read for handlers: the last value (wiped when replaced or freed). */
typedef struct cached {
    struct sk_grants *g;
    char *reference;
    char *value;
    size_t len;
    int64_t version;
    int64_t read_ms;  /* monotonic; 0: no value */
    int64_t fresh_ms; /* the value counts as current this long after read_ms */
    sk_vault_read *rd;
    waiter *waiters;
    struct cached *next;
} cached;

typedef struct audience {
    struct sk_grants *g;
    char *name;
    sk_oauth_client *client; /* NULL until the first call */
    waiter *waiters;
} audience;

struct sk_grants {
    struct event_base *base;
    sk_vault *vault;
    sk_oauth *oauth;
    sk_oauth_opts client;
    int64_t token_wait_ms;
    int64_t secret_wait_ms;
    char **patterns;
    size_t npatterns;
    audience *auds;
    size_t nauds;
    cached *cache;
    size_t ncached;
    sk_series *s_ok, *s_cached, *s_forbidden, *s_not_found, *s_unavailable, *s_invalid;
    sk_series *t_ok, *t_forbidden, *t_unavailable, *t_invalid;
};

static int64_t now_ms(void)
{
    return (int64_t)(sk_mono_s() * 1000);
}

static void count(sk_series *s)
{
    if (s)
        sk_series_add(s, 1);
}

static void wipe(char **p, size_t n)
{
    if (*p) {
        explicit_bzero(*p, n);
        free(*p);
    }
    *p = NULL;
}

/* ---- secret ---- */

static void answer_value(cached *c, sk_reply *reply, sk_series *s)
{
    count(s);
    sk_reply_ok(reply, json_pack("{s:s%, s:I}", "value", c->value, c->len, "version",
                                 (json_int_t)c->version));
}

static void waiter_free(waiter *w)
{
    if (w->timer)
        event_free(w->timer);
    free(w);
}

static void cached_free(cached *c)
{
    sk_vault_read_cancel(c->rd);
    while (c->waiters) {
        waiter *w = c->waiters;
        c->waiters = w->next;
        count(c->g->s_unavailable);
        sk_reply_error(w->reply, "unavailable", "skiff is shutting down");
        waiter_free(w);
    }
    wipe(&c->value, c->len);
    free(c->reference);
    free(c);
}

static void cached_unlink(sk_grants *g, cached *c)
{
    for (cached **p = &g->cache; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            g->ncached--;
            return;
        }
}

/* Every waiter of c gets the value (or the error when code is set). */
static void answer_all(cached *c, const char *code, sk_series *s, const char *fmt, const char *a)
{
    while (c->waiters) {
        waiter *w = c->waiters;
        c->waiters = w->next;
        if (code) {
            count(s);
            sk_reply_error(w->reply, code, fmt, c->reference, a);
        } else
            answer_value(c, w->reply, s);
        waiter_free(w);
    }
}

static void on_secret(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                      int64_t version, int64_t lease_ms, const char *why)
{
    cached *c = ud;
    sk_grants *g = c->g;
    c->rd = NULL;
    if (verdict == SK_VAULT_OK) {
        char *copy = malloc(len + 1);
        if (copy) {
            memcpy(copy, value, len);
            copy[len] = '\0';
            wipe(&c->value, c->len);
            c->value = copy;
            c->len = len;
            c->version = version;
            c->read_ms = now_ms();
            /* A lease shorter than the refresh interval: current for 2/3 of it. */
            c->fresh_ms = sk_vault_refresh_ms(g->vault);
            if (lease_ms > 0 && lease_ms * 2 / 3 < c->fresh_ms)
                c->fresh_ms = lease_ms * 2 / 3;
        }
    }
    if (verdict == SK_VAULT_NOT_FOUND) {
        SK_WARN("grants", "secret call for %s: not found in Vault (%s)", c->reference, why);
        answer_all(c, "not_found", g->s_not_found, "%s: no such secret or field%s", "");
        cached_unlink(g, c);
        cached_free(c);
        return;
    }
    if (c->value) { /* a new value, or the last one when Vault could not answer */
        if (verdict != SK_VAULT_OK)
            SK_WARN("grants",
                    "secret call for %s: Vault failed (%s); answering the value read "
                    "before",
                    c->reference, why);
        answer_all(c, NULL, verdict == SK_VAULT_OK ? g->s_ok : g->s_cached, NULL, NULL);
        return;
    }
    SK_WARN("grants", "secret call for %s: unavailable (%s)", c->reference, why);
    answer_all(c, "unavailable", g->s_unavailable, "%s: Vault cannot answer now (%s)", why);
}

static cached *cache_get(sk_grants *g, const char *reference)
{
    for (cached *c = g->cache; c; c = c->next)
        if (strcmp(c->reference, reference) == 0)
            return c;
    if (g->ncached >= SK_GRANTS_MAX_CACHED)
        return NULL;
    cached *c = calloc(1, sizeof *c);
    if (c && !(c->reference = strdup(reference))) {
        free(c);
        c = NULL;
    }
    if (c) {
        c->g = g;
        c->next = g->cache;
        g->cache = c;
        g->ncached++;
    }
    return c;
}

static int allowed(const sk_grants *g, const char *reference)
{
    for (size_t i = 0; i < g->npatterns; i++)
        if (sk_grant_match(g->patterns[i], reference))
            return 1;
    return 0;
}

/* Reads c again unless a read is running; 0, or -1 when no read could start. */
static int refresh(sk_grants *g, cached *c)
{
    if (c->rd)
        return 0;
    sk_secret_ref ref;
    char err[160];
    sk_secret_ref_parse(c->reference, &ref, err, sizeof err);
    c->rd = g->vault ? sk_vault_read_start(g->vault, &ref, on_secret, c) : NULL;
    return c->rd ? 0 : -1;
}

/* The wait for a login is over: this call gets `unavailable`. */
static void on_login_wait_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    waiter *w = arg;
    cached *c = w->c;
    for (waiter **p = &c->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            break;
        }
    count(c->g->s_unavailable);
    SK_WARN("grants", "secret call for %s: unavailable (no Vault login within %lld ms)",
            c->reference, (long long)c->g->secret_wait_ms);
    sk_reply_error(w->reply, "unavailable", "%s: Vault cannot answer now (not logged in)",
                   c->reference);
    waiter_free(w);
}

/* Logged in to Vault: the calls that waited for it are read now. */
static void on_login(void *ud)
{
    sk_grants *g = ud;
    for (cached *c = g->cache; c; c = c->next)
        if (c->waiters && !c->rd)
            refresh(g, c);
}

/* No read can start (not logged in) and nothing is cached: w waits for the next login, up to
 * secret_wait_ms. 0, or -1 (out of memory). */
static int wait_for_login(sk_grants *g, cached *c, waiter *w)
{
    struct timeval tv = {.tv_sec = g->secret_wait_ms / 1000,
                         .tv_usec = (g->secret_wait_ms % 1000) * 1000};
    if (!g->vault || !(w->timer = evtimer_new(g->base, on_login_wait_over, w)))
        return -1;
    w->c = c;
    evtimer_add(w->timer, &tv);
    return 0;
}

static void method_secret(void *ud, const json_t *params, sk_reply *reply)
{
    sk_grants *g = ud;
    const char *reference = json_string_value(json_object_get(params, "reference"));
    char err[160];
    if (!reference || sk_grant_reference_check(reference, err, sizeof err) != 0) {
        count(g->s_invalid);
        SK_WARN("grants", "secret call refused: invalid params (%s)",
                reference ? err : "params.reference: expected a string");
        sk_reply_error(reply, "invalid_params", "params.reference: %s",
                       reference ? err : "expected vault:<mount>/<path>#<field>");
        return;
    }
    if (!allowed(g, reference)) {
        count(g->s_forbidden);
        SK_WARN("grants", "secret call for %.300s refused: not allowed by handler.secrets",
                reference);
        sk_reply_error(reply, "forbidden", "%.300s: not allowed for this pod (handler.secrets)",
                       reference);
        return;
    }
    cached *c = cache_get(g, reference);
    waiter *w = c ? calloc(1, sizeof *w) : NULL;
    if (c && c->value && now_ms() - c->read_ms < c->fresh_ms) {
        free(w);
        answer_value(c, reply, g->s_cached);
        return;
    }
    if (!w || (refresh(g, c) != 0 && (c->value || wait_for_login(g, c, w) != 0))) {
        if (w)
            waiter_free(w);
        if (c && c->value) {
            answer_value(c, reply, g->s_cached);
            return;
        }
        count(g->s_unavailable);
        SK_WARN("grants", "secret call for %.300s: unavailable (%s)", reference,
                !c ? "too many distinct references cached" : "not logged in to Vault");
        sk_reply_error(reply, "unavailable", "%.300s: Vault cannot answer now", reference);
        return;
    }
    w->reply = reply;
    w->next = c->waiters;
    c->waiters = w;
}

/* ---- token ---- */

static void token_reply(audience *a, waiter *w, const char *token)
{
    sk_grants *g = a->g;
    if (token) {
        count(g->t_ok);
        sk_reply_ok(w->reply, json_pack("{s:s, s:I}", "access_token", token, "expires_at",
                                        (json_int_t)sk_oauth_token_expires_wall_ms(a->client)));
    } else {
        char why[256] = "no token";
        if (a->client)
            sk_oauth_ready(a->client, why, sizeof why);
        count(g->t_unavailable);
        SK_WARN("grants", "token call for audience %s: unavailable (%s)", a->name, why);
        sk_reply_error(w->reply, "unavailable", "no token for audience %s (%s)", a->name, why);
    }
    if (w->timer)
        event_free(w->timer);
    free(w);
}

static void waiter_unlink(audience *a, waiter *w)
{
    for (waiter **p = &a->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            return;
        }
}

static void on_token(void *ud)
{
    audience *a = ud;
    const char *t = sk_oauth_token_get(a->client);
    while (t && a->waiters) {
        waiter *w = a->waiters;
        a->waiters = w->next;
        token_reply(a, w, t);
    }
}

static void on_wait_over(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    waiter *w = arg;
    waiter_unlink(w->aud, w);
    token_reply(w->aud, w, sk_oauth_token_get(w->aud->client));
}

static int ensure_client(sk_grants *g, audience *a, char *err, size_t errlen)
{
    if (a->client)
        return 0;
    if (!g->oauth) {
        snprintf(err, errlen, "no OAuth client configured (oauth.client_id)");
        return -1;
    }
    sk_oauth_opts o = g->client;
    o.audience = a->name;
    char name[128];
    snprintf(name, sizeof name, "handler:%s", a->name);
    o.name = name;
    if (!(a->client = sk_oauth_client_get(g->oauth, &o, err, errlen)))
        return -1;
    if (sk_oauth_listen(a->client, on_token, a) != 0) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

static void method_token(void *ud, const json_t *params, sk_reply *reply)
{
    sk_grants *g = ud;
    const char *name = json_string_value(json_object_get(params, "audience"));
    if (!name) {
        count(g->t_invalid);
        SK_WARN("grants", "token call refused: params.audience is not a string");
        sk_reply_error(reply, "invalid_params", "params.audience: expected a string");
        return;
    }
    audience *a = NULL;
    for (size_t i = 0; i < g->nauds && !a; i++)
        if (strcmp(g->auds[i].name, name) == 0)
            a = &g->auds[i];
    if (!a) {
        count(g->t_forbidden);
        SK_WARN("grants",
                "token call for audience %.200s refused: not in "
                "handler.token_audiences",
                name);
        sk_reply_error(reply, "forbidden",
                       "audience %.200s: not allowed for this pod "
                       "(handler.token_audiences)",
                       name);
        return;
    }
    char err[256];
    waiter *w = calloc(1, sizeof *w);
    if (!w || ensure_client(g, a, err, sizeof err) != 0 ||
        !(w->timer = evtimer_new(g->base, on_wait_over, w))) {
        if (!w)
            snprintf(err, sizeof err, "out of memory");
        free(w);
        count(g->t_unavailable);
        SK_WARN("grants", "token call for audience %s: unavailable (%s)", a->name, err);
        sk_reply_error(reply, "unavailable", "audience %s: %s", a->name, err);
        return;
    }
    *w = (waiter){.reply = reply, .timer = w->timer, .aud = a};
    const char *t = sk_oauth_token_get(a->client);
    if (t) {
        token_reply(a, w, t);
        return;
    }
    struct timeval tv = {.tv_sec = g->token_wait_ms / 1000,
                         .tv_usec = (g->token_wait_ms % 1000) * 1000};
    evtimer_add(w->timer, &tv);
    w->next = a->waiters;
    a->waiters = w;
}

/* ---- life cycle ---- */

static void make_metrics(sk_grants *g, sk_metrics *m)
{
    const char *const rl[] = {"result", NULL};
    sk_metric *s = sk_metrics_counter(
        m, "skiff_handler_secret_calls_total",
        "Handler `secret` calls by result (ok: read from Vault, cached: answered from the "
        "cache, forbidden, not_found, unavailable, invalid_params).",
        rl);
    g->s_ok = sk_metric_series(s, (const char *const[]){"ok"});
    g->s_cached = sk_metric_series(s, (const char *const[]){"cached"});
    g->s_forbidden = sk_metric_series(s, (const char *const[]){"forbidden"});
    g->s_not_found = sk_metric_series(s, (const char *const[]){"not_found"});
    g->s_unavailable = sk_metric_series(s, (const char *const[]){"unavailable"});
    g->s_invalid = sk_metric_series(s, (const char *const[]){"invalid_params"});
    sk_metric *t = sk_metrics_counter(
        m, "skiff_handler_token_calls_total",
        "Handler `token` calls by result (ok, forbidden, unavailable, invalid_params).", rl);
    g->t_ok = sk_metric_series(t, (const char *const[]){"ok"});
    g->t_forbidden = sk_metric_series(t, (const char *const[]){"forbidden"});
    g->t_unavailable = sk_metric_series(t, (const char *const[]){"unavailable"});
    g->t_invalid = sk_metric_series(t, (const char *const[]){"invalid_params"});
}

static int copy_lists(sk_grants *g, const sk_grants_opts *o, char *err, size_t errlen)
{
    g->patterns = calloc(o->nsecrets + 1, sizeof *g->patterns);
    g->auds = calloc(o->naudiences + 1, sizeof *g->auds);
    if (!g->patterns || !g->auds)
        return -1;
    for (size_t i = 0; i < o->nsecrets; i++) {
        char why[160];
        if (sk_grant_pattern_check(o->secrets[i], why, sizeof why) != 0) {
            snprintf(err, errlen, "handler.secrets: item %.200s: %s", o->secrets[i], why);
            return -1;
        }
        if (!(g->patterns[g->npatterns++] = strdup(o->secrets[i])))
            return -1;
    }
    for (size_t i = 0; i < o->naudiences; i++) {
        g->auds[i].g = g;
        if (!(g->auds[g->nauds++].name = strdup(o->audiences[i])))
            return -1;
    }
    return 0;
}

sk_grants *sk_grants_new(struct event_base *base, sk_metrics *m, const sk_grants_opts *o, char *err,
                         size_t errlen)
{
    sk_grants *g = calloc(1, sizeof *g);
    err[0] = '\0';
    if (!g || copy_lists(g, o, err, errlen) != 0) {
        if (!err[0])
            snprintf(err, errlen, "handler calls: out of memory");
        sk_grants_free(g);
        return NULL;
    }
    g->base = base;
    g->vault = o->vault;
    g->oauth = o->oauth;
    if (o->client)
        g->client = *o->client;
    g->token_wait_ms = o->token_wait_ms > 0 ? o->token_wait_ms : DEFAULT_TOKEN_WAIT_MS;
    g->secret_wait_ms = o->secret_wait_ms > 0 ? o->secret_wait_ms : DEFAULT_TOKEN_WAIT_MS;
    if (g->vault)
        sk_vault_on_login(g->vault, on_login, g);
    if (m)
        make_metrics(g, m);
    return g;
}

int sk_grants_register(sk_grants *g, sk_dispatcher *d)
{
    if (g->npatterns && sk_dispatcher_add_method(d, "secret", method_secret, g) != 0)
        return -1;
    if (g->nauds && sk_dispatcher_add_method(d, "token", method_token, g) != 0)
        return -1;
    return 0;
}

void sk_grants_free(sk_grants *g)
{
    if (!g)
        return;
    if (g->vault)
        sk_vault_on_login(g->vault, NULL, NULL);
    while (g->cache) {
        cached *c = g->cache;
        g->cache = c->next;
        cached_free(c);
    }
    for (size_t i = 0; g->auds && i < g->nauds; i++) {
        audience *a = &g->auds[i];
        while (a->waiters) {
            waiter *w = a->waiters;
            a->waiters = w->next;
            count(g->t_unavailable);
            sk_reply_error(w->reply, "unavailable", "skiff is shutting down");
            event_free(w->timer);
            free(w);
        }
        if (a->client)
            sk_oauth_unlisten(a->client, on_token, a);
        free(a->name);
    }
    for (size_t i = 0; g->patterns && i < g->npatterns; i++)
        free(g->patterns[i]);
    free(g->patterns);
    free(g->auds);
    free(g);
}
