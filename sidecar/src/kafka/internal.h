/* Shared between the Kafka module's files.
 *
 *   kafka.c     the module object: set-up, readiness, shutdown
 *   consumer.c  group membership, rebalances, polling, pause/resume, commits
 *   lag.c       consumer lag: partition ends from fetches, or asked of the brokers
 *   records.c   one record from the wire to its task and back: decode, dispatch, ack/nack,
 *               retry backoff, deadline, dead letter
 *   producer.c  the idempotent producer: topic handles with their compression, delivery
 *               reports, dead-letter records
 *   produce.c   the handlers' `produce` call */
#ifndef SK_KAFKA_INTERNAL_H
#define SK_KAFKA_INTERNAL_H

#include <event2/event_struct.h>
#include <event2/util.h>
#include <jansson.h>
#include <librdkafka/rdkafka.h>

#include "core/backoff.h"
#include "core/jtext.h"
#include "kafka/kafka.h"
#include "kafka/partq.h"
#include "schema/registry.h"

struct event;

/* A librdkafka client whose event queue wakes the loop through a pipe. */
typedef struct kwake {
    int fds[2];
    struct event *ev;
} kwake;

typedef struct kproducer kproducer;
typedef struct kpart kpart;
typedef struct krec krec;
typedef struct kreader kreader;

struct sk_kafka {
    struct event_base *base;
    const sk_config *cfg;
    sk_dispatcher *d;
    sk_metrics *metrics;
    sk_registry *registry;
    kreader *readers;             /* kafka.reader_schemas, by topic */
    sk_secret *registry_password; /* schema_registry.password, watched; NULL when empty */
    sk_oauth_client *token;       /* OAUTHBEARER tokens, or NULL */
    rd_kafka_t *oauth_rk[2];      /* the clients that take them (consumer, producer) */
    kproducer *producer;
    /* consumer (NULL without kafka.topics) */
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    kwake wake;
    struct event *commit_timer;
    struct event *pump_ev;       /* kconsumer_pump_soon */
    struct event *stall_ev;      /* checks whether reading has stopped for too long */
    rd_kafka_queue_t *lag_queue; /* lag.c: answers to its ListOffsets requests */
    kwake lag_wake;
    struct event *lag_timer;
    int lag_querying;       /* a ListOffsets request is unanswered */
    int throttled;          /* reading stopped: records waiting to start reached the bound */
    int stalled;            /* throttled for STALL_S: every partition paused, reading again */
    double throttled_since; /* sk_mono_s() when reading stopped */
    kpart *parts;           /* assigned partitions, and revoked ones still holding records */
    struct pcall *calls;    /* produce calls waiting for a schema */
    uint64_t serial;        /* task ids */
    int commits_inflight;   /* commits sent and not yet answered (commit_cb) */
    double commit_sent_at;  /* sk_mono_s() of the last one sent */
    double recommit_until;  /* sk_mono_s() until which every position is committed again */
    size_t running;         /* records with a handler or being dead-lettered */
    int assigned_once;      /* a first assignment happened */
    int stopping, closing;  /* sk_kafka_stop called; group leave started */
    int pumping, repump;    /* kconsumer_pump running; called again meanwhile */
    char fatal[256];        /* a fatal consumer error, "" when none */
    const struct timeval *deadline_tv; /* kafka.task_timeout as a common timeout, or NULL */
    sk_jtext frame;       /* the task frame being built (reused: no allocation per record) */
    sk_jtext value;       /* the record value's JSON text (reused likewise) */
    char last_error[256]; /* the last broker connection error (TLS, SASL...), for readiness */
    struct sk_tls *tls;   /* the brokers' TLS material (ssl, sasl_ssl), else NULL */
    struct sk_tls *registry_tls; /* an https:// registry's, else NULL */
    sk_secret *sasl_password;    /* kafka.sasl.password, watched; NULL when empty */
    rd_kafka_t *sasl_rk[2];      /* the clients that take its new values */
    sk_metric *m_received;       /* records read, by topic */
    sk_metric *m_processed;      /* by topic and outcome (acked, dead_lettered) */
    sk_metric *m_redeliver;      /* by topic and reason */
    sk_metric *m_dead;           /* dead-lettered, by topic and reason */
    sk_metric *m_lag;            /* by topic and partition */
    sk_metric *m_paused;         /* paused partitions, by topic */
    sk_metric *m_held;           /* records held by skiff, by topic */
    sk_metric *m_commits;        /* by result */
    sk_metric *m_errors;         /* client errors, by code */
    sk_metric *m_hdrdrop;        /* headers a task frame cannot carry, by topic */
    sk_metric *m_extends;        /* handlers' extends, by topic and result */
};

/* An assigned partition. */
struct kpart {
    sk_kafka *k;
    char *topic;
    int32_t partition;
    sk_partq *q;
    int paused;
    int revoked;       /* no longer ours: results are dropped, it goes when empty */
    int revoking;      /* its records are being dropped */
    size_t nrecs;      /* krec objects of this partition */
    int64_t committed; /* last position committed, -1 none */
    int64_t end;       /* highest end offset (high watermark) seen, -1 none (lag.c) */
    sk_series *m_held, *m_paused, *m_lag;
    sk_series *m_received, *m_acked; /* this topic's series of m_received, m_processed */
    kpart *next;
};

/* A record held by skiff, from the poll until it is processed. */
struct krec {
    kpart *p;
    rd_kafka_message_t *msg;
    int64_t offset;
    int attempt;                  /* deliveries so far */
    int in_dispatcher;            /* a task is open for it */
    const sk_avro_schema *schema; /* its value's, once known (NULL: a tombstone) */
    int32_t schema_id;
    char id[320];           /* task id of the current delivery */
    struct event timer;     /* retry backoff, schema retry or deadline (no allocation) */
    int armed;              /* timer is assigned (maybe pending) */
    sk_backoff bo;          /* schema lookups and dead-letter writes */
    sk_backoff retry_bo;    /* deliveries after a failed attempt */
    int dlq_writing;        /* its dead-letter write is in flight */
    const char *dlq_reason; /* why it is being dead-lettered */
    sk_registry_lookup *lookup;
    char *error; /* why its last attempt failed */
};

/* ---- reader.c: reader schemas (kafka.reader_schemas) ---- */
/* Loads every reader schema file and notes the subject versions to fetch; -1 with err naming
 * the topic and the problem. */
int kreader_load(sk_kafka *k, char *err, size_t errlen);
/* Starts fetching the subject versions from k->registry (retried with backoff until known;
 * a schema the registry has but that is not usable Avro stops the retries). Returns how many
 * are awaited: when they are all known, kconsumer_subscribe is called. -1 with err on failure. */
int kreader_fetch(sk_kafka *k, char *err, size_t errlen);
/* 1 with why set while a reader schema is not known (the consumer has not subscribed), else 0. */
int kreader_waiting(const sk_kafka *k, char *why, size_t whylen);
/* Call after sk_registry_free, which drops the lookups in flight. */
void kreader_free_all(kreader *kr);
/* The topic's reader schema, or NULL when its values keep the writer's shape. */
kreader *kreader_find(const sk_kafka *k, const char *topic);
/* The body written with writer (schema id writer_id) in the reader schema's shape, or NULL with
 * err; *incompatible is then 1 when the writer's schema or the value has no place in the
 * reader's (schema_incompatible), 0 when the body is malformed. */
json_t *kreader_decode(kreader *kr, int32_t writer_id, const sk_avro_schema *writer,
                       const uint8_t *body, size_t len, int *incompatible, char *err,
                       size_t errlen);

/* ---- consumer.c ---- */
/* Creates the consumer and subscribes to kafka.topics, or leaves the subscription to
 * kreader_fetch while reader schemas are awaited from the registry. */
int kconsumer_start(sk_kafka *k, char *err, size_t errlen);
int kconsumer_subscribe(sk_kafka *k, char *err, size_t errlen);
/* Shutdown: pauses every partition. */
void kconsumer_stop(sk_kafka *k);
/* Once no record is running: commits the positions and starts leaving the group. */
void kconsumer_close(sk_kafka *k);
void kconsumer_free(sk_kafka *k);
/* ---- lag.c ---- */
/* Reads the partitions' ends every few seconds and sets their skiff_kafka_consumer_lag. */
int klag_start(sk_kafka *k);
void klag_free(sk_kafka *k);

/* Hands out records that may start and pauses or resumes partitions accordingly. */
void kconsumer_pump(sk_kafka *k);
/* The same on the next loop turn, once for any number of calls (results, timers, credits): a
 * handler's ack returns at once and a burst of them is served by one pump. */
void kconsumer_pump_soon(sk_kafka *k);
/* A record finished (processed or dropped with its partition): frees it; a revoked partition
 * goes with its last record. */
void kconsumer_release(krec *r);

/* ---- records.c ---- */
#define KREC_MAX_EXTEND_MS (24 * 3600 * 1000LL) /* an extend asks for at most this much time */

/* A record just polled: pushed to its partition's queue and decoded (possibly after a schema
 * lookup). Takes msg. */
void krec_arrive(kpart *p, rd_kafka_message_t *msg);
/* Sends a startable record to the handlers. */
void krec_dispatch(krec *r);
/* Its partition was revoked: cancels what can be cancelled; the record goes when its handler
 * or dead-letter write is over. */
void krec_revoke(krec *r);
void krec_free(krec *r);

/* ---- producer.c ---- */
typedef void (*kdelivery_cb)(void *ud, rd_kafka_resp_err_t err, int32_t partition, int64_t offset);
kproducer *kproducer_new(sk_kafka *k, char *err, size_t errlen);
void kproducer_free(kproducer *p);
/* Produces a record (key/value copied; headers stolen, may be NULL). cb runs from the loop
 * with the delivery report, exactly once, unless this returns -1 or KPRODUCER_FULL (err set,
 * nothing sent; KPRODUCER_FULL: kafka.producer_queue_size reached, counted and logged). */
#define KPRODUCER_FULL (-2)
int kproducer_send(kproducer *p, const char *topic, const void *key, size_t keylen,
                   const void *value, size_t valuelen, rd_kafka_headers_t *headers, kdelivery_cb cb,
                   void *ud, char *err, size_t errlen);
/* Counts a record in skiff_kafka_produced_total{topic, result}. */
void kproducer_count(kproducer *p, const char *topic, const char *result);
/* Records sent and not yet reported. */
size_t kproducer_pending(const kproducer *p);

/* ---- produce.c ---- */
int kproduce_register(sk_kafka *k);
/* Answers the calls still waiting for a schema (shutdown). */
void kproduce_cancel_all(sk_kafka *k);

/* ---- kafka.c ---- */
/* Wakes the loop when q has events: fn runs on the loop. */
int kwake_start(sk_kafka *k, kwake *w, rd_kafka_queue_t *q,
                void (*fn)(evutil_socket_t, short, void *), void *arg);
void kwake_stop(kwake *w);
/* librdkafka configuration shared by the consumer and the producer, errors into err. */
rd_kafka_conf_t *kconf_new(const sk_kafka *k, char *err, size_t errlen);
int kconf_set(rd_kafka_conf_t *c, const char *name, const char *value, char *err, size_t errlen);

/* ---- oauthbearer.c ---- */

/* SASL OAUTHBEARER on c when k has a token client (else nothing): security.protocol
 * sasl_plaintext, the token refresh callback, k as the opaque. */
int koauth_conf(const sk_kafka *k, rd_kafka_conf_t *c, char *err, size_t errlen);
/* rk takes the tokens: the current one now, each new one as it arrives. */
void koauth_attach(sk_kafka *k, rd_kafka_t *rk);
void koauth_detach(sk_kafka *k);

/* ---- sasl.c ---- */

/* The password for a new client: kafka.sasl.password's value, or while a vault: password is
 * still pending a placeholder that will not authenticate (librdkafka refuses an empty one; the
 * value goes to the client with ksasl_attach's subscription when it arrives). */
const char *ksasl_password(const sk_kafka *k);
/* rk takes each new value of kafka.sasl.password (rd_kafka_sasl_set_credentials). */
void ksasl_attach(sk_kafka *k, rd_kafka_t *rk);
void ksasl_detach(sk_kafka *k);

#endif
