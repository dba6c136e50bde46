/* libFuzzer target: the acks' fast path (handler/acks.c) against the tree decoder. Whatever
 * sk_acks_scan takes, sk_msg_decode must read as the same acks (a lone `ack`, or a `results`
 * frame whose items all decode as acks with the same ids, in order); whatever it declines must
 * be left untouched. A difference aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handler/acks.h"
#include "handler/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    char *ids[4096];
    long index[4096];
    size_t n;
} seen;

static void on_ack(void *ud, const char *id, long index)
{
    seen *s = ud;
    if (s->n == sizeof s->ids / sizeof s->ids[0])
        abort();
    s->index[s->n] = index;
    s->ids[s->n++] = strdup(id);
}

/* The tree decoder's reading of data, checked against the fast path's acks. */
static void same_as_tree(const uint8_t *data, size_t size, const seen *s)
{
    sk_msg m;
    const char *perr;
    char err[256];
    if (sk_msg_decode(data, size, &m, &perr, err, sizeof err) != 0)
        abort();
    if (m.type == SK_MSG_ACK) {
        if (s->n != 1 || s->index[0] != -1 || strcmp(m.id, s->ids[0]) != 0)
            abort();
    } else if (m.type == SK_MSG_RESULTS && json_array_size(m.items) == s->n) {
        for (size_t i = 0; i < s->n; i++) {
            sk_msg item;
            if (sk_msg_decode_item(json_array_get(m.items, i), i, &item, &perr, err, sizeof err) ||
                item.type != SK_MSG_ACK || s->index[i] != (long)i ||
                strcmp(item.id, s->ids[i]) != 0 || item.variables || item.message)
                abort();
            sk_msg_clear(&item);
        }
    } else {
        abort();
    }
    sk_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536) /* at most 65536 / 27 acks: seen holds them all */
        return 0;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return 0;
    memcpy(copy, data, size);
    seen *s = calloc(1, sizeof *s);
    if (!s) {
        free(copy);
        return 0;
    }
    if (sk_acks_scan(copy, size, on_ack, s))
        same_as_tree(data, size, s);
    else if (s->n != 0 || memcmp(copy, data, size) != 0)
        abort();
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s);
    free(copy);
    return 0;
}
