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

struct event_base;
typedef struct sk_dispatcher sk_dispatcher;
typedef struct sk_session sk_session;

typedef struct sk_source_ops {
    const char *name; /* "zeebe" */
    void (*complete)(void *source, void *ctx, const sk_msg *result);
    void (*fail)(void *source, void *ctx, const sk_msg *result);
    void (*error)(void *source, void *ctx, const sk_msg *result); /* bpmn_error */
    /* The task cannot be finished here (session gone, shutdown): give it back at once. */
    void (*abandon)(void *source, void *ctx, const char *why);
} sk_source_ops;

/* Called when free credits may have risen (a session joined, a task finished). */
typedef void (*sk_credit_cb)(void *ud);

/* max_frame: largest task frame payload a handler accepts (handler.max_frame). */
sk_dispatcher *sk_dispatcher_new(sk_metrics *metrics, size_t max_frame);
/* Abandons every open task, then frees. Sessions must have been closed first. */
void sk_dispatcher_free(sk_dispatcher *d);

/* Routes some source serves; a handler asking for another one is refused at hello. */
int sk_dispatcher_add_route(sk_dispatcher *d, const char *route);
int sk_dispatcher_has_route(const sk_dispatcher *d, const char *route);

int sk_dispatcher_watch(sk_dispatcher *d, sk_credit_cb cb, void *ud);

/* Free credits for a route: sum over ready sessions serving it of (capacity - open tasks),
 * minus tasks already queued for it. 0 while draining. */
int64_t sk_dispatcher_credits(const sk_dispatcher *d, const char *route);
/* Number of sessions past the handshake. */
int sk_dispatcher_sessions(const sk_dispatcher *d);
/* Open tasks (sent to a handler or queued). */
size_t sk_dispatcher_open(const sk_dispatcher *d);

/* Submits a task. payload: JSON object of source-specific members, stolen. id: unique among
 * open tasks. deadline_ms: epoch ms, forwarded to the handler. A task whose frame would exceed
 * max_frame is never sent: it ends at once through ops->fail. */
void sk_dispatcher_submit(sk_dispatcher *d, const sk_source_ops *ops, void *source, void *ctx,
                          const char *route, const char *id, int64_t deadline_ms, json_t *payload);

/* Shutdown: sends `drain` to every session and stops dispatching; queued tasks are abandoned. */
void sk_dispatcher_drain(sk_dispatcher *d, int64_t deadline_ms);
/* Abandons every open task (grace period over). */
void sk_dispatcher_abandon_all(sk_dispatcher *d, const char *why);

/* Session side. A session joins after its handshake with its routes and capacity. */
int sk_dispatcher_attach(sk_dispatcher *d, sk_session *s, json_t *routes, int64_t capacity);
/* The session is closing: abandons its open tasks. */
void sk_dispatcher_detach(sk_dispatcher *d, sk_session *s);
/* A result frame from session s. Returns 0, or -1 when the id is not open on s. */
int sk_dispatcher_result(sk_dispatcher *d, sk_session *s, const sk_msg *m);

#endif
