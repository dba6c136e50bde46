/* libFuzzer target: a byte stream from a handler, cut into frames and decoded; the items of a
 * `results` frame (1.4) are decoded too. */
#include <stddef.h>
#include <stdint.h>

#include "handler/frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    while (size > 0) {
        size_t plen;
        const char *perr;
        int r = sk_frame_length(data, size, 1 << 16, &plen, &perr, err, sizeof(err));
        if (r <= 0 || size - SK_FRAME_HEADER < plen)
            break;
        sk_msg m;
        if (sk_msg_decode(data + SK_FRAME_HEADER, plen, &m, &perr, err, sizeof(err)) == 0) {
            for (size_t i = 0; m.type == SK_MSG_RESULTS && i < json_array_size(m.items); i++) {
                sk_msg item;
                sk_msg_decode_item(json_array_get(m.items, i), i, &item, &perr, err, sizeof(err));
                sk_msg_clear(&item);
            }
            sk_msg_clear(&m);
        }
        data += SK_FRAME_HEADER + plen;
        size -= SK_FRAME_HEADER + plen;
    }
    return 0;
}
