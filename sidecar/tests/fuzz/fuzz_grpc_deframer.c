/* libFuzzer target for the gRPC message deframer (sidecar/src/grpc/deframer.c).
 * Input: byte 0 picks the message limit, byte 1 the chunk size; the rest is a response body
 * fed in chunks. Checks that chunking changes nothing (same messages, same result as one
 * feed), that no message exceeds the limit, and that no more bytes come out than went in. */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/deframer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct trace {
    size_t max;
    size_t count;
    size_t bytes;
    uint64_t hash; /* FNV-1a over lengths and contents */
} trace;

static int record(void *ud, const uint8_t *msg, size_t len)
{
    trace *t = ud;
    assert(len <= t->max);
    t->count++;
    t->bytes += len;
    t->hash = (t->hash ^ len) * 0x100000001b3ull;
    for (size_t i = 0; i < len; i++)
        t->hash = (t->hash ^ msg[i]) * 0x100000001b3ull;
    return 0;
}

static int feed(const uint8_t *body, size_t len, size_t chunk, trace *t)
{
    sk_grpc_deframer *df = sk_grpc_deframer_new(t->max);
    if (df == NULL)
        return 1;
    int rc = SK_GRPC_DEFRAMER_OK;
    for (size_t off = 0; off < len && rc == SK_GRPC_DEFRAMER_OK; off += chunk) {
        size_t n = len - off < chunk ? len - off : chunk;
        rc = sk_grpc_deframer_feed(df, body + off, n, record, t);
    }
    if (len == 0)
        rc = sk_grpc_deframer_feed(df, body, 0, record, t);
    sk_grpc_deframer_free(df);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t max = (size_t)data[0] * 64;
    size_t chunk = (size_t)data[1] % 17 + 1;
    const uint8_t *body = data + 2;
    size_t len = size - 2;
    trace whole = {.max = max, .hash = 0xcbf29ce484222325ull};
    trace split = whole;
    int rc1 = feed(body, len, len ? len : 1, &whole);
    int rc2 = feed(body, len, chunk, &split);
    assert(rc1 == rc2);
    assert(whole.count == split.count && whole.bytes == split.bytes);
    assert(whole.hash == split.hash);
    assert(whole.bytes + 5 * whole.count <= len);
    return 0;
}
