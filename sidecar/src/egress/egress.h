/* The egress proxy: handlers' outbound HTTP calls (LLM providers, internal APIs) through skiff.
 *
 * An HTTP/1.1 listener on egress.listen (libevent's evhttp on skiff's loop) takes
 * `http://<listen>/<route>/<rest>` and forwards it to `<upstream of route><rest>` with libcurl
 * on the loop (net/http.h, streaming), injecting the route's credential (the handler's own
 * Authorization and credential header are dropped), a traceparent of a CLIENT span per call and
 * passing the response back as it arrives. Each call gets one JSON log line (component
 * "egress") and the skiff_egress_* metrics. Every refusal is an HTTP status with a JSON body
 * {"error":{"type","message","route"}} (docs/operations.md, "Egress"). Loop thread only. */
#ifndef SK_EGRESS_H
#define SK_EGRESS_H

#include <stddef.h>
#include <stdio.h>

#include "core/config.h"
#include "core/metrics.h"

struct event_base;
typedef struct sk_egress sk_egress;

/* The routes of cfg (cfg must outlive the proxy): credentials (file: read and watched,
 * vault: resolved by the installed Vault client), TLS material, metrics. NULL with err set on
 * failure; NULL with err "" when egress.listen is empty (egress off). */
sk_egress *sk_egress_new(struct event_base *base, const sk_config *cfg, sk_metrics *m, char *err,
                         size_t errlen);
/* The OAuth token service for the routes with oauth_audience: each gets the client of tmpl
 * (token URL, client id and secret; copied by the service) with its audience. Before start.
 * Without it such a route makes sk_egress_start fail. 0, or -1 with err set. */
struct sk_oauth;
struct sk_oauth_opts;
int sk_egress_set_oauth(sk_egress *e, struct sk_oauth *o, const struct sk_oauth_opts *tmpl,
                        char *err, size_t errlen);
/* For `skiff config check`: loads each https route's TLS material once (its ca_file) and
 * writes one line per route that cannot be used to out. Returns the number of problems. */
int sk_egress_check(const sk_config *cfg, FILE *out);
/* Binds egress.listen and starts taking calls. 0, or -1 with err set. */
int sk_egress_start(sk_egress *e, char *err, size_t errlen);
/* The port listened on (egress.listen may say 0), 0 before start. */
int sk_egress_port(const sk_egress *e);
/* A line per route for /readyz details: "egress route <name>: breaker <state>". Never
 * affects readiness. Writes at most n bytes (NUL-terminated) into out. */
void sk_egress_details(const sk_egress *e, char *out, size_t n);
/* Stops taking new connections; calls in flight go on. */
void sk_egress_stop(sk_egress *e);
/* End of the shutdown grace period: every call in flight is ended (upstream cancelled; 503
 * `shutting_down` to a handler still waiting for a status, a started response cut). The loop
 * must run on for the answers to leave. */
void sk_egress_abort_all(sk_egress *e);
/* Calls in flight. */
size_t sk_egress_pending(const sk_egress *e);
/* Ends the calls in flight (503 to handlers still waiting for a status) and frees. NULL ok. */
void sk_egress_free(sk_egress *e);

#endif
