/* The handler Unix socket: binds it with mode 0660, replaces a stale socket file safely
 * (refuses when another process still listens on it, never removes a non-socket file), and
 * creates a session per connection. Loop thread only. */
#ifndef SK_LISTENER_H
#define SK_LISTENER_H

#include <stddef.h>

#include "handler/session.h"

typedef struct sk_listener sk_listener;

sk_listener *sk_listener_new(struct event_base *base, const char *path, sk_dispatcher *d,
                             const sk_session_opts *opts, sk_metrics *metrics, char *err,
                             size_t errlen);
/* Stops accepting; existing sessions live on until sk_listener_free. */
void sk_listener_stop(sk_listener *l);
/* Closes every session, removes the socket file, frees. */
void sk_listener_free(sk_listener *l);

#endif
