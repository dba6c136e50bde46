/* Observability of the HTTP client's requests (net/http.c): the CLIENT span of a request by
 * the OpenTelemetry HTTP client conventions and the URL as a span may show it. Private to
 * net/. Loop thread only. */
#ifndef SK_HTTP_OBS_H
#define SK_HTTP_OBS_H

#include <stddef.h>

#include <curl/curl.h>

#include "trace/trace.h"

/* The CLIENT span of a request, child of the active span (else a new trace): named after the
 * method, with http.request.method, url.full (sk_http_url_redacted), server.address and
 * server.port. NULL when out of memory. */
sk_span *sk_http_span_begin(const char *method, const char *url);

/* Ends it: http.response.status_code when a response arrived; status ERROR with error.type
 * the status code (>= 400) or the transport failure's kind ("timeout", "connect", "tls",
 * "too_large", "_OTHER") and its message. */
void sk_http_span_end(sk_span *s, long status, CURLcode code, int too_big, const char *error);

/* url without what must not leave skiff: no user or password, every query value replaced by
 * REDACTED, no fragment. Written into out (outlen bytes); "" when the URL cannot be parsed. */
void sk_http_url_redacted(const char *url, char *out, size_t outlen);

#endif
