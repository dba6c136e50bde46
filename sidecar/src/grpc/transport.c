#include "grpc/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>

#include "net/tls.h"

static struct bufferevent *h2c_new_bev(void *ctx, struct event_base *base, const char *host)
{
    (void)ctx;
    (void)host;
    return bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
}

static const sk_grpc_transport h2c = {
    .name = "h2c",
    .scheme = "http",
    .new_bev = h2c_new_bev,
    .verify = NULL,
    .describe = NULL,
    .ctx = NULL,
};

const sk_grpc_transport *sk_grpc_transport_h2c(void)
{
    return &h2c;
}

static struct bufferevent *tls_new_bev(void *ctx, struct event_base *base, const char *host)
{
    return sk_tls_new_bev(ctx, base, host);
}

/* gRPC needs HTTP/2: a server that did not select "h2" by ALPN would read our preface as
 * HTTP/1.1 garbage. */
static int tls_verify(void *ctx, struct bufferevent *bev, char *err, size_t errlen)
{
    char alpn[64];
    (void)ctx;
    sk_tls_alpn(bev, alpn, sizeof alpn);
    if (strcmp(alpn, "h2") == 0)
        return 0;
    snprintf(err, errlen, "the server did not select ALPN \"h2\" (selected \"%s\")", alpn);
    return -1;
}

static int tls_describe(void *ctx, struct bufferevent *bev, int early, char *out, size_t outlen)
{
    (void)ctx;
    return sk_tls_describe(bev, early, out, outlen);
}

sk_grpc_transport *sk_grpc_transport_tls(struct sk_tls *t)
{
    sk_grpc_transport *tp = malloc(sizeof *tp);
    if (tp == NULL)
        return NULL;
    *tp = (sk_grpc_transport){
        .name = "tls",
        .scheme = "https",
        .new_bev = tls_new_bev,
        .verify = tls_verify,
        .describe = tls_describe,
        .ctx = t,
    };
    return tp;
}

void sk_grpc_transport_free(sk_grpc_transport *tp)
{
    if (tp != &h2c)
        free(tp);
}
