#include "handler/session.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "core/clock.h"
#include "core/log.h"
#include "handler/acks.h"

typedef enum { S_HELLO, S_READY, S_CLOSING } state;

/* A task frame in the output buffer, for skiff_task_overhead_seconds once it is written. */
typedef struct {
    double received_at;
    sk_series *overhead;
    char trace_id[33], span_id[17]; /* the task span's, for the exemplar; "" when none */
} unsent;

/* A task cancelled on this session: its late result is ignored, not an error. */
typedef struct {
    char *id;
    double at;
} cancelled;

#define CANCEL_MEMORY_S 60.0
#define CANCEL_MEMORY_MAX 4096
#define FLUSH_AT 65536 /* bytes of task frames written without waiting for the batch's end */
/* Tasks of one loop turn written at once, before the turn ends: the handler starts on them
 * while skiff encodes the rest. Each later write of the turn waits for as many tasks as the
 * turn has written so far (8, 8, 16, 32...): a few system calls per turn, not one per task. */
#define FIRST_CHUNK 8
#define BATCH_OPEN "{\"type\":\"tasks\",\"tasks\":["
#define BATCH_CLOSE "]}"
#define BATCH_WRAP (sizeof(BATCH_OPEN) - 1 + sizeof(BATCH_CLOSE) - 1)

struct sk_session {
    struct event_base *base;
    struct bufferevent *bev;
    struct event *timer;  /* hello timeout, then the closing deadline */
    struct event *reaper; /* frees the session on the next loop turn */
    struct event *flush;  /* writes the task frames queued in this loop turn, at once */
    sk_dispatcher *d;
    sk_session_opts opts;
    sk_metric *m_errors;
    sk_session_closed_cb on_closed;
    void *ud;
    state st;
    int attached;
    int accepts_cancel;
    int batch;              /* the handler takes `tasks` frames (feature "batch", 1.4) */
    struct evbuffer *tasks; /* task bodies of the `tasks` frame being gathered, comma-separated */
    size_t ntasks;
    size_t queued;     /* tasks queued since the last write */
    size_t turn_tasks; /* tasks written in this loop turn before it ends (see FIRST_CHUNK) */
    char name[96];
    unsigned long serial;
    unsent *unsent;
    size_t nunsent, unsent_cap;
    cancelled *cancelled; /* oldest first */
    size_t ncancelled;
};

static unsigned long next_serial;

const char *sk_session_name(const sk_session *s)
{
    return s->name;
}

unsigned long sk_session_serial(const sk_session *s)
{
    return s->serial;
}

int sk_session_accepts_cancel(const sk_session *s)
{
    return s->accepts_cancel;
}

/* Forgets cancelled ids older than CANCEL_MEMORY_S, and the oldest beyond CANCEL_MEMORY_MAX. */
static void forget_cancelled(sk_session *s, double now)
{
    size_t n = 0;
    while (n < s->ncancelled &&
           (now - s->cancelled[n].at > CANCEL_MEMORY_S || s->ncancelled - n >= CANCEL_MEMORY_MAX))
        free(s->cancelled[n++].id);
    if (n == 0)
        return; /* also keeps a NULL s->cancelled away from memmove */
    memmove(s->cancelled, s->cancelled + n, (s->ncancelled - n) * sizeof(*s->cancelled));
    s->ncancelled -= n;
}

static int was_cancelled(sk_session *s, const char *id)
{
    forget_cancelled(s, sk_mono_s());
    for (size_t i = 0; i < s->ncancelled; i++)
        if (strcmp(s->cancelled[i].id, id) == 0)
            return 1;
    return 0;
}

static void release(sk_session *s)
{
    if (s->attached)
        sk_dispatcher_detach(s->d, s);
    s->attached = 0;
    if (s->bev)
        bufferevent_free(s->bev);
    s->bev = NULL;
    if (s->timer)
        event_free(s->timer);
    s->timer = NULL;
    s->nunsent = 0;
    s->ntasks = 0;
    s->queued = 0;
}

void sk_session_free(sk_session *s)
{
    if (!s)
        return;
    release(s);
    if (s->reaper)
        event_free(s->reaper);
    if (s->flush)
        event_free(s->flush);
    if (s->tasks)
        evbuffer_free(s->tasks);
    for (size_t i = 0; i < s->ncancelled; i++)
        free(s->cancelled[i].id);
    free(s->cancelled);
    free(s->unsent);
    free(s);
}

static void reap_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_session *s = arg;
    if (s->on_closed)
        s->on_closed(s->ud, s);
    sk_session_free(s);
}

/* Ends the session: abandons its tasks now, frees it on the next loop turn. */
static void close_now(sk_session *s, const char *why)
{
    if (!s->bev)
        return;
    SK_LOG(SK_LOG_INFO, "handler", NULL, SK_KV("session", s->name), "handler connection closed: %s",
           why);
    release(s);
    event_active(s->reaper, 0, 0);
}

/* Queues the gathered tasks as one frame: a `tasks` frame, or a lone task as its own `task`
 * frame. Every other frame is written after this, so a task always precedes its cancel. */
static void seal_tasks(sk_session *s)
{
    if (!s->ntasks || !s->bev)
        return;
    struct evbuffer *out = bufferevent_get_output(s->bev);
    int wrap = s->ntasks > 1;
    size_t n = evbuffer_get_length(s->tasks) + (wrap ? BATCH_WRAP : 0);
    uint8_t hdr[SK_FRAME_HEADER] = {(uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8),
                                    (uint8_t)n};
    s->ntasks = 0;
    if (evbuffer_expand(out, n + SK_FRAME_HEADER) != 0 || evbuffer_add(out, hdr, sizeof(hdr)) ||
        (wrap && evbuffer_add(out, BATCH_OPEN, sizeof(BATCH_OPEN) - 1)) ||
        evbuffer_add_buffer(out, s->tasks) ||
        (wrap && evbuffer_add(out, BATCH_CLOSE, sizeof(BATCH_CLOSE) - 1)))
        SK_ERROR("handler", "cannot queue a tasks frame for %s", s->name);
    evbuffer_drain(s->tasks, evbuffer_get_length(s->tasks));
}

static int write_frame(sk_session *s, const uint8_t *frame, size_t len)
{
    if (!s->bev || s->st == S_CLOSING)
        return -1;
    seal_tasks(s);
    if (bufferevent_write(s->bev, frame, len) != 0) {
        SK_ERROR("handler", "cannot queue a frame for %s", s->name);
        return -1;
    }
    return 0;
}

/* Every unsent task frame has left for the socket: their dispatch overhead ends now. */
static void observe_written(sk_session *s)
{
    double now = sk_mono_s();
    for (size_t i = 0; i < s->nunsent; i++) {
        const unsent *u = &s->unsent[i];
        if (u->trace_id[0])
            sk_series_observe_exemplar(u->overhead, now - u->received_at, u->trace_id, u->span_id);
        else
            sk_series_observe(u->overhead, now - u->received_at);
    }
    s->nunsent = 0;
}

/* Writes what the output buffer holds now rather than on the next loop turn. */
static void flush_now(sk_session *s)
{
    if (!s->bev)
        return;
    s->turn_tasks += s->queued;
    s->queued = 0;
    seal_tasks(s);
    struct evbuffer *out = bufferevent_get_output(s->bev);
    evbuffer_unfreeze(out, 1); /* a socket bufferevent keeps its output's start frozen */
    int written = evbuffer_write(out, bufferevent_getfd(s->bev));
    evbuffer_freeze(out, 1);
    if (written > 0 && evbuffer_get_length(out) == 0)
        observe_written(s);
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_session *s = arg;
    flush_now(s);
    s->turn_tasks = 0;
}

/* Copies an id of the expected length, else leaves "". */
static void copy_id(char *dst, const char *id, size_t len)
{
    dst[0] = '\0';
    if (id && strlen(id) == len)
        memcpy(dst, id, len + 1);
}

/* Adds a task to the `tasks` frame being gathered; one that would not fit with it within
 * max_frame starts the next frame. */
static int gather_task(sk_session *s, const uint8_t *frame, size_t len)
{
    if (!s->bev || s->st == S_CLOSING)
        return -1;
    size_t body = len - SK_FRAME_HEADER;
    if (s->ntasks && evbuffer_get_length(s->tasks) + 1 + body + BATCH_WRAP > s->opts.max_frame)
        seal_tasks(s);
    if (evbuffer_expand(s->tasks, body + 1) != 0 ||
        (s->ntasks && evbuffer_add(s->tasks, ",", 1) != 0) ||
        evbuffer_add(s->tasks, frame + SK_FRAME_HEADER, body) != 0) {
        SK_ERROR("handler", "cannot queue a task for %s", s->name);
        return -1;
    }
    s->ntasks++;
    return 0;
}

void sk_session_write_task(sk_session *s, const uint8_t *frame, size_t len, double received_at,
                           sk_series *overhead, const char *trace_id, const char *span_id)
{
    if ((s->batch ? gather_task(s, frame, len) : write_frame(s, frame, len)) != 0)
        return;
    if (overhead && s->nunsent == s->unsent_cap) {
        size_t cap = s->unsent_cap ? 2 * s->unsent_cap : 16;
        unsent *u = realloc(s->unsent, cap * sizeof(*u));
        if (u) {
            s->unsent = u;
            s->unsent_cap = cap;
        }
    }
    if (overhead && s->nunsent < s->unsent_cap) {
        unsent *u = &s->unsent[s->nunsent++];
        u->received_at = received_at;
        u->overhead = overhead;
        copy_id(u->trace_id, trace_id, 32);
        copy_id(u->span_id, span_id, 16);
    }
    /* The frames of one loop turn leave in a few writes, the last still in this turn (the
     * flush event runs right after the callback that queued them): the first FIRST_CHUNK
     * tasks at once, so that the handler works while skiff encodes the next ones instead
     * of each side waiting for the other, then in chunks that double, and a large batch at
     * once. A backlog costs a few system calls per turn, not one per task. A handler with
     * feature "batch" gets each chunk as one `tasks` frame (parsed at once). */
    s->queued++;
    if (s->queued >= (s->turn_tasks > FIRST_CHUNK ? s->turn_tasks : FIRST_CHUNK) ||
        evbuffer_get_length(bufferevent_get_output(s->bev)) + evbuffer_get_length(s->tasks) >=
            FLUSH_AT)
        flush_now(s);
    else
        event_active(s->flush, EV_TIMEOUT, 0);
}

void sk_session_cancel(sk_session *s, const char *id, const char *reason)
{
    json_t *f = json_pack("{s:s, s:s, s:s}", "type", "cancel", "id", id, "reason", reason);
    if (f)
        sk_session_send(s, f);
    json_decref(f);
    double now = sk_mono_s();
    forget_cancelled(s, now);
    cancelled *c = realloc(s->cancelled, (s->ncancelled + 1) * sizeof(*c));
    if (!c)
        return;
    s->cancelled = c;
    if ((c[s->ncancelled].id = strdup(id)))
        c[s->ncancelled++].at = now;
}

void sk_session_send(sk_session *s, const json_t *frame)
{
    size_t len;
    uint8_t *buf = sk_frame_encode(frame, &len);
    if (!buf) {
        SK_ERROR("handler", "cannot encode a frame for %s", s->name);
        return;
    }
    write_frame(s, buf, len);
    free(buf);
}

static void closing_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    close_now(arg, "error frame not flushed in time");
}

/* Counts, logs and sends an `error` frame; index >= 0: the item of a `results` frame. */
static void send_error(sk_session *s, const char *code, const char *id, long index,
                       const char *message)
{
    const char *const labels[] = {code, NULL};
    sk_series_add(sk_metric_series(s->m_errors, labels), 1);
    SK_LOG(SK_LOG_WARN, "handler", NULL, SK_KV("session", s->name, "code", code),
           "handler protocol error: %s", message);
    json_t *f = json_pack("{s:s, s:s, s:s}", "type", "error", "code", code, "message", message);
    if (f && id)
        json_object_set_new(f, "id", json_string(id));
    if (f && index >= 0)
        json_object_set_new(f, "index", json_integer(index));
    if (f)
        sk_session_send(s, f);
    json_decref(f);
}

/* Sends an `error` frame; unless the code is `unsupported`, closes once it is flushed. */
static void protocol_error(sk_session *s, const char *code, const char *id, const char *message)
{
    send_error(s, code, id, -1, message);
    if (strcmp(code, SK_PERR_UNSUPPORTED) == 0)
        return;
    s->st = S_CLOSING;
    bufferevent_disable(s->bev, EV_READ);
    struct timeval tv = {1, 0};
    event_del(s->timer);
    event_assign(s->timer, s->base, -1, 0, closing_timeout_cb, s);
    event_add(s->timer, &tv);
    if (evbuffer_get_length(bufferevent_get_output(s->bev)) == 0)
        close_now(s, message);
}

/* Answers `error` and returns 1 when a name of hello's list is not a route of source. */
static int unknown_route(sk_session *s, json_t *names, const char *source, const char *what,
                         const char *key)
{
    size_t i;
    json_t *name;
    json_array_foreach(names, i, name)
    {
        if (!sk_dispatcher_has_route(s->d, source, json_string_value(name))) {
            char why[200];
            snprintf(why, sizeof(why), "%s \"%.64s\" is not configured in %s", what,
                     json_string_value(name), key);
            protocol_error(s, SK_PERR_PROTOCOL, NULL, why);
            return 1;
        }
    }
    return 0;
}

static void on_hello(sk_session *s, const sk_msg *m)
{
    char why[160];
    if (m->version != 1) {
        snprintf(why, sizeof(why), "protocol version %lld is not supported (this skiff speaks 1)",
                 (long long)m->version);
        protocol_error(s, SK_PERR_VERSION, NULL, why);
        return;
    }
    if (json_array_size(m->job_types) == 0 && json_array_size(m->topics) == 0) {
        protocol_error(s, SK_PERR_PROTOCOL, NULL,
                       "hello must list at least one job type or topic (\"job_types\", "
                       "\"topics\")");
        return;
    }
    if (unknown_route(s, m->job_types, "zeebe", "job type", "zeebe.job_types") ||
        unknown_route(s, m->topics, "kafka", "topic", "kafka.topics"))
        return;
    snprintf(s->name, sizeof(s->name), "%.64s#%lu", m->name, s->serial);
    size_t i;
    json_t *jt;
    json_array_foreach(m->features, i, jt)
    {
        if (strcmp(json_string_value(jt), "cancel") == 0)
            s->accepts_cancel = 1;
        if (strcmp(json_string_value(jt), "batch") == 0)
            s->batch = 1;
    }
    s->st = S_READY;
    event_del(s->timer);
    char session[32];
    snprintf(session, sizeof(session), "s-%lu", s->serial);
    json_t *w = json_pack("{s:s, s:i, s:s, s:I, s:[s, s, s, s], s:o}", "type", "welcome", "version",
                          1, "session", session, "max_frame", (json_int_t)s->opts.max_frame,
                          "features", "batch", "cancel", "extend", "kafka_extend", "methods",
                          sk_dispatcher_methods(s->d));
    if (w)
        sk_session_send(s, w);
    json_decref(w);
    /* Attached after the welcome is queued: a source may send tasks from inside the attach. */
    json_t *routes = json_array();
    s->attached = 1;
    if (!routes || (m->job_types && json_array_extend(routes, m->job_types)) ||
        (m->topics && json_array_extend(routes, m->topics)) ||
        sk_dispatcher_attach(s->d, s, routes, m->capacity) != 0) {
        s->attached = 0;
        json_decref(routes);
        close_now(s, "out of memory");
        return;
    }
    json_decref(routes);
    SK_LOG(SK_LOG_INFO, "handler", NULL, SK_KV("session", s->name),
           "handler connected with capacity %lld", (long long)m->capacity);
}

/* A refused frame, or (index >= 0) a refused item of a `results` frame: the item alone is
 * refused, the connection and the other items go on. */
static void refuse(sk_session *s, const char *code, const char *id, long index, const char *why)
{
    if (index >= 0)
        send_error(s, code, id, index, why);
    else
        protocol_error(s, code, id, why);
}

/* A result or extend (index >= 0: item of a `results` frame): handed to the dispatcher; one for
 * a task cancelled within the last minute is ignored. */
static void on_task_msg(sk_session *s, const sk_msg *m, double received_at, long index)
{
    char why[200];
    int r = sk_dispatcher_result(s->d, s, m, received_at);
    if (r == -2) {
        refuse(s, SK_PERR_UNSUPPORTED, m->id, index, "this task's source cannot extend it");
    } else if (r == -3) {
        refuse(s, SK_PERR_UNSUPPORTED, m->id, index,
               "this result does not apply to the task: Zeebe tasks take complete, "
               "fail or bpmn_error; Kafka tasks take ack or nack");
    } else if (r != 0 && was_cancelled(s, m->id)) {
        SK_LOG(SK_LOG_DEBUG, "handler", NULL, SK_KV("session", s->name, "task_id", m->id),
               "ignoring a frame for a cancelled task");
    } else if (r != 0) {
        snprintf(why, sizeof(why), "%sno open task \"%.100s\" on this connection",
                 index >= 0 ? "results item: " : "", m->id);
        refuse(s, SK_PERR_UNKNOWN_TASK, m->id, index, why);
    }
}

/* A `results` frame (1.4): each item is applied as if it came alone; a bad item is refused
 * with an `error` naming its index (and id), the others still count. */
static void on_results(sk_session *s, const sk_msg *m, double received_at)
{
    size_t i;
    json_t *item;
    json_array_foreach(m->items, i, item)
    {
        if (s->st == S_CLOSING || !s->bev)
            return;
        sk_msg r;
        const char *perr;
        char err[256];
        if (sk_msg_decode_item(item, i, &r, &perr, err, sizeof(err)) != 0)
            send_error(s, perr, r.id, (long)i, err);
        else
            on_task_msg(s, &r, received_at, (long)i);
        sk_msg_clear(&r);
    }
}

static void on_ready_msg(sk_session *s, const sk_msg *m, double received_at)
{
    switch (m->type) {
    case SK_MSG_HELLO:
        protocol_error(s, SK_PERR_PROTOCOL, NULL, "second hello on one connection");
        break;
    case SK_MSG_COMPLETE:
    case SK_MSG_FAIL:
    case SK_MSG_BPMN_ERROR:
    case SK_MSG_EXTEND:
    case SK_MSG_ACK:
    case SK_MSG_NACK:
        on_task_msg(s, m, received_at, -1);
        break;
    case SK_MSG_RESULTS:
        on_results(s, m, received_at);
        break;
    case SK_MSG_CALL:
        sk_dispatcher_call(s->d, s, m);
        break;
    case SK_MSG_PING: {
        json_t *p = json_pack("{s:s}", "type", "pong");
        if (p && m->ref)
            json_object_set_new(p, "ref", json_string(m->ref));
        if (p)
            sk_session_send(s, p);
        json_decref(p);
        break;
    }
    case SK_MSG_PONG:
        break;
    }
}

static void on_message(sk_session *s, const sk_msg *m, double received_at)
{
    if (s->st == S_HELLO && m->type != SK_MSG_HELLO)
        protocol_error(s, SK_PERR_PROTOCOL, NULL, "the first frame must be hello");
    else if (s->st == S_HELLO)
        on_hello(s, m);
    else
        on_ready_msg(s, m, received_at);
}

typedef struct {
    sk_session *s;
    double received_at;
} ack_ctx;

/* An ack read by the fast path (sk_acks_scan): as if the tree decoder had read it. */
static void on_quick_ack(void *ud, const char *id, long index)
{
    ack_ctx *a = ud;
    if (a->s->st == S_CLOSING || !a->s->bev)
        return;
    sk_msg m = {.type = SK_MSG_ACK, .id = id};
    on_task_msg(a->s, &m, a->received_at, index);
}

/* One frame's payload: acks by the fast path, anything else through the tree decoder. */
static void on_payload(sk_session *s, uint8_t *payload, size_t len, double received_at)
{
    ack_ctx a = {s, received_at};
    char err[256];
    const char *perr;
    sk_msg m;
    if (s->st == S_READY && sk_acks_scan(payload, len, on_quick_ack, &a))
        return;
    if (sk_msg_decode(payload, len, &m, &perr, err, sizeof(err)) < 0) {
        protocol_error(s, perr, NULL, err);
        return;
    }
    on_message(s, &m, received_at);
    sk_msg_clear(&m);
}

/* Decodes every complete frame in the input buffer. */
static void read_cb(struct bufferevent *bev, void *arg)
{
    sk_session *s = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    char err[256];
    double received_at = sk_mono_s();
    while (s->st != S_CLOSING && s->bev) {
        size_t avail = evbuffer_get_length(in), plen;
        const char *perr;
        uint8_t *head = evbuffer_pullup(in, avail < SK_FRAME_HEADER ? -1 : SK_FRAME_HEADER);
        int r = sk_frame_length(head, avail, s->opts.max_frame, &plen, &perr, err, sizeof(err));
        if (r < 0) {
            protocol_error(s, perr, NULL, err);
            return;
        }
        if (r == 0 || avail < SK_FRAME_HEADER + plen)
            return;
        uint8_t *frame = evbuffer_pullup(in, (ev_ssize_t)(SK_FRAME_HEADER + plen));
        on_payload(s, frame + SK_FRAME_HEADER, plen, received_at);
        if (s->bev) /* still ours: a refusal may have closed the session */
            evbuffer_drain(in, SK_FRAME_HEADER + plen);
    }
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    sk_session *s = arg;
    if (s->nunsent && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        observe_written(s);
    if (s->st == S_CLOSING && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        close_now(s, "closed after a protocol error");
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    sk_session *s = arg;
    if (what & BEV_EVENT_EOF)
        close_now(s, "handler closed the connection");
    else if (what & BEV_EVENT_ERROR)
        close_now(s, strerror(EVUTIL_SOCKET_ERROR()));
}

static void hello_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    protocol_error(arg, SK_PERR_PROTOCOL, NULL, "no hello within handler.hello_timeout");
}

sk_session *sk_session_new(struct event_base *base, int fd, sk_dispatcher *d,
                           const sk_session_opts *opts, sk_metrics *metrics,
                           sk_session_closed_cb on_closed, void *ud)
{
    sk_session *s = calloc(1, sizeof(*s));
    if (!s) {
        close(fd);
        return NULL;
    }
    *s = (sk_session){.base = base,
                      .d = d,
                      .opts = *opts,
                      .on_closed = on_closed,
                      .ud = ud,
                      .st = S_HELLO,
                      .serial = ++next_serial};
    snprintf(s->name, sizeof(s->name), "handler#%lu", s->serial);
    s->m_errors =
        sk_metrics_counter(metrics, "skiff_handler_protocol_errors_total",
                           "Protocol errors sent to handlers, by error code.", SK_KV("code"));
    s->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    s->timer = evtimer_new(base, hello_timeout_cb, s);
    s->reaper = event_new(base, -1, 0, reap_cb, s);
    s->flush = event_new(base, -1, 0, flush_cb, s);
    s->tasks = evbuffer_new();
    if (!s->bev || !s->timer || !s->reaper || !s->flush || !s->tasks || !s->m_errors) {
        if (!s->bev)
            close(fd);
        sk_session_free(s);
        return NULL;
    }
    bufferevent_setcb(s->bev, read_cb, write_cb, event_cb, s);
    bufferevent_setwatermark(s->bev, EV_READ, 0, opts->max_frame + SK_FRAME_HEADER + 65536);
    bufferevent_enable(s->bev, EV_READ | EV_WRITE);
    struct timeval tv = {opts->hello_timeout_ms / 1000, (opts->hello_timeout_ms % 1000) * 1000};
    event_add(s->timer, &tv);
    return s;
}
