/* Handler protocol v1 frame codec (handler-protocol/SPEC.md): a 4-byte big-endian length N,
 * then N bytes of UTF-8 JSON holding one object with a string "type". Pure functions, no I/O,
 * so the codec is unit-tested and fuzzed on its own. */
#ifndef SK_FRAME_H
#define SK_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

#define SK_FRAME_HEADER 4

/* Error codes of the protocol's `error` frame. */
#define SK_PERR_MALFORMED "malformed_frame"
#define SK_PERR_TOO_LARGE "frame_too_large"
#define SK_PERR_UNKNOWN_TYPE "unknown_type"
#define SK_PERR_PROTOCOL "protocol"
#define SK_PERR_VERSION "unsupported_version"
#define SK_PERR_UNKNOWN_TASK "unknown_task"
#define SK_PERR_UNSUPPORTED "unsupported"

typedef enum {
    SK_MSG_HELLO,
    SK_MSG_COMPLETE,
    SK_MSG_FAIL,
    SK_MSG_BPMN_ERROR,
    SK_MSG_ACK,
    SK_MSG_NACK,
    SK_MSG_EXTEND,
    SK_MSG_CALL,
    SK_MSG_PING,
    SK_MSG_PONG,
    SK_MSG_RESULTS, /* 1.4: several results in one frame; items decoded by sk_msg_decode_item */
} sk_msg_type;

/* A decoded handler->skiff frame. Strings and json_t members point into `root`, which the
 * message owns (sk_msg_clear releases it). Absent optional members are NULL / has_* = 0. */
typedef struct sk_msg {
    sk_msg_type type;
    json_t *root;
    const char *id;  /* results: task id */
    const char *ref; /* call, ping, pong */
    /* hello */
    int64_t version;
    const char *name;
    int64_t capacity;
    json_t *job_types; /* array of strings, optional */
    json_t *topics;    /* array of strings, optional */
    json_t *features;  /* array of strings, optional */
    /* results */
    json_t *variables;   /* object */
    const char *message; /* may hold NUL bytes (valid JSON): message_len is its length */
    size_t message_len;
    const char *code; /* bpmn_error */
    int has_retries;
    int64_t retries;
    int64_t retry_backoff_ms;
    int has_retry_backoff; /* nack: retry_backoff_ms given */
    int dead_letter;       /* nack */
    int64_t timeout_ms;    /* extend (its `ref` is optional) */
    const char *method;    /* call */
    json_t *params;        /* call, object, optional */
    json_t *items;         /* results: a non-empty array (its items are not checked yet) */
} sk_msg;

/* Length of the frame at the head of buf. Returns 1 and sets *payload_len when the header is
 * complete and valid, 0 when more bytes are needed, -1 with err naming the problem when the
 * length is 0 or above max_frame (*perr set to SK_PERR_MALFORMED or SK_PERR_TOO_LARGE). */
int sk_frame_length(const uint8_t *buf, size_t len, size_t max_frame, size_t *payload_len,
                    const char **perr, char *err, size_t errlen);

/* Decodes one payload into m. Returns 0, or -1 with *perr (a SK_PERR_* code) and a message
 * naming the problem (invalid JSON with its position, missing or mistyped member, ...). */
int sk_msg_decode(const uint8_t *payload, size_t len, sk_msg *m, const char **perr, char *err,
                  size_t errlen);
/* Decodes item number index of a `results` frame into m, as a frame of its own would be, except
 * that only the result types (complete, fail, bpmn_error, ack, nack) are taken. m holds its own
 * reference to the item. Returns 0, or -1 with *perr and a message that names the item; m->id
 * is then still set when the item carries a string id (the error frame names it). */
int sk_msg_decode_item(json_t *item, size_t index, sk_msg *m, const char **perr, char *err,
                       size_t errlen);
void sk_msg_clear(sk_msg *m);

/* Serializes obj (compact JSON) as a complete frame into a malloc'ed buffer. NULL on failure. */
uint8_t *sk_frame_encode(const json_t *obj, size_t *out_len);

#endif
