/* libFuzzer target: the egress request guard and the output secret scan.
 *
 * Guard: byte 0 picks the options (bit 0 strip control characters, bit 1 a max_tokens cap,
 * bit 2 the baseline deny patterns, bits 3-4 the content type); the rest is the body. Checked:
 * a known rule on refusal; the body never grows; a body that passes as JSON still parses, and
 * with stripping on has no control character left in its string values (nor a text body in its
 * bytes); a second pass over the result changes nothing.
 *
 * Scan: byte 1 gives two needle lengths, the needles are the next bytes, the rest is a stream
 * cut where byte 2's bits say; the scan must find a needle exactly when memmem finds one in the
 * whole stream, and what a proxy would have sent (fed - hold) never holds a byte of it. */
#define _GNU_SOURCE /* memmem */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/guard.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_egress_guard: %s (line %d)\n", #c, __LINE__);                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int known_rule(const char *r)
{
    return !strcmp(r, "max_request_bytes") || !strcmp(r, "invalid_json") ||
           !strcmp(r, "max_tokens") || !strcmp(r, "deny_pattern") || !strcmp(r, "out_of_memory");
}

static int control(unsigned char c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f;
}

static int has_control(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (control((unsigned char)s[i]))
            return 1;
    return 0;
}

/* A control character in a string value (keys are left alone by design). */
static int json_has_control(json_t *v)
{
    if (json_is_string(v))
        return has_control(json_string_value(v), json_string_length(v));
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (json_has_control(json_array_get(v, i)))
                return 1;
    } else if (json_is_object(v)) {
        const char *k;
        json_t *item;
        json_object_foreach(v, k, item)
        {
            if (json_has_control(item))
                return 1;
        }
    }
    return 0;
}

static int is_json_ct(const char *ct)
{
    return ct && !strcmp(ct, "application/json");
}

/* What the guard treats as JSON without a JSON content type: '{' or '[' first. */
static int looks_json(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n && strchr(" \t\n\r\f\v", s[i]) && s[i])
        i++;
    return i < n && (s[i] == '{' || s[i] == '[');
}

static void fuzz_guard(const uint8_t *data, size_t size)
{
    static const char *cts[] = {"application/json", "text/plain", NULL, "application/octet-stream"};
    uint8_t flags = data[0];
    size_t nbase;
    const char *const *base = sk_guard_baseline(&nbase);
    sk_guard_opts o = {4096, (flags & 2) ? 100 : 0, (flags & 4) ? base : NULL,
                       (flags & 4) ? nbase : 0, flags & 1};
    char err[128], msg[200];
    sk_guard *g = sk_guard_new(&o, err, sizeof err);
    CHECK(g);
    const char *ct = cts[(flags >> 3) & 3];
    size_t len = size - 1, len0 = len;
    char *body = malloc(len ? len : 1);
    memcpy(body, data + 1, len);
    const char *rule = NULL;
    int rc = sk_guard_request(g, ct, body, &len, &rule, msg, sizeof msg);
    CHECK(rc == 0 || rc == -1);
    CHECK(len <= len0);
    CHECK(memchr(msg, '\0', sizeof msg));
    if (rc == -1) {
        CHECK(rule && known_rule(rule));
    } else {
        json_error_t e;
        json_t *doc = json_loadb(len ? body : "", len,
                                 JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_REJECT_DUPLICATES |
                                     JSON_DECODE_INT_AS_REAL,
                                 &e);
        if (is_json_ct(ct))
            CHECK(doc);
        if (doc && (flags & 1) && (is_json_ct(ct) || looks_json(body, len)))
            CHECK(!json_has_control(doc));
        json_decref(doc);
        if ((flags & 1) && ct && !strcmp(ct, "text/plain"))
            CHECK(!has_control(body, len));
        /* idempotent: the result passes again, unchanged */
        char *again = malloc(len ? len : 1);
        memcpy(again, body, len);
        size_t len2 = len;
        CHECK(sk_guard_request(g, ct, again, &len2, &rule, msg, sizeof msg) == 0);
        CHECK(len2 == len && memcmp(again, body, len) == 0);
        free(again);
    }
    free(body);
    sk_guard_free(g);
}

static void fuzz_scan(const uint8_t *data, size_t size)
{
    size_t l1 = (size_t)(data[1] & 15), l2 = (size_t)(data[1] >> 4);
    if (size < 3 + l1 + l2)
        return;
    const char *n1 = (const char *)data + 3, *n2 = n1 + l1;
    const char *text = n2 + l2;
    size_t len = size - 3 - l1 - l2;
    const char *needles[] = {n1, n2};
    size_t lens[] = {l1, l2};
    size_t first = SIZE_MAX, longest = 0;
    for (int k = 0; k < 2; k++) {
        const char *p = lens[k] >= 4 ? memmem(text, len, needles[k], lens[k]) : NULL;
        size_t e = p ? (size_t)(p - text) + lens[k] : SIZE_MAX;
        if (e < first || (e == first && lens[k] > longest)) {
            first = e;
            longest = lens[k];
        }
    }
    sk_scan *s = sk_scan_new(needles, lens, 2);
    CHECK(s);
    size_t fed = 0, sent = 0, step = 1 + (data[2] & 31);
    int found = 0;
    while (fed < len && !found) {
        size_t n = len - fed < step ? len - fed : step;
        step = (step * 5 + 3) % 61 + 1;
        found = sk_scan_feed(s, text + fed, n);
        fed += n;
        if (!found) {
            size_t hold = sk_scan_hold(s);
            CHECK(hold <= fed && fed - hold >= sent);
            sent = fed - hold;
        }
    }
    CHECK(found == (first != SIZE_MAX));
    if (found)
        CHECK(fed >= first && sent <= first - longest);
    sk_scan_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    fuzz_guard(data, size);
    if (size >= 3)
        fuzz_scan(data, size);
    return 0;
}
