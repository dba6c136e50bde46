/* libFuzzer target: the Accept header negotiation of /metrics. Any string gives 0 or 1, and
 * the answer does not depend on bytes after the first NUL. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/admin.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *accept = malloc(size + 1);
    if (!accept)
        return 0;
    memcpy(accept, data, size);
    accept[size] = '\0';
    int om = sk_admin_wants_openmetrics(accept);
    if (om != 0 && om != 1)
        __builtin_trap();
    /* Prefixing a range the text format wins with never turns the answer to OpenMetrics. */
    size_t n = strlen(accept);
    char *more = malloc(n + 32);
    if (more) {
        memcpy(more, "text/plain;q=1,", 15);
        memcpy(more + 15, accept, n + 1);
        if (sk_admin_wants_openmetrics(more) && !om)
            __builtin_trap();
        free(more);
    }
    free(accept);
    return 0;
}
