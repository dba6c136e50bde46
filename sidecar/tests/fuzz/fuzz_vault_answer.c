/* libFuzzer target: the Vault login/renew, KV v2, KV v1 and mount answer parsers. The first byte
 * picks the HTTP status, the second the parser. A token accepted must be non-empty visible ASCII
 * within the bound with a lease >= 0; a value accepted must be as long as it says with no NUL; a
 * failure must say why and return nothing. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "secrets/vault.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_auth(long status, const char *body, size_t len)
{
    sk_vault_auth a;
    char why[256] = "";
    if (sk_vault_parse_auth(status, body, len, &a, why, sizeof why) == SK_VAULT_OK) {
        size_t n = strlen(a.client_token);
        if (status != 200 || n == 0 || n > SK_VAULT_MAX_TOKEN || a.lease_ms < 0)
            __builtin_trap();
        for (size_t i = 0; i < n; i++)
            if (a.client_token[i] <= 0x20 || a.client_token[i] >= 0x7f)
                __builtin_trap();
    } else if (!why[0] || a.client_token) {
        __builtin_trap();
    }
    sk_vault_auth_clear(&a);
}

static void check_kv(long status, const char *body, size_t len)
{
    char why[256] = "", *val;
    size_t vlen;
    int64_t ver;
    if (sk_vault_parse_kv(status, body, len, "password", &val, &vlen, &ver, why, sizeof why) ==
        SK_VAULT_OK) {
        if (status != 200 || !val || strlen(val) != vlen || ver < 0)
            __builtin_trap();
        free(val);
    } else if (!why[0] || val) {
        __builtin_trap();
    }
}

static void check_kv1_and_mount(long status, const char *body, size_t len)
{
    char why[256] = "", *val;
    size_t vlen;
    int64_t lease;
    if (sk_vault_parse_kv1(status, body, len, "password", &val, &vlen, &lease, why, sizeof why) ==
        SK_VAULT_OK) {
        if (status != 200 || !val || strlen(val) != vlen || lease < 0)
            __builtin_trap();
        free(val);
    } else if (!why[0] || val) {
        __builtin_trap();
    }
    int version = 0;
    why[0] = '\0';
    sk_vault_verdict v = sk_vault_parse_mount(status, body, len, &version, why, sizeof why);
    if ((v == SK_VAULT_OK && status != 200) || (v != SK_VAULT_OK && !why[0]) ||
        (version != 1 && version != 2))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 200, 200, 400, 403, 404, 429, 500, 503, 204};
    if (size < 2)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    if (data[1] % 3 == 1)
        check_kv(status, (const char *)data + 2, size - 2);
    else if (data[1] % 3 == 2)
        check_kv1_and_mount(status, (const char *)data + 2, size - 2);
    else
        check_auth(status, (const char *)data + 2, size - 2);
    return 0;
}
