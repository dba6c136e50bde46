#include "net/http_obs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every query value replaced: "a=1&b" -> "a=REDACTED&b". */
static void redact_query(const char *q, char *out, size_t outlen)
{
    size_t o = 0;
    out[0] = '\0';
    while (*q && o + 1 < outlen) {
        size_t n = strcspn(q, "&");
        const char *eq = memchr(q, '=', n);
        size_t keep = eq ? (size_t)(eq - q) : n;
        int w = snprintf(out + o, outlen - o, "%s%.*s%s", o ? "&" : "", (int)keep, q,
                         eq ? "=REDACTED" : "");
        if (w < 0 || (size_t)w >= outlen - o)
            break;
        o += (size_t)w;
        q += n;
        if (*q == '&')
            q++;
    }
}

void sk_http_url_redacted(const char *url, char *out, size_t outlen)
{
    CURLU *u = curl_url();
    char *query = NULL, *full = NULL, buf[1024];
    out[0] = '\0';
    if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        goto done;
    curl_url_set(u, CURLUPART_USER, NULL, 0);
    curl_url_set(u, CURLUPART_PASSWORD, NULL, 0);
    curl_url_set(u, CURLUPART_OPTIONS, NULL, 0);
    curl_url_set(u, CURLUPART_FRAGMENT, NULL, 0);
    if (curl_url_get(u, CURLUPART_QUERY, &query, 0) == CURLUE_OK && query) {
        redact_query(query, buf, sizeof buf);
        curl_url_set(u, CURLUPART_QUERY, buf, 0);
    }
    if (curl_url_get(u, CURLUPART_URL, &full, 0) == CURLUE_OK)
        snprintf(out, outlen, "%s", full);
done:
    curl_free(query);
    curl_free(full);
    curl_url_cleanup(u);
}

/* server.address and server.port of url. */
static void set_server(sk_span *s, const char *url)
{
    CURLU *u = curl_url();
    char *host = NULL, *port = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
        if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
            sk_span_set_str(s, "server.address", host);
        if (curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK)
            sk_span_set_int(s, "server.port", strtol(port, NULL, 10));
    }
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

sk_span *sk_http_span_begin(const char *method, const char *url)
{
    sk_span *s = sk_span_start(sk_span_parent_or_active(NULL), method, SK_SPAN_CLIENT);
    if (!s)
        return NULL;
    char full[1024];
    sk_http_url_redacted(url, full, sizeof full);
    sk_span_set_str(s, "http.request.method", method);
    sk_span_set_str(s, "url.full", full);
    set_server(s, url);
    return s;
}

static const char *failure_kind(CURLcode code, int too_big)
{
    if (too_big || code == CURLE_FILESIZE_EXCEEDED)
        return "too_large";
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        return "timeout";
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return "connect";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return "tls";
    default:
        return "_OTHER";
    }
}

void sk_http_span_end(sk_span *s, long status, CURLcode code, int too_big, const char *error)
{
    if (!s)
        return;
    if (status > 0)
        sk_span_set_int(s, "http.response.status_code", status);
    if (code != CURLE_OK) {
        sk_span_set_error(s, failure_kind(code, too_big), error);
    } else if (status >= 400) {
        char type[24];
        snprintf(type, sizeof type, "%ld", status);
        sk_span_set_error(s, type, NULL);
    }
    sk_span_end(s);
}
