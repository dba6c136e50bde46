/* skiff handler SDK for C: see skiff_handler.h for the contract. */
#define _GNU_SOURCE
#include "skiff_handler.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define READ_CHUNK 65536
#define JSON_IN_FLAGS (JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)
#define JSON_OUT_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(17))

enum { ST_IDLE, ST_HELLO, ST_READY, ST_DRAINING, ST_CLOSING };

typedef struct buf {
    char *data;
    size_t len, cap, off;
} buf;

struct skh_task {
    int refs; /* guarded by conn->mu */
    skh_conn *conn;
    unsigned gen; /* the session it came on */
    json_t *frame;
    const char *id, *job_type, *topic, *traceparent, *tracestate;
    int64_t deadline, attempt;
    skh_source source;
    int answered, cancelled, open;
    char reason[16];
    skh_task *next_open, *next_queued;
};

struct skh_conn {
    pthread_mutex_t mu;
    int refs;
    int fd, state, refused;
    unsigned gen;
    char *name, *socket_path;
    int capacity;
    json_t *job_types, *topics, *features, *methods;
    char session[128];
    size_t max_frame;
    buf in, out;
    skh_task *open;
    int in_flight;
    uint64_t next_ref;
    skh_error close_why;
    skh_log_fn log;
    void *log_arg;
    void (*wakeup)(void *);
    void *wakeup_arg;
    skh_handler *owner; /* set when a skh_handler drives this connection */
    int no_batch;
    json_t *batch;     /* the items of a tasks frame not dispatched yet (1.4) */
    size_t batch_next; /* the next item of batch */
    size_t run_at;     /* out[run_at..len): the unsent results run at the tail (1.4) */
    int run_n;         /* its number of results, 0: none */
    int close_flushed; /* skh_conn_close asked: close once the output is written */
};

static void set_err(skh_error *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(skh_error *err, const char *code, const char *fmt, ...)
{
    va_list ap;
    if (err == NULL)
        return;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
}

static void default_log(void *arg, const char *level, const char *message)
{
    struct timespec ts;
    struct tm tm;
    char when[64];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(when, sizeof when, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
             (int)(ts.tv_nsec / 1000000));
    json_t *line = json_pack("{s:s,s:s,s:s,s:s}", "timestamp", when, "level", level, "service_name",
                             arg ? (const char *)arg : "skiff-handler", "message", message);
    char *text = line ? json_dumps(line, JSON_COMPACT) : NULL;
    if (text != NULL)
        fprintf(stderr, "%s\n", text);
    free(text);
    json_decref(line);
}

static void logf_(skh_conn *c, const char *level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void logf_(skh_conn *c, const char *level, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    c->log(c->log_arg, level, msg);
}

/* --- buffers and the frame codec -------------------------------------------------------- */

static int buf_reserve(buf *b, size_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *data = realloc(b->data, cap);
    if (data == NULL)
        return -1;
    b->data = data;
    b->cap = cap;
    return 0;
}

static int buf_append(const char *chunk, size_t n, void *arg)
{
    buf *b = arg;
    if (buf_reserve(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, chunk, n);
    b->len += n;
    return 0;
}

/* Appends a frame to b (header + JSON); on failure or when it exceeds max_frame, b is left as
 * it was and -1 returned with err. */
static int frame_append(buf *b, json_t *frame, size_t max_frame, skh_error *err)
{
    size_t start = b->len;
    if (buf_reserve(b, 4) < 0)
        goto oom;
    b->len += 4;
    if (json_dump_callback(frame, buf_append, b, JSON_OUT_FLAGS) < 0) {
        b->len = start;
        set_err(err, SKH_E_INVALID_PARAMS, "the frame cannot be encoded as JSON");
        return -1;
    }
    size_t n = b->len - start - 4;
    if (n > max_frame) {
        b->len = start;
        set_err(err, SKH_E_INVALID_PARAMS, "frame of %zu bytes exceeds max_frame %zu", n,
                max_frame);
        return -1;
    }
    unsigned char *h = (unsigned char *)b->data + start;
    h[0] = (unsigned char)(n >> 24);
    h[1] = (unsigned char)(n >> 16);
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
    return 0;
oom:
    set_err(err, SKH_E_INVALID_PARAMS, "out of memory");
    return -1;
}

char *skh_frame_encode(json_t *frame, size_t max_frame, size_t *n, skh_error *err)
{
    buf b = {0};
    if (frame_append(&b, frame, max_frame, err) < 0) {
        free(b.data);
        return NULL;
    }
    *n = b.len;
    return b.data;
}

int skh_frame_parse(const unsigned char *p, size_t len, size_t max_frame, json_t **out,
                    size_t *used, skh_error *err)
{
    json_error_t jerr;
    *out = NULL;
    *used = 0;
    if (len < 4)
        return 0;
    size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
    if (n == 0 || n > max_frame) {
        set_err(err, "malformed_frame", "frame length %zu outside 1..%zu", n, max_frame);
        return -1;
    }
    if (len - 4 < n)
        return 0;
    *used = 4 + n;
    json_t *root = json_loadb((const char *)p + 4, n, JSON_IN_FLAGS, &jerr);
    if (root == NULL) {
        set_err(err, "malformed_frame", "invalid JSON: %s", jerr.text);
        return -2;
    }
    if (!json_is_object(root) || !json_is_string(json_object_get(root, "type"))) {
        json_decref(root);
        set_err(err, "malformed_frame", "not an object with a string type");
        return -2;
    }
    *out = root;
    return 1;
}

/* --- connection state ------------------------------------------------------------------- */

static json_t *string_array(const char *const *names)
{
    json_t *a = json_array();
    for (size_t i = 0; names != NULL && names[i] != NULL; i++)
        json_array_append_new(a, json_string(names[i]));
    return a;
}

skh_conn *skh_conn_new(const skh_options *o, skh_error *err)
{
    if (o == NULL || o->name == NULL || o->name[0] == '\0' || o->capacity < 1) {
        set_err(err, SKH_E_INVALID_ARGUMENT, "options need a name and a capacity >= 1");
        return NULL;
    }
    skh_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        goto fail;
    pthread_mutex_init(&c->mu, NULL);
    c->refs = 1;
    c->fd = -1;
    c->capacity = o->capacity;
    c->name = strdup(o->name);
    const char *path = o->socket_path ? o->socket_path : getenv("SKIFF_SOCKET");
    c->socket_path = strdup(path && path[0] ? path : SKH_DEFAULT_SOCKET);
    c->job_types = string_array(o->job_types);
    c->topics = string_array(o->topics);
    c->log = o->log ? o->log : default_log;
    c->log_arg = o->log ? o->log_arg : c->name;
    c->max_frame = SKH_DEFAULT_MAX_FRAME;
    c->no_batch = o->no_batch;
    if (!c->name || !c->socket_path || !c->job_types || !c->topics)
        goto fail;
    if (json_array_size(c->job_types) == 0 && json_array_size(c->topics) == 0) {
        skh_conn_free(c);
        set_err(err, SKH_E_INVALID_ARGUMENT, "register at least one job type or topic");
        return NULL;
    }
    return c;
fail:
    skh_conn_free(c);
    set_err(err, SKH_E_INVALID_ARGUMENT, "out of memory");
    return NULL;
}

static void conn_destroy(skh_conn *c)
{
    free(c->name);
    free(c->socket_path);
    json_decref(c->job_types);
    json_decref(c->topics);
    json_decref(c->features);
    json_decref(c->methods);
    json_decref(c->batch);
    free(c->in.data);
    free(c->out.data);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

/* Drops one reference of t; caller holds c->mu. Returns 1 when c itself must be destroyed
 * (after unlocking). */
static int task_unref_locked(skh_task *t)
{
    skh_conn *c = t->conn;
    if (--t->refs > 0)
        return 0;
    json_decref(t->frame);
    free(t);
    return --c->refs == 0;
}

void skh_task_free(skh_task *t)
{
    if (t == NULL)
        return;
    skh_conn *c = t->conn;
    pthread_mutex_lock(&c->mu);
    int last = task_unref_locked(t);
    pthread_mutex_unlock(&c->mu);
    if (last)
        conn_destroy(c);
}

/* Takes t off the open list (its result is sent, or it was cancelled or lost). */
static int unlist_locked(skh_conn *c, skh_task *t)
{
    for (skh_task **pp = &c->open; *pp != NULL; pp = &(*pp)->next_open) {
        if (*pp == t) {
            *pp = t->next_open;
            t->open = 0;
            c->in_flight--;
            return task_unref_locked(t);
        }
    }
    return 0;
}

/* Ends the session: the socket closes, open tasks are dropped (skiff fails them back). */
static int teardown_locked(skh_conn *c)
{
    int last = 0;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = ST_IDLE;
    c->gen++;
    c->in.len = c->in.off = c->out.len = c->out.off = 0;
    c->run_n = c->close_flushed = 0;
    json_decref(c->batch); /* tasks not dispatched: skiff fails them back */
    c->batch = NULL;
    while (c->open != NULL)
        last |= unlist_locked(c, c->open);
    return last;
}

void skh_conn_free(skh_conn *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    int last = teardown_locked(c);
    last |= --c->refs == 0;
    pthread_mutex_unlock(&c->mu);
    if (last)
        conn_destroy(c);
}

/* Writes what is queued; -1 when the socket failed (the session must end). */
static int flush_locked(skh_conn *c)
{
    while (c->out.off < c->out.len && c->fd >= 0) {
        ssize_t k = send(c->fd, c->out.data + c->out.off, c->out.len - c->out.off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (k < 0) {
            set_err(&c->close_why, SKH_E_IO, "send: %s", strerror(errno));
            c->state = ST_CLOSING;
            return -1;
        }
        c->out.off += (size_t)k;
    }
    if (c->out.off == c->out.len) {
        c->out.off = c->out.len = c->run_n = 0;
        if (c->close_flushed)
            c->state = ST_CLOSING;
    } else if (c->wakeup != NULL)
        c->wakeup(c->wakeup_arg);
    return 0;
}

/* Queues a frame and tries to write it. */
static int send_locked(skh_conn *c, json_t *frame, skh_error *err)
{
    if (c->fd < 0 || c->state == ST_CLOSING) {
        set_err(err, SKH_E_CLOSED, "not connected to skiff");
        return -1;
    }
    if (frame_append(&c->out, frame, c->max_frame, err) < 0)
        return -1;
    c->run_n = 0; /* a results run ends at any other frame */
    flush_locked(c);
    return 0;
}

static int has_name(json_t *list, const char *name);

static const char RESULTS_OPEN[] = "{\"type\":\"results\",\"results\":[";
#define RESULTS_OPEN_LEN (sizeof RESULTS_OPEN - 1)

static void put_length(char *at, size_t n)
{
    unsigned char *h = (unsigned char *)at;
    h[0] = (unsigned char)(n >> 24);
    h[1] = (unsigned char)(n >> 16);
    h[2] = (unsigned char)(n >> 8);
    h[3] = (unsigned char)n;
}

/* Moves the result frame just appended at out[at..len) into the unsent results run before it
 * (which becomes, or stays, one results frame); -1 when it would pass max_frame or memory is
 * short (out is then unchanged). */
static int join_run_locked(skh_conn *c, size_t at)
{
    buf *o = &c->out;
    size_t item = o->len - at - 4, run = at - c->run_at - 4;
    size_t body = c->run_n == 1 ? RESULTS_OPEN_LEN + run + 1 + item + 2 : run + 1 + item;
    char *copy = body <= c->max_frame ? malloc(item) : NULL;
    if (copy == NULL || buf_reserve(o, RESULTS_OPEN_LEN + 3) < 0) {
        free(copy);
        return -1;
    }
    memcpy(copy, o->data + at + 4, item);
    char *first = o->data + c->run_at + 4;
    if (c->run_n == 1) { /* one result frame so far: open a results frame around it */
        memmove(first + RESULTS_OPEN_LEN, first, run);
        memcpy(first, RESULTS_OPEN, RESULTS_OPEN_LEN);
        o->len = c->run_at + 4 + RESULTS_OPEN_LEN + run;
    } else {
        o->len = at - 2; /* drop the closing "]}" */
    }
    o->data[o->len++] = ',';
    memcpy(o->data + o->len, copy, item);
    o->len += item;
    memcpy(o->data + o->len, "]}", 2);
    o->len += 2;
    free(copy);
    put_length(o->data + c->run_at, body);
    c->run_n++;
    return 0;
}

/* Queues a result frame. With the welcome feature "batch", a result that finds the results
 * before it still waiting for the socket joins them in one results frame (SPEC 1.4 §4.7). */
static int send_result_locked(skh_conn *c, json_t *frame, skh_error *err)
{
    if (c->fd < 0 || c->state == ST_CLOSING) {
        set_err(err, SKH_E_CLOSED, "not connected to skiff");
        return -1;
    }
    size_t at = c->out.len;
    if (frame_append(&c->out, frame, c->max_frame, err) < 0)
        return -1;
    int joined = c->run_n > 0 && c->run_at >= c->out.off && has_name(c->features, "batch") &&
                 join_run_locked(c, at) == 0;
    if (!joined) {
        c->run_at = at;
        c->run_n = 1;
    }
    flush_locked(c);
    return 0;
}

static json_t *hello_frame(skh_conn *c)
{
    json_t *f = json_pack("{s:s,s:i,s:s,s:i}", "type", "hello", "version", SKH_PROTOCOL_VERSION,
                          "name", c->name, "capacity", c->capacity);
    if (f == NULL)
        return NULL;
    if (json_array_size(c->job_types) > 0)
        json_object_set(f, "job_types", c->job_types);
    if (json_array_size(c->topics) > 0)
        json_object_set(f, "topics", c->topics);
    json_object_set_new(f, "features",
                        c->no_batch ? json_pack("[s]", "cancel")
                                    : json_pack("[s,s]", "cancel", "batch"));
    return f;
}

int skh_conn_connect(skh_conn *c, skh_error *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(c->socket_path) >= sizeof sa.sun_path) {
        set_err(err, SKH_E_INVALID_ARGUMENT, "socket path too long: %s", c->socket_path);
        return -1;
    }
    strcpy(sa.sun_path, c->socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        set_err(err, SKH_E_IO, "cannot connect to skiff at %s: %s", c->socket_path,
                strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    pthread_mutex_lock(&c->mu);
    int last = teardown_locked(c);
    c->fd = fd;
    c->state = ST_HELLO;
    c->refused = 0;
    c->max_frame = SKH_DEFAULT_MAX_FRAME;
    json_t *hello = hello_frame(c);
    int rc = hello ? send_locked(c, hello, err) : -1;
    json_decref(hello);
    pthread_mutex_unlock(&c->mu);
    (void)last; /* the caller holds a reference: never the last */
    return rc;
}

int skh_conn_fd(const skh_conn *c)
{
    return c->fd;
}

int skh_conn_wants_write(skh_conn *c)
{
    pthread_mutex_lock(&c->mu);
    int w = c->out.len > c->out.off;
    pthread_mutex_unlock(&c->mu);
    return w;
}

void skh_conn_close(skh_conn *c)
{
    pthread_mutex_lock(&c->mu);
    if (c->fd >= 0 && c->state != ST_CLOSING) {
        set_err(&c->close_why, SKH_E_CLOSED, "closed by the handler");
        /* the results still waiting for the socket go first (e.g. the last ones of a drain) */
        c->close_flushed = 1;
        flush_locked(c);
    }
    pthread_mutex_unlock(&c->mu);
}

void skh_conn_set_wakeup(skh_conn *c, void (*fn)(void *), void *arg)
{
    pthread_mutex_lock(&c->mu);
    c->wakeup = fn;
    c->wakeup_arg = arg;
    pthread_mutex_unlock(&c->mu);
}

const char *skh_conn_session(const skh_conn *c)
{
    return c->session;
}

size_t skh_conn_max_frame(const skh_conn *c)
{
    return c->max_frame;
}

static int has_name(json_t *list, const char *name)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), name) == 0)
            return 1;
    }
    return 0;
}

int skh_conn_has_feature(const skh_conn *c, const char *feature)
{
    return has_name(c->features, feature);
}

int skh_conn_has_method(const skh_conn *c, const char *method)
{
    return has_name(c->methods, method);
}

int skh_conn_in_flight(skh_conn *c)
{
    pthread_mutex_lock(&c->mu);
    int n = c->in_flight;
    pthread_mutex_unlock(&c->mu);
    return n;
}

/* --- incoming frames -------------------------------------------------------------------- */

static const char *str_member(json_t *o, const char *key, const char *dflt)
{
    json_t *v = json_object_get(o, key);
    return json_is_string(v) ? json_string_value(v) : dflt;
}

/* Checks the members of o named in keys (a string of "name:kind" words; kinds: o object,
 * s string, i integer, n string or null); returns the first of the wrong type, or NULL. */
static const char *wrong_member(json_t *o, const char *const *keys)
{
    for (size_t i = 0; keys[i] != NULL; i++) {
        json_t *v = json_object_get(o, keys[i] + 2);
        char kind = keys[i][0];
        if (v == NULL)
            continue;
        if ((kind == 'o' && !json_is_object(v)) || (kind == 's' && !json_is_string(v)) ||
            (kind == 'i' && !json_is_integer(v)) ||
            (kind == 'n' && !json_is_string(v) && !json_is_null(v)))
            return keys[i] + 2;
    }
    return NULL;
}

/* The first member of a task frame with the wrong type; NULL when it is well-formed. */
static const char *task_problem(json_t *f)
{
    static const char *const task[] = {"o:variables",  "o:headers",  "o:zeebe",   "o:kafka",
                                       "s:source",     "s:job_type", "s:topic",   "s:traceparent",
                                       "s:tracestate", "i:deadline", "i:attempt", NULL};
    static const char *const zeebe[] = {"s:key", "s:process_instance_key", "i:retries",
                                        "i:process_definition_version", NULL};
    static const char *const kafka[] = {"s:topic",     "i:partition", "i:offset",  "i:schema_id",
                                        "i:timestamp", "n:key",       "o:headers", NULL};
    const char *bad = wrong_member(f, task);
    if (bad == NULL)
        bad = wrong_member(json_object_get(f, "zeebe"), zeebe);
    if (bad == NULL)
        bad = wrong_member(json_object_get(f, "kafka"), kafka);
    return bad;
}

static skh_task *task_new(skh_conn *c, json_t *f)
{
    skh_task *t = calloc(1, sizeof *t);
    if (t == NULL)
        return NULL;
    t->refs = 2; /* the open list and the event's receiver */
    t->conn = c;
    t->gen = c->gen;
    t->frame = json_incref(f);
    t->id = json_string_value(json_object_get(f, "id"));
    t->source = strcmp(str_member(f, "source", "zeebe"), "kafka") == 0 ? SKH_SOURCE_KAFKA
                                                                       : SKH_SOURCE_ZEEBE;
    t->job_type = str_member(f, "job_type", "");
    t->topic = str_member(f, "topic", "");
    t->traceparent = str_member(f, "traceparent", NULL);
    t->tracestate = str_member(f, "tracestate", NULL);
    t->deadline = json_integer_value(json_object_get(f, "deadline"));
    json_t *a = json_object_get(f, "attempt");
    t->attempt = a ? json_integer_value(a) : 1;
    t->open = 1;
    t->next_open = c->open;
    c->open = t;
    c->in_flight++;
    c->refs++;
    return t;
}

/* A task frame: an event, or an answer on the spot when the frame is unusable. */
static int on_task(skh_conn *c, json_t *f, skh_event *ev)
{
    const char *id = str_member(f, "id", NULL);
    if (id == NULL || id[0] == '\0') {
        logf_(c, "error", "skiff sent a task without an id; ignored");
        return 0;
    }
    const char *bad = task_problem(f);
    if (bad != NULL) {
        int kafka = strcmp(str_member(f, "source", ""), "kafka") == 0;
        logf_(c, "error", "skiff sent a malformed task %s (member %s)", id, bad);
        json_t *r = json_pack("{s:s,s:s,s:s+}", "type", kafka ? "nack" : "fail", "id", id,
                              "message", "malformed task frame: wrong type of member ", bad);
        send_locked(c, r, NULL);
        json_decref(r);
        return 0;
    }
    ev->task = task_new(c, f);
    ev->type = ev->task ? SKH_EV_TASK : SKH_EV_NONE;
    return ev->task != NULL;
}

/* A tasks frame (1.4): its items become task events one by one (next_item), in order. */
static int on_tasks(skh_conn *c, json_t *f)
{
    json_t *items = json_object_get(f, "tasks");
    if (!json_is_array(items) || json_array_size(items) == 0) {
        logf_(c, "error", "skiff sent a tasks frame without a non-empty tasks array; ignored");
        return 0;
    }
    c->batch = json_incref(items);
    c->batch_next = 0;
    return 0;
}

/* The next item of the pending tasks frame, as if it had come alone; 1 when it made an
 * event. An item that is not a task object is skipped (logged). */
static int next_item(skh_conn *c, skh_event *ev)
{
    size_t i = c->batch_next++;
    json_t *item = json_array_get(c->batch, i);
    int got = 0;
    if (json_is_object(item) && strcmp(str_member(item, "type", ""), "task") == 0)
        got = on_task(c, item, ev);
    else
        logf_(c, "error", "skiff sent a tasks frame whose item %zu is not a task; skipped", i);
    if (c->batch_next >= json_array_size(c->batch)) {
        json_decref(c->batch);
        c->batch = NULL;
    }
    return got;
}

static skh_task *find_open(skh_conn *c, const char *id)
{
    for (skh_task *t = c->open; t != NULL; t = t->next_open) {
        if (strcmp(t->id, id) == 0)
            return t;
    }
    return NULL;
}

static int on_cancel(skh_conn *c, json_t *f, skh_event *ev)
{
    skh_task *t = find_open(c, str_member(f, "id", ""));
    if (t == NULL) {
        logf_(c, "debug", "cancel of task %s, which is not open", str_member(f, "id", ""));
        return 0;
    }
    const char *reason = str_member(f, "reason", "job_gone");
    if (strcmp(reason, "deadline") != 0 && strcmp(reason, "revoked") != 0)
        reason = "job_gone";
    snprintf(t->reason, sizeof t->reason, "%s", reason);
    t->cancelled = t->answered = 1;
    t->refs++; /* the event's, released by skh_event_clear */
    unlist_locked(c, t);
    ev->type = SKH_EV_CANCEL;
    ev->task = t;
    ev->reason = t->reason;
    return 1;
}

static int on_welcome(skh_conn *c, json_t *f, skh_event *ev)
{
    json_t *mf = json_object_get(f, "max_frame");
    if (json_is_integer(mf) && json_integer_value(mf) > 0)
        c->max_frame = (size_t)json_integer_value(mf);
    json_decref(c->features);
    json_decref(c->methods);
    c->features = json_incref(json_object_get(f, "features"));
    c->methods = json_incref(json_object_get(f, "methods"));
    snprintf(c->session, sizeof c->session, "%s", str_member(f, "session", ""));
    c->state = ST_READY;
    logf_(c, "info", "connected to skiff, session %s", c->session);
    ev->type = SKH_EV_WELCOME;
    return 1;
}

static void error_of(json_t *f, skh_error *e)
{
    set_err(e, str_member(f, "code", "rejected"), "%s", str_member(f, "message", ""));
}

static int on_reply(json_t *f, skh_event *ev)
{
    ev->type = SKH_EV_REPLY;
    ev->ref = str_member(f, "ref", "");
    ev->ok = json_is_true(json_object_get(f, "ok"));
    if (ev->ok) {
        json_t *r = json_object_get(f, "result");
        /* a copy: the waiter's thread may outlive the frame (jansson's last decref does not
         * synchronise with another thread's) */
        ev->result = json_is_object(r) ? json_deep_copy(r) : json_object();
    } else {
        json_t *e = json_object_get(f, "error");
        error_of(json_is_object(e) ? e : f, &ev->error);
    }
    return 1;
}

static int on_error(skh_conn *c, json_t *f, skh_event *ev)
{
    error_of(f, &ev->error);
    ev->id = str_member(f, "id", NULL);
    json_t *index = json_object_get(f, "index");
    ev->index = json_is_integer(index) ? json_integer_value(index) : -1;
    /* an error with an index refuses one results item: the session goes on (SPEC §4.7) */
    logf_(c, "error", "skiff error %s: %s%s%s%s", ev->error.code, ev->error.message,
          ev->id ? " task " : "", ev->id ? ev->id : "", ev->index >= 0 ? " (results item)" : "");
    if (c->state == ST_HELLO) {
        c->refused = 1;
        c->close_why = ev->error;
        c->state = ST_CLOSING;
        return 0;
    }
    ev->type = SKH_EV_ERROR;
    return 1;
}

/* Dispatches one frame; 1 when it made an event. */
static int on_frame(skh_conn *c, json_t *f, skh_event *ev)
{
    const char *type = str_member(f, "type", "");
    if (c->state == ST_HELLO && strcmp(type, "welcome") == 0)
        return on_welcome(c, f, ev);
    if (strcmp(type, "error") == 0)
        return on_error(c, f, ev);
    if (c->state == ST_HELLO) {
        logf_(c, "error", "expected welcome, got %s; closing", type);
        set_err(&c->close_why, "protocol", "expected welcome, got %s", type);
        c->state = ST_CLOSING;
        return 0;
    }
    if (strcmp(type, "task") == 0)
        return on_task(c, f, ev);
    if (strcmp(type, "tasks") == 0)
        return on_tasks(c, f);
    if (strcmp(type, "cancel") == 0)
        return on_cancel(c, f, ev);
    if (strcmp(type, "reply") == 0)
        return on_reply(f, ev);
    if (strcmp(type, "ping") == 0) {
        json_t *pong = json_pack("{s:s,s:s}", "type", "pong", "ref", str_member(f, "ref", ""));
        send_locked(c, pong, NULL);
        json_decref(pong);
        return 0;
    }
    if (strcmp(type, "drain") == 0) {
        c->state = ST_DRAINING;
        ev->type = SKH_EV_DRAIN;
        ev->deadline = json_integer_value(json_object_get(f, "deadline"));
        logf_(c, "info", "skiff asks to drain; finishing %d tasks in flight", c->in_flight);
        return 1;
    }
    if (strcmp(type, "pong") != 0)
        logf_(c, "warn", "ignoring a frame of unknown type %s", type);
    return 0;
}

/* Reads once from the socket: 1 got bytes, 0 nothing now, -1 the session ended (why says
 * why). Loop thread only, without the lock: the input buffer and fd are the loop's. */
static int read_some(skh_conn *c, skh_error *why)
{
    if (c->in.off > 0) { /* keep the unread tail at the front: the buffer stays bounded */
        memmove(c->in.data, c->in.data + c->in.off, c->in.len - c->in.off);
        c->in.len -= c->in.off;
        c->in.off = 0;
    }
    if (buf_reserve(&c->in, READ_CHUNK) < 0) {
        set_err(why, SKH_E_IO, "out of memory");
        return -1;
    }
    ssize_t k = recv(c->fd, c->in.data + c->in.len, READ_CHUNK, MSG_DONTWAIT);
    if (k > 0) {
        c->in.len += (size_t)k;
        return 1;
    }
    if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 0;
    if (k == 0)
        set_err(why, SKH_E_CLOSED, "skiff closed the connection");
    else
        set_err(why, SKH_E_IO, "recv: %s", strerror(errno));
    return -1;
}

/* The next complete frame in the input buffer: 1 with *f, 0 none yet, -1 the framing is lost
 * (why says why). Bad bodies are skipped. Loop thread only, without the lock. */
static int next_frame(skh_conn *c, json_t **f, skh_error *why)
{
    for (;;) {
        size_t used;
        int rc = skh_frame_parse((unsigned char *)c->in.data + c->in.off, c->in.len - c->in.off,
                                 c->max_frame, f, &used, why);
        c->in.off += used;
        if (rc == -2) {
            logf_(c, "error", "skiff sent a bad frame (%s); ignored", why->message);
            continue;
        }
        if (rc == -1)
            logf_(c, "error", "skiff sent a bad frame (%s); closing", why->message);
        if (c->in.off == c->in.len)
            c->in.off = c->in.len = 0;
        return rc;
    }
}

static void closed_event(skh_conn *c, skh_event *ev)
{
    ev->type = SKH_EV_CLOSED;
    ev->error = c->close_why;
    ev->refused = c->refused;
    (void)teardown_locked(c); /* the caller's reference keeps c alive */
}

/* Reading and JSON decoding run without the lock, so that workers sending results are not held
 * up by them; the session state is changed under it. */
int skh_conn_process(skh_conn *c, skh_event *ev)
{
    memset(ev, 0, sizeof *ev);
    pthread_mutex_lock(&c->mu);
    int got = 0;
    while (!got && c->fd >= 0) {
        json_t *f = NULL;
        skh_error why;
        if (c->state == ST_CLOSING) {
            closed_event(c, ev);
            got = 1;
            continue;
        }
        if (flush_locked(c) < 0)
            continue;
        if (c->batch != NULL) { /* the items of a tasks frame come before the next frame */
            got = next_item(c, ev);
            continue;
        }
        pthread_mutex_unlock(&c->mu);
        int rc = next_frame(c, &f, &why);
        int rd = rc == 0 ? read_some(c, &why) : 1;
        pthread_mutex_lock(&c->mu);
        if ((rc < 0 || rd < 0) && c->state != ST_CLOSING) {
            c->close_why = why;
            c->state = ST_CLOSING;
        } else if (rc == 1) {
            got = on_frame(c, f, ev);
            if (got && ev->type != SKH_EV_TASK)
                ev->frame = f; /* the event's strings point into it */
            else
                json_decref(f); /* a task holds its own reference */
        } else if (rd == 0) {
            break;
        }
    }
    pthread_mutex_unlock(&c->mu);
    return got;
}

void skh_event_clear(skh_event *ev)
{
    json_decref(ev->result);
    json_decref(ev->frame);
    ev->result = ev->frame = NULL;
    if (ev->type == SKH_EV_CANCEL)
        skh_task_free(ev->task);
    ev->task = NULL;
}

/* --- results and requests --------------------------------------------------------------- */

/* The fail / nack that replaces a result that cannot be sent. */
static json_t *replacement(skh_task *t, json_t *frame, const char *why)
{
    const char *type = str_member(frame, "type", "");
    int kafka = strcmp(type, "ack") == 0 || strcmp(type, "nack") == 0;
    json_t *r =
        json_pack("{s:s,s:s,s:s}", "type", kafka ? "nack" : "fail", "id", t->id, "message", why);
    json_t *dl = json_object_get(frame, "dead_letter");
    if (r != NULL && strcmp(type, "nack") == 0 && dl != NULL)
        json_object_set(r, "dead_letter", dl);
    return r;
}

/* Sends t's result (frame is stolen); -1 with SKH_E_CLOSED when t is not owed one. */
static int send_result(skh_task *t, json_t *frame)
{
    skh_conn *c = t->conn;
    skh_error e;
    int rc = -1;
    pthread_mutex_lock(&c->mu);
    if (frame != NULL && t->open && t->gen == c->gen && !t->answered) {
        if (send_result_locked(c, frame, &e) < 0 && strcmp(e.code, SKH_E_INVALID_PARAMS) == 0) {
            logf_(c, "error", "result of task %s not sent: %s", t->id, e.message);
            json_t *alt = replacement(t, frame, e.message);
            send_result_locked(c, alt, NULL);
            json_decref(alt);
        }
        t->answered = 1;
        (void)unlist_locked(c, t); /* the caller holds a reference: never the last */
        rc = 0;
    }
    pthread_mutex_unlock(&c->mu);
    json_decref(frame);
    return rc;
}

static json_t *result_frame(skh_task *t, const char *type, json_t *variables)
{
    json_t *f = json_pack("{s:s,s:s}", "type", type, "id", t->id);
    if (f != NULL && variables != NULL)
        json_object_set(f, "variables", variables);
    return f;
}

int skh_task_complete(skh_task *t, json_t *variables)
{
    if (variables != NULL && !json_is_object(variables)) {
        skh_failure f = {
            .message = "variables must be a JSON object", .retries = -1, .retry_backoff_ms = -1};
        return skh_task_fail(t, &f);
    }
    return send_result(t, result_frame(t, "complete", variables));
}

static json_t *error_member(const skh_failure *f)
{
    json_t *stack = json_array();
    for (size_t i = 0; i < f->n_stack; i++) {
        const skh_frame *fr = &f->stack[i];
        json_array_append_new(stack, json_pack("{s:s,s:i,s:s}", "file", fr->file ? fr->file : "",
                                               "line", fr->line > 0 ? fr->line : 0, "function",
                                               fr->function ? fr->function : ""));
    }
    return json_pack("{s:s,s:s,s:o}", "type", f->error_type ? f->error_type : "", "message",
                     f->message ? f->message : "", "stack", stack);
}

int skh_task_fail(skh_task *t, const skh_failure *f)
{
    json_t *r = result_frame(t, "fail", NULL);
    if (r == NULL)
        return -1;
    json_object_set_new(r, "message", json_string(f->message ? f->message : ""));
    if (f->retries >= 0)
        json_object_set_new(r, "retries", json_integer(f->retries));
    if (f->retry_backoff_ms >= 0)
        json_object_set_new(r, "retry_backoff_ms", json_integer(f->retry_backoff_ms));
    if (f->variables != NULL)
        json_object_set(r, "variables", f->variables);
    if (f->error_type != NULL || f->n_stack > 0)
        json_object_set_new(r, "error", error_member(f));
    return send_result(t, r);
}

int skh_task_fail_here(skh_task *t, const char *message, const char *file, int line,
                       const char *function)
{
    skh_frame fr = {.file = file, .line = line, .function = function};
    skh_failure f = {.message = message,
                     .error_type = "error",
                     .retries = -1,
                     .retry_backoff_ms = -1,
                     .stack = &fr,
                     .n_stack = 1};
    return skh_task_fail(t, &f);
}

int skh_task_bpmn_error(skh_task *t, const char *code, const char *message, json_t *variables)
{
    json_t *r = result_frame(t, "bpmn_error", NULL);
    if (r == NULL)
        return -1;
    json_object_set_new(r, "code", json_string(code && code[0] ? code : "ERROR"));
    if (message != NULL && message[0] != '\0')
        json_object_set_new(r, "message", json_string(message));
    if (variables != NULL)
        json_object_set(r, "variables", variables);
    return send_result(t, r);
}

int skh_task_ack(skh_task *t)
{
    return send_result(t, result_frame(t, "ack", NULL));
}

int skh_task_nack(skh_task *t, const char *message, int64_t retry_backoff_ms, int dead_letter)
{
    json_t *r = result_frame(t, "nack", NULL);
    if (r == NULL)
        return -1;
    json_object_set_new(r, "message", json_string(message ? message : ""));
    if (retry_backoff_ms >= 0)
        json_object_set_new(r, "retry_backoff_ms", json_integer(retry_backoff_ms));
    if (dead_letter)
        json_object_set_new(r, "dead_letter", json_true());
    return send_result(t, r);
}

int skh_task_answered(const skh_task *t)
{
    pthread_mutex_lock(&t->conn->mu);
    int a = t->answered;
    pthread_mutex_unlock(&t->conn->mu);
    return a;
}

/* Sends a request frame (members stolen) with a fresh ref. */
static int request_locked(skh_conn *c, const char *type, json_t *members, skh_task *t, char *ref,
                          skh_error *err)
{
    int rc = -1;
    if (c->state != ST_READY && c->state != ST_DRAINING)
        set_err(err, SKH_E_CLOSED, "not connected to skiff");
    else if (t != NULL && t->cancelled)
        set_err(err, SKH_E_CANCELLED, "task %s was cancelled (%s)", t->id, t->reason);
    else if (t != NULL && (!t->open || t->gen != c->gen))
        set_err(err, SKH_E_CLOSED, "task %s is no longer open", t->id);
    else {
        snprintf(ref, 24, "%llu", (unsigned long long)++c->next_ref);
        json_t *f = json_pack("{s:s,s:s}", "type", type, "ref", ref);
        if (f != NULL && json_object_update(f, members) == 0)
            rc = send_locked(c, f, err);
        json_decref(f);
    }
    json_decref(members);
    return rc;
}

int skh_conn_extend(skh_conn *c, skh_task *t, int64_t timeout_ms, char *ref, skh_error *err)
{
    if (timeout_ms < 1) {
        set_err(err, SKH_E_INVALID_ARGUMENT, "timeout_ms must be >= 1, not %lld",
                (long long)timeout_ms);
        return -1;
    }
    if (t->source == SKH_SOURCE_KAFKA) {
        set_err(err, SKH_E_UNSUPPORTED, "a Kafka task cannot be extended");
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    int rc = -1;
    if (!has_name(c->features, "extend"))
        set_err(err, SKH_E_UNSUPPORTED, "skiff does not support extend");
    else
        rc = request_locked(
            c, "extend", json_pack("{s:s,s:I}", "id", t->id, "timeout_ms", (json_int_t)timeout_ms),
            t, ref, err);
    pthread_mutex_unlock(&c->mu);
    return rc;
}

int skh_conn_call(skh_conn *c, const char *method, json_t *params, skh_task *t, char *ref,
                  skh_error *err)
{
    if (params != NULL && !json_is_object(params)) {
        set_err(err, SKH_E_INVALID_PARAMS, "params must be a JSON object");
        return -1;
    }
    pthread_mutex_lock(&c->mu);
    int rc = -1;
    if (!has_name(c->methods, method))
        set_err(err, SKH_E_UNSUPPORTED, "skiff does not offer the method %s", method);
    else {
        json_t *m = json_pack("{s:s}", "method", method);
        if (m != NULL && params != NULL)
            json_object_set(m, "params", params);
        rc = request_locked(c, "call", m, t, ref, err);
    }
    pthread_mutex_unlock(&c->mu);
    return rc;
}

/* --- task accessors --------------------------------------------------------------------- */

const char *skh_task_id(const skh_task *t)
{
    return t->id;
}

skh_source skh_task_source(const skh_task *t)
{
    return t->source;
}

const char *skh_task_job_type(const skh_task *t)
{
    return t->job_type;
}

const char *skh_task_topic(const skh_task *t)
{
    return t->topic;
}

int64_t skh_task_deadline(const skh_task *t)
{
    return t->deadline;
}

int64_t skh_task_attempt(const skh_task *t)
{
    return t->attempt;
}

const char *skh_task_traceparent(const skh_task *t)
{
    return t->traceparent;
}

const char *skh_task_tracestate(const skh_task *t)
{
    return t->tracestate;
}

json_t *skh_task_variables(const skh_task *t)
{
    return json_object_get(t->frame, "variables");
}

json_t *skh_task_headers(const skh_task *t)
{
    return json_object_get(t->frame, "headers");
}

json_t *skh_task_zeebe(const skh_task *t)
{
    return json_object_get(t->frame, "zeebe");
}

json_t *skh_task_value(const skh_task *t)
{
    return json_object_get(t->frame, "value");
}

json_t *skh_task_kafka(const skh_task *t)
{
    return json_object_get(t->frame, "kafka");
}

json_t *skh_task_frame(const skh_task *t)
{
    return t->frame;
}

int skh_task_cancelled(const skh_task *t)
{
    pthread_mutex_lock(&t->conn->mu);
    int cancelled = t->cancelled;
    pthread_mutex_unlock(&t->conn->mu);
    return cancelled;
}

const char *skh_task_cancel_reason(const skh_task *t)
{
    return skh_task_cancelled(t) ? t->reason : NULL;
}

/* --- the blocking API ------------------------------------------------------------------- */

typedef struct route {
    char *name;
    skh_task_fn fn;
    void *arg;
    struct route *next;
} route;

/* A worker thread waiting for a reply. */
typedef struct waiter {
    char ref[24];
    skh_task *task;
    int done, ok;
    json_t *result;
    skh_error err;
    struct waiter *next;
} waiter;

struct skh_handler {
    skh_options opts;
    char *name, *socket_path;
    route *jobs, *topics;
    skh_conn *conn;
    pthread_mutex_t mu;  /* guards what follows; taken before conn->mu, never after */
    pthread_cond_t cv;   /* replies, cancels, functions done */
    pthread_cond_t work; /* a task queued (idle workers wait on it, woken one at a time) */
    waiter *waiters;
    skh_task *q_head, *q_tail;
    int queued, idle, running, exiting, stop, draining;
    pthread_t *threads;
    size_t n_threads;
    int wake[2];
};

skh_handler *skh_handler_new(const skh_options *o, skh_error *err)
{
    if (o == NULL || o->name == NULL || o->name[0] == '\0' || o->capacity < 1) {
        set_err(err, SKH_E_INVALID_ARGUMENT, "options need a name and a capacity >= 1");
        return NULL;
    }
    skh_handler *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->opts = *o;
    h->name = strdup(o->name);
    h->socket_path = o->socket_path ? strdup(o->socket_path) : NULL;
    h->opts.name = h->name;
    h->opts.socket_path = h->socket_path;
    h->wake[0] = h->wake[1] = -1;
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    pthread_cond_init(&h->work, NULL);
    if (h->name == NULL || pipe2(h->wake, O_NONBLOCK | O_CLOEXEC) < 0) {
        skh_handler_free(h);
        set_err(err, SKH_E_IO, "cannot set up the handler");
        return NULL;
    }
    return h;
}

static void routes_free(route *r)
{
    while (r != NULL) {
        route *next = r->next;
        free(r->name);
        free(r);
        r = next;
    }
}

void skh_handler_free(skh_handler *h)
{
    if (h == NULL)
        return;
    routes_free(h->jobs);
    routes_free(h->topics);
    skh_conn_free(h->conn);
    for (int i = 0; i < 2; i++) {
        if (h->wake[i] >= 0)
            close(h->wake[i]);
    }
    free(h->threads);
    pthread_cond_destroy(&h->cv);
    pthread_cond_destroy(&h->work);
    pthread_mutex_destroy(&h->mu);
    free(h->name);
    free(h->socket_path);
    free(h);
}

static int add_route(route **list, const char *name, skh_task_fn fn, void *arg)
{
    route *r = calloc(1, sizeof *r);
    if (r == NULL || name == NULL || name[0] == '\0' || fn == NULL ||
        (r->name = strdup(name)) == NULL) {
        free(r);
        return -1;
    }
    r->fn = fn;
    r->arg = arg;
    while (*list != NULL) /* keep registration order: it is the hello's */
        list = &(*list)->next;
    *list = r;
    return 0;
}

int skh_handler_job(skh_handler *h, const char *job_type, skh_task_fn fn, void *arg)
{
    return add_route(&h->jobs, job_type, fn, arg);
}

int skh_handler_topic(skh_handler *h, const char *topic, skh_task_fn fn, void *arg)
{
    return add_route(&h->topics, topic, fn, arg);
}

static void wake(void *arg)
{
    skh_handler *h = arg;
    char b = 1;
    ssize_t k = write(h->wake[1], &b, 1);
    (void)k; /* a full pipe already wakes the loop */
}

void skh_handler_stop(skh_handler *h)
{
    pthread_mutex_lock(&h->mu);
    h->stop = 1;
    pthread_mutex_unlock(&h->mu);
    wake(h);
}

static const route *find_route(const route *r, const char *name)
{
    for (; r != NULL; r = r->next) {
        if (strcmp(r->name, name) == 0)
            return r;
    }
    return NULL;
}

/* Runs one task's function on a worker thread and makes sure it is answered. */
static void run_task(skh_handler *h, skh_task *t)
{
    int kafka = t->source == SKH_SOURCE_KAFKA;
    const route *r = find_route(kafka ? h->topics : h->jobs, kafka ? t->topic : t->job_type);
    char msg[300];
    int rc = -1;
    if (r == NULL)
        snprintf(msg, sizeof msg, "no handler for %s '%s'", kafka ? "topic" : "job type",
                 kafka ? t->topic : t->job_type);
    else {
        rc = r->fn(t, r->arg);
        snprintf(msg, sizeof msg, "job function returned an error (%d)", rc);
    }
    /* the default result; refused (nothing sent) when the function answered */
    skh_failure f = {.message = msg, .retries = -1, .retry_backoff_ms = -1};
    if (rc == 0)
        kafka ? skh_task_ack(t) : skh_task_complete(t, NULL);
    else
        kafka ? skh_task_nack(t, msg, -1, 0) : skh_task_fail(t, &f);
    skh_task_free(t);
}

static void *worker_main(void *arg)
{
    skh_handler *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (h->q_head == NULL && !h->exiting) {
            h->idle++;
            pthread_cond_wait(&h->work, &h->mu);
            h->idle--;
        }
        if (h->q_head == NULL)
            break;
        skh_task *t = h->q_head;
        h->q_head = t->next_queued;
        h->q_tail = h->q_head ? h->q_tail : NULL;
        h->queued--;
        pthread_mutex_unlock(&h->mu);
        run_task(h, t);
        pthread_mutex_lock(&h->mu);
        if (--h->running == 0)
            pthread_cond_broadcast(&h->cv);
        if (h->draining)
            wake(h);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

/* Hands a task to a worker, starting one when none is free (a cancelled task's function may
 * still run, so there can be more functions running than capacity). */
static void enqueue(skh_handler *h, skh_task *t)
{
    pthread_mutex_lock(&h->mu);
    t->next_queued = NULL;
    if (h->q_tail != NULL)
        h->q_tail->next_queued = t;
    else
        h->q_head = t;
    h->q_tail = t;
    h->queued++;
    h->running++;
    if (h->queued > h->idle) {
        pthread_t *grown = realloc(h->threads, (h->n_threads + 1) * sizeof *grown);
        if (grown != NULL) {
            h->threads = grown;
            if (pthread_create(&h->threads[h->n_threads], NULL, worker_main, h) == 0)
                h->n_threads++;
        }
    }
    pthread_cond_signal(&h->work);
    pthread_mutex_unlock(&h->mu);
}

/* Wakes the waiters that match (all of them when ref and task are NULL). */
static void finish_waiters(skh_handler *h, skh_event *ev, skh_task *task, const char *code,
                           const char *message)
{
    pthread_mutex_lock(&h->mu);
    for (waiter **pp = &h->waiters; *pp != NULL;) {
        waiter *w = *pp;
        int match = ev ? strcmp(w->ref, ev->ref) == 0 : task == NULL || w->task == task;
        if (!match) {
            pp = &w->next;
            continue;
        }
        *pp = w->next;
        w->done = 1;
        w->ok = ev ? ev->ok : 0;
        if (ev && ev->ok) {
            w->result = ev->result; /* stolen: a ref is unique */
            ev->result = NULL;
        } else if (ev)
            w->err = ev->error;
        else
            set_err(&w->err, code, "%s", message);
    }
    pthread_cond_broadcast(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Blocks until the request is answered. kind: "extend" or a call method. */
static int wait_request(skh_task *t, skh_conn *c, const char *method, int64_t timeout_ms,
                        json_t *params, json_t **result, skh_error *err)
{
    skh_handler *h = c ? c->owner : NULL;
    waiter w = {.task = t};
    if (h == NULL) {
        set_err(err, SKH_E_CLOSED, "not connected to skiff by skh_handler_run");
        return -1;
    }
    pthread_mutex_lock(&h->mu);
    int rc = method ? skh_conn_call(c, method, params, t, w.ref, err)
                    : skh_conn_extend(c, t, timeout_ms, w.ref, err);
    if (rc == 0) {
        w.next = h->waiters;
        h->waiters = &w;
        while (!w.done)
            pthread_cond_wait(&h->cv, &h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    if (rc < 0)
        return -1;
    if (!w.ok) {
        *err = w.err;
        return -1;
    }
    *result = w.result;
    return 0;
}

int skh_task_extend(skh_task *t, int64_t timeout_ms, int64_t *deadline, skh_error *err)
{
    json_t *r = NULL;
    if (wait_request(t, t->conn, NULL, timeout_ms, NULL, &r, err) < 0)
        return -1;
    json_t *d = json_object_get(r, "deadline");
    if (json_is_integer(d))
        t->deadline = json_integer_value(d);
    *deadline = t->deadline;
    json_decref(r);
    return 0;
}

int skh_task_call(skh_task *t, const char *method, json_t *params, json_t **result, skh_error *err)
{
    /* a call is not the task's: it goes out (and is answered) also after a cancel */
    return wait_request(NULL, t->conn, method, 0, params, result, err);
}

int skh_handler_call(skh_handler *h, const char *method, json_t *params, json_t **result,
                     skh_error *err)
{
    return wait_request(NULL, h->conn, method, 0, params, result, err);
}

static json_t *publish_params(const char *name, const char *correlation_key, json_t *variables,
                              int64_t time_to_live_ms, const char *message_id,
                              const char *tenant_id, const skh_trace *trace)
{
    json_t *p = json_pack("{s:s,s:s,s:I}", "name", name ? name : "", "correlation_key",
                          correlation_key ? correlation_key : "", "time_to_live_ms",
                          (json_int_t)time_to_live_ms);
    if (p != NULL && variables != NULL)
        json_object_set(p, "variables", variables);
    if (p != NULL && message_id != NULL)
        json_object_set_new(p, "message_id", json_string(message_id));
    if (p != NULL && tenant_id != NULL)
        json_object_set_new(p, "tenant_id", json_string(tenant_id));
    if (p != NULL && trace != NULL && trace->traceparent != NULL)
        json_object_set_new(p, "traceparent", json_string(trace->traceparent));
    if (p != NULL && trace != NULL && trace->tracestate != NULL)
        json_object_set_new(p, "tracestate", json_string(trace->tracestate));
    return p;
}

static json_t *produce_params(const char *topic, json_t *value, const char *key, json_t *headers)
{
    json_t *p =
        json_pack("{s:s,s:O}", "topic", topic ? topic : "", "value", value ? value : json_null());
    if (p != NULL && key != NULL)
        json_object_set_new(p, "key", json_string(key));
    if (p != NULL && headers != NULL)
        json_object_set(p, "headers", headers);
    return p;
}

/* A call on behalf of t, or of the handler when t is NULL; params stolen. */
static int call_steal(skh_handler *h, skh_task *t, const char *method, json_t *params,
                      json_t **result, skh_error *err)
{
    int rc = wait_request(NULL, t ? t->conn : h->conn, method, 0, params, result, err);
    json_decref(params);
    return rc;
}

int skh_task_publish_message(skh_task *t, const char *name, const char *correlation_key,
                             json_t *variables, int64_t time_to_live_ms, const char *message_id,
                             const char *tenant_id, json_t **result, skh_error *err)
{
    return skh_task_publish_message_traced(t, name, correlation_key, variables, time_to_live_ms,
                                           message_id, tenant_id, NULL, result, err);
}

int skh_task_publish_message_traced(skh_task *t, const char *name, const char *correlation_key,
                                    json_t *variables, int64_t time_to_live_ms,
                                    const char *message_id, const char *tenant_id,
                                    const skh_trace *trace, json_t **result, skh_error *err)
{
    return call_steal(NULL, t, "publish_message",
                      publish_params(name, correlation_key, variables, time_to_live_ms, message_id,
                                     tenant_id, trace),
                      result, err);
}

int skh_task_produce(skh_task *t, const char *topic, json_t *value, const char *key,
                     json_t *headers, json_t **result, skh_error *err)
{
    return call_steal(NULL, t, "produce", produce_params(topic, value, key, headers), result, err);
}

int skh_handler_publish_message(skh_handler *h, const char *name, const char *correlation_key,
                                json_t *variables, int64_t time_to_live_ms, const char *message_id,
                                const char *tenant_id, json_t **result, skh_error *err)
{
    return skh_handler_publish_message_traced(h, name, correlation_key, variables, time_to_live_ms,
                                              message_id, tenant_id, NULL, result, err);
}

int skh_handler_publish_message_traced(skh_handler *h, const char *name,
                                       const char *correlation_key, json_t *variables,
                                       int64_t time_to_live_ms, const char *message_id,
                                       const char *tenant_id, const skh_trace *trace,
                                       json_t **result, skh_error *err)
{
    return call_steal(h, NULL, "publish_message",
                      publish_params(name, correlation_key, variables, time_to_live_ms, message_id,
                                     tenant_id, trace),
                      result, err);
}

int skh_handler_produce(skh_handler *h, const char *topic, json_t *value, const char *key,
                        json_t *headers, json_t **result, skh_error *err)
{
    return call_steal(h, NULL, "produce", produce_params(topic, value, key, headers), result, err);
}

/* secret and token: a call with {name: arg} whose result's string `member` is copied out. */
static int string_call(skh_handler *h, skh_task *t, const char *method, const char *name,
                       const char *arg, const char *member, char **value, size_t *len,
                       skh_error *err)
{
    json_t *params, *result = NULL;
    *value = NULL;
    if (len != NULL)
        *len = 0;
    if (arg == NULL || *arg == '\0') {
        set_err(err, SKH_E_INVALID_ARGUMENT, "%s needs a non-empty %s", method, name);
        return -1;
    }
    if ((params = json_pack("{s:s}", name, arg)) == NULL) {
        set_err(err, SKH_E_INVALID_ARGUMENT, "%s: %s is not UTF-8", method, name);
        return -1;
    }
    if (call_steal(h, t, method, params, &result, err) < 0)
        return -1;
    json_t *v = json_object_get(result, member);
    size_t n = json_string_length(v);
    if (!json_is_string(v) || (*value = malloc(n + 1)) == NULL) {
        set_err(err, json_is_string(v) ? SKH_E_IO : SKH_E_INVALID_REPLY,
                json_is_string(v) ? "out of memory" : "%s reply without a string %s", method,
                member);
        json_decref(result);
        return -1;
    }
    memcpy(*value, json_string_value(v), n);
    (*value)[n] = '\0';
    if (len != NULL)
        *len = n;
    json_decref(result);
    return 0;
}

int skh_task_secret(skh_task *t, const char *reference, char **value, size_t *len, skh_error *err)
{
    return string_call(NULL, t, "secret", "reference", reference, "value", value, len, err);
}

int skh_task_token(skh_task *t, const char *audience, char **value, size_t *len, skh_error *err)
{
    return string_call(NULL, t, "token", "audience", audience, "access_token", value, len, err);
}

int skh_handler_secret(skh_handler *h, const char *reference, char **value, size_t *len,
                       skh_error *err)
{
    return string_call(h, NULL, "secret", "reference", reference, "value", value, len, err);
}

int skh_handler_token(skh_handler *h, const char *audience, char **value, size_t *len,
                      skh_error *err)
{
    return string_call(h, NULL, "token", "audience", audience, "access_token", value, len, err);
}

int skh_task_wait_cancelled(skh_task *t, int64_t timeout_ms)
{
    skh_handler *h = t->conn->owner;
    struct timespec until;
    if (h == NULL)
        return skh_task_cancelled(t);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&h->mu);
    while (!skh_task_cancelled(t) && pthread_cond_timedwait(&h->cv, &h->mu, &until) == 0)
        continue;
    pthread_mutex_unlock(&h->mu);
    return skh_task_cancelled(t);
}

static void drain_pipe(skh_handler *h)
{
    char b[64];
    while (read(h->wake[0], b, sizeof b) > 0)
        continue;
}

/* Sleeps ms, or less when woken (stop). */
static void pause_ms(skh_handler *h, int ms)
{
    struct pollfd p = {.fd = h->wake[0], .events = POLLIN};
    if (poll(&p, 1, ms) > 0)
        drain_pipe(h);
}

/* One event of the session; returns 2 to go on, else how the session ended. */
static int on_event(skh_handler *h, skh_event *ev, int *welcomed, skh_error *err)
{
    switch (ev->type) {
    case SKH_EV_WELCOME:
        *welcomed = 1;
        return 2;
    case SKH_EV_TASK:
        enqueue(h, ev->task);
        ev->task = NULL;
        return 2;
    case SKH_EV_CANCEL:
        finish_waiters(h, NULL, ev->task, SKH_E_CANCELLED, "the task was cancelled");
        return 2;
    case SKH_EV_REPLY:
        finish_waiters(h, ev, NULL, NULL, NULL);
        return 2;
    case SKH_EV_DRAIN:
        pthread_mutex_lock(&h->mu);
        h->draining = 1;
        pthread_mutex_unlock(&h->mu);
        return 2;
    case SKH_EV_CLOSED:
        *err = ev->error;
        if (ev->refused)
            set_err(err, ev->error.code, "skiff refused hello: %s: %.400s", ev->error.code,
                    ev->error.message);
        return ev->refused ? -1 : h->draining;
    default:
        return 2;
    }
}

/* Serves one connected session: 1 drained (or stopped), 0 lost, -1 hello refused. */
static int serve(skh_handler *h, int *welcomed, skh_error *err)
{
    skh_conn *c = h->conn;
    for (;;) {
        skh_event ev;
        while (skh_conn_process(c, &ev)) {
            int r = on_event(h, &ev, welcomed, err);
            skh_event_clear(&ev);
            if (r != 2)
                return r;
        }
        pthread_mutex_lock(&h->mu);
        h->draining |= h->stop;
        int done = h->draining && skh_conn_in_flight(c) == 0;
        pthread_mutex_unlock(&h->mu);
        if (done) {
            skh_conn_close(c);
            continue;
        }
        struct pollfd p[2] = {{.fd = skh_conn_fd(c), .events = POLLIN},
                              {.fd = h->wake[0], .events = POLLIN}};
        if (skh_conn_wants_write(c))
            p[0].events |= POLLOUT;
        if (poll(p, 2, -1) < 0 && errno != EINTR) {
            set_err(err, SKH_E_IO, "poll: %s", strerror(errno));
            return 0;
        }
        if (p[1].revents)
            drain_pipe(h);
    }
}

/* After a session: requests fail, and the functions still running finish. */
static void end_session(skh_handler *h)
{
    finish_waiters(h, NULL, NULL, SKH_E_CLOSED, "connection to skiff lost before the reply");
    pthread_mutex_lock(&h->mu);
    while (h->running > 0)
        pthread_cond_wait(&h->cv, &h->mu);
    pthread_mutex_unlock(&h->mu);
}

static void stop_workers(skh_handler *h)
{
    pthread_mutex_lock(&h->mu);
    h->exiting = 1;
    pthread_cond_broadcast(&h->work);
    pthread_mutex_unlock(&h->mu);
    for (size_t i = 0; i < h->n_threads; i++)
        pthread_join(h->threads[i], NULL);
    h->n_threads = 0;
    h->exiting = 0;
}

static const char **route_names(const route *r)
{
    size_t n = 0;
    for (const route *i = r; i != NULL; i = i->next)
        n++;
    const char **names = calloc(n + 1, sizeof *names);
    for (size_t k = 0; names != NULL && r != NULL; r = r->next)
        names[k++] = r->name;
    return names;
}

static int make_conn(skh_handler *h, skh_error *err)
{
    skh_options o = h->opts;
    const char **jobs = route_names(h->jobs), **topics = route_names(h->topics);
    o.job_types = jobs;
    o.topics = topics;
    skh_conn_free(h->conn);
    h->conn = jobs && topics ? skh_conn_new(&o, err) : NULL;
    free(jobs);
    free(topics);
    if (h->conn == NULL)
        return -1;
    h->conn->owner = h;
    skh_conn_set_wakeup(h->conn, wake, h);
    return 0;
}

/* Resets the session flags; 1 when the handler was stopped. */
static int begin_session(skh_handler *h)
{
    pthread_mutex_lock(&h->mu);
    h->draining = 0;
    int stop = h->stop;
    pthread_mutex_unlock(&h->mu);
    return stop;
}

int skh_handler_run(skh_handler *h, skh_error *err)
{
    int initial = h->opts.backoff_initial_ms > 0 ? h->opts.backoff_initial_ms : 100;
    int max = h->opts.backoff_max_ms > 0 ? h->opts.backoff_max_ms : 5000;
    int delay = initial, rc = 0;
    skh_error e;
    if (make_conn(h, err) < 0)
        return -1;
    while (!begin_session(h)) {
        int welcomed = 0;
        if (skh_conn_connect(h->conn, &e) < 0) {
            logf_(h->conn, "info", "%s", e.message);
        } else {
            int r = serve(h, &welcomed, &e);
            end_session(h);
            if (r != 0) {
                rc = r;
                break;
            }
            logf_(h->conn, "warn", "connection to skiff lost (%s)", e.message);
        }
        delay = welcomed ? initial : delay;
        pause_ms(h, delay);
        delay = delay * 2 < max ? delay * 2 : max;
    }
    stop_workers(h);
    if (rc < 0 && err != NULL) {
        *err = e;
        snprintf(err->code, sizeof err->code, "%s", SKH_E_REFUSED);
        logf_(h->conn, "error", "%s", e.message);
    }
    return rc < 0 ? -1 : 0;
}
