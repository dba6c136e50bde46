/* gRPC-over-HTTP/2 wire helpers: the message prefix, grpc-timeout, grpc-message, status codes.
 * Pure functions (no state), declared in grpc.h; any thread. */
#include "grpc/grpc.h"
#include "core/text.h"

#include <stdio.h>
#include <string.h>

static const char *const code_names[] = {
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
};

const char *sk_grpc_code_name(int code)
{
    if (code < 0 || code >= (int)(sizeof code_names / sizeof code_names[0]))
        return "UNKNOWN";
    return code_names[code];
}

void sk_grpc_frame_header(uint8_t out[5], size_t len)
{
    uint32_t n = (uint32_t)len;
    out[0] = 0; /* not compressed */
    out[1] = (uint8_t)(n >> 24);
    out[2] = (uint8_t)(n >> 16);
    out[3] = (uint8_t)(n >> 8);
    out[4] = (uint8_t)n;
}

/* Milliseconds per unit, or 0 for the sub-millisecond units handled by the caller. */
static int64_t unit_ms(char unit)
{
    switch (unit) {
    case 'H':
        return 3600000;
    case 'M':
        return 60000;
    case 'S':
        return 1000;
    case 'm':
        return 1;
    default:
        return 0;
    }
}

/* "TimeoutValue TimeoutUnit": 1 to 8 ASCII digits, then one of H M S m u n. Sub-millisecond
 * values round up so that a non-zero timeout never becomes zero. */
int64_t sk_grpc_timeout_parse(const char *s)
{
    if (s == NULL)
        return -1;
    size_t n = strlen(s);
    if (n < 2 || n > 9)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    char unit = s[n - 1];
    if (unit == 'u')
        return (v + 999) / 1000;
    if (unit == 'n')
        return (v + 999999) / 1000000;
    int64_t per = unit_ms(unit);
    return per ? v * per : -1;
}

/* Picks the finest unit whose value fits in 8 digits, rounding up (a peer must never see a
 * shorter deadline than ours). */
void sk_grpc_timeout_format(int64_t ms, char *out, size_t outlen)
{
    static const struct {
        int64_t per;
        char unit;
    } units[] = {{1, 'm'}, {1000, 'S'}, {60000, 'M'}, {3600000, 'H'}};
    if (outlen == 0)
        return;
    if (ms < 0)
        ms = 0;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        int64_t v = ms / units[i].per + (ms % units[i].per != 0);
        if (v <= 99999999) {
            snprintf(out, outlen, "%lld%c", (long long)v, units[i].unit);
            return;
        }
    }
    snprintf(out, outlen, "99999999H");
}

void sk_grpc_message_decode(const char *in, size_t inlen, char *out, size_t outlen)
{
    if (outlen == 0)
        return;
    size_t o = 0;
    for (size_t i = 0; i < inlen && o + 1 < outlen; i++) {
        char c = in[i];
        if (c == '%' && i + 2 < inlen && sk_hexval(in[i + 1]) >= 0 && sk_hexval(in[i + 2]) >= 0) {
            int v = sk_hexval(in[i + 1]) * 16 + sk_hexval(in[i + 2]);
            if (v != 0) {
                c = (char)v;
                i += 2;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
}

int sk_grpc_status_from_http(int http_status)
{
    switch (http_status) {
    case 400:
        return SK_GRPC_INTERNAL;
    case 401:
        return SK_GRPC_UNAUTHENTICATED;
    case 403:
        return SK_GRPC_PERMISSION_DENIED;
    case 404:
        return SK_GRPC_UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
        return SK_GRPC_UNAVAILABLE;
    default:
        return SK_GRPC_UNKNOWN;
    }
}

int sk_grpc_status_from_h2_error(uint32_t h2_error)
{
    switch (h2_error) {
    case 0x7: /* REFUSED_STREAM: not processed, safe to retry */
        return SK_GRPC_UNAVAILABLE;
    case 0x8: /* CANCEL */
        return SK_GRPC_CANCELLED;
    case 0xb: /* ENHANCE_YOUR_CALM */
        return SK_GRPC_RESOURCE_EXHAUSTED;
    case 0xc: /* INADEQUATE_SECURITY */
        return SK_GRPC_PERMISSION_DENIED;
    default: /* NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, ... */
        return SK_GRPC_INTERNAL;
    }
}
