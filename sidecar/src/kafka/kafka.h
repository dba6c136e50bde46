/* Kafka source and producer service: a consumer group member whose records become dispatcher
 * tasks (decoded from Avro through the Schema Registry, ordered per key or partition, retried,
 * dead-lettered, committed at the highest contiguous processed offset), and an idempotent
 * producer behind the handlers' `produce` call and the dead-letter writes. Loop thread only;
 * librdkafka's threads reach the loop through its queue wake-up pipes. */
#ifndef SK_KAFKA_H
#define SK_KAFKA_H

#include <stddef.h>

#include "core/config.h"
#include "core/metrics.h"
#include "handler/dispatcher.h"
#include "secrets/oauth.h"

struct event_base;
typedef struct sk_kafka sk_kafka;

/* token: NULL, or the OAuth client whose tokens authenticate to the brokers (SASL OAUTHBEARER,
 * kafka.oauthbearer); it must outlive k. NULL with err when Kafka is configured but cannot start
 * (bad librdkafka setting, registry URL...). Kafka off (no kafka.brokers): returns NULL with err[0]
 * == '\0'. Registers the topics as dispatcher routes and the `produce` call method. */
sk_kafka *sk_kafka_new(struct event_base *base, const sk_config *cfg, sk_dispatcher *d,
                       sk_metrics *metrics, sk_oauth_client *token, char *err, size_t errlen);
/* The consumer has its partitions assigned at least once and no fatal error (or there is no
 * consumer); writes why not into why. NULL k: ready. */
int sk_kafka_ready(const sk_kafka *k, char *why, size_t whylen);
/* Shutdown: stops fetching; records in flight keep going, their results are committed. */
void sk_kafka_stop(sk_kafka *k);
/* Work left before exit: records held by handlers, dead-letter and produce writes in flight,
 * the final commit and the group leave. 0 when done (or k is NULL). */
size_t sk_kafka_pending(sk_kafka *k);
void sk_kafka_free(sk_kafka *k);

#endif
