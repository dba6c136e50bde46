/* Vault (or OpenBao) client on the loop over net/http: Kubernetes auth and KV v2 secrets.
 *
 * Login: POST <address>/v1/auth/<mount>/login {"role", "jwt"}, the service-account JWT read
 * from its file at EVERY login (projected tokens rotate). The client token is renewed
 * (POST /v1/auth/token/renew-self) at about 2/3 of its lease with jitter; when renewal fails,
 * is refused, or no longer extends the lease (max TTL reached) the client logs in again, with
 * backoff 1 s .. 5 min while logins fail. A 403 on any read drops the token and logs in again.
 *
 * Secrets: once installed (sk_vault_install), every `vault:<mount>/<path>#<field>` secret
 * created with sk_secret_new is read after the first login, and again every refresh interval
 * (sooner when the answer carries a shorter lease: at about 2/3 of it). The mount's KV version
 * is looked up once per mount as the Vault CLI does (GET /v1/sys/internal/ui/mounts/<mount>/
 * <path>; version 2 assumed when that is refused): KV v2 reads GET /v1/<mount>/data/<path>
 * (data.data.<field>, data.metadata.version), KV v1 GET /v1/<mount>/<path> (data.<field>,
 * lease_duration). A changed
 * value replaces the secret's value and tells its subscribers (the OAuth client, the Schema
 * Registry client), without restart. A read that fails keeps the previous value.
 *
 * Not ready until logged in and every secret has been read once.
 *
 * Metrics (never a value, a token or a path in a label; `secret` is the setting's key):
 *   skiff_vault_logins_total{result}          ok, refused, error
 *   skiff_vault_renewals_total{result}        ok, refused, error, exhausted (max TTL)
 *   skiff_vault_token_valid                   1 while a client token is held
 *   skiff_vault_secret_reads_total{secret,result}  ok, changed, not_found, denied, error
 * Loop thread only. */
#ifndef SK_VAULT_H
#define SK_VAULT_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"

struct event_base;

#define SK_VAULT_MAX_TOKEN 4096 /* longest client token accepted */

/* ---- answers (exposed for tests and fuzzing) ---- */

typedef enum {
    SK_VAULT_OK,
    SK_VAULT_REFUSED,   /* 400/401/403: credentials or permissions */
    SK_VAULT_NOT_FOUND, /* 404, or the field is missing */
    SK_VAULT_ERROR,     /* anything else: retriable */
} sk_vault_verdict;

typedef struct sk_vault_auth {
    char *client_token; /* malloc'ed */
    int64_t lease_ms;   /* auth.lease_duration */
    int renewable;
} sk_vault_auth;

/* Reads a login or renew-self answer. SK_VAULT_OK fills *a (free with sk_vault_auth_clear);
 * otherwise why says what was wrong (Vault's "errors" list, never a token). */
sk_vault_verdict sk_vault_parse_auth(long status, const char *body, size_t len, sk_vault_auth *a,
                                     char *why, size_t whylen);
void sk_vault_auth_clear(sk_vault_auth *a);

/* Reads a KV v2 answer for `field`: SK_VAULT_OK with *value (malloc'ed, NUL-terminated,
 * *vlen bytes; wipe and free it) and *version. The value must be a JSON string. */
sk_vault_verdict sk_vault_parse_kv(long status, const char *body, size_t len, const char *field,
                                   char **value, size_t *vlen, int64_t *version, char *why,
                                   size_t whylen);

/* The same for a KV v1 answer: data.<field>, *lease_ms from lease_duration (0: none). */
sk_vault_verdict sk_vault_parse_kv1(long status, const char *body, size_t len, const char *field,
                                    char **value, size_t *vlen, int64_t *lease_ms, char *why,
                                    size_t whylen);
/* Reads an answer of GET /v1/sys/internal/ui/mounts/<path>: *version 2 for a KV v2 mount
 * (data.options.version "2"), else 1 (KV v1, or another engine read at the path as it is). */
sk_vault_verdict sk_vault_parse_mount(long status, const char *body, size_t len, int *version,
                                      char *why, size_t whylen);

/* ---- the client ---- */

typedef struct sk_vault_opts {
    const char *address;                  /* VAULT_ADDR: http(s)://host:port */
    const char *cacert;                   /* VAULT_CACERT: PEM bundle, NULL or "": the system's */
    const char *client_cert, *client_key; /* VAULT_CLIENT_CERT/KEY: mTLS, NULL or "": none */
    const char *namespace_;               /* VAULT_NAMESPACE: X-Vault-Namespace, NULL or "": none */
    const char *auth_mount;               /* "kubernetes" */
    const char *role;
    const char *token_path;                     /* the service-account JWT */
    int64_t refresh_ms;                         /* secrets read again this often; <= 0: 60 s */
    int64_t timeout_ms;                         /* per request; <= 0: 10 s */
    int64_t backoff_initial_ms, backoff_max_ms; /* <= 0: 1 s, 5 min */
    int64_t tls_reload_ms;                      /* https: CA file polled this often; <= 0: 10 s */
} sk_vault_opts;

typedef struct sk_vault sk_vault;

/* A client; it logs in at once (from the loop). NULL with err set. */
sk_vault *sk_vault_new(struct event_base *base, sk_metrics *m, const sk_vault_opts *o, char *err,
                       size_t errlen);
/* Makes this client the resolver of vault: references (sk_secret_set_resolver). */
void sk_vault_install(sk_vault *v);
/* Uninstalls it when installed, detaches its secrets (they keep their values) and frees.
 * Accepts NULL. */
void sk_vault_free(sk_vault *v);
/* 1 when logged in and every secret was read; else 0 and why. */
int sk_vault_ready(const sk_vault *v, char *why, size_t whylen);
/* One read on behalf of someone else (the handlers' `secret` call): the field of the KV secret
 * of ref, with the client token held now. cb gets SK_VAULT_OK with the value (valid during the
 * call only: copy it, wipe the copy when done), its version and lease (0: none; KV v1's ttl),
 * or another verdict with why
 * (never a value). A 403 also makes the client log in again. NULL when no read can start (not
 * logged in, out of memory): the caller answers without Vault. The read is freed after cb;
 * sk_vault_read_cancel before that frees it without calling cb; every read is cancelled before
 * sk_vault_free. */
typedef struct sk_vault_read sk_vault_read;
typedef void (*sk_vault_read_cb)(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                                 int64_t version, int64_t lease_ms, const char *why);
struct sk_secret_ref;
sk_vault_read *sk_vault_read_start(sk_vault *v, const struct sk_secret_ref *ref,
                                   sk_vault_read_cb cb, void *ud);
void sk_vault_read_cancel(sk_vault_read *r);
/* cb(ud) after each successful login (one listener; NULL removes it). */
void sk_vault_on_login(sk_vault *v, void (*cb)(void *ud), void *ud);
/* The refresh interval (vault.refresh_interval): how long a value read counts as current. */
int64_t sk_vault_refresh_ms(const sk_vault *v);

/* Logins answered with a token so far: for tests. */
uint64_t sk_vault_logins(const sk_vault *v);

#endif
