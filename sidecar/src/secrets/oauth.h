/* OAuth 2.0 client credentials token service, on the loop over net/http.
 *
 * One sk_oauth_client per (token URL, client id, audience, scope): a form POST
 * grant_type=client_credentials&client_id=..&client_secret=..[&audience=..][&scope=..];
 * the token is cached and refreshed ahead of its expiry, with at most ONE request in flight
 * however many users wait. Errors of the token endpoint (transport, 5xx, 429, an unreadable
 * answer) are retried with jittered backoff; a refusal of the credentials (401, or
 * invalid_client / unauthorized_client / invalid_grant / invalid_scope / invalid_request) is a
 * configuration problem: logged at ERROR as such, retried at the longest backoff, and at once
 * when the client secret changes. Until a first token arrives, and after the token expired
 * without a new one, there is no valid token (readiness says why).
 *
 * Metrics (label `token`: the client's name, e.g. "zeebe"):
 *   skiff_oauth_token_requests_total{token,result}  ok, refused, error
 *   skiff_oauth_token_request_seconds{token}
 *   skiff_oauth_token_valid{token}                  1 while a valid token is held
 *   skiff_oauth_token_lifetime_seconds{token}       expires_in of the last token
 *
 * The client secret and the tokens never reach a log line, a metric or an error message.
 * Loop thread only. */
#ifndef SK_OAUTH_H
#define SK_OAUTH_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"
#include "secrets/secret.h"

struct event_base;
struct sk_tls_opts;

#define SK_OAUTH_MAX_TOKEN 16384 /* longest access token accepted */

/* ---- the token response (exposed for tests and fuzzing) ---- */

typedef struct sk_oauth_token {
    char *access_token;    /* malloc'ed */
    int64_t expires_in_ms; /* from expires_in (seconds); SK_OAUTH_DEFAULT_LIFETIME_MS if absent */
} sk_oauth_token;

#define SK_OAUTH_DEFAULT_LIFETIME_MS 300000

typedef enum {
    SK_OAUTH_OK,      /* a token */
    SK_OAUTH_REFUSED, /* the server refused the client: a configuration problem */
    SK_OAUTH_ERROR,   /* anything else: retriable */
} sk_oauth_verdict;

/* Reads the answer of the token endpoint (HTTP status and body). SK_OAUTH_OK fills *tok (free
 * with sk_oauth_token_clear); otherwise why says what was wrong (the OAuth error code and its
 * description when there is one; never the token). */
sk_oauth_verdict sk_oauth_parse_response(long status, const char *body, size_t len,
                                         sk_oauth_token *tok, char *why, size_t whylen);
void sk_oauth_token_clear(sk_oauth_token *tok);

/* Whether the access token names `audience` in its aud claim: 1 yes, 0 no (why then lists the
 * aud it has, never the token), -1 when the token is not a JWT with a JSON payload (opaque
 * tokens cannot be checked). */
int sk_oauth_token_has_audience(const char *token, const char *audience, char *why, size_t whylen);

/* ---- the service ---- */

typedef struct sk_oauth sk_oauth;
typedef struct sk_oauth_client sk_oauth_client;

typedef struct sk_oauth_opts {
    const char *name;      /* for logs and the metric label: "zeebe" */
    const char *token_url; /* http:// or https:// */
    const char *client_id;
    sk_secret *client_secret;   /* borrowed, outlives the client; subscribed to */
    const char *audience;       /* NULL or "": not sent */
    const char *scope;          /* NULL or "": not sent */
    int check_audience;         /* a JWT answered must name the audience in its aud claim (an
                                   authorization server that ignores the audience parameter,
                                   as Keycloak does for client credentials, would otherwise hand
                                   out a token the API refuses): else the answer is a refusal */
    int64_t refresh_ahead_ms;   /* refresh this long before expiry (at most a fifth of the
                                   lifetime); <= 0: 30 s */
    int64_t timeout_ms;         /* per request; <= 0: 10 s */
    int64_t backoff_initial_ms; /* <= 0: 1 s */
    int64_t backoff_max_ms;     /* <= 0: 60 s */
} sk_oauth_opts;

sk_oauth *sk_oauth_new(struct event_base *base, sk_metrics *m, char *err, size_t errlen);
/* Frees every client (their listeners are not called). Accepts NULL. */
void sk_oauth_free(sk_oauth *o);

/* TLS material (net/tls.h) for the requests started afterwards to an https:// token endpoint:
 * an sk_tls made from t, owned by the service, its files watched every reload_ms (<= 0: 10 s),
 * with the expiry metric of the TLS layer. 0, or -1 with err set (the old material stays). */
int sk_oauth_use_tls(sk_oauth *o, const struct sk_tls_opts *t, int64_t reload_ms, char *err,
                     size_t errlen);

/* The client for the options' (token URL, client id, audience, scope, check_audience): the existing
 * one or a new one, which asks for its first token at once (from the loop). NULL with err set on
 * bad options or out of memory. Owned by the service. */
sk_oauth_client *sk_oauth_client_get(sk_oauth *o, const sk_oauth_opts *opts, char *err,
                                     size_t errlen);

/* The current token when it is valid, else NULL (never blocks, never starts I/O except a
 * refresh that is due). Valid until the next loop turn. */
const char *sk_oauth_token_get(sk_oauth_client *c);
/* When the current token expires, epoch milliseconds (0 without a token): for peers that want
 * the lifetime with the token (librdkafka's OAUTHBEARER). */
int64_t sk_oauth_token_expires_wall_ms(const sk_oauth_client *c);
/* The peer refused `token` (UNAUTHENTICATED / 401): when it is still the current token it is
 * dropped and one refresh starts (no sooner than a second after the last token arrived). */
void sk_oauth_token_rejected(sk_oauth_client *c, const char *token);
/* 1 while a valid token is held; else 0 and why (the last error, or "no token yet"). */
int sk_oauth_ready(const sk_oauth_client *c, char *why, size_t whylen);
/* Token requests answered so far (any result): for tests. */
uint64_t sk_oauth_requests(const sk_oauth_client *c);

/* Called each time a new token arrives. At most a few listeners per client. */
typedef void (*sk_oauth_cb)(void *ud);
int sk_oauth_listen(sk_oauth_client *c, sk_oauth_cb cb, void *ud);
void sk_oauth_unlisten(sk_oauth_client *c, sk_oauth_cb cb, void *ud);

#endif
