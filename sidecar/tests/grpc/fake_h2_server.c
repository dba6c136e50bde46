#include "fake_h2_server.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>

static ssize_t f_send(nghttp2_session *h2, const uint8_t *data, size_t len, int flags, void *ud)
{
    fconn *c = ud;
    (void)h2;
    (void)flags;
    bufferevent_write(c->bev, data, len);
    return (ssize_t)len;
}

static int f_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    fconn *c = ud;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST ||
        c->nstreams == MAX_STREAMS)
        return 0;
    fstream *st = &c->streams[c->nstreams++];
    st->conn = c;
    st->id = frame->hd.stream_id;
    st->trailer_status = -1;
    nghttp2_session_set_stream_user_data(h2, st->id, st);
    return 0;
}

static int f_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                    size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    fstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (st != NULL) {
        size_t n = strlen(st->headers);
        snprintf(st->headers + n, sizeof st->headers - n, "%.*s: %.*s\n", (int)namelen, name,
                 (int)valuelen, value);
    }
    return 0;
}

static int f_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                  void *ud)
{
    (void)flags;
    (void)ud;
    fstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (st == NULL)
        return 0;
    st->body_len += len;
    if (st->in_len + len > st->in_cap) {
        size_t cap = (st->in_len + len) * 2;
        uint8_t *in = realloc(st->in, cap);
        if (in == NULL)
            return 0;
        st->in = in;
        st->in_cap = cap;
    }
    memcpy(st->in + st->in_len, data, len);
    st->in_len += len;
    return 0;
}

static int f_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *ud)
{
    fconn *c = ud;
    if (frame->hd.type == NGHTTP2_RST_STREAM && frame->rst_stream.error_code < 16)
        c->srv->rst_received[frame->rst_stream.error_code]++;
    if (frame->hd.type == NGHTTP2_PING && !(frame->hd.flags & NGHTTP2_FLAG_ACK))
        c->srv->pings_received++;
    int end = (frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
              (frame->hd.flags & NGHTTP2_FLAG_END_STREAM);
    fstream *st = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
    if (end && st != NULL && c->srv->script != NULL)
        c->srv->script(c->srv, st);
    return 0;
}

static int f_stream_close(nghttp2_session *h2, int32_t id, uint32_t code, void *ud)
{
    (void)ud;
    fstream *st = nghttp2_session_get_stream_user_data(h2, id);
    if (st != NULL) {
        st->closed = 1;
        st->close_code = code;
    }
    return 0;
}

static void f_flush(fconn *c)
{
    if (c->h2 != NULL && !c->closed)
        nghttp2_session_send(c->h2);
}

static void f_read(struct bufferevent *bev, void *arg)
{
    fconn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n = evbuffer_get_length(in);
    if (c->h2 == NULL) {
        evbuffer_drain(in, n);
        return;
    }
    uint8_t *p = evbuffer_pullup(in, (ssize_t)n);
    ssize_t rv = nghttp2_session_mem_recv(c->h2, p, n);
    evbuffer_drain(in, n);
    if (rv < 0)
        c->closed = 1;
    f_flush(c);
}

static void f_event(struct bufferevent *bev, short what, void *arg)
{
    fconn *c = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        c->closed = 1;
}

static void f_write_done_close(struct bufferevent *bev, void *arg)
{
    fconn *c = arg;
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0 && !c->closed) {
        c->closed = 1;
        bufferevent_disable(bev, EV_READ | EV_WRITE);
        shutdown(bufferevent_getfd(bev), SHUT_RDWR);
    }
}

static void f_start_h2(fconn *c)
{
    nghttp2_session_callbacks *cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_send_callback(cbs, f_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, f_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, f_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, f_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, f_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, f_stream_close);
    nghttp2_option *opt;
    nghttp2_option_new(&opt);
    nghttp2_option_set_no_auto_ping_ack(opt, c->srv->no_ping_ack);
    nghttp2_session_server_new2(&c->h2, cbs, c, opt);
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, NULL, 0);
    f_flush(c);
}

static void f_accept(struct evconnlistener *lis, evutil_socket_t fd, struct sockaddr *sa, int salen,
                     void *arg)
{
    fserver *srv = arg;
    (void)lis;
    (void)sa;
    (void)salen;
    assert_true(srv->nconns < MAX_CONNS);
    fconn *c = calloc(1, sizeof *c);
    c->srv = srv;
    c->bev = bufferevent_socket_new(srv->base, fd, BEV_OPT_CLOSE_ON_FREE);
    srv->conns[srv->nconns++] = c;
    bufferevent_setcb(c->bev, f_read, NULL, f_event, c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (srv->mode == MODE_H2) {
        f_start_h2(c);
    } else if (srv->mode == MODE_GARBAGE) {
        bufferevent_setcb(c->bev, f_read, f_write_done_close, f_event, c);
        bufferevent_write(c->bev, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n", 47);
    }
}

fserver *fserver_new(struct event_base *base, fmode mode, fscript script)
{
    fserver *srv = calloc(1, sizeof *srv);
    srv->base = base;
    srv->mode = mode;
    srv->script = script;
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    srv->lis =
        evconnlistener_new_bind(base, f_accept, srv, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
                                (struct sockaddr *)&sin, sizeof sin);
    assert_non_null(srv->lis);
    struct sockaddr_in bound;
    socklen_t len = sizeof bound;
    getsockname(evconnlistener_get_fd(srv->lis), (struct sockaddr *)&bound, &len);
    srv->port = ntohs(bound.sin_port);
    return srv;
}

static void fconn_free(fconn *c)
{
    for (int i = 0; i < c->nstreams; i++) {
        free(c->streams[i].out);
        free(c->streams[i].in);
    }
    if (c->h2 != NULL)
        nghttp2_session_del(c->h2);
    bufferevent_free(c->bev);
    free(c);
}

void fserver_free(fserver *srv)
{
    for (int i = 0; i < srv->nconns; i++)
        fconn_free(srv->conns[i]);
    evconnlistener_free(srv->lis);
    free(srv);
}

void fserver_drop_all(fserver *srv)
{
    for (int i = 0; i < srv->nconns; i++) {
        fconn *c = srv->conns[i];
        if (!c->closed) {
            c->closed = 1;
            shutdown(bufferevent_getfd(c->bev), SHUT_RDWR);
        }
    }
}

void fserver_flush(fserver *srv)
{
    for (int i = 0; i < srv->nconns; i++)
        f_flush(srv->conns[i]);
}

/* ---- scripted responses ---- */

static ssize_t f_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                      nghttp2_data_source *src, void *ud)
{
    fstream *st = src->ptr;
    (void)ud;
    size_t n = st->out_len - st->out_off;
    if (n > len)
        n = len;
    memcpy(buf, st->out + st->out_off, n);
    st->out_off += n;
    if (st->out_off == st->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (st->trailer_status >= 0) {
            char code[12];
            snprintf(code, sizeof code, "%d", st->trailer_status);
            nghttp2_nv tr[] = {
                {(uint8_t *)"grpc-status", (uint8_t *)code, 11, strlen(code), 0},
                {(uint8_t *)"grpc-message", (uint8_t *)st->trailer_message, 12,
                 strlen(st->trailer_message), 0},
            };
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
            nghttp2_submit_trailer(h2, id, tr, st->trailer_message[0] ? 2 : 1);
        }
    }
    return (ssize_t)n;
}

#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), 0                                \
    }

void respond(fstream *st, const char *status, const char *ctype, const void *body, size_t len,
             int grpc_status, const char *grpc_message)
{
    nghttp2_nv hdrs[] = {NV(":status", status), NV("content-type", ctype)};
    st->out = malloc(len ? len : 1);
    memcpy(st->out, body, len);
    st->out_len = len;
    st->trailer_status = grpc_status;
    st->trailer_message = grpc_message ? grpc_message : "";
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = f_body};
    nghttp2_submit_response(st->conn->h2, st->id, hdrs, 2, &prd);
}

void respond_ok(fstream *st)
{
    respond(st, "200", "application/grpc", "\0\0\0\0\2ok", 7, 0, NULL);
}

void respond_headers_only(fstream *st, const char *status, const char *grpc_status,
                          const char *grpc_message)
{
    nghttp2_nv hdrs[] = {NV(":status", status), NV("content-type", "application/grpc"),
                         NV("grpc-status", grpc_status ? grpc_status : ""),
                         NV("grpc-message", grpc_message ? grpc_message : "")};
    size_t n = grpc_status == NULL ? 2 : grpc_message == NULL ? 3 : 4;
    nghttp2_submit_response(st->conn->h2, st->id, hdrs, n, NULL);
}
