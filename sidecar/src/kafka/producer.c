/* The idempotent producer (acks=all, retried by librdkafka until kafka.delivery_timeout): one
 * topic handle per topic, carrying the compression of its class (business events, agent
 * commands, dead letters, other). Delivery reports are served on the loop.
 *
 * Its librdkafka client starts with the first record to send (a handler's produce call or a
 * dead letter), not with skiff: an idle sidecar that never produces does not keep the client's
 * threads, buffers and broker connection (0.3-0.5 MB resident in the image, three threads;
 * ADR 0020-kafka-idle-memory). Its settings are checked at start all the same. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "kafka/internal.h"

#define MAX_TOPIC_HANDLES 1000 /* beyond: the producer's default compression */
/* Records waiting for a broker, whatever their size: librdkafka's byte bound counts values
 * only, and each queued record also holds its own copy of key and headers and a message
 * object of its own (a few hundred bytes): 10000 of them stay a few MB. */
#define QUEUE_RECORDS "10000"
#define FULL_LOG_S 1.0 /* queue-full refusals are logged at most once per this, with a count */

typedef struct ktopic {
    char *name;
    rd_kafka_topic_t *rkt;
    struct ktopic *next;
} ktopic;

struct kproducer {
    sk_kafka *k;
    rd_kafka_t *rk;
    rd_kafka_queue_t *main;
    kwake wake;
    ktopic *topics;
    size_t ntopics;
    size_t pending;
    size_t refused;        /* queue-full refusals not logged yet */
    double full_logged_at; /* sk_mono_s() of the last queue-full line, 0 none */
    sk_metric *m_produced; /* by topic and result */
    sk_metric *m_seconds;  /* send to delivery report */
};

/* One record sent and not yet reported. */
typedef struct delivery {
    kproducer *p;
    kdelivery_cb cb;
    void *ud;
    double sent_at;
} delivery;

static sk_topic_class topic_class(const char *topic)
{
    size_t n = strlen(topic);
    if (n >= 4 && strcmp(topic + n - 4, ".dlq") == 0)
        return SK_TOPIC_DLQ;
    if (strncmp(topic, "business.", 9) == 0)
        return SK_TOPIC_BUSINESS;
    if (strncmp(topic, "agent.", 6) == 0)
        return SK_TOPIC_AGENT;
    return SK_TOPIC_OTHER;
}

/* The handle of topic, created with its class's compression; NULL past MAX_TOPIC_HANDLES. */
static rd_kafka_topic_t *topic_handle(kproducer *p, const char *topic)
{
    for (ktopic *t = p->topics; t; t = t->next)
        if (strcmp(t->name, topic) == 0)
            return t->rkt;
    if (p->ntopics >= MAX_TOPIC_HANDLES)
        return NULL;
    /* A copy of the default topic settings: message.timeout.ms (kafka.delivery_timeout) is a
     * topic setting in librdkafka; a fresh topic conf would fall back to 300 s. */
    rd_kafka_topic_conf_t *tc = rd_kafka_default_topic_conf_dup(p->rk);
    char why[256];
    const char *codec = sk_kafka_codecs[p->k->cfg->kafka_compression[topic_class(topic)]];
    if (!tc || rd_kafka_topic_conf_set(tc, "compression.codec", codec, why, sizeof why) !=
                   RD_KAFKA_CONF_OK) {
        if (tc)
            rd_kafka_topic_conf_destroy(tc);
        return NULL;
    }
    ktopic *t = calloc(1, sizeof *t);
    if (!t || !(t->name = strdup(topic)) || !(t->rkt = rd_kafka_topic_new(p->rk, topic, tc))) {
        if (!t || !t->rkt)
            rd_kafka_topic_conf_destroy(tc);
        if (t)
            free(t->name);
        free(t);
        return NULL;
    }
    t->next = p->topics;
    p->topics = t;
    p->ntopics++;
    return t->rkt;
}

void kproducer_count(kproducer *p, const char *topic, const char *result)
{
    const char *const labels[] = {topic, result, NULL};
    sk_series_add(sk_metric_series(p->m_produced, labels), 1);
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    delivery *dl = m->_private;
    kproducer *p = dl->p;
    p->pending--;
    const char *topic = rd_kafka_topic_name(m->rkt);
    kproducer_count(p, topic, m->err ? "error" : "ok");
    sk_series_observe(sk_metric_series(p->m_seconds, NULL), sk_mono_s() - dl->sent_at);
    if (m->err)
        SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", topic), "record not delivered: %s",
               rd_kafka_err2str(m->err));
    dl->cb(dl->ud, m->err, m->partition, m->offset);
    free(dl);
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    (void)rk;
    (void)opaque;
    SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("client", "producer"), "%s: %s",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    kproducer *p = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    rd_kafka_poll(p->rk, 0);
}

/* The client's settings; NULL with err when librdkafka refuses one. */
static rd_kafka_conf_t *producer_conf(sk_kafka *k, char *err, size_t errlen)
{
    char ms[32], kb[32];
    snprintf(ms, sizeof ms, "%lld", (long long)k->cfg->kafka_delivery_timeout_ms);
    snprintf(kb, sizeof kb, "%lld", (long long)(k->cfg->kafka_producer_queue / 1024));
    rd_kafka_conf_t *c = kconf_new(k, err, errlen);
    if (!c || kconf_set(c, "enable.idempotence", "true", err, errlen) ||
        kconf_set(c, "acks", "all", err, errlen) ||
        kconf_set(c, "message.timeout.ms", ms, err, errlen) ||
        kconf_set(c, "queue.buffering.max.kbytes", kb, err, errlen) ||
        kconf_set(c, "queue.buffering.max.messages", QUEUE_RECORDS, err, errlen)) {
        if (c)
            rd_kafka_conf_destroy(c);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_conf_set_error_cb(c, error_cb);
    return c;
}

/* Starts the librdkafka client unless it runs: built from the settings as they are now (a
 * rotated SASL password, the current OAUTHBEARER token), its queue watched by the loop. 0, or
 * -1 with err (logged: the caller may only answer a produce call or retry a dead letter). */
static int client_start(kproducer *p, char *err, size_t errlen)
{
    if (p->rk)
        return 0;
    char why[512] = "";
    rd_kafka_conf_t *c = producer_conf(p->k, why, sizeof why);
    if (c && !(p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, why, sizeof why)))
        rd_kafka_conf_destroy(c);
    if (p->rk) {
        rd_kafka_set_log_queue(p->rk, NULL);
        p->main = rd_kafka_queue_get_main(p->rk);
        if (kwake_start(p->k, &p->wake, p->main, on_wake, p) == 0) {
            koauth_attach(p->k, p->rk);
            ksasl_attach(p->k, p->rk);
            SK_INFO("kafka", "Kafka producer started (first record to produce)");
            return 0;
        }
        snprintf(why, sizeof why, "cannot watch the producer's queue");
        kwake_stop(&p->wake);
        rd_kafka_queue_destroy(p->main);
        rd_kafka_destroy(p->rk);
        p->main = NULL;
        p->rk = NULL;
    }
    SK_LOG(SK_LOG_ERROR, "kafka", NULL, SK_KV("client", "producer"),
           "Kafka producer cannot start: %s", why);
    snprintf(err, errlen, "Kafka producer cannot start: %s", why);
    return -1;
}

kproducer *kproducer_new(sk_kafka *k, char *err, size_t errlen)
{
    /* A setting librdkafka refuses stops skiff at start, as when the client started then. */
    rd_kafka_conf_t *c = producer_conf(k, err, errlen);
    if (!c)
        return NULL;
    rd_kafka_conf_destroy(c);
    kproducer *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    *p = (kproducer){.k = k, .wake.fds = {-1, -1}};
    static const char *const by_topic[] = {"topic", "result", NULL};
    p->m_produced = sk_metrics_counter(k->metrics, "skiff_kafka_produced_total",
                                       "Records produced (produce calls and dead letters), by "
                                       "topic and result: ok, error (delivery), invalid_value "
                                       "(refused before sending: the value does not match the "
                                       "schema), queue_full (refused before sending: "
                                       "kafka.producer_queue_size reached).",
                                       by_topic);
    p->m_seconds =
        sk_metrics_histogram(k->metrics, "skiff_kafka_produce_seconds",
                             "Time from sending a record to its delivery report (acks=all).", NULL,
                             sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    return p;
}

/* A record refused for a full queue: counted, and logged at most once per FULL_LOG_S with the
 * number refused since the last line (an outage refuses every record a busy handler makes). */
static void refuse_full(kproducer *p, const char *topic)
{
    kproducer_count(p, topic, "queue_full");
    p->refused++;
    double now = sk_mono_s();
    if (p->full_logged_at > 0 && now - p->full_logged_at < FULL_LOG_S)
        return;
    SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("topic", topic, "reason", "queue_full"),
           "record refused, nothing written: the producer's queue is full "
           "(kafka.producer_queue_size=%lld bytes or 10000 records waiting for a broker); %zu "
           "refused since the last such line",
           (long long)p->k->cfg->kafka_producer_queue, p->refused);
    p->refused = 0;
    p->full_logged_at = now;
}

int kproducer_send(kproducer *p, const char *topic, const void *key, size_t keylen,
                   const void *value, size_t valuelen, rd_kafka_headers_t *headers, kdelivery_cb cb,
                   void *ud, char *err, size_t errlen)
{
    if (client_start(p, err, errlen) != 0) {
        if (headers)
            rd_kafka_headers_destroy(headers);
        return -1;
    }
    delivery *dl = calloc(1, sizeof *dl);
    rd_kafka_topic_t *rkt = dl ? topic_handle(p, topic) : NULL;
    if (!rkt) {
        snprintf(err, errlen, "out of memory or too many topics");
        free(dl);
        if (headers)
            rd_kafka_headers_destroy(headers);
        return -1;
    }
    *dl = (delivery){.p = p, .cb = cb, .ud = ud, .sent_at = sk_mono_s()};
    rd_kafka_resp_err_t e =
        rd_kafka_producev(p->rk, RD_KAFKA_V_RKT(rkt), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                          RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE((void *)value, valuelen),
                          RD_KAFKA_V_HEADERS(headers), RD_KAFKA_V_OPAQUE(dl), RD_KAFKA_V_END);
    if (e) {
        if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            refuse_full(p, topic);
        snprintf(err, errlen, "%s",
                 e == RD_KAFKA_RESP_ERR__QUEUE_FULL
                     ? "the producer's queue is full (brokers unreachable or slower than the "
                       "records produced; kafka.producer_queue_size)"
                     : rd_kafka_err2str(e));
        free(dl);
        if (headers)
            rd_kafka_headers_destroy(headers);
        return e == RD_KAFKA_RESP_ERR__QUEUE_FULL ? KPRODUCER_FULL : -1;
    }
    p->pending++;
    return 0;
}

size_t kproducer_pending(const kproducer *p)
{
    return p ? p->pending : 0;
}

void kproducer_free(kproducer *p)
{
    if (!p)
        return;
    if (p->rk) {
        /* Records still queued are reported (purged) to their owners, which still exist. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(p->rk, 2000);
    }
    kwake_stop(&p->wake);
    while (p->topics) {
        ktopic *t = p->topics;
        p->topics = t->next;
        rd_kafka_topic_destroy(t->rkt);
        free(t->name);
        free(t);
    }
    if (p->main)
        rd_kafka_queue_destroy(p->main);
    if (p->rk)
        rd_kafka_destroy(p->rk);
    free(p);
}
