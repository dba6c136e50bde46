/* skiff: the binary. CLI, start-up order, signals and the shutdown drain. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "core/admin.h"
#include "core/clock.h"
#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "egress/egress.h"
#include "handler/dispatcher.h"
#include "handler/listener.h"
#include "kafka/kafka.h"
#include "net/peer_tls.h"
#include "secrets/grants.h"
#include "secrets/oauth.h"
#include "secrets/secret.h"
#include "trace/task.h"
#include "secrets/vault.h"
#include "zeebe/zeebe.h"

extern char **environ;

typedef struct app {
    struct event_base *base;
    sk_config cfg;
    sk_metrics *metrics;
    sk_dispatcher *d;
    sk_listener *listener;
    sk_zeebe *zeebe;
    sk_kafka *kafka;
    sk_admin *admin;
    sk_vault *vault;         /* NULL without vault.address */
    sk_secret *zeebe_secret; /* zeebe.client_secret, watched */
    sk_oauth *oauth;
    sk_oauth_client *zeebe_token; /* NULL without zeebe.client_id */
    sk_oauth_client *kafka_token; /* NULL without kafka.oauthbearer */
    sk_secret *oauth_secret;      /* oauth.client_secret when it is not zeebe's */
    sk_grants *grants;            /* the handlers' secret and token calls */
    sk_tracer *tracer;
    sk_egress *egress; /* NULL without egress.listen */
    struct event *sigterm, *sigint, *tick;
    int64_t grace_deadline_ms;
    int64_t exit_deadline_ms;
    int stopping;
    int abandoned;
} app;

static int ready(void *ud, char *why, size_t whylen)
{
    app *a = ud;
    if (a->stopping)
        snprintf(why, whylen, "shutting down");
    else if (a->cfg.zeebe_job_types_len > 0 && !sk_zeebe_connected(a->zeebe))
        snprintf(why, whylen, "Zeebe gateway %s not reachable%s%.300s", a->cfg.zeebe_address,
                 sk_zeebe_last_error(a->zeebe)[0] ? ": " : "", sk_zeebe_last_error(a->zeebe));
    else if (a->vault && !sk_vault_ready(a->vault, why, whylen))
        return 0;
    else if (a->zeebe_token && !sk_oauth_ready(a->zeebe_token, why, whylen))
        return 0;
    else if (a->kafka_token && !sk_oauth_ready(a->kafka_token, why, whylen))
        return 0;
    else if (!sk_kafka_ready(a->kafka, why, whylen))
        return 0;
    else if (sk_dispatcher_sessions(a->d) == 0)
        snprintf(why, whylen, "no handler connected on %s", a->cfg.handler_socket);
    else
        return 1;
    return 0;
}

/* Shutdown progress, every 100 ms once stopping: finish when no task and no command is left;
 * at the end of the grace period give the remaining tasks back; never wait past exit_deadline. */
static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    app *a = arg;
    int64_t now = sk_wall_ms();
    if (!a->abandoned && now >= a->grace_deadline_ms && sk_dispatcher_open(a->d) > 0) {
        SK_WARN("skiff", "grace period over: giving %zu unfinished tasks back",
                sk_dispatcher_open(a->d));
        sk_dispatcher_abandon_all(a->d, "skiff shut down before the handler finished");
        a->abandoned = 1;
    }
    if (now >= a->grace_deadline_ms && sk_egress_pending(a->egress) > 0) {
        SK_WARN("skiff", "grace period over: ending %zu egress calls in flight",
                sk_egress_pending(a->egress));
        sk_egress_abort_all(a->egress);
        return; /* the next tick, once their answers left */
    }
    size_t kafka_left = sk_kafka_pending(a->kafka) + sk_egress_pending(a->egress);
    if (sk_dispatcher_open(a->d) == 0)
        sk_tracer_flush(a->tracer); /* the last task spans are in the queue now */
    int spans_left = sk_tracer_pending(a->tracer) > 0 && now < a->grace_deadline_ms;
    if ((sk_dispatcher_open(a->d) == 0 && sk_zeebe_pending(a->zeebe) == 0 && kafka_left == 0 &&
         !spans_left) ||
        now >= a->exit_deadline_ms)
        event_base_loopexit(a->base, NULL);
}

static void begin_shutdown(app *a)
{
    int64_t now = sk_wall_ms();
    a->stopping = 1;
    a->grace_deadline_ms = now + a->cfg.shutdown_grace_ms;
    a->exit_deadline_ms = a->grace_deadline_ms + 10000;
    SK_INFO("skiff", "shutting down: %zu tasks in flight, grace period %lld ms",
            sk_dispatcher_open(a->d), (long long)a->cfg.shutdown_grace_ms);
    sk_listener_stop(a->listener);
    sk_egress_stop(a->egress);
    sk_zeebe_stop(a->zeebe);
    sk_kafka_stop(a->kafka);
    sk_dispatcher_drain(a->d, a->grace_deadline_ms);
    struct timeval tv = {0, 100000};
    event_add(a->tick, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    app *a = arg;
    if (!a->stopping) {
        SK_INFO("skiff", "received signal %d", (int)sig);
        begin_shutdown(a);
    } else {
        SK_WARN("skiff", "second signal %d: ending the grace period now", (int)sig);
        a->grace_deadline_ms = sk_wall_ms();
    }
}

/* security.literal_secrets=warn: a WARN line per secret setting holding the secret itself, and
 * their number in skiff_literal_secrets (refuse stopped the start already). */
static int literal_report(app *a)
{
    const char *keys[SK_LITERAL_SECRETS_MAX];
    size_t n = sk_config_literal_secrets(&a->cfg, keys);
    sk_series *s = sk_metric_series(
        sk_metrics_gauge(a->metrics, "skiff_literal_secrets",
                         "Secret settings holding the secret itself rather than a vault: or "
                         "file: reference (security.literal_secrets).",
                         NULL),
        NULL);
    if (!s)
        return -1;
    sk_series_set(s, (double)n);
    for (size_t i = 0; i < n && a->cfg.security_literal_secrets == SK_PLAINTEXT_WARN; i++)
        SK_WARN("security",
                "%s holds the secret itself: use vault:<mount>/<path>#<field> or file:<path> "
                "(security.literal_secrets=refuse refuses it)",
                keys[i]);
    return 0;
}

/* The Vault client, when vault.address is set: it resolves the vault: secrets created after. */
static int start_vault(app *a, char *err, size_t errlen)
{
    const sk_config *c = &a->cfg;
    if (!c->vault_address[0])
        return 0;
    sk_vault_opts o = {.address = c->vault_address,
                       .cacert = c->vault_cacert,
                       .client_cert = c->vault_client_cert,
                       .client_key = c->vault_client_key,
                       .namespace_ = c->vault_namespace,
                       .auth_mount = c->vault_auth_mount,
                       .role = c->vault_role,
                       .token_path = c->vault_token_path,
                       .refresh_ms = c->vault_refresh_ms,
                       .timeout_ms = c->vault_timeout_ms,
                       .tls_reload_ms = c->tls_reload_ms};
    if (!(a->vault = sk_vault_new(a->base, a->metrics, &o, err, errlen)))
        return -1;
    sk_vault_install(a->vault);
    return 0;
}

/* The token service and the gateway's OAuth client, when zeebe.client_id is set. */
static int start_oauth(app *a, char *err, size_t errlen)
{
    const sk_config *c = &a->cfg;
    if (!c->zeebe_client_id[0])
        return 0;
    if (!(a->zeebe_secret =
              sk_secret_new("zeebe.client_secret", c->zeebe_client_secret, err, errlen)) ||
        sk_secret_watch(a->zeebe_secret, a->base, a->metrics, 0) != 0 ||
        !(a->oauth = sk_oauth_new(a->base, a->metrics, err, errlen)))
        return -1;
    sk_tls_opts t;
    if (sk_peer_tls_opts(c, "oauth", &t) &&
        sk_oauth_use_tls(a->oauth, &t, c->tls_reload_ms, err, errlen) != 0)
        return -1;
    sk_oauth_opts o = {.name = "zeebe",
                       .token_url = c->zeebe_token_url,
                       .client_id = c->zeebe_client_id,
                       .client_secret = a->zeebe_secret,
                       .audience = c->zeebe_token_audience,
                       .scope = c->zeebe_token_scope,
                       .refresh_ahead_ms = c->oauth_refresh_ahead_ms,
                       .timeout_ms = c->oauth_timeout_ms,
                       .backoff_initial_ms = c->oauth_backoff_initial_ms,
                       .backoff_max_ms = c->oauth_backoff_max_ms};
    if (!(a->zeebe_token = sk_oauth_client_get(a->oauth, &o, err, errlen)))
        return -1;
    if (!c->kafka_oauthbearer)
        return 0;
    o.name = "kafka";
    o.audience = c->kafka_oauthbearer_audience;
    o.scope = c->kafka_oauthbearer_scope;
    a->kafka_token = sk_oauth_client_get(a->oauth, &o, err, errlen);
    return a->kafka_token ? 0 : -1;
}

/* The token service, made here when the gateway has no OAuth client. */
static int oauth_service(app *a, char *err, size_t errlen)
{
    if (a->oauth)
        return 0;
    sk_tls_opts t;
    if (!(a->oauth = sk_oauth_new(a->base, a->metrics, err, errlen)))
        return -1;
    if (sk_peer_tls_opts(&a->cfg, "oauth", &t) &&
        sk_oauth_use_tls(a->oauth, &t, a->cfg.tls_reload_ms, err, errlen) != 0)
        return -1;
    return 0;
}

/* oauth.client_secret, watched: the gateway's secret when it is the same setting. */
static sk_secret *oauth_secret(app *a, char *err, size_t errlen)
{
    const sk_config *c = &a->cfg;
    if (a->oauth_secret)
        return a->oauth_secret;
    if (a->zeebe_secret && strcmp(c->oauth_client_secret, c->zeebe_client_secret) == 0)
        return a->zeebe_secret;
    a->oauth_secret = sk_secret_new("oauth.client_secret", c->oauth_client_secret, err, errlen);
    if (!a->oauth_secret || sk_secret_watch(a->oauth_secret, a->base, a->metrics, 0) != 0)
        return NULL;
    return a->oauth_secret;
}

/* The general OAuth client (oauth.*) as a template for the handlers' token call and the egress
 * routes' oauth_audience, the token service made if needed. 0 with *o filled, or -1 with err
 * set. */
static int general_oauth(app *a, const char *name, sk_oauth_opts *o, char *err, size_t errlen)
{
    const sk_config *c = &a->cfg;
    sk_secret *secret = oauth_secret(a, err, errlen);
    if (!secret)
        return -1;
    if (oauth_service(a, err, errlen) != 0)
        return -1;
    *o = (sk_oauth_opts){.name = name,
                         .token_url = c->oauth_token_url,
                         .client_id = c->oauth_client_id,
                         .client_secret = secret,
                         .refresh_ahead_ms = c->oauth_refresh_ahead_ms,
                         .timeout_ms = c->oauth_timeout_ms,
                         .backoff_initial_ms = c->oauth_backoff_initial_ms,
                         .backoff_max_ms = c->oauth_backoff_max_ms};
    return 0;
}

/* The handlers' secret and token calls (handler.secrets, handler.token_audiences); the token
 * call's client is the general one (oauth.*). */
static int start_grants(app *a, char *err, size_t errlen)
{
    const sk_config *c = &a->cfg;
    if (!c->handler_secrets_len && !c->handler_token_audiences_len)
        return 0;
    sk_oauth_opts client = {.name = "handler"};
    if (c->handler_token_audiences_len && general_oauth(a, "handler", &client, err, errlen) != 0)
        return -1;
    sk_grants_opts o = {.secrets = c->handler_secrets,
                        .nsecrets = c->handler_secrets_len,
                        .audiences = c->handler_token_audiences,
                        .naudiences = c->handler_token_audiences_len,
                        .vault = a->vault,
                        .oauth = a->oauth,
                        .client = &client,
                        .token_wait_ms = c->oauth_timeout_ms,
                        .secret_wait_ms = c->vault_timeout_ms};
    if (!(a->grants = sk_grants_new(a->base, a->metrics, &o, err, errlen)) ||
        sk_grants_register(a->grants, a->d) != 0) {
        if (a->grants)
            snprintf(err, errlen, "handler calls: out of memory");
        return -1;
    }
    return 0;
}

/* The egress proxy, when egress.listen is set: after Vault, whose client resolves the routes'
 * vault: credentials. */
static void ready_details(void *ud, char *out, size_t n)
{
    sk_egress_details(((app *)ud)->egress, out, n);
}

static int egress_uses_oauth(const sk_config *c)
{
    for (size_t i = 0; i < c->egress_routes_len; i++)
        if (c->egress_routes[i].oauth_audience[0])
            return 1;
    return 0;
}

static int start_egress(app *a, char *err, size_t errlen)
{
    if (!(a->egress = sk_egress_new(a->base, &a->cfg, a->metrics, err, errlen)))
        return err[0] ? -1 : 0;
    sk_admin_set_details(a->admin, ready_details, a);
    if (egress_uses_oauth(&a->cfg) && a->cfg.oauth_client_id[0]) {
        sk_oauth_opts o;
        if (general_oauth(a, "egress", &o, err, errlen) != 0 ||
            sk_egress_set_oauth(a->egress, a->oauth, &o, err, errlen) != 0)
            return -1;
    }
    return sk_egress_start(a->egress, err, errlen);
}

static int start(app *a)
{
    char err[512];
    sk_session_opts so = {.max_frame = (size_t)a->cfg.handler_max_frame,
                          .hello_timeout_ms = a->cfg.handler_hello_timeout_ms};
    if (!(a->base = event_base_new()) || !(a->metrics = sk_metrics_new()) ||
        !(a->d = sk_dispatcher_new(a->metrics, (size_t)a->cfg.handler_max_frame))) {
        SK_ERROR("skiff", "out of memory at start-up");
        return -1;
    }
    if (sk_peer_plaintext_report(&a->cfg, a->metrics) != 0 || literal_report(a) != 0) {
        SK_ERROR("skiff", "out of memory at start-up");
        return -1;
    }
    if (start_vault(a, err, sizeof err) != 0 || start_oauth(a, err, sizeof err) != 0 ||
        start_grants(a, err, sizeof err) != 0) {
        SK_ERROR("skiff", "cannot start: %s", err);
        return -1;
    }
    if (!(a->tracer = sk_tracer_new(a->base, &a->cfg, a->metrics, err, sizeof(err)))) {
        SK_ERROR("skiff", "cannot start: %s", err);
        return -1;
    }
    sk_tracer_install(a->tracer);
    sk_trace_task_settings(a->cfg.trace_zeebe_variable, a->cfg.kafka_group_id);
    a->kafka = sk_kafka_new(a->base, &a->cfg, a->d, a->metrics, a->kafka_token, err, sizeof(err));
    if ((!a->kafka && err[0]) ||
        !(a->zeebe =
              sk_zeebe_new(a->base, &a->cfg, a->d, a->metrics, a->zeebe_token, err, sizeof(err))) ||
        !(a->listener = sk_listener_new(a->base, a->cfg.handler_socket, a->d, &so, a->metrics, err,
                                        sizeof(err))) ||
        !(a->admin = sk_admin_new(a->base, a->cfg.admin_address, a->metrics, ready, a, err,
                                  sizeof(err)))) {
        SK_ERROR("skiff", "cannot start: %s", err);
        return -1;
    }
    if (start_egress(a, err, sizeof err) != 0) {
        SK_ERROR("skiff", "cannot start: %s", err);
        return -1;
    }
    a->sigterm = evsignal_new(a->base, SIGTERM, signal_cb, a);
    a->sigint = evsignal_new(a->base, SIGINT, signal_cb, a);
    a->tick = event_new(a->base, -1, EV_PERSIST, tick_cb, a);
    if (!a->sigterm || !a->sigint || !a->tick || evsignal_add(a->sigterm, NULL) ||
        evsignal_add(a->sigint, NULL))
        return -1;
    return 0;
}

static void stop(app *a)
{
    sk_admin_free(a->admin);
    sk_egress_free(a->egress);
    sk_listener_free(a->listener);
    if (a->d) /* tasks still queued go back to their sources while those exist */
        sk_dispatcher_abandon_all(a->d, "skiff stopped");
    sk_kafka_free(a->kafka);
    sk_zeebe_free(a->zeebe);
    sk_grants_free(a->grants);
    sk_oauth_free(a->oauth);
    sk_secret_free(a->zeebe_secret);
    sk_secret_free(a->oauth_secret);
    sk_vault_free(a->vault);
    sk_dispatcher_free(a->d);
    sk_tracer_free(a->tracer);
    sk_trace_task_settings(NULL, NULL);
    if (a->sigterm)
        event_free(a->sigterm);
    if (a->sigint)
        event_free(a->sigint);
    if (a->tick)
        event_free(a->tick);
    sk_metrics_free(a->metrics);
    if (a->base)
        event_base_free(a->base);
    sk_config_clear(&a->cfg);
}

/* Fills the config sources from the options after the subcommand. */
static void sources_from_args(sk_config_sources *src, int argc, char **argv)
{
    *src = (sk_config_sources){.file_path = getenv("SKIFF_CONFIG"),
                               .annotations_path = getenv("SKIFF_ANNOTATIONS"),
                               .environ = environ,
                               .argc = argc,
                               .argv = argv};
    for (int i = 0; i < argc; i++) {
        const char **dst = strncmp(argv[i], "--config", 8) == 0         ? &src->file_path
                           : strncmp(argv[i], "--annotations", 13) == 0 ? &src->annotations_path
                                                                        : NULL;
        const char *eq = strchr(argv[i], '=');
        if (dst && eq)
            *dst = eq + 1;
        else if (dst && i + 1 < argc)
            *dst = argv[i + 1];
    }
}

static int cmd_run(int argc, char **argv)
{
    app a = {0};
    sk_config_sources src;
    sources_from_args(&src, argc, argv);
    int problems = sk_config_load(&a.cfg, &src, stderr);
    if (problems) {
        fprintf(stderr, "skiff: %d configuration problem%s, not starting\n", problems,
                problems == 1 ? "" : "s");
        sk_config_clear(&a.cfg);
        return 2;
    }
    sk_log_init(a.cfg.service_name, (sk_log_level)a.cfg.log_level, stderr);
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    if (start(&a) == 0) {
        SK_LOG(SK_LOG_INFO, "skiff", NULL,
               SK_KV("socket", a.cfg.handler_socket, "zeebe", a.cfg.zeebe_address, "admin",
                     a.cfg.admin_address),
               "skiff %s started with %zu job types and %zu topics", SKIFF_VERSION,
               a.cfg.zeebe_job_types_len, a.cfg.kafka_topics_len);
        rc = event_base_dispatch(a.base) < 0 ? 1 : 0;
        SK_INFO("skiff", "stopped");
    }
    stop(&a);
    return rc;
}

static int cmd_config(int argc, char **argv)
{
    if (argc >= 1 && strcmp(argv[0], "docs") == 0) {
        sk_config_write_docs(stdout);
        return 0;
    }
    if (argc < 1 || strcmp(argv[0], "check") != 0) {
        fprintf(stderr, "usage: skiff config check [options] | skiff config docs\n");
        return 2;
    }
    sk_config cfg = {0};
    sk_config_sources src;
    sources_from_args(&src, argc - 1, argv + 1);
    int problems = sk_config_load(&cfg, &src, stdout);
    problems += sk_peer_tls_check(&cfg, stdout);
    problems += sk_egress_check(&cfg, stdout);
    sk_config_clear(&cfg);
    if (problems)
        printf("%d problem%s found\n", problems, problems == 1 ? "" : "s");
    else
        printf("configuration ok\n");
    return problems ? 2 : 0;
}

static void usage(FILE *out)
{
    fprintf(out, "usage: skiff [run] [--<key>=<value>...] [--config FILE] [--annotations FILE]\n"
                 "       skiff config check [options]   report every configuration problem\n"
                 "       skiff config docs              print the configuration reference\n"
                 "       skiff version | --version\n");
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "config") == 0)
        return cmd_config(argc - 2, argv + 2);
    if (argc >= 2 && (strcmp(argv[1], "version") == 0 || strcmp(argv[1], "--version") == 0)) {
        printf("skiff %s\n", SKIFF_VERSION);
        return 0;
    }
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    return cmd_run(argc - 1, argv + 1);
}
