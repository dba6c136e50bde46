/* Private to secrets/vault*.c: the client's state, and the KV reads of vault_kv.c. */
#ifndef SK_VAULT_INTERNAL_H
#define SK_VAULT_INTERNAL_H

#include <stdint.h>

#include "core/backoff.h"
#include "core/metrics.h"
#include "net/http.h"
#include "net/tls.h"
#include "secrets/secret.h"
#include "secrets/vault.h"

#define WHY_LEN 256

/* One KV read in flight (vault_kv.c). */
typedef struct vkv vkv;

typedef struct entry {
    sk_vault *v;
    sk_secret *s;
    char *mount, *path, *field; /* of the vault: reference */
    int64_t version;            /* last read, 0: none yet */
    int read_once;
    int failing; /* the last read failed (logged once per streak) */
    vkv *req;
    struct event *lease_timer; /* a leased value is read again before its lease ends */
    sk_series *m_ok, *m_changed, *m_not_found, *m_denied, *m_error;
    sk_series *m_read_at, *m_version; /* last good read (epoch s), version in use */
    struct entry *next;
} entry;

struct sk_vault {
    struct event_base *base;
    sk_http *http;
    sk_tls *tls; /* https: the TLS layer's material, else NULL */
    sk_metrics *m;
    char *address, *namespace_hdr, *login_url, *renew_url, *role, *token_path;
    int64_t refresh_ms, timeout_ms;
    sk_backoff bo;
    struct event *auth_timer;    /* renew or log in */
    struct event *refresh_timer; /* read every secret again */
    sk_http_req *auth_req;
    int auth_is_renew;
    int want_login; /* the next auth step is a login, not a renewal */
    char *token;
    int64_t expires_ms; /* monotonic; 0: no expiry */
    int64_t lease_ms;   /* of the last login */
    int renewable;
    uint64_t logins;
    uint64_t rng;
    int installed;
    char why[WHY_LEN];
    entry *entries;
    struct vmount *mounts;      /* KV version per mount (vault_kv.c) */
    void (*on_login)(void *ud); /* sk_vault_on_login */
    void *on_login_ud;
    sk_series *m_login_ok, *m_login_refused, *m_login_error;
    sk_series *m_renew_ok, *m_renew_refused, *m_renew_error, *m_renew_exhausted, *m_valid;
    sk_series *m_expiry; /* the token's lease end, epoch s */
};

/* ---- vault.c ---- */

/* A request with the client token (when held) and the namespace; NULL when it cannot start. */
sk_http_req *vault_request(sk_vault *v, const char *method, const char *url, const char *body,
                           sk_http_cb cb, void *ud);
/* Vault answered 403 to the token: drop it and log in again. */
void vault_token_refused(sk_vault *v, const char *what);
/* A client token is held and its lease has not ended. */
int vault_has_token(const sk_vault *v);

/* ---- vault_kv.c ---- */

/* URL path text of s (n bytes) into out (3n + 1 bytes): unreserved characters and '/' as they
 * are, others %XX. */
void vault_path_escape(char *out, const char *s, size_t n);

/* The answer of a KV read: verdict, the value (valid during the call only) and its version
 * (0 for KV v1), the lease (0: none), why when not SK_VAULT_OK. */
typedef void (*vkv_cb)(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                       int64_t version, int64_t lease_ms, const char *why);
/* Reads the field of <mount>/<path>: the mount's KV version looked up first, once per mount,
 * as the Vault CLI does (GET /v1/sys/internal/ui/mounts/<mount>/<path>; when that is refused
 * or fails, version 2 is assumed), then GET /v1/<mount>/data/<path> (v2) or /v1/<mount>/<path>
 * (v1). A 403 also calls vault_token_refused. NULL when it cannot start (no token, out of
 * memory). The read is freed after cb; vkv_cancel before frees it without calling cb. */
vkv *vkv_start(sk_vault *v, const char *mount, const char *path, const char *field, vkv_cb cb,
               void *ud);
void vkv_cancel(vkv *r);
/* Frees the mount cache. */
void vkv_mounts_free(sk_vault *v);

#endif
