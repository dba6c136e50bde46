#include "grpc/deframer.h"

#include <stdlib.h>
#include <string.h>

struct sk_grpc_deframer {
    size_t max;
    uint8_t hdr[5];
    size_t hdr_len; /* prefix bytes collected so far (0..5) */
    uint8_t *buf;   /* payload being reassembled, exactly `need` bytes */
    size_t need;
    size_t have;
    uint32_t rejected;
    int err;
};

sk_grpc_deframer *sk_grpc_deframer_new(size_t max_message_bytes)
{
    sk_grpc_deframer *df = calloc(1, sizeof *df);
    if (df != NULL)
        df->max = max_message_bytes;
    return df;
}

void sk_grpc_deframer_free(sk_grpc_deframer *df)
{
    if (df == NULL)
        return;
    free(df->buf);
    free(df);
}

int sk_grpc_deframer_partial(const sk_grpc_deframer *df)
{
    return df->hdr_len > 0;
}

uint32_t sk_grpc_deframer_rejected_len(const sk_grpc_deframer *df)
{
    return df->rejected;
}

const char *sk_grpc_deframer_strerror(int err)
{
    switch (err) {
    case SK_GRPC_DEFRAMER_OK:
        return "ok";
    case SK_GRPC_DEFRAMER_TOO_BIG:
        return "message larger than the limit";
    case SK_GRPC_DEFRAMER_COMPRESSED:
        return "compressed message (no compression was negotiated)";
    case SK_GRPC_DEFRAMER_BAD_FLAG:
        return "invalid message flags";
    case SK_GRPC_DEFRAMER_NOMEM:
        return "out of memory";
    default:
        return "stopped";
    }
}

static int fail(sk_grpc_deframer *df, int err)
{
    df->err = err;
    free(df->buf);
    df->buf = NULL;
    return err;
}

/* The prefix is complete: validates flags and length. */
static int start_message(sk_grpc_deframer *df)
{
    if (df->hdr[0] == 1)
        return fail(df, SK_GRPC_DEFRAMER_COMPRESSED);
    if (df->hdr[0] != 0)
        return fail(df, SK_GRPC_DEFRAMER_BAD_FLAG);
    uint32_t n = (uint32_t)df->hdr[1] << 24 | (uint32_t)df->hdr[2] << 16 |
                 (uint32_t)df->hdr[3] << 8 | df->hdr[4];
    if (n > df->max) {
        df->rejected = n;
        return fail(df, SK_GRPC_DEFRAMER_TOO_BIG);
    }
    df->need = n;
    df->have = 0;
    return SK_GRPC_DEFRAMER_OK;
}

static int deliver(sk_grpc_deframer *df, const uint8_t *msg, size_t len, sk_grpc_deframer_cb cb,
                   void *ud)
{
    df->hdr_len = 0;
    if (cb(ud, msg, len) != 0)
        return fail(df, SK_GRPC_DEFRAMER_STOPPED);
    return SK_GRPC_DEFRAMER_OK;
}

/* Consumes payload bytes for the current message; *used tells how many were taken. */
static int take_payload(sk_grpc_deframer *df, const uint8_t *p, size_t len, size_t *used,
                        sk_grpc_deframer_cb cb, void *ud)
{
    size_t want = df->need - df->have;
    if (df->have == 0 && len >= want) {
        *used = want;
        return deliver(df, want ? p : (const uint8_t *)"", want, cb, ud);
    }
    if (df->buf == NULL && (df->buf = malloc(df->need)) == NULL)
        return fail(df, SK_GRPC_DEFRAMER_NOMEM);
    size_t n = len < want ? len : want;
    memcpy(df->buf + df->have, p, n);
    df->have += n;
    *used = n;
    if (df->have < df->need)
        return SK_GRPC_DEFRAMER_OK;
    /* The callback may feed this deframer again (it must not, but stay safe): detach first. */
    uint8_t *msg = df->buf;
    df->buf = NULL;
    int rc = deliver(df, msg, df->need, cb, ud);
    free(msg);
    return rc;
}

int sk_grpc_deframer_feed(sk_grpc_deframer *df, const uint8_t *data, size_t len,
                          sk_grpc_deframer_cb cb, void *ud)
{
    size_t off = 0;
    while (df->err == SK_GRPC_DEFRAMER_OK) {
        if (df->hdr_len < 5) {
            if (off == len)
                break;
            size_t n = 5 - df->hdr_len < len - off ? 5 - df->hdr_len : len - off;
            memcpy(df->hdr + df->hdr_len, data + off, n);
            df->hdr_len += n;
            off += n;
            if (df->hdr_len == 5)
                start_message(df);
            continue;
        }
        /* A zero-length message completes without input; others wait for bytes. */
        if (off == len && df->have < df->need)
            break;
        size_t used = 0;
        take_payload(df, data + off, len - off, &used, cb, ud);
        off += used;
    }
    return df->err;
}
