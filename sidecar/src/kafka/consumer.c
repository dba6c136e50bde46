/* The consumer: group membership with cooperative rebalancing, polling on the loop, the
 * assigned partitions with their record queues, pause/resume by handler capacity, commits of
 * the highest contiguous processed offset (on an interval, on revocation, at shutdown); the
 * consumer lag is lag.c's. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "kafka/internal.h"

#define POLL_BATCH 1000     /* records per loop turn, then the loop serves others */
#define COMMIT_STUCK_S 10.0 /* an unanswered commit is no longer waited for after this */
#define RECOMMIT_S 30.0     /* positions committed again after an outage (see commit()) */
#define STALL_S 1.0         /* reading stopped this long: pause the partitions, read again */
/* When skiff stops reading, librdkafka's queue reaches queued.max.messages.kbytes and it
 * postpones the next fetch by this much (500 ms by default, 1 s with newer librdkafka's
 * fetch.queue.backoff.ms, while the queue drains in a fraction of that): the backlog would wait
 * idle. */
#define FETCH_BACKOFF_MS "20"

static kpart *part_find(sk_kafka *k, const char *topic, int32_t partition)
{
    for (kpart *p = k->parts; p; p = p->next)
        if (!p->revoked && p->partition == partition && strcmp(p->topic, topic) == 0)
            return p;
    return NULL;
}

static void part_unlink(kpart *p)
{
    kpart **pp = &p->k->parts;
    while (*pp && *pp != p)
        pp = &(*pp)->next;
    if (*pp)
        *pp = p->next;
}

static void free_rec(void *ctx, int64_t offset, void *ud)
{
    (void)ctx;
    (void)offset;
    krec_free(ud);
}

static void part_free(kpart *p)
{
    sk_partq_foreach(p->q, free_rec, NULL);
    sk_partq_free(p->q);
    free(p->topic);
    free(p);
}

static kpart *part_new(sk_kafka *k, const char *topic, int32_t partition)
{
    kpart *p = calloc(1, sizeof *p);
    if (!p || !(p->topic = strdup(topic)) ||
        !(p->q = sk_partq_new((sk_order)k->cfg->kafka_ordering))) {
        if (p)
            free(p->topic);
        free(p);
        return NULL;
    }
    char num[16];
    snprintf(num, sizeof num, "%d", (int)partition);
    const char *const by_topic[] = {topic, NULL}, *const by_part[] = {topic, num, NULL};
    p->k = k;
    p->partition = partition;
    p->committed = -1;
    p->end = -1;
    p->m_held = sk_metric_series(k->m_held, by_topic);
    p->m_paused = sk_metric_series(k->m_paused, by_topic);
    p->m_lag = sk_metric_series(k->m_lag, by_part);
    const char *const acked[] = {topic, "acked", NULL};
    p->m_received = sk_metric_series(k->m_received, by_topic);
    p->m_acked = sk_metric_series(k->m_processed, acked);
    p->next = k->parts;
    k->parts = p;
    return p;
}

static void set_paused(kpart *p, int paused)
{
    if (paused == p->paused)
        return;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, p->topic, p->partition);
    rd_kafka_resp_err_t e =
        paused ? rd_kafka_pause_partitions(p->k->rk, l) : rd_kafka_resume_partitions(p->k->rk, l);
    if (!e) /* the partition's own outcome; an unchanged state is tried again by the next pump */
        e = l->elems[0].err;
    rd_kafka_topic_partition_list_destroy(l);
    if (e) {
        SK_WARN("kafka", "cannot %s %s[%d]: %s", paused ? "pause" : "resume", p->topic,
                (int)p->partition, rd_kafka_err2str(e));
        return;
    }
    p->paused = paused;
    sk_series_add(p->m_paused, paused ? 1 : -1);
}

/* Commits the position of p, or of every partition still ours when p is NULL (async).
 *
 * The periodic commit waits while an earlier one is unanswered: two commit requests in flight
 * can reach the coordinator in the other order (an OffsetCommit cut off by a broker outage is
 * retried by librdkafka after a newer one went through), and the older offset would then stay
 * committed while p->committed says the newer one is: the commit would stall until the next
 * ack. One request at a time, each answered before the next, keeps the coordinator's order
 * ours. A revocation or the final commit (force) goes at once: it is the last word for those
 * partitions. A commit unanswered for COMMIT_STUCK_S is no longer waited for.
 *
 * After a broker outage or a failed commit, what the coordinator holds is not known for sure
 * (a request cut off by the outage may still be retried by librdkafka): for RECOMMIT_S every
 * position is committed again, also those counted as committed, so that the last commit the
 * coordinator applies is a current one. */
static void commit(sk_kafka *k, kpart *only, int force)
{
    double now = sk_mono_s();
    if (!force && k->commits_inflight > 0 && now - k->commit_sent_at < COMMIT_STUCK_S)
        return;
    int again = now < k->recommit_until;
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(4);
    for (kpart *p = k->parts; p; p = p->next) {
        if ((only && p != only) || (!only && p->revoked))
            continue;
        int64_t pos = sk_partq_position(p->q);
        if (pos >= 0 && (pos > p->committed || (again && pos == p->committed)))
            rd_kafka_topic_partition_list_add(l, p->topic, p->partition)->offset = pos;
    }
    if (l->cnt > 0) {
        rd_kafka_resp_err_t e = rd_kafka_commit(k->rk, l, 1);
        if (e && e != RD_KAFKA_RESP_ERR__NO_OFFSET)
            SK_WARN("kafka", "commit not sent: %s", rd_kafka_err2str(e));
        if (!e) {
            k->commits_inflight++;
            k->commit_sent_at = now;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
}

static void commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                      rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
    (void)rk;
    sk_kafka *k = opaque;
    if (k->commits_inflight > 0)
        k->commits_inflight--;
    if (err == RD_KAFKA_RESP_ERR__NO_OFFSET)
        return;
    const char *const labels[] = {err ? "error" : "ok", NULL};
    sk_series_add(sk_metric_series(k->m_commits, labels), 1);
    if (err) {
        SK_WARN("kafka", "offset commit failed: %s", rd_kafka_err2str(err));
        k->recommit_until = sk_mono_s() + RECOMMIT_S;
    }
    /* A failed request may leave the partitions' own errors unset: nothing of it counts as
     * committed, so the next tick sends those positions again. */
    for (int i = 0; !err && offsets && i < offsets->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &offsets->elems[i];
        for (kpart *p = k->parts; p && !tp->err; p = p->next)
            if (p->partition == tp->partition && strcmp(p->topic, tp->topic) == 0 &&
                tp->offset > p->committed)
                p->committed = tp->offset;
    }
}

static void poll_batch(sk_kafka *k);

/* Every kafka.commit_interval: the commit, and a poll even when no event woke the loop (every
 * partition paused, handlers busy): librdkafka counts max.poll.interval.ms from the last poll,
 * so long handler work never makes this member leave the group. */
static void commit_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    commit(arg, NULL, 0);
    poll_batch(arg);
}

static void assign(sk_kafka *k, rd_kafka_topic_partition_list_t *parts, int coop)
{
    for (int i = 0; i < parts->cnt; i++) {
        rd_kafka_topic_partition_t *tp = &parts->elems[i];
        if (!part_find(k, tp->topic, tp->partition) && !part_new(k, tp->topic, tp->partition))
            SK_ERROR("kafka", "out of memory for %s[%d]", tp->topic, (int)tp->partition);
    }
    if (coop) {
        rd_kafka_error_t *e = rd_kafka_incremental_assign(k->rk, parts);
        if (e) {
            SK_ERROR("kafka", "assign: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
        }
    } else {
        rd_kafka_assign(k->rk, parts);
    }
    k->assigned_once = 1;
    SK_LOG(SK_LOG_INFO, "kafka", NULL, NULL, "assigned %d partitions", parts->cnt);
}

typedef struct collect {
    krec **recs;
    size_t n;
} collect;

static void collect_rec(void *ctx, int64_t offset, void *ud)
{
    (void)offset;
    collect *c = ctx;
    c->recs[c->n++] = ud;
}

/* A partition leaves: its position is committed (unless the assignment was lost), records not
 * with a handler are dropped, the others go when their handler or dead-letter write ends. */
static void revoke_part(sk_kafka *k, kpart *p, int lost)
{
    if (!lost)
        commit(k, p, 1);
    p->revoked = 1;
    sk_series_set(p->m_lag, 0);
    if (p->paused)
        sk_series_add(p->m_paused, -1);
    collect c = {.recs = calloc(sk_partq_open(p->q) + 1, sizeof(krec *))};
    if (c.recs) {
        p->revoking = 1;
        sk_partq_foreach(p->q, collect_rec, &c);
        for (size_t i = 0; i < c.n; i++)
            krec_revoke(c.recs[i]);
        p->revoking = 0;
        free(c.recs);
    }
    if (p->nrecs == 0) {
        part_unlink(p);
        part_free(p);
    }
}

static void rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    sk_kafka *k = opaque;
    int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        assign(k, parts, coop);
        return;
    }
    int lost = rd_kafka_assignment_lost(rk);
    if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        for (int i = 0; i < parts->cnt; i++) {
            kpart *p = part_find(k, parts->elems[i].topic, parts->elems[i].partition);
            if (p)
                revoke_part(k, p, lost);
        }
    } else {
        SK_ERROR("kafka", "rebalance failed: %s", rd_kafka_err2str(err));
    }
    SK_LOG(SK_LOG_INFO, "kafka", NULL, NULL, "%s %d partitions", lost ? "lost" : "revoked",
           parts->cnt);
    if (coop) {
        rd_kafka_error_t *e = rd_kafka_incremental_unassign(rk, parts);
        if (e)
            rd_kafka_error_destroy(e);
    } else {
        rd_kafka_assign(rk, NULL);
    }
}

static void error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    sk_kafka *k = opaque;
    const char *const labels[] = {rd_kafka_err2name((rd_kafka_resp_err_t)err), NULL};
    sk_series_add(sk_metric_series(k->m_errors, labels), 1);
    char why[256];
    if (rd_kafka_fatal_error(rk, why, sizeof why)) {
        snprintf(k->fatal, sizeof k->fatal, "%s", why);
        SK_ERROR("kafka", "fatal consumer error: %s", why);
        return;
    }
    SK_LOG(SK_LOG_WARN, "kafka", NULL, SK_KV("client", "consumer"), "%s: %s",
           rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    if (err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        k->recommit_until = sk_mono_s() + RECOMMIT_S; /* see commit() */
    if (err == RD_KAFKA_RESP_ERR__SSL || err == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
        err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        snprintf(k->last_error, sizeof k->last_error, "%s: %s",
                 rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* How many more records may be read now: reading stops once kafka.max_buffered records per
 * owned partition wait to start, so that librdkafka keeps its prefetch (bounded by
 * queued.max.messages.kbytes) instead of discarding it as a pause would. Unbounded while
 * stalled or stopping: the partitions are paused and the queue must still be served
 * (rebalances, the group leave at shutdown). */
static size_t read_bound(const sk_kafka *k, size_t *waiting)
{
    size_t owned = 0;
    *waiting = 0;
    for (const kpart *p = k->parts; p; p = p->next) {
        if (!p->revoked) {
            owned++;
            *waiting += sk_partq_unstarted(p->q);
        }
    }
    return (size_t)k->cfg->kafka_max_buffered * (owned ? owned : 1);
}

static size_t read_room(const sk_kafka *k)
{
    if (k->stalled || k->stopping)
        return SIZE_MAX;
    size_t waiting, bound = read_bound(k, &waiting);
    return waiting < bound ? bound - waiting : 0;
}

static void set_throttled(sk_kafka *k, int throttled)
{
    if (throttled && !k->throttled) {
        k->throttled_since = sk_mono_s();
        struct timeval tv = {(time_t)STALL_S, 0};
        if (!evtimer_pending(k->stall_ev, NULL))
            evtimer_add(k->stall_ev, &tv);
    }
    k->throttled = throttled;
}

static void poll_batch(sk_kafka *k)
{
    int n = 0;
    size_t room = read_room(k);
    rd_kafka_message_t *m;
    while (n < POLL_BATCH && room > 0 && (m = rd_kafka_consumer_poll(k->rk, 0))) {
        n++;
        kpart *p = m->err ? NULL : part_find(k, rd_kafka_topic_name(m->rkt), m->partition);
        if (m->err && m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            error_cb(k->rk, m->err, rd_kafka_message_errstr(m), k);
        if (p) {
            krec_arrive(p, m);
            room--;
        } else {
            rd_kafka_message_destroy(m);
        }
    }
    /* Stopped at the bound, the pipe will not wake us for what is already queued: the pump
     * reads again once records start, as the next turn does after a full batch. */
    set_throttled(k, room == 0);
    if (n == POLL_BATCH)
        event_active(k->wake.ev, EV_READ, 0);
    kconsumer_pump(k);
}

/* Reading has stopped for STALL_S (handlers stuck, records held for their key or a retry):
 * the queue must be served again (rebalances, max.poll.interval), so every partition is paused
 * until the records waiting are down to half the bound. The last resort, not the rule. */
static void stall_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_kafka *k = arg;
    if (!k->throttled || k->stalled)
        return;
    double left = k->throttled_since + STALL_S - sk_mono_s();
    if (left > 0) {
        struct timeval tv = {(time_t)left, (suseconds_t)((left - (double)(time_t)left) * 1e6)};
        evtimer_add(k->stall_ev, &tv);
        return;
    }
    SK_LOG(SK_LOG_INFO, "kafka", NULL, NULL,
           "no record started for %.0f s at the read bound: partitions paused until half of "
           "the waiting records have started",
           STALL_S);
    k->stalled = 1;
    kconsumer_pump(k);
    event_active(k->wake.ev, EV_READ, 0);
}

static void on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    /* librdkafka writes one byte per wake-up until the queue is served again: one read
     * empties the pipe (a second one would only say EAGAIN). */
    char buf[64];
    while (read(fd, buf, sizeof buf) == (ssize_t)sizeof buf)
        ;
    poll_batch(arg);
}

/* Whether p's fetching should stop: at shutdown, while stalled (stall_cb), at ten times
 * kafka.max_buffered records not yet committable (behind a record still in retry), and when no
 * handler serves the topic. Otherwise reading less (read_room) is the backpressure. */
static int must_pause(const sk_kafka *k, const kpart *p)
{
    size_t waiting = sk_partq_unstarted(p->q), limit = (size_t)k->cfg->kafka_max_buffered;
    return k->stopping || k->stalled || sk_partq_held(p->q) >= 10 * limit ||
           (waiting > 0 && sk_dispatcher_capacity(k->d, p->topic) == 0);
}

/* Leaves the stall once the records waiting are down to half the bound, and reads again (the
 * queue may hold records that the pipe announced before). */
static void unstall(sk_kafka *k)
{
    size_t waiting, bound = read_bound(k, &waiting);
    if (waiting <= bound / 2) {
        k->stalled = 0;
        k->throttled = 0;
        event_active(k->wake.ev, EV_READ, 0);
    }
}

/* Starts what records may, topic credits permitting, then pauses or resumes partitions
 * (must_pause).
 * Reentrant calls (a dispatch that fails at once) are folded into the running one. */
void kconsumer_pump(sk_kafka *k)
{
    if (!k->rk)
        return;
    if (k->pumping) {
        k->repump = 1;
        return;
    }
    k->pumping = 1;
    do {
        k->repump = 0;
        if (k->stalled)
            unstall(k);
        for (kpart *p = k->parts; p; p = p->next) {
            if (p->revoked)
                continue;
            int64_t credits = k->stopping ? 0 : sk_dispatcher_credits(k->d, p->topic);
            int64_t offset;
            krec *r;
            while (credits > 0 && (r = sk_partq_take(p->q, &offset))) {
                krec_dispatch(r);
                credits = sk_dispatcher_credits(k->d, p->topic);
            }
            set_paused(p, must_pause(k, p));
        }
    } while (k->repump);
    k->pumping = 0;
    if (k->throttled && !k->stalled && read_room(k) > 0)
        event_active(k->wake.ev, EV_READ, 0); /* records started: read the queue again */
    /* The next pump starts with another partition: scarce credits go round. */
    if (k->parts && k->parts->next) {
        kpart *first = k->parts, *last = first;
        while (last->next)
            last = last->next;
        k->parts = first->next;
        first->next = NULL;
        last->next = first;
    }
}

static void pump_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    kconsumer_pump(arg);
}

void kconsumer_pump_soon(sk_kafka *k)
{
    if (k->pump_ev) /* activating an active event does nothing: one pump per turn */
        event_active(k->pump_ev, EV_TIMEOUT, 0);
}

static void credits_freed(void *ud)
{
    kconsumer_pump_soon(ud);
}

void kconsumer_release(krec *r)
{
    kpart *p = r->p;
    sk_partq_done(p->q, r->offset); /* already DONE when processed; dropped ones leave too */
    p->nrecs--;
    sk_series_add(p->m_held, -1);
    krec_free(r);
    if (p->revoked && !p->revoking && p->nrecs == 0) {
        part_unlink(p);
        part_free(p);
    }
}

static int register_metrics(sk_kafka *k)
{
    static const char *const
        topic[] = {"topic", NULL},
        *const outcome[] = {"topic", "outcome", NULL}, *const reason[] = {"topic", "reason", NULL},
        *const part[] = {"topic", "partition", NULL}, *const result[] = {"result", NULL},
        *const code[] = {"code", NULL}, *const outcome_result[] = {"topic", "result", NULL};
    sk_metrics *m = k->metrics;
    k->m_received = sk_metrics_counter(m, "skiff_kafka_records_received_total",
                                       "Records read from Kafka, by topic.", topic);
    k->m_processed = sk_metrics_counter(
        m, "skiff_kafka_records_processed_total",
        "Records processed (committable), by topic and outcome: acked by a handler or "
        "dead_lettered.",
        outcome);
    k->m_redeliver = sk_metrics_counter(
        m, "skiff_kafka_redeliveries_total",
        "Records delivered to handlers again, by topic and reason: nack, deadline, handler_lost.",
        reason);
    k->m_dead = sk_metrics_counter(
        m, "skiff_kafka_dead_letters_total",
        "Records written to <topic>.dlq, by source topic and reason: attempts, handler, "
        "undecodable, too_large.",
        reason);
    k->m_lag = sk_metrics_gauge(m, "skiff_kafka_consumer_lag",
                                "Records behind the partition's end (high watermark minus "
                                "committed offset), per partition owned; 0 once revoked.",
                                part);
    k->m_paused = sk_metrics_gauge(m, "skiff_kafka_partitions_paused",
                                   "Partitions paused: no handler serves the topic, no record "
                                   "started for 1 s with kafka.max_buffered records per "
                                   "partition waiting, ten times that many not committable, "
                                   "or shutdown.",
                                   topic);
    k->m_held = sk_metrics_gauge(m, "skiff_kafka_records_held",
                                 "Records read and not yet processed, by topic.", topic);
    k->m_commits = sk_metrics_counter(m, "skiff_kafka_commits_total",
                                      "Offset commits answered by the broker, by result.", result);
    k->m_errors = sk_metrics_counter(m, "skiff_kafka_client_errors_total",
                                     "Errors reported by the Kafka client, by code.", code);
    k->m_hdrdrop = sk_metrics_counter(
        m, "skiff_kafka_headers_dropped_total",
        "Record headers left out of the task frame because their name is not valid UTF-8.", topic);
    k->m_extends = sk_metrics_counter(
        m, "skiff_kafka_extends_total",
        "Handlers' extends of Kafka tasks, by topic and result: ok, not_found (partition "
        "revoked), rejected (timeout_ms above 24 h).",
        outcome_result);
    return k->m_received && k->m_processed && k->m_redeliver && k->m_dead && k->m_lag &&
                   k->m_paused && k->m_held && k->m_commits && k->m_errors && k->m_hdrdrop &&
                   k->m_extends
               ? 0
               : -1;
}

/* Sets a librdkafka millisecond setting. */
static int conf_ms(rd_kafka_conf_t *c, const char *name, int64_t ms, char *err, size_t errlen)
{
    char v[32];
    snprintf(v, sizeof v, "%lld", (long long)ms);
    return kconf_set(c, name, v, err, errlen);
}

static rd_kafka_conf_t *consumer_conf(sk_kafka *k, char *err, size_t errlen)
{
    const sk_config *cfg = k->cfg;
    rd_kafka_conf_t *c = kconf_new(k, err, errlen);
    if (!c || kconf_set(c, "group.id", cfg->kafka_group_id, err, errlen) ||
        conf_ms(c, "session.timeout.ms", cfg->kafka_session_timeout_ms, err, errlen) ||
        conf_ms(c, "heartbeat.interval.ms", cfg->kafka_heartbeat_ms, err, errlen) ||
        conf_ms(c, "max.poll.interval.ms", cfg->kafka_max_poll_ms, err, errlen) ||
        kconf_set(c, "enable.auto.commit", "false", err, errlen) ||
        kconf_set(c, "enable.auto.offset.store", "false", err, errlen) ||
        kconf_set(c, "auto.offset.reset", "earliest", err, errlen) ||
        kconf_set(c, "partition.assignment.strategy", "cooperative-sticky", err, errlen) ||
        kconf_set(c, "queued.max.messages.kbytes", "1024", err, errlen) ||
        kconf_set(c, "fetch.error.backoff.ms", FETCH_BACKOFF_MS, err, errlen)) {
        if (c)
            rd_kafka_conf_destroy(c);
        return NULL;
    }
    /* Newer librdkafka versions have a setting of their own for the full-queue backoff; older
     * ones (Debian's 2.0.2) use fetch.error.backoff.ms for it and refuse the name. */
    char why[256];
    (void)rd_kafka_conf_set(c, "fetch.queue.backoff.ms", FETCH_BACKOFF_MS, why, sizeof why);
    rd_kafka_conf_set_rebalance_cb(c, rebalance_cb);
    rd_kafka_conf_set_offset_commit_cb(c, commit_cb);
    rd_kafka_conf_set_error_cb(c, error_cb);
    rd_kafka_conf_set_opaque(c, k);
    return c;
}

int kconsumer_subscribe(sk_kafka *k, char *err, size_t errlen)
{
    rd_kafka_topic_partition_list_t *l =
        rd_kafka_topic_partition_list_new((int)k->cfg->kafka_topics_len);
    for (size_t i = 0; i < k->cfg->kafka_topics_len; i++)
        rd_kafka_topic_partition_list_add(l, k->cfg->kafka_topics[i], RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(k->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e)
        snprintf(err, errlen, "Kafka subscribe: %s", rd_kafka_err2str(e));
    return e ? -1 : 0;
}

int kconsumer_start(sk_kafka *k, char *err, size_t errlen)
{
    for (size_t i = 0; i < k->cfg->kafka_topics_len; i++)
        if (sk_dispatcher_add_route(k->d, "kafka", k->cfg->kafka_topics[i]) != 0)
            return -1;
    if (register_metrics(k) != 0 || sk_dispatcher_watch(k->d, credits_freed, k) != 0)
        return -1;
    rd_kafka_conf_t *c = consumer_conf(k, err, errlen);
    char why[512];
    if (!c)
        return -1;
    if (!(k->rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, why, sizeof why))) {
        snprintf(err, errlen, "Kafka consumer: %s", why);
        rd_kafka_conf_destroy(c);
        return -1;
    }
    rd_kafka_set_log_queue(k->rk, NULL);
    koauth_attach(k, k->rk);
    ksasl_attach(k, k->rk);
    rd_kafka_poll_set_consumer(k->rk);
    k->queue = rd_kafka_queue_get_consumer(k->rk);
    struct timeval tv = {k->cfg->kafka_commit_interval_ms / 1000,
                         (k->cfg->kafka_commit_interval_ms % 1000) * 1000};
    if (!k->queue || kwake_start(k, &k->wake, k->queue, on_wake, k) != 0 ||
        !(k->commit_timer = event_new(k->base, -1, EV_PERSIST, commit_tick, k)) ||
        !(k->pump_ev = event_new(k->base, -1, 0, pump_cb, k)) ||
        !(k->stall_ev = evtimer_new(k->base, stall_cb, k)) ||
        event_add(k->commit_timer, &tv) != 0 || klag_start(k) != 0) {
        snprintf(err, errlen, "cannot watch the consumer's queue");
        return -1;
    }
    /* A reader schema named by subject and version: the group is joined once it is known
     * (kreader_fetch), so that no partition is held by a member that cannot serve it yet. */
    int waiting = kreader_fetch(k, err, errlen);
    return waiting < 0 ? -1 : waiting ? 0 : kconsumer_subscribe(k, err, errlen);
}

void kconsumer_stop(sk_kafka *k)
{
    kconsumer_pump(k); /* pauses every partition */
}

void kconsumer_close(sk_kafka *k)
{
    k->closing = 1;
    commit(k, NULL, 1);
    rd_kafka_error_t *e = rd_kafka_consumer_close_queue(k->rk, k->queue);
    if (e) {
        SK_WARN("kafka", "leaving the group: %s", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
    }
}

void kconsumer_free(sk_kafka *k)
{
    if (k->commit_timer)
        event_free(k->commit_timer);
    if (k->pump_ev)
        event_free(k->pump_ev);
    if (k->stall_ev)
        event_free(k->stall_ev);
    kwake_stop(&k->wake);
    klag_free(k);
    while (k->parts) {
        kpart *p = k->parts;
        k->parts = p->next;
        part_free(p);
    }
    sk_jtext_free(&k->frame);
    sk_jtext_free(&k->value);
    if (k->queue)
        rd_kafka_queue_destroy(k->queue);
    if (k->rk)
        rd_kafka_destroy_flags(
            k->rk, rd_kafka_consumer_closed(k->rk) ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}
