/* The handlers' `secret` and `token` calls (handler protocol 1.3), and the allow-lists that
 * grant them.
 *
 * `secret` {"reference": "vault:<mount>/<path>#<field>"} answers {"value", "version"} for a
 * reference that an item of handler.secrets allows. An item is a vault: reference whose field
 * may be `*` (any field) and whose path may end in a `*` segment (any path below it:
 * `vault:kv/app/` + `*#token`). Anything not allowed is answered `forbidden`, the same for a secret
 * that exists and one that does not (no hint); a malformed reference, or a path with `.` or
 * `..` segments, is `invalid_params`. An allowed reference is read from Vault (KV, through the
 * client's token) and cached: a value younger than vault.refresh_interval (or 2/3 of a shorter
 * lease) is answered from the cache, an older one read again, one read at a time per reference;
 * when Vault cannot answer (down, not logged in, an error) the cached value is answered, and
 * without one `unavailable`; a call that finds skiff not logged in to Vault (at start-up, while
 * it logs in again) with nothing cached waits for the login up to secret_wait_ms
 * (vault.timeout) first. A secret (or field) Vault does not have is `not_found`.
 *
 * `token` {"audience": "..."} answers {"access_token", "expires_at"} (epoch ms) for an audience
 * of handler.token_audiences, from the token service (secrets/oauth.h): one OAuth client per
 * audience with the general client's settings (oauth.token_url, oauth.client_id,
 * oauth.client_secret), created at the first call, cached and refreshed by the service with one
 * request in flight. A call waits for the first token up to the token timeout, then gets
 * `unavailable` with the reason (never the secret). Another audience is `forbidden`.
 *
 * Values and tokens go only into the reply frame: never into a log line, a metric, an error
 * message. Each refusal is logged (what was asked, why) and counted:
 *   skiff_handler_secret_calls_total{result}  ok, cached, forbidden, not_found, unavailable,
 *                                             invalid_params
 *   skiff_handler_token_calls_total{result}   ok, forbidden, unavailable, invalid_params
 * Loop thread only. */
#ifndef SK_GRANTS_H
#define SK_GRANTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "handler/dispatcher.h"
#include "secrets/oauth.h"
#include "secrets/vault.h"

struct event_base;

#define SK_GRANTS_MAX_CACHED 1024 /* distinct references cached at once */

/* An allow-list item of handler.secrets is well formed: 0, or -1 with err set. */
int sk_grant_pattern_check(const char *pattern, char *err, size_t errlen);
/* A reference a handler asks for is well formed (a vault: reference, no `*`, no `.` or `..`
 * path segment): 0, or -1 with err set. */
int sk_grant_reference_check(const char *reference, char *err, size_t errlen);
/* 1 when the (well-formed) pattern allows the (well-formed) reference. */
int sk_grant_match(const char *pattern, const char *reference);

typedef struct sk_grants_opts {
    char *const *secrets; /* handler.secrets patterns */
    size_t nsecrets;
    char *const *audiences; /* handler.token_audiences */
    size_t naudiences;
    sk_vault *vault;             /* borrowed; NULL: every secret call is unavailable */
    sk_oauth *oauth;             /* borrowed; NULL: every token call is unavailable */
    const sk_oauth_opts *client; /* the general client, copied per audience (its audience
                                    replaced); its strings and secret outlive the grants */
    int64_t token_wait_ms;       /* longest wait for a first token; <= 0: 10 s */
    int64_t secret_wait_ms;      /* longest wait for a Vault login; <= 0: 10 s */
} sk_grants_opts;

typedef struct sk_grants sk_grants;

/* NULL with err set (a malformed pattern, out of memory). */
sk_grants *sk_grants_new(struct event_base *base, sk_metrics *m, const sk_grants_opts *o, char *err,
                         size_t errlen);
/* Registers `secret` (when there are secrets) and `token` (when there are audiences). */
int sk_grants_register(sk_grants *g, sk_dispatcher *d);
/* Answers the calls still waiting `unavailable`, wipes the cache and frees. Before the
 * dispatcher, the Vault client and the token service. Accepts NULL. */
void sk_grants_free(sk_grants *g);

#endif
