/* libFuzzer target: the OAuth token response parser. The first two bytes pick the HTTP status;
 * a token accepted must be non-empty visible ASCII within the bound, with a positive lifetime,
 * and a refusal must say why. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "secrets/oauth.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 200, 200, 400, 401, 403, 429, 500, 503, 204};
    if (size < 1)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    sk_oauth_token tok;
    char why[256] = "";
    sk_oauth_verdict v =
        sk_oauth_parse_response(status, (const char *)data + 1, size - 1, &tok, why, sizeof why);
    if (v == SK_OAUTH_OK) {
        size_t n = strlen(tok.access_token);
        if (status != 200 || n == 0 || n > SK_OAUTH_MAX_TOKEN || tok.expires_in_ms <= 0)
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            if (tok.access_token[i] <= 0x20 || tok.access_token[i] >= 0x7f)
                __builtin_trap();
    } else if (!why[0] || tok.access_token) {
        __builtin_trap();
    }
    sk_oauth_token_clear(&tok);
    return 0;
}
