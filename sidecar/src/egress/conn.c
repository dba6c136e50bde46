/* Guard of the egress listener's connections against what evhttp 2.1 does not bound: a request
 * head trickled byte by byte (slowloris: evhttp only has an inactivity timeout) and a head over
 * SK_EGRESS_MAX_HEAD (evhttp answers 400 there, the contract 431).
 *
 * evhttp creates each connection's bufferevent through our callback (evhttp_set_bevcb), so we
 * hold a reference on it and watch the bytes arriving in its input buffer (an evbuffer
 * callback: counts and the search for the blank line ending the head, no parsing). From idle,
 * the first byte starts a head; its blank line ends it; the call's end makes the connection
 * idle again. A head past its deadline or its size gets skiff's JSON 408 or 431 written straight
 * to the socket (not through the bufferevent, whose write-done callback belongs to evhttp), the
 * write side shut down, and a second later evhttp is told the peer is gone, so that the client
 * reads the answer before the socket closes. A tick per connection notices when evhttp has
 * released the bufferevent (its callbacks cleared) and drops our reference. */
#include "egress/internal.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "core/log.h"

#define TICK_MS 250
#define LINGER_MS 1000 /* after the answer, before evhttp is told the connection is gone */

enum { C_IDLE, C_HEAD, C_BUSY, C_CLOSING };

struct egress_conn {
    sk_egress *eg;
    struct bufferevent *bev; /* a reference of ours */
    struct event *tick;
    int state;
    int64_t since_ms; /* C_HEAD: first byte of the head; C_CLOSING: the answer */
    size_t head_bytes;
    int nodelay; /* TCP_NODELAY set */
    LIST_ENTRY(egress_conn) link;
};

static void conn_free(egress_conn *c)
{
    LIST_REMOVE(c, link);
    event_free(c->tick);
    bufferevent_decref(c->bev);
    free(c);
}

/* Writes skiff's JSON answer to the socket and shuts its write side: the connection is done. */
static void answer(egress_conn *c, int status, const char *reason, const char *msg)
{
    char body[256], head[512];
    int bl = snprintf(body, sizeof body,
                      "{\"error\":{\"type\":\"%s\",\"message\":\"%s: %s\",\"route\":\"\"}}", reason,
                      reason, msg);
    int hl = snprintf(head, sizeof head,
                      "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nConnection: close\r\n"
                      "Content-Length: %d\r\n\r\n%s",
                      status, status == 408 ? "Request Timeout" : "Request Header Fields Too Large",
                      bl, body);
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    c->state = C_CLOSING;
    c->since_ms = sk_egress_now_ms();
    bufferevent_disable(c->bev, EV_READ);
    if (fd >= 0) {
        /* A few hundred bytes into an idle socket's send buffer: never short in practice; a
         * short write only cuts the answer, the connection closes all the same. */
        while (send(fd, head, (size_t)hl, MSG_NOSIGNAL) < 0 && errno == EINTR)
            ;
        shutdown(fd, SHUT_WR);
    }
    sk_egress_count(c->eg, NULL, status == 408 ? "408" : "431");
    SK_LOG(SK_LOG_WARN, "egress", NULL, SK_KV("reason", reason), "egress connection refused: %s",
           msg);
}

/* Bytes added to the input buffer: a head starts, grows, or ends with its blank line. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    egress_conn *c = arg;
    if (info->n_added > 0 && !c->nodelay) {
        /* A response goes out as a head and then chunks, each its own small write: without
         * this, Nagle holds the first chunk until the client ACKs the head (its delayed ACK). */
        int one = 1;
        c->nodelay = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    if (info->n_added == 0 || (c->state != C_IDLE && c->state != C_HEAD))
        return;
    size_t len = evbuffer_get_length(buf), from = len - info->n_added;
    if (c->state == C_IDLE) {
        c->state = C_HEAD;
        c->since_ms = sk_egress_now_ms();
        c->head_bytes = 0;
    }
    struct evbuffer_ptr p;
    evbuffer_ptr_set(buf, &p, from >= 3 ? from - 3 : 0, EVBUFFER_PTR_SET);
    struct evbuffer_ptr end = evbuffer_search(buf, "\r\n\r\n", 4, &p);
    if (end.pos >= 0) {
        c->state = C_BUSY;
        return;
    }
    c->head_bytes += info->n_added;
    if (c->head_bytes > SK_EGRESS_MAX_HEAD)
        answer(c, 431, "request_header_fields_too_large", "the request head is over 32 KiB");
}

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    egress_conn *c = arg;
    bufferevent_data_cb r = NULL, w = NULL;
    bufferevent_event_cb ev = NULL;
    bufferevent_getcb(c->bev, &r, &w, &ev, NULL);
    if (!r && !w && !ev) { /* evhttp has let go of it */
        conn_free(c);
        return;
    }
    int64_t now = sk_egress_now_ms();
    if (c->state == C_HEAD && now - c->since_ms > SK_EGRESS_HEAD_TIMEOUT_MS)
        answer(c, 408, "request_timeout", "the request head did not arrive within 10 s");
    else if (c->state == C_CLOSING && now - c->since_ms > LINGER_MS)
        bufferevent_trigger_event(c->bev, BEV_EVENT_EOF | BEV_EVENT_READING, 0);
}

struct bufferevent *sk_egress_conn_bev(struct event_base *base, void *arg)
{
    sk_egress *e = arg;
    egress_conn *c = calloc(1, sizeof *c);
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    struct timeval tv = {0, TICK_MS * 1000};
    if (!c || !bev || !(c->tick = event_new(base, -1, EV_PERSIST, on_tick, c)) ||
        !evbuffer_add_cb(bufferevent_get_input(bev), on_input, c) || event_add(c->tick, &tv) < 0) {
        if (c && c->tick)
            event_free(c->tick);
        free(c);
        return bev; /* unguarded rather than refused: evhttp copes with NULL too */
    }
    c->eg = e;
    c->bev = bev;
    bufferevent_incref(bev);
    LIST_INSERT_HEAD(&e->conns, c, link);
    return bev;
}

egress_conn *sk_egress_conn_of(sk_egress *e, struct bufferevent *bev)
{
    egress_conn *c;
    LIST_FOREACH(c, &e->conns, link)
    if (c->bev == bev)
        return c;
    return NULL;
}

int sk_egress_conn_closing(const egress_conn *c)
{
    return c && c->state == C_CLOSING;
}

void sk_egress_conn_idle(egress_conn *c)
{
    if (c && c->state == C_BUSY)
        c->state = C_IDLE;
}

void sk_egress_conns_free(sk_egress *e)
{
    egress_conn *c;
    while ((c = LIST_FIRST(&e->conns)) != NULL)
        conn_free(c);
}
