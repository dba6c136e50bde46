/* gRPC message deframer: reassembles length-prefixed messages (1 flag byte, 4-byte big-endian
 * length, payload) from DATA chunks of any size. A message longer than the limit is rejected as
 * soon as its prefix is seen, before anything is allocated. Any thread (no shared state). */
#ifndef SK_GRPC_DEFRAMER_H
#define SK_GRPC_DEFRAMER_H

#include <stddef.h>
#include <stdint.h>

typedef struct sk_grpc_deframer sk_grpc_deframer;

enum {
    SK_GRPC_DEFRAMER_OK = 0,
    SK_GRPC_DEFRAMER_TOO_BIG = -1,    /* length above max_message_bytes */
    SK_GRPC_DEFRAMER_COMPRESSED = -2, /* flag byte 1: we never accept compression */
    SK_GRPC_DEFRAMER_BAD_FLAG = -3,   /* flag byte other than 0 or 1 */
    SK_GRPC_DEFRAMER_NOMEM = -4,
    SK_GRPC_DEFRAMER_STOPPED = -5, /* the callback asked to stop */
};

/* One complete message; valid during the call only. Return 0 to go on, non-zero to stop. */
typedef int (*sk_grpc_deframer_cb)(void *ud, const uint8_t *msg, size_t len);

sk_grpc_deframer *sk_grpc_deframer_new(size_t max_message_bytes);
void sk_grpc_deframer_free(sk_grpc_deframer *df);

/* Feeds bytes; calls cb for each message completed. Returns SK_GRPC_DEFRAMER_OK or the first
 * error; after an error the deframer stays failed (every later feed returns that error).
 * Messages that lie whole inside `data` are passed without copying. */
int sk_grpc_deframer_feed(sk_grpc_deframer *df, const uint8_t *data, size_t len,
                          sk_grpc_deframer_cb cb, void *ud);
/* 1 when a message has been started but not completed (a truncated stream if it ends here). */
int sk_grpc_deframer_partial(const sk_grpc_deframer *df);
/* The announced length of the message that caused SK_GRPC_DEFRAMER_TOO_BIG. */
uint32_t sk_grpc_deframer_rejected_len(const sk_grpc_deframer *df);
const char *sk_grpc_deframer_strerror(int err);

#endif
