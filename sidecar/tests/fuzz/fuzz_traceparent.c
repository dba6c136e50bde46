/* libFuzzer target: W3C traceparent and tracestate parsing; a parsed traceparent of version 00
 * formats back to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "trace/context.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copies, so that a read past the end is caught */
    char *s = malloc(size ? size : 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    sk_trace_ctx c;
    if (sk_traceparent_parse(s, size, &c) == 0 && size == SK_TRACEPARENT_LEN && s[0] == '0' &&
        s[1] == '0') {
        char out[SK_TRACEPARENT_LEN + 1];
        sk_traceparent_format(c.trace_id, c.span_id, c.flags, out);
        if (memcmp(out, s, SK_TRACEPARENT_LEN) != 0)
            abort();
    }
    (void)sk_tracestate_valid(s, size);
    free(s);
    return 0;
}
