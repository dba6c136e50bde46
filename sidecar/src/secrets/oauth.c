#include "secrets/oauth.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/http.h"
#include "net/tls.h"

#define DEFAULT_AHEAD_MS 30000
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_INITIAL_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 60000
#define MIN_FORCED_GAP_MS 1000 /* a rejected token is refreshed no sooner after the last one */
#define MAX_BODY (64 * 1024)
#define MAX_LISTENERS 8
#define WHY_LEN 256

/* ---- the token response ---- */

void sk_oauth_token_clear(sk_oauth_token *tok)
{
    if (tok && tok->access_token) {
        explicit_bzero(tok->access_token, strlen(tok->access_token));
        free(tok->access_token);
    }
    if (tok)
        tok->access_token = NULL;
}

/* A token goes into a header: visible ASCII only (RFC 6750 b64token is a subset). */
static int token_chars_ok(const char *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (t[i] <= 0x20 || t[i] >= 0x7f)
            return 0;
    return n > 0;
}

/* expires_in: a positive integer of seconds (some servers send it as a string). */
static int64_t read_expires_in(json_t *v)
{
    long long s = -1;
    if (!v)
        return SK_OAUTH_DEFAULT_LIFETIME_MS;
    if (json_is_integer(v))
        s = json_integer_value(v);
    else if (json_is_string(v)) {
        char *end;
        s = strtoll(json_string_value(v), &end, 10);
        if (*end || end == json_string_value(v))
            s = -1;
    }
    if (s <= 0 || s > 10LL * 365 * 24 * 3600)
        return -1;
    return (int64_t)s * 1000;
}

/* An OAuth error answer: {"error": code, "error_description": text}. */
static sk_oauth_verdict error_answer(long status, json_t *j, char *why, size_t whylen)
{
    static const char *const refused[] = {"invalid_client",
                                          "unauthorized_client",
                                          "invalid_grant",
                                          "invalid_scope",
                                          "invalid_request",
                                          "unsupported_grant_type",
                                          NULL};
    const char *code = json_string_value(json_object_get(j, "error"));
    const char *desc = json_string_value(json_object_get(j, "error_description"));
    int is_refused = status == 401;
    for (size_t i = 0; code && refused[i]; i++)
        is_refused |= strcmp(code, refused[i]) == 0 && status >= 400 && status <= 403;
    if (code)
        snprintf(why, whylen, "HTTP %ld %.64s%s%.120s", status, code, desc ? ": " : "",
                 desc ? desc : "");
    else
        snprintf(why, whylen, "HTTP %ld", status);
    return is_refused ? SK_OAUTH_REFUSED : SK_OAUTH_ERROR;
}

static sk_oauth_verdict token_answer(json_t *j, sk_oauth_token *tok, char *why, size_t whylen)
{
    json_t *at = json_object_get(j, "access_token");
    const char *type = json_string_value(json_object_get(j, "token_type"));
    if (!json_is_string(at) || !token_chars_ok(json_string_value(at), json_string_length(at)) ||
        json_string_length(at) != strlen(json_string_value(at)) ||
        json_string_length(at) > SK_OAUTH_MAX_TOKEN) {
        snprintf(why, whylen, "answer without a usable access_token");
        return SK_OAUTH_ERROR;
    }
    if (type && strcasecmp(type, "bearer") != 0) {
        snprintf(why, whylen, "token_type %.32s, expected Bearer", type);
        return SK_OAUTH_ERROR;
    }
    int64_t ms = read_expires_in(json_object_get(j, "expires_in"));
    if (ms < 0) {
        snprintf(why, whylen, "answer with an invalid expires_in");
        return SK_OAUTH_ERROR;
    }
    if (!(tok->access_token = strdup(json_string_value(at)))) {
        snprintf(why, whylen, "out of memory");
        return SK_OAUTH_ERROR;
    }
    tok->expires_in_ms = ms;
    return SK_OAUTH_OK;
}

sk_oauth_verdict sk_oauth_parse_response(long status, const char *body, size_t len,
                                         sk_oauth_token *tok, char *why, size_t whylen)
{
    *tok = (sk_oauth_token){0};
    json_error_t e;
    json_t *j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &e);
    sk_oauth_verdict v;
    if (status >= 400) {
        v = error_answer(status, json_is_object(j) ? j : NULL, why, whylen);
    } else if (status != 200) {
        snprintf(why, whylen, "unexpected HTTP status %ld", status);
        v = SK_OAUTH_ERROR;
    } else if (!json_is_object(j)) {
        snprintf(why, whylen, "answer is not a JSON object");
        v = SK_OAUTH_ERROR;
    } else {
        v = token_answer(j, tok, why, whylen);
    }
    json_decref(j);
    return v;
}

/* base64url (RFC 4648 section 5, padding optional) of s[0..n) into out (room for n bytes);
 * the decoded length, or -1 on a character outside the alphabet. */
static long b64url_decode(const char *s, size_t n, unsigned char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned acc = 0;
    int bits = 0;
    long len = 0;
    while (n && s[n - 1] == '=')
        n--;
    for (size_t i = 0; i < n; i++) {
        const char *p = s[i] ? strchr(abc, s[i]) : NULL;
        if (!p)
            return -1;
        acc = (acc << 6) | (unsigned)(p - abc);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[len++] = (unsigned char)(acc >> bits);
        }
    }
    return len;
}

static int aud_names(json_t *aud, const char *audience)
{
    size_t i;
    json_t *v;
    if (json_is_string(aud))
        return strcmp(json_string_value(aud), audience) == 0;
    json_array_foreach(aud, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), audience) == 0)
            return 1;
    }
    return 0;
}

int sk_oauth_token_has_audience(const char *token, const char *audience, char *why, size_t whylen)
{
    const char *dot1 = strchr(token, '.'), *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot2 || strchr(dot2 + 1, '.'))
        return -1;
    size_t n = (size_t)(dot2 - dot1 - 1);
    unsigned char *payload = malloc(n + 1);
    long len = payload ? b64url_decode(dot1 + 1, n, payload) : -1;
    json_t *j = len >= 0 ? json_loadb((const char *)payload, (size_t)len, 0, NULL) : NULL;
    free(payload);
    if (!json_is_object(j)) {
        json_decref(j);
        return -1;
    }
    json_t *aud = json_object_get(j, "aud");
    int has = aud_names(aud, audience);
    if (!has) {
        char *text = aud ? json_dumps(aud, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
        snprintf(why, whylen, "the token's aud claim (%.120s) does not name the audience %.64s",
                 text ? text : "none", audience);
        free(text);
    }
    json_decref(j);
    return has;
}

/* ---- clients ---- */

typedef struct listener {
    sk_oauth_cb cb;
    void *ud;
} listener;

struct sk_oauth_client {
    sk_oauth *o;
    struct sk_oauth_client *next;
    char *name, *url, *client_id, *audience, *scope;
    sk_secret *secret;
    int64_t ahead_ms, timeout_ms;
    sk_http_req *req;    /* the one request in flight */
    struct event *timer; /* next request: refresh ahead of expiry, or retry */
    sk_backoff bo;
    char *token;
    int64_t expires_ms;  /* monotonic */
    int64_t obtained_ms; /* monotonic */
    int64_t expires_wall_ms;
    double started; /* of the request in flight, sk_mono_s() */
    int refused;    /* the last answer refused the credentials */
    int check_audience;
    uint64_t answers;
    char why[WHY_LEN];
    listener ls[MAX_LISTENERS];
    size_t nls;
    sk_series *m_ok, *m_refused, *m_error, *m_seconds, *m_valid, *m_lifetime;
};

struct sk_oauth {
    struct event_base *base;
    sk_http *http;
    sk_tls *tls; /* NULL: libcurl's defaults (the system store) for an https:// endpoint */
    sk_metrics *m;
    sk_oauth_client *clients;
};

static int64_t now_ms(void)
{
    return (int64_t)(sk_mono_s() * 1000);
}

static void set_valid(sk_oauth_client *c, int valid)
{
    if (c->m_valid)
        sk_series_set(c->m_valid, valid);
}

static void drop_token(sk_oauth_client *c)
{
    if (c->token) {
        explicit_bzero(c->token, strlen(c->token));
        free(c->token);
    }
    c->token = NULL;
    set_valid(c, 0);
}

static void arm(sk_oauth_client *c, int64_t delay_ms)
{
    if (delay_ms < 0)
        delay_ms = 0;
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
}

/* application/x-www-form-urlencoded value: unreserved characters as they are, others %XX. */
static size_t form_escape(char *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~') {
            out[n++] = (char)ch;
        } else {
            out[n++] = '%';
            out[n++] = hex[ch >> 4];
            out[n++] = hex[ch & 15];
        }
    }
    out[n] = '\0';
    return n;
}

/* The form; its secret part is wiped by the caller after use. */
static char *make_form(const sk_oauth_client *c, size_t *len)
{
    size_t slen = 0;
    const char *secret = sk_secret_value(c->secret, &slen);
    size_t cap = 3 * (strlen(c->client_id) + slen + strlen(c->audience) + strlen(c->scope)) + 128;
    char *b = malloc(cap);
    if (!b)
        return NULL;
    size_t n = (size_t)snprintf(b, cap, "grant_type=client_credentials&client_id=");
    n += form_escape(b + n, c->client_id);
    n += (size_t)snprintf(b + n, cap - n, "&client_secret=");
    n += form_escape(b + n, secret);
    if (*c->audience) {
        n += (size_t)snprintf(b + n, cap - n, "&audience=");
        n += form_escape(b + n, c->audience);
    }
    if (*c->scope) {
        n += (size_t)snprintf(b + n, cap - n, "&scope=");
        n += form_escape(b + n, c->scope);
    }
    *len = n;
    return b;
}

static void on_answer(void *ud, const sk_http_result *r);

static void start_request(sk_oauth_client *c)
{
    static const char *const headers[] = {"Content-Type: application/x-www-form-urlencoded",
                                          "Accept: application/json", NULL};
    if (c->req)
        return;
    evtimer_del(c->timer);
    if (sk_secret_pending(c->secret)) { /* asked again when the value arrives (on_secret) */
        snprintf(c->why, sizeof c->why, "client secret %s not read yet",
                 sk_secret_origin(c->secret));
        return;
    }
    size_t len;
    char *form = make_form(c, &len);
    if (form) {
        c->started = sk_mono_s();
        c->req = sk_http_request(c->o->http, "POST", c->url, headers, form, len, NULL,
                                 c->timeout_ms, on_answer, c);
        explicit_bzero(form, len);
        free(form);
    }
    if (!c->req) {
        snprintf(c->why, sizeof c->why, "token request could not start (out of memory)");
        arm(c, sk_backoff_next(&c->bo));
    }
}

static void count(sk_series *s)
{
    if (s)
        sk_series_add(s, 1);
}

static void got_token(sk_oauth_client *c, sk_oauth_token *tok)
{
    drop_token(c);
    c->token = tok->access_token;
    tok->access_token = NULL;
    c->obtained_ms = now_ms();
    c->expires_ms = c->obtained_ms + tok->expires_in_ms;
    c->expires_wall_ms = sk_wall_ms() + tok->expires_in_ms;
    c->refused = 0;
    c->why[0] = '\0';
    sk_backoff_reset(&c->bo);
    set_valid(c, 1);
    if (c->m_lifetime)
        sk_series_set(c->m_lifetime, (double)tok->expires_in_ms / 1000);
    int64_t ahead = c->ahead_ms < tok->expires_in_ms / 5 ? c->ahead_ms : tok->expires_in_ms / 5;
    arm(c, tok->expires_in_ms - ahead);
    SK_LOG(SK_LOG_DEBUG, "oauth", NULL, SK_KV("token", c->name),
           "%s: new access token, valid %lld s", c->name, (long long)(tok->expires_in_ms / 1000));
    for (size_t i = 0; i < c->nls; i++)
        c->ls[i].cb(c->ls[i].ud);
}

/* A failed request: retried with backoff; a refusal is logged as a configuration problem
 * once per streak of refusals, and waits for the longest backoff (or a new secret). */
static void failed(sk_oauth_client *c, sk_oauth_verdict v, const char *why)
{
    snprintf(c->why, sizeof c->why, "token endpoint %s: %s", c->url, why);
    sk_secret_scrub(c->secret, c->why);
    int64_t delay = sk_backoff_next(&c->bo);
    if (v == SK_OAUTH_REFUSED) {
        if (!c->refused)
            SK_LOG(SK_LOG_ERROR, "oauth", NULL, SK_KV("token", c->name),
                   "%s: configuration problem: the authorization server refused client %s (%s); "
                   "check the client id, secret and audience",
                   c->name, c->client_id, c->why);
        c->refused = 1;
        delay = c->bo.max_ms;
    } else {
        SK_LOG(SK_LOG_WARN, "oauth", NULL, SK_KV("token", c->name),
               "%s: token request failed (%s); retrying in %lld ms", c->name, c->why,
               (long long)delay);
    }
    count(v == SK_OAUTH_REFUSED ? c->m_refused : c->m_error);
    if (c->token && now_ms() >= c->expires_ms)
        drop_token(c);
    arm(c, delay);
}

static void on_answer(void *ud, const sk_http_result *r)
{
    sk_oauth_client *c = ud;
    c->req = NULL;
    c->answers++;
    if (c->m_seconds)
        sk_series_observe(c->m_seconds, sk_mono_s() - c->started);
    if (r->error) {
        failed(c, SK_OAUTH_ERROR, r->error);
        return;
    }
    char why[WHY_LEN];
    sk_oauth_token tok;
    /* An error answer may echo the form: the secret is masked before any of it is quoted. */
    char *body = r->status != 200 ? strdup(r->body) : NULL;
    if (body)
        sk_secret_scrub(c->secret, body);
    sk_oauth_verdict v = sk_oauth_parse_response(
        r->status, body ? body : r->body, body ? strlen(body) : r->body_len, &tok, why, sizeof why);
    free(body);
    if (v == SK_OAUTH_OK && c->check_audience && *c->audience &&
        sk_oauth_token_has_audience(tok.access_token, c->audience, why, sizeof why) == 0) {
        sk_oauth_token_clear(&tok);
        v = SK_OAUTH_REFUSED;
    }
    if (v != SK_OAUTH_OK) {
        failed(c, v, why);
        return;
    }
    count(c->m_ok);
    got_token(c, &tok);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_oauth_client *c = arg;
    if (c->token && now_ms() >= c->expires_ms)
        drop_token(c);
    start_request(c);
}

/* A new client secret: a refused client asks again at once. */
static void on_secret(void *ud, const sk_secret *s)
{
    (void)s;
    sk_oauth_client *c = ud;
    SK_LOG(SK_LOG_INFO, "oauth", NULL, SK_KV("token", c->name),
           "%s: client secret changed; the next token request uses it", c->name);
    if (c->refused || !c->token) {
        sk_backoff_reset(&c->bo);
        start_request(c);
    }
}

static void client_free(sk_oauth_client *c)
{
    if (!c)
        return;
    sk_http_cancel(c->req);
    if (c->timer)
        event_free(c->timer);
    if (c->secret)
        sk_secret_unsubscribe(c->secret, on_secret, c);
    drop_token(c);
    free(c->name);
    free(c->url);
    free(c->client_id);
    free(c->audience);
    free(c->scope);
    free(c);
}

static int same(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

static void client_metrics(sk_oauth_client *c, sk_metrics *m)
{
    const char *const tl[] = {"token", NULL}, *const trl[] = {"token", "result", NULL};
    sk_metric *req = sk_metrics_counter(m, "skiff_oauth_token_requests_total",
                                        "OAuth token requests by result (ok, refused: the "
                                        "credentials were refused, error: retriable).",
                                        trl);
    c->m_ok = sk_metric_series(req, (const char *const[]){c->name, "ok"});
    c->m_refused = sk_metric_series(req, (const char *const[]){c->name, "refused"});
    c->m_error = sk_metric_series(req, (const char *const[]){c->name, "error"});
    c->m_seconds = sk_metric_series(sk_metrics_histogram(m, "skiff_oauth_token_request_seconds",
                                                         "Duration of OAuth token requests.", tl,
                                                         sk_metrics_latency_buckets,
                                                         sk_metrics_latency_nbuckets),
                                    (const char *const[]){c->name});
    c->m_valid = sk_metric_series(
        sk_metrics_gauge(m, "skiff_oauth_token_valid", "1 while a valid access token is held.", tl),
        (const char *const[]){c->name});
    c->m_lifetime = sk_metric_series(
        sk_metrics_gauge(m, "skiff_oauth_token_lifetime_seconds",
                         "Lifetime (expires_in) of the last access token received.", tl),
        (const char *const[]){c->name});
}

static int valid_url(const char *u)
{
    return u && (strncmp(u, "http://", 7) == 0 || strncmp(u, "https://", 8) == 0) &&
           !strpbrk(u, " \r\n");
}

static sk_oauth_client *client_new(sk_oauth *o, const sk_oauth_opts *p, char *err, size_t errlen)
{
    sk_oauth_client *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(p->name ? p->name : "oauth")) ||
        !(c->url = strdup(p->token_url)) || !(c->client_id = strdup(p->client_id)) ||
        !(c->audience = strdup(p->audience ? p->audience : "")) ||
        !(c->scope = strdup(p->scope ? p->scope : "")) ||
        !(c->timer = evtimer_new(o->base, on_timer, c)) ||
        sk_secret_subscribe(p->client_secret, on_secret, c) != 0) {
        snprintf(err, errlen, "oauth: out of memory");
        client_free(c);
        return NULL;
    }
    c->o = o;
    c->secret = p->client_secret;
    c->check_audience = p->check_audience != 0;
    c->ahead_ms = p->refresh_ahead_ms > 0 ? p->refresh_ahead_ms : DEFAULT_AHEAD_MS;
    c->timeout_ms = p->timeout_ms > 0 ? p->timeout_ms : DEFAULT_TIMEOUT_MS;
    sk_backoff_init(&c->bo,
                    p->backoff_initial_ms > 0 ? p->backoff_initial_ms : DEFAULT_BACKOFF_INITIAL_MS,
                    p->backoff_max_ms > 0 ? p->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS,
                    (uint64_t)(uintptr_t)c ^ (uint64_t)sk_wall_ms());
    snprintf(c->why, sizeof c->why, "no access token yet from %s", c->url);
    if (o->m)
        client_metrics(c, o->m);
    set_valid(c, 0);
    arm(c, 0);
    return c;
}

sk_oauth_client *sk_oauth_client_get(sk_oauth *o, const sk_oauth_opts *p, char *err, size_t errlen)
{
    if (!o || !p || !valid_url(p->token_url) || !p->client_id || !*p->client_id ||
        !p->client_secret) {
        snprintf(err, errlen,
                 "oauth: a token URL (http:// or https://), a client id and a client "
                 "secret are needed");
        return NULL;
    }
    for (sk_oauth_client *c = o->clients; c; c = c->next)
        if (same(c->url, p->token_url) && same(c->client_id, p->client_id) &&
            same(c->audience, p->audience) && same(c->scope, p->scope) &&
            c->check_audience == (p->check_audience != 0))
            return c;
    sk_oauth_client *c = client_new(o, p, err, errlen);
    if (c) {
        c->next = o->clients;
        o->clients = c;
    }
    return c;
}

const char *sk_oauth_token_get(sk_oauth_client *c)
{
    if (!c || !c->token)
        return NULL;
    if (now_ms() >= c->expires_ms) {
        drop_token(c);
        snprintf(c->why, sizeof c->why, "access token expired, no new one yet from %s", c->url);
        start_request(c);
        return NULL;
    }
    return c->token;
}

int64_t sk_oauth_token_expires_wall_ms(const sk_oauth_client *c)
{
    return c && c->token ? c->expires_wall_ms : 0;
}

void sk_oauth_token_rejected(sk_oauth_client *c, const char *token)
{
    if (!c || !c->token || !token || strcmp(c->token, token) != 0)
        return;
    SK_LOG(SK_LOG_INFO, "oauth", NULL, SK_KV("token", c->name),
           "%s: the peer refused the access token; getting a new one", c->name);
    drop_token(c);
    snprintf(c->why, sizeof c->why, "access token refused by the peer, getting a new one");
    if (!c->req)
        arm(c, c->obtained_ms + MIN_FORCED_GAP_MS - now_ms());
}

int sk_oauth_ready(const sk_oauth_client *c, char *why, size_t whylen)
{
    if (c && c->token && now_ms() < c->expires_ms)
        return 1;
    snprintf(why, whylen, "%s", c ? c->why : "no token service");
    return 0;
}

uint64_t sk_oauth_requests(const sk_oauth_client *c)
{
    return c ? c->answers : 0;
}

int sk_oauth_listen(sk_oauth_client *c, sk_oauth_cb cb, void *ud)
{
    if (c->nls == MAX_LISTENERS)
        return -1;
    c->ls[c->nls++] = (listener){cb, ud};
    return 0;
}

void sk_oauth_unlisten(sk_oauth_client *c, sk_oauth_cb cb, void *ud)
{
    for (size_t i = 0; c && i < c->nls; i++)
        if (c->ls[i].cb == cb && c->ls[i].ud == ud) {
            c->ls[i] = c->ls[--c->nls];
            return;
        }
}

/* ---- the service ---- */

sk_oauth *sk_oauth_new(struct event_base *base, sk_metrics *m, char *err, size_t errlen)
{
    sk_oauth *o = calloc(1, sizeof *o);
    if (!o) {
        snprintf(err, errlen, "oauth: out of memory");
        return NULL;
    }
    o->base = base;
    o->m = m;
    if (!(o->http = sk_http_new(base, err, errlen))) {
        free(o);
        return NULL;
    }
    sk_http_set_max_body(o->http, MAX_BODY);
    sk_http_set_observe(o->http, m, "oauth", 1);
    return o;
}

void sk_oauth_free(sk_oauth *o)
{
    if (!o)
        return;
    while (o->clients) {
        sk_oauth_client *c = o->clients;
        o->clients = c->next;
        client_free(c);
    }
    sk_http_free(o->http);
    sk_tls_free(o->tls);
    free(o);
}

int sk_oauth_use_tls(sk_oauth *o, const sk_tls_opts *t, int64_t reload_ms, char *err, size_t errlen)
{
    sk_tls *tls = sk_tls_new(t, o->base, reload_ms > 0 ? reload_ms : 10000, o->m, err, errlen);
    if (!tls)
        return -1;
    sk_http_set_tls(o->http, tls);
    sk_tls_free(o->tls);
    o->tls = tls;
    return 0;
}
