/* One handler connection: framing, handshake, results, ping/pong, protocol errors. Loop
 * thread only. A protocol fault sends an `error` frame naming the problem and closes the
 * connection once the frame is flushed; the session's open tasks are abandoned (never lost). */
#ifndef SK_SESSION_H
#define SK_SESSION_H

#include <stdint.h>
#include <jansson.h>

#include "handler/dispatcher.h"

struct event_base;

typedef struct sk_session_opts {
    size_t max_frame;
    int64_t hello_timeout_ms;
} sk_session_opts;

/* Called once when the session has closed, just before it frees itself. */
typedef void (*sk_session_closed_cb)(void *ud, sk_session *s);

/* Takes ownership of fd (a connected Unix socket). NULL on failure (fd closed). */
sk_session *sk_session_new(struct event_base *base, int fd, sk_dispatcher *d,
                           const sk_session_opts *opts, sk_metrics *metrics,
                           sk_session_closed_cb on_closed, void *ud);
/* Closes now without calling on_closed (shutdown); open tasks are abandoned. */
void sk_session_free(sk_session *s);
const char *sk_session_name(const sk_session *s);

/* Distinguishes this session from every other one of the process (never reused). */
unsigned long sk_session_serial(const sk_session *s);
/* The handler declared feature "cancel" in its hello. */
int sk_session_accepts_cancel(const sk_session *s);

/* Writes a frame (welcome, drain, ...) to the handler. */
void sk_session_send(sk_session *s, const json_t *frame);
/* Writes an already encoded task frame (tasks are encoded once, by the dispatcher). Once the
 * frame has left for the socket, the time since received_at (sk_mono_s()) is observed in
 * overhead (may be NULL), with trace_id and span_id (the task span's hex ids, NULL when it is
 * not sampled) as its exemplar. */
void sk_session_write_task(sk_session *s, const uint8_t *frame, size_t len, double received_at,
                           sk_series *overhead, const char *trace_id, const char *span_id);
/* Sends `cancel` for task id and remembers the id for a minute: a result or extend for it is
 * then ignored instead of being an unknown_task error. */
void sk_session_cancel(sk_session *s, const char *id, const char *reason);

#endif
