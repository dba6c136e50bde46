/* How a gRPC channel gets its byte stream: a small vtable so that TLS (OpenSSL, ALPN "h2") plugs
 * in beside plaintext h2c without touching connection or call handling. Loop thread only. */
#ifndef SK_GRPC_TRANSPORT_H
#define SK_GRPC_TRANSPORT_H

#include <stddef.h>

struct event_base;
struct bufferevent;
struct sk_tls;

typedef struct sk_grpc_transport {
    const char *name;   /* "h2c", "tls" (for messages) */
    const char *scheme; /* value of the :scheme pseudo-header: "http" or "https" */
    /* Returns a new, unconnected bufferevent (fd -1) for a connection to host, or NULL. The
     * channel sets its callbacks, connects it with bufferevent_socket_connect_hostname and frees
     * it with bufferevent_free. A TLS transport returns an OpenSSL filter or socket bufferevent
     * in connecting state, with SNI set to host and ALPN offering "h2". */
    struct bufferevent *(*new_bev)(void *ctx, struct event_base *base, const char *host);
    /* Optional: called once the byte stream is up (for TLS: handshake done). Returns 0 to go on,
     * -1 with a reason in err (e.g. the peer did not select ALPN "h2"). */
    int (*verify)(void *ctx, struct bufferevent *bev, char *err, size_t errlen);
    /* Optional: after a connection failed, a sentence for the cause when the transport knows it
     * (for TLS: unknown CA, expired, hostname mismatch...); returns 1 then, 0 otherwise. early:
     * the server's HTTP/2 SETTINGS had not arrived yet. */
    int (*describe)(void *ctx, struct bufferevent *bev, int early, char *out, size_t outlen);
    void *ctx;
} sk_grpc_transport;

/* The plaintext HTTP/2 transport with prior knowledge (h2c); a static object. */
const sk_grpc_transport *sk_grpc_transport_h2c(void);

/* HTTP/2 over TLS with ALPN "h2" on the material of t (net/tls.h; it must offer ALPN "h2" and
 * outlive the transport). Free with sk_grpc_transport_free. NULL on allocation failure. */
sk_grpc_transport *sk_grpc_transport_tls(struct sk_tls *t);
void sk_grpc_transport_free(sk_grpc_transport *tp); /* a TLS transport; NULL accepted */

#endif
