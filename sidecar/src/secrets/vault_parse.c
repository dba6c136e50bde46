/* The answers of Vault: login and renew-self (auth), KV secrets. Pure parsing (secrets/vault.h). */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "secrets/vault.h"

void sk_vault_auth_clear(sk_vault_auth *a)
{
    if (a && a->client_token) {
        explicit_bzero(a->client_token, strlen(a->client_token));
        free(a->client_token);
    }
    if (a)
        a->client_token = NULL;
}

/* Vault's error answer: {"errors": ["...", ...]}; the first message, cut short. */
static void error_text(long status, json_t *j, char *why, size_t whylen)
{
    const char *msg = json_string_value(json_array_get(json_object_get(j, "errors"), 0));
    if (msg)
        snprintf(why, whylen, "HTTP %ld: %.160s", status, msg);
    else
        snprintf(why, whylen, "HTTP %ld", status);
}

static sk_vault_verdict status_verdict(long status)
{
    if (status == 400 || status == 401 || status == 403)
        return SK_VAULT_REFUSED;
    return status == 404 ? SK_VAULT_NOT_FOUND : SK_VAULT_ERROR;
}

/* Loads an answer: NULL (with *v and why set) when it is an error or not a JSON object. */
static json_t *load_answer(long status, const char *body, size_t len, sk_vault_verdict *v,
                           char *why, size_t whylen)
{
    json_error_t e;
    json_t *j = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &e);
    if (status == 200 && json_is_object(j))
        return j;
    if (status == 200) {
        snprintf(why, whylen, "answer is not a JSON object");
        *v = SK_VAULT_ERROR;
    } else {
        error_text(status, json_is_object(j) ? j : NULL, why, whylen);
        *v = status_verdict(status);
    }
    json_decref(j);
    return NULL;
}

static int token_ok(json_t *t)
{
    const char *s = json_string_value(t);
    size_t n = json_string_length(t);
    if (!s || n == 0 || n > SK_VAULT_MAX_TOKEN || strlen(s) != n)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f)
            return 0;
    return 1;
}

sk_vault_verdict sk_vault_parse_auth(long status, const char *body, size_t len, sk_vault_auth *a,
                                     char *why, size_t whylen)
{
    *a = (sk_vault_auth){0};
    sk_vault_verdict v = SK_VAULT_ERROR;
    json_t *j = load_answer(status, body, len, &v, why, whylen);
    if (!j)
        return v;
    json_t *auth = json_object_get(j, "auth");
    json_t *lease = json_object_get(auth, "lease_duration");
    json_t *ren = json_object_get(auth, "renewable");
    v = SK_VAULT_ERROR;
    if (!json_is_object(auth) || !token_ok(json_object_get(auth, "client_token")))
        snprintf(why, whylen, "answer without a usable auth.client_token");
    else if (!json_is_integer(lease) || json_integer_value(lease) < 0 ||
             json_integer_value(lease) > 10LL * 365 * 24 * 3600)
        snprintf(why, whylen, "answer with an invalid auth.lease_duration");
    else if (ren && !json_is_boolean(ren))
        snprintf(why, whylen, "answer with an invalid auth.renewable");
    else if (!(a->client_token = strdup(json_string_value(json_object_get(auth, "client_token")))))
        snprintf(why, whylen, "out of memory");
    else {
        a->lease_ms = (int64_t)json_integer_value(lease) * 1000;
        a->renewable = json_is_true(ren);
        v = SK_VAULT_OK;
    }
    json_decref(j);
    return v;
}

sk_vault_verdict sk_vault_parse_kv(long status, const char *body, size_t len, const char *field,
                                   char **value, size_t *vlen, int64_t *version, char *why,
                                   size_t whylen)
{
    *value = NULL;
    *vlen = 0;
    *version = 0;
    sk_vault_verdict v = SK_VAULT_ERROR;
    json_t *j = load_answer(status, body, len, &v, why, whylen);
    if (!j)
        return v;
    json_t *data = json_object_get(j, "data");
    json_t *fields = json_object_get(data, "data");
    json_t *ver = json_object_get(json_object_get(data, "metadata"), "version");
    json_t *f = json_object_get(fields, field);
    v = SK_VAULT_ERROR;
    if (!json_is_object(data) || !json_is_integer(ver) || json_integer_value(ver) < 0)
        snprintf(why, whylen, "answer is not a KV v2 secret (data.data, data.metadata.version)");
    else if (!json_is_object(fields) || !f) {
        snprintf(why, whylen, "the secret has no field %.64s (deleted or destroyed version?)",
                 field);
        v = SK_VAULT_NOT_FOUND;
    } else if (!json_is_string(f) || strlen(json_string_value(f)) != json_string_length(f))
        snprintf(why, whylen, "field %.64s is not a string without NUL bytes", field);
    else if (!(*value = strdup(json_string_value(f))))
        snprintf(why, whylen, "out of memory");
    else {
        *vlen = json_string_length(f);
        *version = (int64_t)json_integer_value(ver);
        v = SK_VAULT_OK;
    }
    json_decref(j);
    return v;
}

/* The field as a new string: SK_VAULT_OK, or NOT_FOUND / ERROR with why. */
static sk_vault_verdict field_value(json_t *fields, const char *field, char **value, size_t *vlen,
                                    char *why, size_t whylen)
{
    json_t *f = json_object_get(fields, field);
    if (!json_is_object(fields) || !f) {
        snprintf(why, whylen, "the secret has no field %.64s", field);
        return SK_VAULT_NOT_FOUND;
    }
    if (!json_is_string(f) || strlen(json_string_value(f)) != json_string_length(f)) {
        snprintf(why, whylen, "field %.64s is not a string without NUL bytes", field);
        return SK_VAULT_ERROR;
    }
    if (!(*value = strdup(json_string_value(f)))) {
        snprintf(why, whylen, "out of memory");
        return SK_VAULT_ERROR;
    }
    *vlen = json_string_length(f);
    return SK_VAULT_OK;
}

sk_vault_verdict sk_vault_parse_kv1(long status, const char *body, size_t len, const char *field,
                                    char **value, size_t *vlen, int64_t *lease_ms, char *why,
                                    size_t whylen)
{
    *value = NULL;
    *vlen = 0;
    *lease_ms = 0;
    sk_vault_verdict v = SK_VAULT_ERROR;
    json_t *j = load_answer(status, body, len, &v, why, whylen);
    if (!j)
        return v;
    json_t *lease = json_object_get(j, "lease_duration");
    if (lease && (!json_is_integer(lease) || json_integer_value(lease) < 0 ||
                  json_integer_value(lease) > 10LL * 365 * 24 * 3600)) {
        snprintf(why, whylen, "answer with an invalid lease_duration");
        v = SK_VAULT_ERROR;
    } else {
        v = field_value(json_object_get(j, "data"), field, value, vlen, why, whylen);
        if (v == SK_VAULT_OK && lease)
            *lease_ms = (int64_t)json_integer_value(lease) * 1000;
    }
    json_decref(j);
    return v;
}

sk_vault_verdict sk_vault_parse_mount(long status, const char *body, size_t len, int *version,
                                      char *why, size_t whylen)
{
    *version = 2;
    sk_vault_verdict v = SK_VAULT_ERROR;
    json_t *j = load_answer(status, body, len, &v, why, whylen);
    if (!j)
        return v;
    json_t *data = json_object_get(j, "data");
    json_t *ver = json_object_get(json_object_get(data, "options"), "version");
    if (!json_is_object(data) || !json_is_string(json_object_get(data, "type"))) {
        snprintf(why, whylen, "answer without data.type");
        json_decref(j);
        return SK_VAULT_ERROR;
    }
    const char *type = json_string_value(json_object_get(data, "type"));
    *version =
        strcmp(type, "kv") == 0 && json_is_string(ver) && strcmp(json_string_value(ver), "2") == 0
            ? 2
            : 1;
    json_decref(j);
    return SK_VAULT_OK;
}
