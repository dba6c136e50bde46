#include "egress/map.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

int sk_egress_split(const char *uri, char *route, size_t routelen, const char **rest)
{
    if (!uri || uri[0] != '/')
        return -1;
    for (const char *p = uri; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f || *p == '#')
            return -1;
    size_t n = 0;
    while (name_char(uri[1 + n]))
        n++;
    const char *end = uri + 1 + n;
    if (n == 0 || n >= routelen || (*end && *end != '/' && *end != '?'))
        return -1;
    memcpy(route, uri + 1, n);
    route[n] = '\0';
    *rest = end;
    return 0;
}

int sk_egress_upstream_url(const char *base, const char *rest, char *out, size_t n)
{
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    int w = snprintf(out, n, "%.*s%s", (int)blen, base, rest);
    return w < 0 || (size_t)w >= n ? -1 : 0;
}

static int in_list(const char *name, const char *const *list)
{
    for (size_t i = 0; list[i]; i++)
        if (strcasecmp(name, list[i]) == 0)
            return 1;
    return 0;
}

static const char *const hop_by_hop[] = {"connection",         "keep-alive", "proxy-connection",
                                         "proxy-authenticate", "te",         "trailer",
                                         "transfer-encoding",  "upgrade",    NULL};

/* 1 when name is one of the comma-separated tokens of a Connection header value. */
static int named_by_connection(const char *name, const char *connection)
{
    size_t len = strlen(name);
    const char *p = connection;
    while (p && *p) {
        p += strspn(p, " \t,");
        size_t tok = strcspn(p, " \t,");
        if (tok == len && strncasecmp(p, name, len) == 0)
            return 1;
        p += tok;
    }
    return 0;
}

int sk_egress_forward_request_header(const char *name, const char *connection,
                                     const char *cred_header)
{
    static const char *const dropped[] = {"host",          "content-length",      "expect",
                                          "authorization", "proxy-authorization", "traceparent",
                                          "tracestate",    "accept-encoding",     NULL};
    if (!name || !*name || in_list(name, hop_by_hop) || in_list(name, dropped))
        return 0;
    if (cred_header && strcasecmp(name, cred_header) == 0)
        return 0;
    return !named_by_connection(name, connection);
}

int sk_egress_forward_response_header(const char *name)
{
    return name && *name && !in_list(name, hop_by_hop);
}
