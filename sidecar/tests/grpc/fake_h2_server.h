/* A scripted HTTP/2 server for the gRPC client tests: an nghttp2 server session per accepted
 * connection on the test's own libevent loop. It records what each request carried (headers,
 * body size, how the stream closed) and lets a script answer each request once it has fully
 * arrived, with any status, content type, body and trailers, RST_STREAM or GOAWAY. It can also
 * be silent (accepts, never speaks) or answer like an HTTP/1.1 server, and withhold PING ACKs. */
#ifndef SK_TEST_FAKE_H2_SERVER_H
#define SK_TEST_FAKE_H2_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

struct event_base;
struct evconnlistener;
struct bufferevent;

#define MAX_STREAMS 32
#define MAX_CONNS 64

typedef struct fconn fconn;

typedef struct fstream {
    fconn *conn;
    int32_t id;
    char headers[2048]; /* "name: value\n" as received */
    size_t body_len;
    int closed;
    uint32_t close_code;
    /* Response body and trailers, sent by the data provider. */
    uint8_t *out;
    size_t out_len, out_off;
    int trailer_status; /* -1: end the stream with the DATA */
    const char *trailer_message;
    /* Addition: the request body as received (gRPC prefix included), grown as DATA arrives. */
    uint8_t *in;
    size_t in_len, in_cap;
} fstream;

typedef enum { MODE_H2, MODE_SILENT, MODE_GARBAGE } fmode;

typedef struct fserver fserver;
/* Called when a request has fully arrived (END_STREAM from the client). */
typedef void (*fscript)(fserver *srv, fstream *st);

struct fconn {
    fserver *srv;
    struct bufferevent *bev;
    nghttp2_session *h2;
    fstream streams[MAX_STREAMS];
    int nstreams;
    int closed;
};

struct fserver {
    struct event_base *base;
    struct evconnlistener *lis;
    int port;
    fmode mode;
    int no_ping_ack;
    fscript script;
    fconn *conns[MAX_CONNS];
    int nconns;
    int rst_received[16]; /* count per HTTP/2 error code */
    int pings_received;
    void *ud; /* addition: the test's own state, for scripts */
};

fserver *fserver_new(struct event_base *base, fmode mode, fscript script);
void fserver_free(fserver *srv);
/* Kills every connection abruptly (a crashed server). */
void fserver_drop_all(fserver *srv);

/* HEADERS(:status, content-type) + DATA(body) [+ trailers grpc-status/grpc-message when
 * grpc_status >= 0; else the DATA ends the stream]. */
void respond(fstream *st, const char *status, const char *ctype, const void *body, size_t len,
             int grpc_status, const char *grpc_message);
/* A whole gRPC response: one message "ok" and grpc-status 0. */
void respond_ok(fstream *st);
/* One HEADERS frame with END_STREAM: :status, content-type and, when not NULL, grpc-status and
 * grpc-message (a trailers-only response). */
void respond_headers_only(fstream *st, const char *status, const char *grpc_status,
                          const char *grpc_message);
/* Sends what responses submitted outside a script (a deferred answer) have queued. */
void fserver_flush(fserver *srv);

#endif
