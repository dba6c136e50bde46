/* Source-agnostic dispatcher: routes each task to a handler session serving its route (a Zeebe
 * job type, later a Kafka topic) with free credits, and hands the handler's result back to the
 * task's source through sk_source_ops. It never knows what Zeebe or Kafka is. Loop thread only.
 *
 * Ownership: every submitted task ends with exactly one call of one of its source's ops, which
 * receives the source's ctx back. Tasks that no session can take right now wait in a bounded
 * queue; a task whose route has no session at all, or whose session dies, is abandoned. */
#ifndef SK_DISPATCHER_H
#define SK_DISPATCHER_H

#include <stdint.h>
#include <jansson.h>

#include "core/metrics.h"
#include "handler/frame.h"
#include "trace/trace.h"

struct event_base;
typedef struct sk_dispatcher sk_dispatcher;
typedef struct sk_session sk_session;

/* The answer a handler is owed for a call (or an extend with a `ref`). Exactly one of
 * sk_reply_ok / sk_reply_error / sk_reply_drop must be called; each frees r. A reply to a
 * session that has closed in the meantime is dropped. */
typedef struct sk_reply sk_reply;
void sk_reply_ok(sk_reply *r, json_t *result); /* result stolen; NULL sends {} */
void sk_reply_error(sk_reply *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void sk_reply_drop(sk_reply *r);

#define SK_RESULT(type) (1u << (type))

typedef struct sk_source_ops {
    const char *name; /* "zeebe", "kafka" */
    /* Result frames the source takes, SK_RESULT bits: another one is refused (the task stays
     * open). complete/ack go to complete, fail/nack to fail, bpmn_error to error. */
    unsigned results;
    void (*complete)(void *source, void *ctx, const sk_msg *result);
    void (*fail)(void *source, void *ctx, const sk_msg *result);
    void (*error)(void *source, void *ctx, const sk_msg *result); /* bpmn_error */
    /* The task cannot be finished here (session gone, shutdown): give it back at once. */
    void (*abandon)(void *source, void *ctx, const char *why);
    /* The task can never reach a handler because of its content: reason is the
     * skiff_tasks_undeliverable_total label ("too_large", "unencodable"), why the sentence
     * for the log line and the engine. The source logs it with its own coordinates (job key;
     * topic, partition, offset) and ends the task (Zeebe: fails the job; Kafka: dead letter). */
    void (*reject)(void *source, void *ctx, const char *reason, const char *why);
    /* The handler asks for timeout_ms more time from now (`extend`); the task stays open.
     * reply is NULL when the handler wants no answer. NULL: the source cannot extend. */
    void (*extend)(void *source, void *ctx, int64_t timeout_ms, sk_reply *reply);
} sk_source_ops;

/* A call method (`call` frame): params is the call's params object (NULL when absent),
 * borrowed for the duration of the function; the function answers through reply. */
typedef void (*sk_method_fn)(void *ud, const json_t *params, sk_reply *reply);

/* Called when free credits may have risen (a session joined, a task finished). */
typedef void (*sk_credit_cb)(void *ud);

/* max_frame: largest task frame payload a handler accepts (handler.max_frame). */
sk_dispatcher *sk_dispatcher_new(sk_metrics *metrics, size_t max_frame);
/* Abandons every open task, then frees. Sessions must have been closed first. */
void sk_dispatcher_free(sk_dispatcher *d);

/* Routes some source serves (a job type, a topic); a handler asking for another one is
 * refused at hello. A name is a route of one source only. */
int sk_dispatcher_add_route(sk_dispatcher *d, const char *source, const char *name);
int sk_dispatcher_has_route(const sk_dispatcher *d, const char *source, const char *name);

int sk_dispatcher_watch(sk_dispatcher *d, sk_credit_cb cb, void *ud);

/* Call methods handlers may use; the names are listed in `welcome`. */
int sk_dispatcher_add_method(sk_dispatcher *d, const char *name, sk_method_fn fn, void *ud);
/* The method names as a new JSON array (for `welcome`). */
json_t *sk_dispatcher_methods(const sk_dispatcher *d);

/* Free credits for a route: sum over ready sessions serving it of (capacity - open tasks),
 * minus tasks already queued for it. 0 while draining. */
int64_t sk_dispatcher_credits(const sk_dispatcher *d, const char *route);
/* Capacity of the sessions serving a route (0 while draining). */
int64_t sk_dispatcher_capacity(const sk_dispatcher *d, const char *route);
/* Number of sessions past the handshake. */
int sk_dispatcher_sessions(const sk_dispatcher *d);
/* Open tasks (sent to a handler or queued). */
size_t sk_dispatcher_open(const sk_dispatcher *d);
/* A task with this id is open. */
int sk_dispatcher_is_open(const sk_dispatcher *d, const char *id);

/* Submits a task. payload: JSON object of source-specific members, stolen (NULL: the source
 * could not build it). id: unique among open tasks. deadline_ms: epoch ms, forwarded to the
 * handler. received_at: sk_mono_s() when the source got the task off the wire (skiff's own
 * dispatch time is measured from it). A task whose frame would exceed max_frame, or cannot be
 * encoded, is never sent: it is counted and ends at once through ops->reject. */
void sk_dispatcher_submit(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                          const char *route, const char *id, int64_t deadline_ms, json_t *payload,
                          double received_at);
/* The same with the task frame already encoded by the source (SK_FRAME_HEADER + JSON text of
 * len bytes in all, holding type, id, source and deadline; copied; NULL when the source could
 * not build it: refused as unencodable) and the task's span, begun by the source (its
 * traceparent already in the frame; owned from here on, may be NULL). */
void sk_dispatcher_submit_frame(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                                const char *route, const char *id, const uint8_t *frame, size_t len,
                                double received_at, sk_span *span);

/* Counts a task refused because of its content in skiff_tasks_undeliverable_total{source,
 * route, reason}: by the dispatcher (too_large, unencodable) or by its source before it was
 * submitted (undecodable). */
void sk_dispatcher_undeliverable(sk_dispatcher *d, const char *source, const char *route,
                                 const char *reason);

/* The source has lost a task it submitted (deadline passed, gone from the engine). A queued
 * task, or one whose handler accepts `cancel` (told with that reason), is closed: returns 1
 * and the source owns ctx again (no op will be called for it). Otherwise returns 0 and the
 * task stays open until its result. */
int sk_dispatcher_cancel(sk_dispatcher *d, const char *id, const char *reason);

/* Shutdown: sends `drain` to every session and stops dispatching; queued tasks are abandoned. */
void sk_dispatcher_drain(sk_dispatcher *d, int64_t deadline_ms);
/* Abandons every open task (grace period over). */
void sk_dispatcher_abandon_all(sk_dispatcher *d, const char *why);

/* Session side. A session joins after its handshake with its routes and capacity. */
int sk_dispatcher_attach(sk_dispatcher *d, sk_session *s, json_t *routes, int64_t capacity);
/* The session is closing: abandons its open tasks. */
void sk_dispatcher_detach(sk_dispatcher *d, sk_session *s);
/* A result or extend frame from session s. Returns 0, -1 when the id is not open on s, -2
 * for an extend the task's source cannot do, or -3 for a result type its source does not take. A
 * result read at received_at (sk_mono_s()) is handed to its source op; the time from received_at to
 * the op's return is skiff's own result overhead. */
int sk_dispatcher_result(sk_dispatcher *d, sk_session *s, const sk_msg *m, double received_at);
/* A `call` frame from session s: runs the method or answers `unknown_method`. */
void sk_dispatcher_call(sk_dispatcher *d, sk_session *s, const sk_msg *m);

#endif
