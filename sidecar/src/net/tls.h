/* The TLS layer shared by every peer (gRPC to the gateway, libcurl clients, librdkafka's files):
 * one set of material per peer (CA bundle or the system store, optional client certificate and
 * key for mTLS, optional server-name override), TLS 1.2 at least, peer verification and host
 * name verification always on. Loop thread only.
 *
 * The material lives in an OpenSSL SSL_CTX. Files are watched (stat polled on the loop): when one
 * changes the whole set is loaded again; a set that does not load (garbage PEM, key not matching
 * the certificate, unreadable file) is refused with an error and the old set stays in use.
 * Connections opened afterwards use the new set; connections open keep theirs (an SSL holds a
 * reference to its SSL_CTX). */
#ifndef SK_TLS_H
#define SK_TLS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct bufferevent;
struct ssl_st;
typedef struct sk_metrics sk_metrics;

typedef struct sk_tls sk_tls;

/* What a peer's TLS is made of; strings are copied. NULL or "" leaves a file out. */
typedef struct sk_tls_opts {
    const char *peer;        /* "zeebe", "kafka", "schema_registry": logs, metrics, errors */
    const char *ca_file;     /* PEM bundle of trusted CAs; none: the system store */
    const char *cert_file;   /* PEM client certificate (chain) for mTLS */
    const char *key_file;    /* its PEM private key; required with cert_file */
    const char *server_name; /* SNI and the name verified; none: the host connected to */
    const char *alpn;        /* one protocol offered by ALPN ("h2"), none: no ALPN */
} sk_tls_opts;

/* Called after a reload put new material in force (changed_cert: the client certificate or key
 * changed, so a connection should be replaced before the old certificate expires). */
typedef void (*sk_tls_change_cb)(void *ud, int changed_cert);

/* Loads the material. NULL with "<peer>: <file>: <why>" in err when it cannot be loaded.
 * base may be NULL (no watching); with a base the files are polled every reload_ms (> 0) and
 * metrics (may be NULL) get skiff_tls_certificate_expiry_seconds and
 * skiff_tls_reload_failures_total series for the peer. */
sk_tls *sk_tls_new(const sk_tls_opts *o, struct event_base *base, int64_t reload_ms,
                   sk_metrics *metrics, char *err, size_t errlen);
void sk_tls_free(sk_tls *t);
void sk_tls_on_change(sk_tls *t, sk_tls_change_cb cb, void *ud);

/* Loads the material once and drops it: 0, or -1 with the reason in err. For config check. */
int sk_tls_check(const sk_tls_opts *o, char *err, size_t errlen);

/* Looks at the files now (what the poll timer does): 1 when new material was put in force,
 * 0 when nothing changed, -1 when a changed set was refused (reason in err; old set kept). */
int sk_tls_reload(sk_tls *t, char *err, size_t errlen);

const char *sk_tls_peer(const sk_tls *t);
/* The client certificate's notAfter as Unix seconds, 0 without a client certificate. */
int64_t sk_tls_cert_not_after(const sk_tls *t);

/* A new client SSL for a connection to host (SNI unless host is an IP address, host name or IP
 * verification against the server name override or host). NULL on failure. */
struct ssl_st *sk_tls_new_ssl(sk_tls *t, const char *host);

/* A new unconnected libevent bufferevent doing TLS over a socket, for a connection to host;
 * connect it with bufferevent_socket_connect(_hostname). NULL on failure. */
struct bufferevent *sk_tls_new_bev(sk_tls *t, struct event_base *base, const char *host);

/* After a failed or finished handshake on a bufferevent from sk_tls_new_bev: a sentence for the
 * cause ("server certificate signed by an unknown CA", "server certificate expired", "server
 * certificate does not match the host name ...", "the server requires a client certificate",
 * "handshake refused by the server: ..."). early: the connection ended before the server's
 * first answer (with TLS 1.3 a refused client certificate may show only as a reset then).
 * Returns 1 when TLS explains the failure, 0 when it does not (a plain socket error). */
int sk_tls_describe(struct bufferevent *bev, int early, char *out, size_t outlen);

/* The protocol ALPN selected on the connection into out ("" when none). */
void sk_tls_alpn(struct bufferevent *bev, char *out, size_t outlen);

/* libcurl: sets CURLOPT_SSL_CTX_FUNCTION so that every new TLS connection of the easy handle
 * uses this material (trust store, client certificate and key, TLS 1.2 at least), plus peer and
 * host verification. t must outlive the handle. 0 or -1. */
int sk_tls_curl_setup(sk_tls *t, void *curl_easy);

#endif
