/* skiff handler SDK for C (handler protocol v1.4, handler-protocol/SPEC.md), on jansson.
 *
 * Two layers:
 * - the poll-loop API (skh_conn): one session on a non-blocking socket. Poll its fd, call
 *   skh_conn_process() when it is readable (or writable while skh_conn_wants_write()), and take
 *   what happened as events (a task, a cancel, a reply, drain, an error, closed). Pings are
 *   answered inside. It fits any event loop and starts no thread.
 * - the blocking API (skh_handler): register a function per job type and per topic, then
 *   skh_handler_run() connects (with a backoff), runs each task on a worker thread (at most
 *   `capacity` answered-owing tasks at once), answers pings, honours cancel, drain and
 *   reconnects after a lost connection. Calls inside a function block until skiff replies.
 *
 * Ownership: json_t values handed to a function (variables, params) are borrowed unless the
 * name says steal; values returned through an out parameter are owned by the caller
 * (json_decref). Every function may be called from any thread (a connection has one lock);
 * the poll loop itself (skh_conn_process) belongs to one thread. Errors: a function returns 0
 * or -1 and fills an skh_error with a code (skiff's, or the SDK's own: see SKH_E_*) and a
 * message. */
#ifndef SKIFF_HANDLER_H
#define SKIFF_HANDLER_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define SKH_PROTOCOL_VERSION 1
#define SKH_DEFAULT_SOCKET "/run/skiff/handler.sock"
#define SKH_DEFAULT_MAX_FRAME (4 * 1024 * 1024)

/* SDK error codes (skiff's codes, e.g. "not_found", "invalid_value", come as they are). */
#define SKH_E_UNSUPPORTED "unsupported" /* welcome lacks the feature/method, or a Kafka extend */
#define SKH_E_CANCELLED "cancelled"     /* skiff cancelled the task (also while a call waits) */
#define SKH_E_CLOSED "closed"           /* not connected, result sent, or lost before reply */
#define SKH_E_INVALID_PARAMS "invalid_params"     /* not encodable or larger than max_frame */
#define SKH_E_INVALID_ARGUMENT "invalid_argument" /* a bad argument, e.g. timeout_ms < 1 */
#define SKH_E_REFUSED "refused"                   /* skiff answered hello with an error */
#define SKH_E_IO "io"                             /* a socket error */
#define SKH_E_INVALID_REPLY "invalid_reply"       /* a reply without the member it must have */

typedef struct skh_error {
    char code[48];
    char message[512];
} skh_error;

/* Where log lines go (default: one JSON object per line on stderr). level: "debug", "info",
 * "warn", "error". */
typedef void (*skh_log_fn)(void *arg, const char *level, const char *message);

/* Session configuration. Arrays are NULL-terminated; the connection copies what it needs. */
typedef struct skh_options {
    const char *name;             /* hello.name, required */
    int capacity;                 /* >= 1 */
    const char *const *job_types; /* Zeebe job types served, may be NULL */
    const char *const *topics;    /* Kafka topics consumed, may be NULL */
    const char *socket_path;      /* NULL: $SKIFF_SOCKET, else SKH_DEFAULT_SOCKET */
    skh_log_fn log;               /* NULL: JSON lines on stderr */
    void *log_arg;
    int backoff_initial_ms; /* reconnect backoff (blocking API), 0: 100 */
    int backoff_max_ms;     /* 0: 5000 */
    /* Batches (protocol 1.4) are on unless no_batch is 1: the hello lists feature "batch", so
     * skiff may send several tasks in one `tasks` frame (each one an SKH_EV_TASK, as if it had
     * come alone); when skiff's welcome lists it too, results that wait for the socket
     * together leave in one `results` frame (within max_frame). */
    int no_batch;
} skh_options;

typedef struct skh_conn skh_conn;
typedef struct skh_task skh_task;
typedef struct skh_handler skh_handler;

/* --- The task (both APIs) ------------------------------------------------------------- */

typedef enum { SKH_SOURCE_ZEEBE, SKH_SOURCE_KAFKA } skh_source;

const char *skh_task_id(const skh_task *t);
skh_source skh_task_source(const skh_task *t);
const char *skh_task_job_type(const skh_task *t);    /* "" for Kafka */
const char *skh_task_topic(const skh_task *t);       /* "" for Zeebe */
int64_t skh_task_deadline(const skh_task *t);        /* epoch ms; updated by a successful extend */
int64_t skh_task_attempt(const skh_task *t);         /* 1 when absent */
const char *skh_task_traceparent(const skh_task *t); /* NULL when absent */
const char *skh_task_tracestate(const skh_task *t);  /* NULL when absent (protocol 1.3) */
/* Borrowed members of the task frame (NULL when absent): variables, headers (Zeebe), zeebe
 * metadata (keys as decimal strings), value and kafka metadata (Kafka), the whole frame. */
json_t *skh_task_variables(const skh_task *t);
json_t *skh_task_headers(const skh_task *t);
json_t *skh_task_zeebe(const skh_task *t);
json_t *skh_task_value(const skh_task *t);
json_t *skh_task_kafka(const skh_task *t);
json_t *skh_task_frame(const skh_task *t);
/* 1 once skiff cancelled the task; the reason ("deadline", "job_gone", "revoked"; an unknown
 * one reads "job_gone"), NULL before. */
int skh_task_cancelled(const skh_task *t);
const char *skh_task_cancel_reason(const skh_task *t);

/* One frame of a structured stack, for skh_task_fail. */
typedef struct skh_frame {
    const char *file;
    int line;
    const char *function;
} skh_frame;

/* The technical failure of a Zeebe job (`fail`). retries < 0: the job's retries - 1;
 * retry_backoff_ms < 0: absent; variables borrowed, may be NULL. With error_type or a stack,
 * the frame carries the structured `error` member {type, message, stack} (SPEC 1.3); stack:
 * n_stack frames, innermost first. */
typedef struct skh_failure {
    const char *message;
    const char *error_type;
    int retries;
    int64_t retry_backoff_ms;
    json_t *variables;
    const skh_frame *stack;
    size_t n_stack;
} skh_failure;

/* Fail with a message, error type "error" and the caller's file/line/function as the
 * stack. */
#define SKH_FAIL(task, msg) skh_task_fail_here((task), (msg), __FILE__, __LINE__, __func__)

/* Results: exactly one per task. They return -1 (SKH_E_CLOSED) when the task was already
 * answered, cancelled or its connection is gone (nothing is sent). A result whose frame would
 * exceed max_frame is replaced by a fail (a nack for Kafka) saying so. */
int skh_task_complete(skh_task *t, json_t *variables);
int skh_task_fail(skh_task *t, const skh_failure *f);
int skh_task_fail_here(skh_task *t, const char *message, const char *file, int line,
                       const char *function);
int skh_task_bpmn_error(skh_task *t, const char *code, const char *message, json_t *variables);
int skh_task_ack(skh_task *t);
/* retry_backoff_ms < 0: skiff's own backoff. */
int skh_task_nack(skh_task *t, const char *message, int64_t retry_backoff_ms, int dead_letter);
/* 1 once a result was sent (or the task was cancelled). */
int skh_task_answered(const skh_task *t);

/* --- The poll-loop API ----------------------------------------------------------------- */

typedef enum {
    SKH_EV_NONE,
    SKH_EV_WELCOME, /* handshake done */
    SKH_EV_TASK,    /* a new task: ev.task, yours until skh_task_free */
    SKH_EV_CANCEL,  /* skiff cancelled ev.task (ev.reason); do not answer it */
    SKH_EV_REPLY,   /* ev.ref answered: ev.ok, ev.result (owned by the event) or ev.error */
    SKH_EV_DRAIN,   /* no new tasks; answer the open ones, then close */
    SKH_EV_ERROR,   /* an error frame: ev.error (code, message), ev.id and ev.index (a refused
                       results item, -1 when absent) may be set */
    SKH_EV_CLOSED,  /* the connection ended (ev.error says why); a hello refusal has
                       ev.refused = 1 */
} skh_event_type;

typedef struct skh_event {
    skh_event_type type;
    skh_task *task;
    const char *reason;
    const char *ref;
    int ok;
    json_t *result;
    skh_error error;
    const char *id;
    int64_t index; /* error: the refused item of a results frame (1.4), -1 when absent */
    int refused;
    int64_t deadline; /* drain */
    json_t *frame;    /* the frame the event came from (its strings point into it) */
} skh_event;

/* A connection in state "not connected". NULL on a bad option (err says which). */
skh_conn *skh_conn_new(const skh_options *opts, skh_error *err);
/* Drops the caller's reference: closes the socket; tasks still held keep the object alive
 * (their results then fail with SKH_E_CLOSED). Accepts NULL. */
void skh_conn_free(skh_conn *c);
/* Connects the Unix socket and queues hello. -1 with SKH_E_IO when skiff is not there. */
int skh_conn_connect(skh_conn *c, skh_error *err);
int skh_conn_fd(const skh_conn *c); /* -1 when not connected */
int skh_conn_wants_write(skh_conn *c);
/* Reads what the socket has, writes what is queued, and fills *ev with the next event:
 * returns 1 with an event, 0 when nothing more is ready (poll again). Call it until it returns
 * 0 after each readiness. After SKH_EV_CLOSED, skh_conn_connect starts a new session. */
int skh_conn_process(skh_conn *c, skh_event *ev);
/* Releases what an event owns (result, frame, a cancel's task reference). */
void skh_event_clear(skh_event *ev);
/* Closes the session (e.g. after the last result of a drain) once the output still queued is
 * written (poll for writability while skh_conn_wants_write); then process returns
 * SKH_EV_CLOSED. */
void skh_conn_close(skh_conn *c);
/* Called (from any thread) when output got queued that could not be written at once: wake the
 * loop so that it polls for writability. */
void skh_conn_set_wakeup(skh_conn *c, void (*fn)(void *arg), void *arg);
/* skiff's welcome: session id, max_frame, features and methods offered. */
const char *skh_conn_session(const skh_conn *c);
size_t skh_conn_max_frame(const skh_conn *c);
int skh_conn_has_feature(const skh_conn *c, const char *feature);
int skh_conn_has_method(const skh_conn *c, const char *method);
/* Tasks owing a result on this session. */
int skh_conn_in_flight(skh_conn *c);

/* Requests answered by an SKH_EV_REPLY with the ref written to ref (size >= 24). An extend of a
 * Kafka task or without the "extend" feature, and a call of a method welcome did not list,
 * fail at once with SKH_E_UNSUPPORTED (nothing is sent). */
int skh_conn_extend(skh_conn *c, skh_task *t, int64_t timeout_ms, char *ref, skh_error *err);
int skh_conn_call(skh_conn *c, const char *method, json_t *params, skh_task *t, char *ref,
                  skh_error *err);

/* Drops the caller's reference to a task (accepts NULL). */
void skh_task_free(skh_task *t);

/* --- The blocking API ------------------------------------------------------------------ */

/* A job or topic function, run on a worker thread. It answers the task with one of the
 * result functions; if it returns without one, returning 0 completes (Zeebe, no variables) or
 * acks (Kafka), and returning -1 fails / nacks with "job function returned an error". */
typedef int (*skh_task_fn)(skh_task *task, void *arg);

skh_handler *skh_handler_new(const skh_options *opts, skh_error *err);
void skh_handler_free(skh_handler *h);
/* Register fn for a job type / topic (before run). */
int skh_handler_job(skh_handler *h, const char *job_type, skh_task_fn fn, void *arg);
int skh_handler_topic(skh_handler *h, const char *topic, skh_task_fn fn, void *arg);
/* Serve until skiff drains this handler (0) or refuses its hello (-1, SKH_E_REFUSED). */
int skh_handler_run(skh_handler *h, skh_error *err);
/* Ask run() to return (from any thread, e.g. a signal's thread): like a drain. */
void skh_handler_stop(skh_handler *h);

/* Blocking requests for the functions (any thread but the loop). extend: the new deadline in
 * *deadline. publish_message: params as SPEC §4.4 (name, correlation_key ...); produce: topic,
 * value, key, headers. On success *result is an owned object. A task's extend fails with
 * SKH_E_CANCELLED once skiff cancels it (also while it waits); calls still go out. */
int skh_task_extend(skh_task *t, int64_t timeout_ms, int64_t *deadline, skh_error *err);
int skh_task_call(skh_task *t, const char *method, json_t *params, json_t **result, skh_error *err);
int skh_task_publish_message(skh_task *t, const char *name, const char *correlation_key,
                             json_t *variables, int64_t time_to_live_ms, const char *message_id,
                             const char *tenant_id, json_t **result, skh_error *err);
int skh_task_produce(skh_task *t, const char *topic, json_t *value, const char *key,
                     json_t *headers, json_t **result, skh_error *err);

/* Protocol 1.3 trace context of a publish_message (SPEC §4.4): traceparent names the span the
 * message comes from, tracestate is the W3C tracestate that goes with it. A NULL member is left
 * out of the call; strings are borrowed for the call only. Pass the task's own
 * (skh_task_traceparent, skh_task_tracestate) so that the jobs the message leads to continue
 * its trace; skiff treats a traceparent that is not valid W3C as the start of a new trace, not
 * an error. */
typedef struct skh_trace {
    const char *traceparent;
    const char *tracestate;
} skh_trace;

/* publish_message with a trace context (trace may be NULL: the same as
 * skh_task_publish_message, which sends neither member). */
int skh_task_publish_message_traced(skh_task *t, const char *name, const char *correlation_key,
                                    json_t *variables, int64_t time_to_live_ms,
                                    const char *message_id, const char *tenant_id,
                                    const skh_trace *trace, json_t **result, skh_error *err);
/* The same outside a task, on the handler's current connection (SKH_E_CLOSED if none). */
int skh_handler_call(skh_handler *h, const char *method, json_t *params, json_t **result,
                     skh_error *err);
int skh_handler_publish_message(skh_handler *h, const char *name, const char *correlation_key,
                                json_t *variables, int64_t time_to_live_ms, const char *message_id,
                                const char *tenant_id, json_t **result, skh_error *err);
int skh_handler_publish_message_traced(skh_handler *h, const char *name,
                                       const char *correlation_key, json_t *variables,
                                       int64_t time_to_live_ms, const char *message_id,
                                       const char *tenant_id, const skh_trace *trace,
                                       json_t **result, skh_error *err);
int skh_handler_produce(skh_handler *h, const char *topic, json_t *value, const char *key,
                        json_t *headers, json_t **result, skh_error *err);
/* Protocol 1.3: secret reads a secret the pod may read (handler.secrets), e.g.
 * "vault:secret/app/db#password"; token gets an OAuth2 access token for an allowed audience
 * (handler.token_audiences). On success *value is a malloc'ed NUL-terminated copy (free() it;
 * a secret may hold NUL bytes: *len, when len is not NULL, is its length). Errors: skiff's
 * forbidden, not_found, unavailable, invalid_params; SKH_E_INVALID_ARGUMENT for a NULL or empty
 * argument; SKH_E_UNSUPPORTED when skiff does not offer the method; SKH_E_INVALID_REPLY for a
 * reply without its string (value, access_token). */
int skh_task_secret(skh_task *t, const char *reference, char **value, size_t *len, skh_error *err);
int skh_task_token(skh_task *t, const char *audience, char **value, size_t *len, skh_error *err);
int skh_handler_secret(skh_handler *h, const char *reference, char **value, size_t *len,
                       skh_error *err);
int skh_handler_token(skh_handler *h, const char *audience, char **value, size_t *len,
                      skh_error *err);
/* Waits up to timeout_ms for skiff to cancel t; 1 when it did. */
int skh_task_wait_cancelled(skh_task *t, int64_t timeout_ms);

/* --- The frame codec (pure; exposed for tests and fuzzing) ------------------------------ */

/* Parses one frame from buf[0..len). Returns 1 with *out (an owned object with a string
 * "type") and *used bytes consumed, 0 when more bytes are needed, -1 when the framing is lost
 * (N = 0 or N > max_frame: close), -2 when the frame is complete but its body is not a JSON
 * object with a string type (*used says how much to skip). err says why. */
int skh_frame_parse(const unsigned char *buf, size_t len, size_t max_frame, json_t **out,
                    size_t *used, skh_error *err);
/* Encodes a frame (4-byte length + compact JSON); NULL with err on failure. *n is its size. */
char *skh_frame_encode(json_t *frame, size_t max_frame, size_t *n, skh_error *err);

#endif
