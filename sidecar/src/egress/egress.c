/* The egress proxy: routes, listener and metrics. The calls themselves are in call.c. */
#include "egress/internal.h"

#include <event2/event.h>
#include <event2/http.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "core/clock.h"
#include "core/log.h"
#include "egress/breaker.h"
#include "egress/bucket.h"
#include "egress/gate.h"
#include "egress/guard.h"
#include "net/http.h"
#include "net/tls.h"
#include "secrets/oauth.h"
#include "secrets/secret.h"

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static const double ttfb_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                      0.25,   0.5,   1,      2.5,   5,    10,    30,   60};

static int families(sk_egress *e)
{
    egress_metrics *f = &e->fam;
    sk_metrics *m = e->m;
    f->requests = sk_metrics_counter(m, "skiff_egress_requests_total",
                                     "Egress calls by route and HTTP status returned to the "
                                     "handler (\"000\": none)",
                                     LIST("route", "code"));
    f->duration = sk_metrics_histogram(m, "skiff_egress_request_duration_seconds",
                                       "Egress call duration, retries included", LIST("route"),
                                       sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    f->ttfb = sk_metrics_histogram(m, "skiff_egress_ttfb_seconds",
                                   "Time from the call's arrival to the upstream's status line",
                                   LIST("route"), ttfb_buckets,
                                   sizeof ttfb_buckets / sizeof ttfb_buckets[0]);
    f->tokens = sk_metrics_counter(m, "skiff_egress_tokens_total",
                                   "LLM tokens reported by upstream responses' usage",
                                   LIST("route", "type"));
    f->rejections =
        sk_metrics_counter(m, "skiff_egress_rejections_total",
                           "Egress calls refused by skiff, by reason", LIST("route", "reason"));
    f->guard_blocks = sk_metrics_counter(m, "skiff_egress_guard_blocks_total",
                                         "Egress calls or responses blocked by a guard rule",
                                         LIST("route", "rule"));
    f->retries =
        sk_metrics_counter(m, "skiff_egress_retries_total",
                           "Egress upstream attempts retried, by reason", LIST("route", "reason"));
    f->breaker_state =
        sk_metrics_gauge(m, "skiff_egress_breaker_state",
                         "Circuit breaker state (0 closed, 1 open, 2 half-open)", LIST("route"));
    f->breaker_transitions =
        sk_metrics_counter(m, "skiff_egress_breaker_transitions_total",
                           "Circuit breaker state changes", LIST("route", "to"));
    f->in_flight =
        sk_metrics_gauge(m, "skiff_egress_in_flight", "Egress calls in flight", LIST("route"));
    f->queued = sk_metrics_gauge(m, "skiff_egress_queued",
                                 "Egress calls waiting for a concurrency slot", LIST("route"));
    return f->requests && f->duration && f->ttfb && f->tokens && f->rejections && f->guard_blocks &&
                   f->retries && f->breaker_state && f->breaker_transitions && f->in_flight &&
                   f->queued
               ? 0
               : -1;
}

void sk_egress_count(sk_egress *e, const route *rt, const char *code)
{
    sk_series_add(sk_metric_series(e->fam.requests, LIST(rt ? rt->cfg->name : "", code)), 1);
}

void sk_egress_count_rejection(sk_egress *e, const route *rt, const char *reason)
{
    sk_series_add(sk_metric_series(e->fam.rejections, LIST(rt ? rt->cfg->name : "", reason)), 1);
}

void sk_egress_count_retry(sk_egress *e, const route *rt, const char *reason)
{
    sk_series_add(sk_metric_series(e->fam.retries, LIST(rt->cfg->name, reason)), 1);
}

int64_t sk_egress_now_ms(void)
{
    return (int64_t)(sk_mono_s() * 1000);
}

size_t sk_egress_needles(const sk_egress *e, const char **vals, size_t *lens, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < e->nroutes && n < max; i++) {
        if (!e->routes[i].cred)
            continue;
        vals[n] = sk_secret_value(e->routes[i].cred, &lens[n]);
        if (vals[n] && lens[n] > 0)
            n++;
    }
    n += sk_secret_values(SK_SECRET_VAULT, vals + n, lens + n, max - n);
    for (size_t i = 0; i < e->nroutes && n < max; i++) {
        const char *tok = e->routes[i].oauth ? sk_oauth_token_get(e->routes[i].oauth) : NULL;
        if (tok && *tok) {
            vals[n] = tok;
            lens[n++] = strlen(tok);
        }
    }
    return n;
}

void sk_egress_scrub(const sk_egress *e, char *text)
{
    const char *vals[SK_EGRESS_MAX_NEEDLES];
    size_t lens[SK_EGRESS_MAX_NEEDLES], len = strlen(text);
    size_t n = sk_egress_needles(e, vals, lens, SK_EGRESS_MAX_NEEDLES);
    for (size_t i = 0; i < n; i++) {
        if (lens[i] < 4) /* as sk_secret_scrub: too short to mean anything */
            continue;
        for (char *p = text; (p = memmem(p, len - (size_t)(p - text), vals[i], lens[i]));
             p += lens[i])
            memset(p, '*', lens[i]);
    }
}

static void on_breaker(void *ud, sk_breaker_state from, sk_breaker_state to)
{
    (void)from;
    route *rt = ud;
    sk_series_set(rt->breaker_state, (double)to);
    sk_series_add(sk_metric_series(rt->eg->fam.breaker_transitions,
                                   LIST(rt->cfg->name, sk_breaker_state_name(to))),
                  1);
    SK_LOG(to == SK_BREAKER_OPEN ? SK_LOG_WARN : SK_LOG_INFO, "egress", NULL,
           SK_KV("route", rt->cfg->name, "breaker", sk_breaker_state_name(to)),
           "route %s: circuit breaker %s", rt->cfg->name, sk_breaker_state_name(to));
}

/* The guard of a route: its rules with "@baseline" in deny_patterns standing for the shipped
 * list. */
static int route_guard(route *rt, char *err, size_t errlen)
{
    const sk_egress_route_config *c = rt->cfg;
    size_t nb = 0, n = 0;
    const char *const *base = sk_guard_baseline(&nb);
    const char **pats = calloc(c->deny_patterns_len + nb + 1, sizeof *pats);
    if (!pats) {
        snprintf(err, errlen, "egress: out of memory");
        return -1;
    }
    for (size_t i = 0; i < c->deny_patterns_len; i++) {
        if (strcmp(c->deny_patterns[i], "@baseline") != 0) {
            pats[n++] = c->deny_patterns[i];
            continue;
        }
        for (size_t k = 0; k < nb; k++)
            pats[n++] = base[k];
        nb = 0; /* a second "@baseline" adds nothing */
    }
    sk_guard_opts o = {.max_request_bytes = (size_t)c->max_request_bytes,
                       .max_tokens = c->max_tokens,
                       .deny_patterns = pats,
                       .n_deny_patterns = n,
                       .strip_control_chars = c->strip_control_chars};
    char why[256];
    rt->guard = sk_guard_new(&o, why, sizeof why);
    free(pats);
    if (!rt->guard)
        snprintf(err, errlen, "egress.routes.%s: %s", c->name, why);
    return rt->guard ? 0 : -1;
}

/* Limits and breaker of a route. */
static int route_policies(route *rt, char *err, size_t errlen)
{
    const sk_egress_route_config *c = rt->cfg;
    int64_t now = sk_egress_now_ms();
    sk_breaker_opts b = {.failure_ratio = c->breaker_ratio,
                         .min_calls = (int)c->breaker_min_calls,
                         .window = 20,
                         .consecutive = (int)c->breaker_consecutive,
                         .open_ms = c->breaker_open_ms,
                         .on_transition = on_breaker,
                         .ud = rt};
    if (route_guard(rt, err, errlen) < 0)
        return -1;
    if (!(rt->rpm = sk_bucket_new((double)c->requests_per_minute, 0, now)) ||
        !(rt->tpm = sk_bucket_new((double)c->tokens_per_minute, 0, now)) ||
        !(rt->gate = sk_gate_new((int)c->max_concurrent, (int)c->max_queued)) ||
        !(rt->breaker = sk_breaker_new(&b))) {
        snprintf(err, errlen, "egress: out of memory");
        return -1;
    }
    return 0;
}

route *sk_egress_route(sk_egress *e, const char *name)
{
    for (size_t i = 0; i < e->nroutes; i++)
        if (strcmp(e->routes[i].cfg->name, name) == 0)
            return &e->routes[i];
    return NULL;
}

/* Credential, TLS material and series of one route. */
static int route_init(sk_egress *e, route *rt, const sk_egress_route_config *c, char *err,
                      size_t errlen)
{
    const char *const name[] = {c->name, NULL};
    char key[128];
    rt->eg = e;
    rt->cfg = c;
    snprintf(key, sizeof key, "egress.routes.%s.credential", c->name);
    if (c->credential[0] && (!(rt->cred = sk_secret_new(key, c->credential, err, errlen)) ||
                             sk_secret_watch(rt->cred, e->base, e->m, 0) != 0))
        return -1;
    if (strncmp(c->upstream, "https://", 8) == 0) {
        char peer[96];
        snprintf(peer, sizeof peer, "egress.%s", c->name);
        sk_tls_opts t = {.peer = peer, .ca_file = c->ca_file};
        if (!(rt->tls = sk_tls_new(&t, e->base, e->cfg->tls_reload_ms, e->m, err, errlen)))
            return -1;
    } else if (e->cfg->security_plaintext != SK_PLAINTEXT_ALLOW) {
        SK_WARN("egress",
                "route %s: upstream %s is plaintext HTTP: the credential and the "
                "calls travel unencrypted",
                c->name, c->upstream);
    }
    if (!(rt->http = sk_http_new(e->base, err, errlen)))
        return -1;
    rt->duration = sk_metric_series(e->fam.duration, name);
    rt->ttfb = sk_metric_series(e->fam.ttfb, name);
    rt->in_flight = sk_metric_series(e->fam.in_flight, name);
    rt->queued = sk_metric_series(e->fam.queued, name);
    rt->breaker_state = sk_metric_series(e->fam.breaker_state, name);
    rt->tokens_in = sk_metric_series(e->fam.tokens, LIST(c->name, "input"));
    rt->tokens_out = sk_metric_series(e->fam.tokens, LIST(c->name, "output"));
    if (!rt->duration || !rt->ttfb || !rt->in_flight || !rt->queued || !rt->breaker_state ||
        !rt->tokens_in || !rt->tokens_out) {
        snprintf(err, errlen, "egress: out of memory");
        return -1;
    }
    return route_policies(rt, err, errlen);
}

sk_egress *sk_egress_new(struct event_base *base, const sk_config *cfg, sk_metrics *m, char *err,
                         size_t errlen)
{
    err[0] = '\0';
    if (!cfg->egress_listen || !cfg->egress_listen[0])
        return NULL;
    sk_egress *e = calloc(1, sizeof *e);
    if (!e) {
        snprintf(err, errlen, "egress: out of memory");
        return NULL;
    }
    *e = (sk_egress){.base = base, .cfg = cfg, .m = m};
    TAILQ_INIT(&e->calls);
    LIST_INIT(&e->conns);
    if (families(e) < 0 || (cfg->egress_routes_len &&
                            !(e->routes = calloc(cfg->egress_routes_len, sizeof *e->routes)))) {
        snprintf(err, errlen, "egress: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < cfg->egress_routes_len; i++) {
        e->nroutes = i + 1;
        if (route_init(e, &e->routes[i], &cfg->egress_routes[i], err, errlen) < 0)
            goto fail;
    }
    return e;
fail:
    sk_egress_free(e);
    return NULL;
}

/* The largest body any route takes: evhttp's own bound (each route checks its own). */
static int64_t max_body(const sk_egress *e)
{
    int64_t max = 1;
    for (size_t i = 0; i < e->nroutes; i++)
        if (e->routes[i].cfg->max_request_bytes > max)
            max = e->routes[i].cfg->max_request_bytes;
    return max;
}

int sk_egress_check(const sk_config *cfg, FILE *out)
{
    int problems = 0;
    for (size_t i = 0; cfg->egress_listen[0] && i < cfg->egress_routes_len; i++) {
        const sk_egress_route_config *c = &cfg->egress_routes[i];
        char peer[96], err[512];
        if (strncmp(c->upstream, "https://", 8) != 0 || !c->ca_file[0])
            continue;
        snprintf(peer, sizeof peer, "egress.%s", c->name);
        sk_tls_opts t = {.peer = peer, .ca_file = c->ca_file};
        if (sk_tls_check(&t, err, sizeof err) != 0) {
            fprintf(out, "egress.routes.%s.ca_file: %s\n", c->name, err);
            problems++;
        }
    }
    return problems;
}

int sk_egress_set_oauth(sk_egress *e, sk_oauth *o, const sk_oauth_opts *tmpl, char *err,
                        size_t errlen)
{
    for (size_t i = 0; i < e->nroutes; i++) {
        route *rt = &e->routes[i];
        if (!rt->cfg->oauth_audience[0])
            continue;
        sk_oauth_opts opts = *tmpl;
        opts.name = "egress";
        opts.audience = rt->cfg->oauth_audience;
        opts.check_audience = 1;
        if (!(rt->oauth = sk_oauth_client_get(o, &opts, err, errlen)))
            return -1;
    }
    return 0;
}

int sk_egress_start(sk_egress *e, char *err, size_t errlen)
{
    for (size_t i = 0; i < e->nroutes; i++)
        if (e->routes[i].cfg->oauth_audience[0] && !e->routes[i].oauth) {
            snprintf(err, errlen,
                     "egress.routes.%s.oauth_audience: set, but no OAuth client is configured "
                     "(oauth.client_id, oauth.client_secret, oauth.token_url)",
                     e->routes[i].cfg->name);
            return -1;
        }
    char host[256];
    int port;
    if (sk_config_parse_address(e->cfg->egress_listen, host, sizeof host, &port) < 0 ||
        !(e->server = evhttp_new(e->base))) {
        snprintf(err, errlen, "egress: cannot listen on %s", e->cfg->egress_listen);
        return -1;
    }
    /* A body past twice the largest route's limit and 10 s without a byte while a request is
     * read are refused by evhttp itself (ADR 0011-egress-listener); a body between a route's
     * limit and evhttp's by the route's guard with the JSON body; a head over 32 KiB or not
     * arrived within 10 s by conn.c. */
    evhttp_set_max_headers_size(e->server, 2 * SK_EGRESS_MAX_HEAD); /* conn.c answers first */
    evhttp_set_bevcb(e->server, sk_egress_conn_bev, e);
    evhttp_set_max_body_size(e->server, (ev_ssize_t)(2 * max_body(e) + 64 * 1024));
    evhttp_set_timeout(e->server, 10);
    evhttp_set_allowed_methods(e->server, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                              EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    evhttp_set_gencb(e->server, sk_egress_on_request, e);
    struct evhttp_bound_socket *s =
        evhttp_bind_socket_with_handle(e->server, host, (ev_uint16_t)port);
    if (!s) {
        snprintf(err, errlen, "egress: cannot listen on %s", e->cfg->egress_listen);
        return -1;
    }
    e->bound = s;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(evhttp_bound_socket_get_fd(s), (struct sockaddr *)&ss, &sl) == 0)
        e->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    SK_LOG(SK_LOG_INFO, "egress", NULL, SK_KV("listen", e->cfg->egress_listen),
           "egress listening on port %d with %zu routes", e->port, e->nroutes);
    return 0;
}

int sk_egress_port(const sk_egress *e)
{
    return e ? e->port : 0;
}

void sk_egress_details(const sk_egress *e, char *out, size_t n)
{
    size_t o = 0;
    int64_t now = sk_egress_now_ms();
    if (n)
        out[0] = '\0';
    for (size_t i = 0; e && i < e->nroutes && o < n; i++) {
        const route *rt = &e->routes[i];
        int calls = 0, failures = 0;
        sk_breaker_window(rt->breaker, &calls, &failures);
        o += (size_t)snprintf(
            out + o, n - o, "egress route %s: breaker %s (%d failures in the last %d calls)\n",
            rt->cfg->name, sk_breaker_state_name(sk_breaker_state_at(rt->breaker, now)), failures,
            calls);
    }
}

void sk_egress_stop(sk_egress *e)
{
    if (!e || !e->server)
        return;
    /* New connections are refused; those open keep their calls. */
    if (e->bound)
        evhttp_del_accept_socket(e->server, e->bound);
    e->bound = NULL;
}

void sk_egress_abort_all(sk_egress *e)
{
    call *c;
    while (e && (c = TAILQ_FIRST(&e->calls)) != NULL)
        sk_egress_call_abort(c);
}

size_t sk_egress_pending(const sk_egress *e)
{
    return e ? e->ncalls : 0;
}

void sk_egress_free(sk_egress *e)
{
    if (!e)
        return;
    sk_egress_abort_all(e);
    if (e->server)
        evhttp_free(e->server);
    sk_egress_conns_free(e);
    for (size_t i = 0; i < e->nroutes; i++) {
        sk_secret_free(e->routes[i].cred);
        sk_http_free(e->routes[i].http);
        sk_tls_free(e->routes[i].tls);
        sk_guard_free(e->routes[i].guard);
        sk_bucket_free(e->routes[i].rpm);
        sk_bucket_free(e->routes[i].tpm);
        sk_gate_free(e->routes[i].gate);
        sk_breaker_free(e->routes[i].breaker);
    }
    free(e->routes);
    free(e);
}
