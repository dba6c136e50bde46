#include "secrets/vault.h"
#include "secrets/vault_internal.h"

#include <event2/event.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backoff.h"
#include "core/clock.h"
#include "core/log.h"
#include "net/http.h"
#include "net/tls.h"
#include "secrets/secret.h"

#define DEFAULT_REFRESH_MS 60000
#define DEFAULT_TIMEOUT_MS 10000
#define DEFAULT_BACKOFF_INITIAL_MS 1000
#define DEFAULT_BACKOFF_MAX_MS 300000
#define MAX_BODY (256 * 1024)
#define MAX_JWT (64 * 1024)

/* ---- the client ---- */

static int64_t now_ms(void)
{
    return (int64_t)(sk_mono_s() * 1000);
}

static void count(sk_series *s)
{
    if (s)
        sk_series_add(s, 1);
}

static void arm(struct event *ev, int64_t delay_ms)
{
    if (delay_ms < 0)
        delay_ms = 0;
    struct timeval tv = {.tv_sec = delay_ms / 1000, .tv_usec = (delay_ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

static void drop_token(sk_vault *v)
{
    if (v->token) {
        explicit_bzero(v->token, strlen(v->token));
        free(v->token);
    }
    v->token = NULL;
    if (v->m_valid)
        sk_series_set(v->m_valid, 0);
    if (v->m_expiry)
        sk_series_set(v->m_expiry, 0);
}

static void lease_metric(sk_vault *v, int64_t lease_ms)
{
    if (v->m_expiry)
        sk_series_set(v->m_expiry, lease_ms > 0 ? (double)(sk_wall_ms() + lease_ms) / 1000.0 : 0);
}

/* The request headers: the token (when held) and the namespace. The caller wipes hdr[0]. */
static void make_headers(const sk_vault *v, char tok[SK_VAULT_MAX_TOKEN + 16], const char *h[4])
{
    size_t n = 0;
    h[n++] = "Content-Type: application/json";
    if (v->token) {
        snprintf(tok, SK_VAULT_MAX_TOKEN + 16, "X-Vault-Token: %s", v->token);
        h[n++] = tok;
    }
    if (v->namespace_hdr)
        h[n++] = v->namespace_hdr;
    h[n] = NULL;
}

sk_http_req *vault_request(sk_vault *v, const char *method, const char *url, const char *body,
                           sk_http_cb cb, void *ud)
{
    char tok[SK_VAULT_MAX_TOKEN + 16] = "";
    const char *h[4];
    make_headers(v, tok, h);
    sk_http_req *r = sk_http_request(v->http, method, url, h, body, body ? strlen(body) : 0, NULL,
                                     v->timeout_ms, cb, ud);
    explicit_bzero(tok, sizeof tok);
    return r;
}

int vault_has_token(const sk_vault *v)
{
    return v->token && (!v->expires_ms || now_ms() < v->expires_ms);
}

/* ---- secrets ---- */

static void on_kv(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                  int64_t version, int64_t lease_ms, const char *why);

static void read_entry(entry *e)
{
    if (e->req || !vault_has_token(e->v))
        return;
    if (!(e->req = vkv_start(e->v, e->mount, e->path, e->field, on_kv, e)))
        count(e->m_error);
}

static void read_all(sk_vault *v)
{
    for (entry *e = v->entries; e; e = e->next)
        read_entry(e);
}

static void read_failed(entry *e, sk_vault_verdict verdict, const char *why)
{
    count(verdict == SK_VAULT_NOT_FOUND ? e->m_not_found
          : verdict == SK_VAULT_REFUSED ? e->m_denied
                                        : e->m_error);
    if (!e->failing)
        SK_LOG(SK_LOG_WARN, "vault", NULL, SK_KV("secret", sk_secret_name(e->s)),
               "%s: reading %s failed (%s); %s", sk_secret_name(e->s), sk_secret_origin(e->s), why,
               e->read_once ? "the previous value stays in use" : "no value yet");
    e->failing = 1;
}

static void got_value(entry *e, const char *val, size_t len, int64_t version)
{
    int changed = sk_secret_set_value(e->s, val, len);
    if (changed < 0) {
        read_failed(e, SK_VAULT_ERROR, "out of memory");
        return;
    }
    count(changed && e->read_once ? e->m_changed : e->m_ok);
    if (changed && e->read_once)
        SK_LOG(SK_LOG_INFO, "vault", NULL, SK_KV("secret", sk_secret_name(e->s)),
               "%s: new value (version %lld) read from %s", sk_secret_name(e->s),
               (long long)version, sk_secret_origin(e->s));
    e->version = version;
    e->read_once = 1;
    e->failing = 0;
    if (e->m_read_at)
        sk_series_set(e->m_read_at, (double)sk_wall_ms() / 1000.0);
    if (e->m_version)
        sk_series_set(e->m_version, (double)version);
}

static void on_kv(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                  int64_t version, int64_t lease_ms, const char *why)
{
    entry *e = ud;
    e->req = NULL;
    if (verdict != SK_VAULT_OK) {
        read_failed(e, verdict, why);
        return;
    }
    got_value(e, value, len, version);
    /* A lease shorter than the refresh interval: read again at about 2/3 of it. */
    if (lease_ms > 0 && lease_ms * 2 / 3 < e->v->refresh_ms)
        arm(e->lease_timer, lease_ms * 2 / 3);
}

static void on_lease(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    read_entry(arg);
}

static void on_refresh(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_vault *v = arg;
    read_all(v);
    arm(v->refresh_timer, v->refresh_ms);
}

/* ---- login and renewal ---- */

static void on_auth(void *ud, const sk_http_result *r);

/* The service-account JWT, read now (NULL with why set). */
static char *read_jwt(const sk_vault *v, char *why, size_t whylen)
{
    FILE *f = fopen(v->token_path, "rb");
    char *buf = f ? malloc(MAX_JWT + 1) : NULL;
    size_t n = buf ? fread(buf, 1, MAX_JWT + 1, f) : 0;
    if (f)
        fclose(f);
    if (!buf || n == 0 || n > MAX_JWT) {
        snprintf(why, whylen,
                 "service-account token %s cannot be read (missing, empty or over "
                 "64KiB)",
                 v->token_path);
        free(buf);
        return NULL;
    }
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
        n--;
    buf[n] = '\0';
    return buf;
}

static char *login_body(const sk_vault *v, char *why, size_t whylen)
{
    char *jwt = read_jwt(v, why, whylen);
    if (!jwt)
        return NULL;
    json_t *j = json_pack("{s:s, s:s}", "role", v->role, "jwt", jwt);
    char *body = j ? json_dumps(j, JSON_COMPACT) : NULL;
    explicit_bzero(jwt, strlen(jwt));
    free(jwt);
    if (j) {
        explicit_bzero((char *)json_string_value(json_object_get(j, "jwt")),
                       json_string_length(json_object_get(j, "jwt")));
        json_decref(j);
    }
    if (!body)
        snprintf(why, whylen, "login request: out of memory or a JWT that is not UTF-8");
    return body;
}

static void login_failed(sk_vault *v, sk_vault_verdict verdict, const char *why);

static void start_login(sk_vault *v)
{
    char why[WHY_LEN];
    if (v->auth_req)
        return;
    v->want_login = 1;
    char *body = login_body(v, why, sizeof why);
    if (!body) {
        login_failed(v, SK_VAULT_ERROR, why);
        return;
    }
    v->auth_is_renew = 0;
    v->auth_req = vault_request(v, "POST", v->login_url, body, on_auth, v);
    explicit_bzero(body, strlen(body));
    free(body);
    if (!v->auth_req)
        login_failed(v, SK_VAULT_ERROR, "login request could not start");
}

static void start_renew(sk_vault *v)
{
    if (v->auth_req)
        return;
    v->auth_is_renew = 1;
    if (!(v->auth_req = vault_request(v, "POST", v->renew_url, "{}", on_auth, v))) {
        count(v->m_renew_error);
        start_login(v);
    }
}

static void login_failed(sk_vault *v, sk_vault_verdict verdict, const char *why)
{
    snprintf(v->why, sizeof v->why, "Vault login at %s failed: %s", v->login_url, why);
    count(verdict == SK_VAULT_REFUSED ? v->m_login_refused : v->m_login_error);
    int64_t delay = sk_backoff_next(&v->bo);
    SK_LOG(verdict == SK_VAULT_REFUSED ? SK_LOG_ERROR : SK_LOG_WARN, "vault", NULL, NULL,
           "%s%s; logging in again in %lld ms", v->why,
           verdict == SK_VAULT_REFUSED ? " (check vault.role and the service account)" : "",
           (long long)delay);
    arm(v->auth_timer, delay);
}

/* Next renewal at about 2/3 of the lease, plus up to a tenth of it at random. */
static int64_t renew_delay(sk_vault *v, int64_t lease_ms)
{
    v->rng ^= v->rng << 13;
    v->rng ^= v->rng >> 7;
    v->rng ^= v->rng << 17;
    int64_t jitter = lease_ms >= 10 ? (int64_t)(v->rng % (uint64_t)(lease_ms / 10)) : 0;
    return lease_ms * 2 / 3 + jitter;
}

static void got_token(sk_vault *v, sk_vault_auth *a)
{
    drop_token(v);
    v->token = a->client_token;
    a->client_token = NULL;
    v->expires_ms = a->lease_ms > 0 ? now_ms() + a->lease_ms : 0;
    v->lease_ms = a->lease_ms;
    v->renewable = a->renewable;
    v->want_login = 0;
    v->logins++;
    v->why[0] = '\0';
    sk_backoff_reset(&v->bo);
    count(v->m_login_ok);
    if (v->m_valid)
        sk_series_set(v->m_valid, 1);
    lease_metric(v, a->lease_ms);
    SK_INFO("vault", "logged in to %s (role %s), token lease %lld s%s", v->address, v->role,
            (long long)(a->lease_ms / 1000), a->renewable ? ", renewable" : "");
    if (a->lease_ms > 0)
        arm(v->auth_timer, a->renewable ? renew_delay(v, a->lease_ms) : a->lease_ms * 2 / 3);
    read_all(v);
    if (v->on_login)
        v->on_login(v->on_login_ud);
}

static void renewed(sk_vault *v, sk_vault_auth *a)
{
    sk_vault_auth_clear(a);
    /* A lease cut short (under half the login's) is the token's max TTL coming near. */
    if (a->lease_ms < v->lease_ms / 2 || a->lease_ms <= 0) {
        count(v->m_renew_exhausted);
        SK_INFO("vault", "token renewal no longer extends the lease (max TTL): logging in again");
        start_login(v);
        return;
    }
    count(v->m_renew_ok);
    v->expires_ms = now_ms() + a->lease_ms;
    lease_metric(v, a->lease_ms);
    arm(v->auth_timer, renew_delay(v, a->lease_ms));
}

static void on_auth(void *ud, const sk_http_result *r)
{
    sk_vault *v = ud;
    v->auth_req = NULL;
    char why[WHY_LEN];
    sk_vault_auth a;
    sk_vault_verdict verdict =
        r->error ? SK_VAULT_ERROR
                 : sk_vault_parse_auth(r->status, r->body, r->body_len, &a, why, sizeof why);
    if (r->error)
        snprintf(why, sizeof why, "%.200s", r->error);
    if (!v->auth_is_renew) {
        if (verdict == SK_VAULT_OK)
            got_token(v, &a);
        else
            login_failed(v, verdict, why);
        return;
    }
    if (verdict == SK_VAULT_OK) {
        renewed(v, &a);
        return;
    }
    count(verdict == SK_VAULT_REFUSED ? v->m_renew_refused : v->m_renew_error);
    SK_WARN("vault", "token renewal failed (%s): logging in again", why);
    if (verdict == SK_VAULT_REFUSED)
        drop_token(v);
    start_login(v);
}

void vault_token_refused(sk_vault *v, const char *what)
{
    if (!v->token)
        return;
    SK_WARN("vault", "Vault refused the client token on %s: logging in again", what);
    drop_token(v);
    if (v->auth_is_renew && v->auth_req) {
        sk_http_cancel(v->auth_req);
        v->auth_req = NULL;
    }
    start_login(v);
}

static void on_auth_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_vault *v = arg;
    if (v->token && v->expires_ms && now_ms() >= v->expires_ms)
        drop_token(v);
    if (v->token && v->renewable && !v->want_login)
        start_renew(v);
    else
        start_login(v);
}

/* ---- resolver ---- */

static void entry_free(entry *e)
{
    vkv_cancel(e->req);
    if (e->lease_timer)
        event_free(e->lease_timer);
    free(e->mount);
    free(e->path);
    free(e->field);
    free(e);
}

static void entry_metrics(entry *e, sk_metrics *m)
{
    sk_metric *f = sk_metrics_counter(
        m, "skiff_vault_secret_reads_total",
        "Vault KV reads by setting and result (ok: same value, changed: new value in use, "
        "not_found, denied, error: previous value kept).",
        (const char *const[]){"secret", "result", NULL});
    const char *n = sk_secret_name(e->s);
    e->m_ok = sk_metric_series(f, (const char *const[]){n, "ok"});
    e->m_changed = sk_metric_series(f, (const char *const[]){n, "changed"});
    e->m_not_found = sk_metric_series(f, (const char *const[]){n, "not_found"});
    e->m_denied = sk_metric_series(f, (const char *const[]){n, "denied"});
    e->m_error = sk_metric_series(f, (const char *const[]){n, "error"});
    const char *const sl[] = {"secret", NULL};
    e->m_read_at = sk_metric_series(
        sk_metrics_gauge(m, "skiff_vault_secret_read_timestamp_seconds",
                         "When the value in use was last read from Vault (epoch seconds): "
                         "time() minus it is the secret's age.",
                         sl),
        (const char *const[]){n});
    e->m_version =
        sk_metric_series(sk_metrics_gauge(m, "skiff_vault_secret_version",
                                          "KV version of the value in use (0 for KV v1).", sl),
                         (const char *const[]){n});
}

static int attach(void *ud, sk_secret *s, const sk_secret_ref *ref, char *err, size_t errlen)
{
    sk_vault *v = ud;
    entry *e = calloc(1, sizeof *e);
    if (!e || !(e->mount = strndup(ref->mount, ref->mount_len)) ||
        !(e->path = strndup(ref->path, ref->path_len)) ||
        !(e->field = strndup(ref->field, ref->field_len)) ||
        !(e->lease_timer = evtimer_new(v->base, on_lease, e))) {
        snprintf(err, errlen, "vault: out of memory");
        if (e)
            entry_free(e);
        return -1;
    }
    e->v = v;
    e->s = s;
    if (v->m)
        entry_metrics(e, v->m);
    e->next = v->entries;
    v->entries = e;
    read_entry(e);
    return 0;
}

static void detach(void *ud, sk_secret *s)
{
    sk_vault *v = ud;
    for (entry **p = &v->entries; *p; p = &(*p)->next)
        if ((*p)->s == s) {
            entry *e = *p;
            *p = e->next;
            entry_free(e);
            return;
        }
}

void sk_vault_install(sk_vault *v)
{
    sk_secret_set_resolver(&(sk_secret_resolver){.attach = attach, .detach = detach, .ud = v});
    v->installed = 1;
}

/* ---- life cycle ---- */

static void client_metrics(sk_vault *v, sk_metrics *m)
{
    const char *const rl[] = {"result", NULL};
    sk_metric *l = sk_metrics_counter(m, "skiff_vault_logins_total",
                                      "Vault logins by result (ok, refused, error).", rl);
    v->m_login_ok = sk_metric_series(l, (const char *const[]){"ok"});
    v->m_login_refused = sk_metric_series(l, (const char *const[]){"refused"});
    v->m_login_error = sk_metric_series(l, (const char *const[]){"error"});
    sk_metric *r = sk_metrics_counter(
        m, "skiff_vault_renewals_total",
        "Vault token renewals by result (ok, refused, error, exhausted: max TTL reached).", rl);
    v->m_renew_ok = sk_metric_series(r, (const char *const[]){"ok"});
    v->m_renew_refused = sk_metric_series(r, (const char *const[]){"refused"});
    v->m_renew_error = sk_metric_series(r, (const char *const[]){"error"});
    v->m_renew_exhausted = sk_metric_series(r, (const char *const[]){"exhausted"});
    v->m_valid = sk_metric_series(sk_metrics_gauge(m, "skiff_vault_token_valid",
                                                   "1 while a Vault client token is held.", NULL),
                                  NULL);
    v->m_expiry = sk_metric_series(
        sk_metrics_gauge(m, "skiff_vault_token_expiry_timestamp_seconds",
                         "When the lease of the Vault client token ends (epoch seconds; 0: no "
                         "token or no expiry): minus time() it is the token's TTL.",
                         NULL),
        NULL);
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t n = strlen(a) + strlen(b) + strlen(c) + 1;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s%s%s", a, b, c);
    return s;
}

static int set_strings(sk_vault *v, const sk_vault_opts *o)
{
    char mount[3 * 256 + 1];
    size_t alen = strlen(o->address);
    while (alen && o->address[alen - 1] == '/')
        alen--;
    vault_path_escape(mount, o->auth_mount, strlen(o->auth_mount));
    if (!(v->address = strndup(o->address, alen)) || !(v->role = strdup(o->role)) ||
        !(v->token_path = strdup(o->token_path)) ||
        !(v->login_url = join(v->address, "/v1/auth/", mount)) ||
        !(v->renew_url = join(v->address, "/v1/auth/token/renew-self", "")))
        return -1;
    char *l = join(v->login_url, "/login", "");
    free(v->login_url);
    v->login_url = l;
    if (o->namespace_ && *o->namespace_ &&
        !(v->namespace_hdr = join("X-Vault-Namespace: ", o->namespace_, "")))
        return -1;
    return l ? 0 : -1;
}

static int opts_ok(const sk_vault_opts *o)
{
    const char *a = o ? o->address : NULL;
    return a && (strncmp(a, "http://", 7) == 0 || strncmp(a, "https://", 8) == 0) &&
           !strpbrk(a, " \r\n") && o->role && *o->role && o->auth_mount && *o->auth_mount &&
           strlen(o->auth_mount) <= 256 && o->token_path && *o->token_path &&
           (!o->namespace_ || !strpbrk(o->namespace_, "\r\n"));
}

/* An https:// Vault gets its material from the TLS layer (VAULT_CACERT or the system store,
 * TLS 1.2+, host verified; VAULT_CLIENT_CERT/KEY for mTLS; the files watched like every
 * peer's). */
static int vault_tls(sk_vault *v, const sk_vault_opts *o, char *err, size_t errlen)
{
    if (strncmp(o->address, "https://", 8) != 0)
        return 0;
    sk_tls_opts t = {.peer = "vault",
                     .ca_file = o->cacert && o->cacert[0] ? o->cacert : NULL,
                     .cert_file = o->client_cert && o->client_cert[0] ? o->client_cert : NULL,
                     .key_file = o->client_key && o->client_key[0] ? o->client_key : NULL};
    if (!(v->tls = sk_tls_new(&t, v->base, o->tls_reload_ms > 0 ? o->tls_reload_ms : 10000, v->m,
                              err, errlen)))
        return -1;
    sk_http_set_tls(v->http, v->tls);
    return 0;
}

sk_vault *sk_vault_new(struct event_base *base, sk_metrics *m, const sk_vault_opts *o, char *err,
                       size_t errlen)
{
    if (!opts_ok(o)) {
        snprintf(err, errlen,
                 "vault: an address (http:// or https://), a role, an auth mount "
                 "and a token path are needed");
        return NULL;
    }
    sk_vault *v = calloc(1, sizeof *v);
    if (!v || !(v->http = sk_http_new(base, err, errlen)))
        goto fail;
    v->base = base;
    v->m = m;
    if (vault_tls(v, o, err, errlen) != 0)
        goto fail;
    if (set_strings(v, o) != 0 || !(v->auth_timer = evtimer_new(base, on_auth_timer, v)) ||
        !(v->refresh_timer = evtimer_new(base, on_refresh, v))) {
        snprintf(err, errlen, "vault: out of memory");
        goto fail;
    }
    sk_http_set_max_body(v->http, MAX_BODY);
    sk_http_set_observe(v->http, m, "vault", 1);
    v->refresh_ms = o->refresh_ms > 0 ? o->refresh_ms : DEFAULT_REFRESH_MS;
    v->timeout_ms = o->timeout_ms > 0 ? o->timeout_ms : DEFAULT_TIMEOUT_MS;
    v->rng = (uint64_t)(uintptr_t)v ^ (uint64_t)sk_wall_ms() ^ 0x9e3779b97f4a7c15ULL;
    sk_backoff_init(&v->bo,
                    o->backoff_initial_ms > 0 ? o->backoff_initial_ms : DEFAULT_BACKOFF_INITIAL_MS,
                    o->backoff_max_ms > 0 ? o->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS, v->rng);
    snprintf(v->why, sizeof v->why, "not logged in to Vault at %s yet", v->address);
    if (m)
        client_metrics(v, m);
    arm(v->auth_timer, 0);
    arm(v->refresh_timer, v->refresh_ms);
    return v;
fail:
    if (!v)
        snprintf(err, errlen, "vault: out of memory");
    sk_vault_free(v);
    return NULL;
}

void sk_vault_free(sk_vault *v)
{
    if (!v)
        return;
    if (v->installed)
        sk_secret_set_resolver(NULL);
    while (v->entries) {
        entry *e = v->entries;
        v->entries = e->next;
        sk_secret_forget_resolver(e->s);
        entry_free(e);
    }
    vkv_mounts_free(v);
    sk_http_cancel(v->auth_req);
    if (v->auth_timer)
        event_free(v->auth_timer);
    if (v->refresh_timer)
        event_free(v->refresh_timer);
    sk_http_free(v->http);
    sk_tls_free(v->tls);
    drop_token(v);
    free(v->address);
    free(v->namespace_hdr);
    free(v->login_url);
    free(v->renew_url);
    free(v->role);
    free(v->token_path);
    free(v);
}

int sk_vault_ready(const sk_vault *v, char *why, size_t whylen)
{
    if (!v->token || (v->expires_ms && now_ms() >= v->expires_ms)) {
        snprintf(why, whylen, "%s", v->why[0] ? v->why : "no valid Vault token");
        return 0;
    }
    for (const entry *e = v->entries; e; e = e->next)
        if (!e->read_once) {
            snprintf(why, whylen, "%s: not read from Vault yet (%s)", sk_secret_name(e->s),
                     sk_secret_origin(e->s));
            return 0;
        }
    return 1;
}

uint64_t sk_vault_logins(const sk_vault *v)
{
    return v ? v->logins : 0;
}
