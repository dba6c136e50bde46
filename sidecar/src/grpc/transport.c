#include "grpc/transport.h"

#include <event2/bufferevent.h>

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
    .ctx = NULL,
};

const sk_grpc_transport *sk_grpc_transport_h2c(void)
{
    return &h2c;
}
