/* Request mapping of the egress proxy, pure functions: which route a handler's request names,
 * the upstream URL it goes to, and which headers cross the proxy in each direction. */
#ifndef SK_EGRESS_MAP_H
#define SK_EGRESS_MAP_H

#include <stddef.h>

/* Splits a request target "/<route>[/<rest>][?<query>]" (origin form only): the route name
 * into route (routelen bytes, NUL-terminated) and through *rest where the rest starts in uri
 * ("" or starting with '/' or '?'). 0, or -1 when uri is not in origin form, names no route,
 * the name does not fit or has characters other than letters, digits, '-' and '_', or uri
 * holds a control character, a space or '#'. */
int sk_egress_split(const char *uri, char *route, size_t routelen, const char **rest);

/* The upstream URL of rest under base (one '/' between them whatever base ends with) into out
 * (n bytes): 0, or -1 when it does not fit. */
int sk_egress_upstream_url(const char *base, const char *rest, char *out, size_t n);

/* 1 when the handler's request header `name` is forwarded upstream, 0 when the proxy drops it:
 * hop-by-hop headers, those listed in the request's Connection header (connection, may be
 * NULL), Host and Content-Length (libcurl writes its own), Expect, any credential
 * (Authorization, Proxy-Authorization, cred_header), the trace context (the proxy sends its
 * own span's) and Accept-Encoding (the output scan and the usage reader need the body as it
 * is). Names compare case-insensitively. */
int sk_egress_forward_request_header(const char *name, const char *connection,
                                     const char *cred_header);

/* 1 when the upstream's response header `name` goes back to the handler (not hop-by-hop). */
int sk_egress_forward_response_header(const char *name);

#endif
