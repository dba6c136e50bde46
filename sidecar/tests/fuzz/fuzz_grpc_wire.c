/* libFuzzer target for the gRPC header parsers: grpc-timeout (parse, and format/parse round
 * trip) and grpc-message percent-decoding. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/grpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    int64_t ms = sk_grpc_timeout_parse(s);
    assert(ms >= -1);
    if (ms >= 0) {
        char out[16];
        sk_grpc_timeout_format(ms, out, sizeof out);
        assert(strlen(out) <= 9);
        assert(sk_grpc_timeout_parse(out) >= ms); /* never shortens a deadline */
    }

    /* Decoding only shrinks, always terminates, and honours the output size. */
    char dec[64];
    size_t outlen = size % sizeof dec + 1;
    memset(dec, 'X', sizeof dec);
    sk_grpc_message_decode((const char *)data, size, dec, outlen);
    assert(strlen(dec) < outlen);
    assert(strlen(dec) <= size);
    for (size_t i = outlen; i < sizeof dec; i++)
        assert(dec[i] == 'X');

    free(s);
    return 0;
}
