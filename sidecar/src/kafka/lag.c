/* Consumer lag per partition without librdkafka's statistics (docs/adr/0020): the end of the
 * partition is the high watermark librdkafka caches from its fetch responses; a partition that
 * is paused (no handler, a stall) is not fetched: its end is asked of its leader with
 * a ListOffsets request, answered on a queue of its own that wakes the loop. The lag is that
 * end minus the offset skiff last committed, every LAG_INTERVAL_S. A partition fetched and not
 * paused never costs a request (nor the admin API's code pages in an idle sidecar). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "kafka/internal.h"

#define LAG_INTERVAL_S 5 /* between two readings, as librdkafka's statistics were */

static void lag_publish(sk_kafka *k)
{
    for (kpart *p = k->parts; p; p = p->next)
        if (!p->revoked && p->end >= 0 && p->committed >= 0)
            sk_series_set(p->m_lag, (double)(p->end > p->committed ? p->end - p->committed : 0));
}

/* A known end only grows: an older answer or a fetch that lags a query never lowers it. */
static void end_seen(sk_kafka *k, const char *topic, int32_t partition, int64_t end)
{
    for (kpart *p = k->parts; p; p = p->next)
        if (!p->revoked && p->partition == partition && strcmp(p->topic, topic) == 0 &&
            end > p->end)
            p->end = end;
}

static void lag_answer(sk_kafka *k, rd_kafka_event_t *ev)
{
    const rd_kafka_ListOffsets_result_t *res = rd_kafka_event_ListOffsets_result(ev);
    if (!res)
        return;
    k->lag_querying = 0;
    if (rd_kafka_event_error(ev)) {
        SK_LOG(SK_LOG_DEBUG, "kafka", NULL, NULL, "partition ends not known: %s",
               rd_kafka_event_error_string(ev));
        return;
    }
    size_t n;
    const rd_kafka_ListOffsetsResultInfo_t **infos = rd_kafka_ListOffsets_result_infos(res, &n);
    for (size_t i = 0; i < n; i++) {
        const rd_kafka_topic_partition_t *tp =
            rd_kafka_ListOffsetsResultInfo_topic_partition(infos[i]);
        if (!tp->err && tp->offset >= 0)
            end_seen(k, tp->topic, tp->partition, tp->offset);
    }
    lag_publish(k);
}

static void lag_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    sk_kafka *k = arg;
    char buf[64];
    while (read(fd, buf, sizeof buf) == (ssize_t)sizeof buf)
        ;
    rd_kafka_event_t *ev;
    while ((ev = rd_kafka_queue_poll(k->lag_queue, 0))) {
        lag_answer(k, ev);
        rd_kafka_event_destroy(ev);
    }
}

/* Asks the leaders for the ends of the partitions in l (taken over), read_committed as the
 * consumer reads. One request at a time; its timeout is the interval. */
static void lag_query(sk_kafka *k, rd_kafka_topic_partition_list_t *l)
{
    char why[256];
    rd_kafka_AdminOptions_t *o = rd_kafka_AdminOptions_new(k->rk, RD_KAFKA_ADMIN_OP_LISTOFFSETS);
    rd_kafka_error_t *e =
        o ? rd_kafka_AdminOptions_set_isolation_level(o, RD_KAFKA_ISOLATION_LEVEL_READ_COMMITTED)
          : NULL;
    if (!o || e ||
        rd_kafka_AdminOptions_set_request_timeout(o, LAG_INTERVAL_S * 1000, why, sizeof why)) {
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_ListOffsets(k->rk, l, o, k->lag_queue);
        k->lag_querying = 1;
    }
    if (o)
        rd_kafka_AdminOptions_destroy(o);
    rd_kafka_topic_partition_list_destroy(l);
}

static void lag_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_kafka *k = arg;
    rd_kafka_topic_partition_list_t *ask = NULL;
    for (kpart *p = k->parts; p; p = p->next) {
        if (p->revoked)
            continue;
        int64_t lo, hi;
        if (rd_kafka_get_watermark_offsets(k->rk, p->topic, p->partition, &lo, &hi) == 0 &&
            hi >= 0 && hi > p->end)
            p->end = hi;
        if (p->paused && !k->lag_querying && !k->stopping &&
            (ask || (ask = rd_kafka_topic_partition_list_new(4))))
            rd_kafka_topic_partition_list_add(ask, p->topic, p->partition)->offset =
                RD_KAFKA_OFFSET_SPEC_LATEST;
    }
    lag_publish(k);
    if (ask)
        lag_query(k, ask);
}

int klag_start(sk_kafka *k)
{
    struct timeval tv = {LAG_INTERVAL_S, 0};
    if (!(k->lag_queue = rd_kafka_queue_new(k->rk)) ||
        kwake_start(k, &k->lag_wake, k->lag_queue, lag_wake, k) != 0 ||
        !(k->lag_timer = event_new(k->base, -1, EV_PERSIST, lag_tick, k)) ||
        event_add(k->lag_timer, &tv) != 0)
        return -1;
    return 0;
}

void klag_free(sk_kafka *k)
{
    if (k->lag_timer)
        event_free(k->lag_timer);
    k->lag_timer = NULL;
    kwake_stop(&k->lag_wake);
    if (k->lag_queue)
        rd_kafka_queue_destroy(k->lag_queue);
    k->lag_queue = NULL;
}
