/* libFuzzer target: the output secret scan over the decoded text of SSE streams.
 *
 * Byte 0 seeds the chunk sizes; the rest is the response body, scanned for the needles
 * "sk-abcd1234" and "tok\xc3\xa9n-\x01". Checked: the same verdict whole and cut into chunks
 * (when neither gave up), the hold within the stream fed, and sent = fed - hold never going
 * backwards (the proxy cannot take back bytes it sent). */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "egress/sse_scan.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "fuzz_egress_sse_scan: %s (line %d)\n", #c, __LINE__);                 \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *needles[] = {"sk-abcd1234", "tok\xc3\xa9n-\x01"};
    static const size_t lens[] = {11, 8};
    if (size < 1)
        return 0;
    size_t len = size - 1;
    char *body = malloc(len ? len : 1); /* exact size: a read past the end is caught */
    memcpy(body, data + 1, len);

    sk_sse_scan *whole = sk_sse_scan_new(needles, lens, 2),
                *cut = sk_sse_scan_new(needles, lens, 2);
    CHECK(whole && cut);
    int found_whole = sk_sse_scan_feed(whole, body, len);
    found_whole = sk_sse_scan_finish(whole) || found_whole;
    size_t fed = 0, sent = 0, step = 1 + data[0] % 13;
    int found_cut = 0;
    while (fed < len && !found_cut) {
        size_t n = len - fed < step ? len - fed : step;
        found_cut = sk_sse_scan_feed(cut, body + fed, n);
        fed += n;
        size_t hold = sk_sse_scan_hold(cut);
        CHECK(hold <= fed);
        CHECK(fed - hold >= sent);
        sent = fed - hold;
        step = 1 + (step * 7 + 3) % 13;
    }
    found_cut = sk_sse_scan_finish(cut) || found_cut;
    if (!sk_sse_scan_gave_up(whole) && !sk_sse_scan_gave_up(cut))
        CHECK(found_whole == found_cut);
    sk_sse_scan_free(whole);
    sk_sse_scan_free(cut);
    free(body);
    return 0;
}
