/* libFuzzer target: the secret reference parser. Spans must lie inside the input, a vault
 * reference must have its three parts non-empty, and a refusal must say why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secrets/secret.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *text, size_t n, const char *p, size_t len)
{
    if (p && (p < text || p + len > text + n))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t n = strlen(text);
    sk_secret_ref ref;
    char err[160] = "";
    if (sk_secret_ref_parse(text, &ref, err, sizeof err) == 0) {
        inside(text, n, ref.path, ref.path_len);
        inside(text, n, ref.mount, ref.mount_len);
        inside(text, n, ref.field, ref.field_len);
        if (ref.kind == SK_SECRET_VAULT &&
            (!ref.mount_len || !ref.path_len || !ref.field_len ||
             memchr(ref.mount, '/', ref.mount_len) || memchr(ref.field, '#', ref.field_len)))
            __builtin_trap();
        if (ref.kind == SK_SECRET_FILE && !ref.path_len)
            __builtin_trap();
    } else if (!err[0]) {
        __builtin_trap();
    }
    free(text);
    return 0;
}
