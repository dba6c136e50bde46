/* libFuzzer target: token usage from JSON and SSE responses, and the request estimate.
 *
 * Byte 0 picks the content type (bits 0-1) and a small event bound (bit 2); byte 1 seeds the
 * chunk sizes; the rest is the response body. Checked: the same result whole and cut into
 * chunks (any split), counts never negative, the estimate never negative. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/usage.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_egress_usage: %s (line %d)\n", #c, __LINE__);                    \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *cts[] = {"text/event-stream", "application/json", NULL, "text/plain"};
    if (size < 2)
        return 0;
    const char *ct = cts[data[0] & 3];
    size_t max = (data[0] & 4) ? 64 : 0;
    size_t len = size - 2;
    char *body = malloc(len ? len : 1); /* exact size: a read past the end is caught */
    memcpy(body, data + 2, len);

    sk_usage *whole = sk_usage_new(ct, max), *cut = sk_usage_new(ct, max);
    CHECK(whole && cut);
    sk_usage_feed(whole, body, len);
    size_t fed = 0, step = 1 + data[1] % 17;
    while (fed < len) {
        size_t n = len - fed < step ? len - fed : step;
        step = (step * 7 + data[1]) % 23 + 1;
        sk_usage_feed(cut, body + fed, n);
        fed += n;
    }
    int64_t i1, o1, i2, o2;
    int r1 = sk_usage_result(whole, &i1, &o1), r2 = sk_usage_result(cut, &i2, &o2);
    CHECK(r1 == r2 && i1 == i2 && o1 == o2);
    CHECK(i1 >= 0 && o1 >= 0);
    CHECK(sk_usage_skipped(whole) == sk_usage_skipped(cut));
    sk_usage_free(whole);
    sk_usage_free(cut);

    CHECK(sk_usage_estimate(body, len) >= 0);
    free(body);
    return 0;
}
