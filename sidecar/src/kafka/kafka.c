/* The Kafka module object: set-up of the registry, the producer and the consumer, readiness,
 * shutdown, and the wake-up pipes that bring librdkafka's events onto the loop. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "kafka/internal.h"
#include "net/peer_tls.h"
#include "net/tls.h"

int kwake_start(sk_kafka *k, kwake *w, rd_kafka_queue_t *q,
                void (*fn)(evutil_socket_t, short, void *), void *arg)
{
    if (pipe(w->fds) != 0)
        return -1;
    for (int i = 0; i < 2; i++)
        if (fcntl(w->fds[i], F_SETFL, O_NONBLOCK) != 0 || fcntl(w->fds[i], F_SETFD, FD_CLOEXEC))
            return -1;
    if (!(w->ev = event_new(k->base, w->fds[0], EV_READ | EV_PERSIST, fn, arg)) ||
        event_add(w->ev, NULL) != 0)
        return -1;
    /* librdkafka writes this byte whenever q goes from empty to non-empty. q may hold events
     * already (an OAUTHBEARER token refresh is queued by rd_kafka_new): served once now. */
    rd_kafka_queue_io_event_enable(q, w->fds[1], "1", 1);
    event_active(w->ev, EV_READ, 1);
    return 0;
}

void kwake_stop(kwake *w)
{
    if (w->ev)
        event_free(w->ev);
    w->ev = NULL;
    for (int i = 0; i < 2; i++)
        if (w->fds[i] > 0)
            close(w->fds[i]);
    w->fds[0] = w->fds[1] = -1;
}

int kconf_set(rd_kafka_conf_t *c, const char *name, const char *value, char *err, size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(c, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "librdkafka setting %s=%s: %s", name, value, why);
    return -1;
}

/* librdkafka's own log lines (syslog levels: 0-3 errors, 4 warnings, the rest debug), naming
 * the client they come from. With log.queue they are served by the polls on the loop, never
 * from librdkafka's threads. */
static void log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    sk_log_level l = level <= 3 ? SK_LOG_ERROR : level == 4 ? SK_LOG_WARN : SK_LOG_DEBUG;
    const char *client = rk && rd_kafka_type(rk) == RD_KAFKA_PRODUCER ? "producer" : "consumer";
    SK_LOG(l, "kafka", NULL, SK_KV("facility", fac, "client", client), "%s", buf);
}

/* The SASL password is the one setting whose value never goes into a message. */
static int kconf_set_secret(rd_kafka_conf_t *c, const char *name, const char *value, char *err,
                            size_t errlen)
{
    char why[256];
    if (rd_kafka_conf_set(c, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    snprintf(err, errlen, "librdkafka setting %s: refused", name);
    return -1;
}

static int kconf_file(rd_kafka_conf_t *c, const char *name, const char *path, char *err,
                      size_t errlen)
{
    return path && path[0] ? kconf_set(c, name, path, err, errlen) : 0;
}

/* security.protocol and what goes with it: the same files the TLS layer checked (host name
 * verification always on), the SASL mechanism and credentials. */
static int kconf_security(const sk_kafka *k, rd_kafka_conf_t *c, char *err, size_t errlen)
{
    const sk_config *cfg = k->cfg;
    int p = cfg->kafka_security_protocol;
    if (kconf_set(c, "security.protocol", sk_kafka_protocols[p], err, errlen) != 0)
        return -1;
    if ((p == SK_KAFKA_SSL || p == SK_KAFKA_SASL_SSL) &&
        (kconf_set(c, "ssl.endpoint.identification.algorithm", "https", err, errlen) ||
         kconf_file(c, "ssl.ca.location", cfg->kafka_ssl_ca, err, errlen) ||
         kconf_file(c, "ssl.certificate.location", cfg->kafka_ssl_cert, err, errlen) ||
         kconf_file(c, "ssl.key.location", cfg->kafka_ssl_key, err, errlen)))
        return -1;
    if (p != SK_KAFKA_SASL_SSL && p != SK_KAFKA_SASL_PLAINTEXT)
        return 0;
    return kconf_set(c, "sasl.mechanisms", sk_kafka_sasl_mechanisms[cfg->kafka_sasl_mechanism], err,
                     errlen) ||
                   kconf_set(c, "sasl.username", cfg->kafka_sasl_username, err, errlen) ||
                   kconf_set_secret(c, "sasl.password", ksasl_password(k), err, errlen)
               ? -1
               : 0;
}

rd_kafka_conf_t *kconf_new(const sk_kafka *k, char *err, size_t errlen)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    size_t len = 0;
    for (size_t i = 0; i < k->cfg->kafka_brokers_len; i++)
        len += strlen(k->cfg->kafka_brokers[i]) + 1;
    char *brokers = calloc(1, len + 1);
    for (size_t i = 0; brokers && i < k->cfg->kafka_brokers_len; i++) {
        if (i)
            strcat(brokers, ",");
        strcat(brokers, k->cfg->kafka_brokers[i]);
    }
    int bad = !c || !brokers || kconf_set(c, "bootstrap.servers", brokers, err, errlen) ||
              kconf_set(c, "client.id", k->cfg->service_name, err, errlen) ||
              kconf_set(c, "log.queue", "true", err, errlen) ||
              /* KIP-714 client telemetry (librdkafka >= 2.5, on by default): skiff has its own
               * metrics, and the telemetry's histograms cost about 0.7 MB at idle. */
              kconf_set(c, "enable.metrics.push", "false", err, errlen) ||
              kconf_security(k, c, err, errlen);
    free(brokers);
    if (bad) {
        if (c)
            rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(c, log_cb);
    if (koauth_conf(k, c, err, errlen) != 0) {
        rd_kafka_conf_destroy(c);
        return NULL;
    }
    return c;
}

static void on_tls_change(void *ud, int changed_cert)
{
    (void)ud;
    (void)changed_cert;
    SK_WARN("kafka", "new TLS files for the brokers are valid but take effect at the next start "
                     "of skiff: librdkafka builds its TLS context once");
}

/* The brokers' and the registry's TLS material through the TLS layer: the files are checked
 * (a bad one is named at start-up), watched, and their expiry is a metric. librdkafka then
 * reads the same files; the registry's HTTP client uses the material itself. */
static int ktls_start(sk_kafka *k, char *err, size_t errlen)
{
    sk_tls_opts o;
    if (sk_peer_tls_opts(k->cfg, "kafka", &o)) {
        if (!(k->tls = sk_tls_new(&o, k->base, k->cfg->tls_reload_ms, k->metrics, err, errlen)))
            return -1;
        sk_tls_on_change(k->tls, on_tls_change, k);
    }
    if (sk_peer_tls_opts(k->cfg, "schema_registry", &o) &&
        !(k->registry_tls =
              sk_tls_new(&o, k->base, k->cfg->tls_reload_ms, k->metrics, err, errlen)))
        return -1;
    return 0;
}

sk_kafka *sk_kafka_new(struct event_base *base, const sk_config *cfg, sk_dispatcher *d,
                       sk_metrics *metrics, sk_oauth_client *token, char *err, size_t errlen)
{
    err[0] = '\0';
    if (cfg->kafka_brokers_len == 0)
        return NULL;
    sk_kafka *k = calloc(1, sizeof *k);
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    *k = (sk_kafka){
        .base = base, .cfg = cfg, .d = d, .metrics = metrics, .token = token, .wake.fds = {-1, -1}};
    if (ktls_start(k, err, errlen) != 0) {
        sk_kafka_free(k);
        return NULL;
    }
    if (cfg->kafka_sasl_password[0] &&
        (!(k->sasl_password =
               sk_secret_new("kafka.sasl.password", cfg->kafka_sasl_password, err, errlen)) ||
         sk_secret_watch(k->sasl_password, base, metrics, 0) != 0)) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        sk_kafka_free(k);
        return NULL;
    }
    if (cfg->registry_password[0] &&
        (!(k->registry_password =
               sk_secret_new("schema_registry.password", cfg->registry_password, err, errlen)) ||
         sk_secret_watch(k->registry_password, base, metrics, 0) != 0)) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        sk_kafka_free(k);
        return NULL;
    }
    sk_registry_opts ro = {.url = cfg->registry_url,
                           .username = cfg->registry_username,
                           .password = k->registry_password,
                           .latest_ttl_ms = cfg->registry_latest_ttl_ms,
                           .timeout_ms = cfg->registry_timeout_ms,
                           .tls = k->registry_tls};
    if (kreader_load(k, err, errlen) != 0 ||
        !(k->registry = sk_registry_new(base, &ro, metrics, err, errlen)) ||
        !(k->producer = kproducer_new(k, err, errlen)) || kproduce_register(k) != 0 ||
        (cfg->kafka_topics_len > 0 && kconsumer_start(k, err, errlen) != 0)) {
        if (!err[0])
            snprintf(err, errlen, "out of memory");
        sk_kafka_free(k);
        return NULL;
    }
    SK_LOG(SK_LOG_INFO, "kafka", NULL, SK_KV("group", cfg->kafka_group_id),
           "Kafka started: %zu topics to consume; the producer starts with the first record to "
           "produce",
           cfg->kafka_topics_len);
    return k;
}

int sk_kafka_ready(const sk_kafka *k, char *why, size_t whylen)
{
    if (!k || !k->rk)
        return 1;
    if (k->fatal[0]) {
        snprintf(why, whylen, "Kafka consumer failed: %s", k->fatal);
        return 0;
    }
    if (kreader_waiting(k, why, whylen))
        return 0;
    if (!k->assigned_once) {
        snprintf(why, whylen, "Kafka consumer group %s has not assigned partitions yet%s%.200s",
                 k->cfg->kafka_group_id, k->last_error[0] ? "; last error: " : "", k->last_error);
        return 0;
    }
    return 1;
}

void sk_kafka_stop(sk_kafka *k)
{
    if (!k || k->stopping)
        return;
    k->stopping = 1;
    if (k->rk)
        kconsumer_stop(k);
}

size_t sk_kafka_pending(sk_kafka *k)
{
    if (!k)
        return 0;
    size_t n = k->running + kproducer_pending(k->producer);
    if (k->rk && k->stopping && n == 0 && !k->closing)
        kconsumer_close(k); /* the last record is done: commit and leave */
    return n + (k->rk && k->closing && !rd_kafka_consumer_closed(k->rk));
}

void sk_kafka_free(sk_kafka *k)
{
    if (!k)
        return;
    k->stopping = 1;
    koauth_detach(k);
    ksasl_detach(k);
    kproduce_cancel_all(k);
    kproducer_free(k->producer); /* reports what is still queued while its owners exist */
    kconsumer_free(k);
    sk_registry_free(k->registry);
    kreader_free_all(k->readers);
    sk_tls_free(k->tls);
    sk_tls_free(k->registry_tls);
    sk_secret_free(k->registry_password);
    sk_secret_free(k->sasl_password);
    free(k);
}
