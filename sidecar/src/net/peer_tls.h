/* The TLS settings of each peer as the configuration gives them, the file check of `skiff config
 * check` and start-up, and the plaintext report (WARN lines and skiff_plaintext_peers). */
#ifndef SK_PEER_TLS_H
#define SK_PEER_TLS_H

#include <stdio.h>

#include "core/config.h"
#include "core/metrics.h"
#include "net/tls.h"

/* Fills o for peer ("zeebe", "kafka", "schema_registry", "oauth": the token endpoint, "otlp": the
 * OTLP receiver, ALPN h2 for OTLP/gRPC); the
 * strings point into cfg. Returns 1 when the peer's connection uses TLS, 0 when it does not (o
 * is then all NULL but peer). */
int sk_peer_tls_opts(const sk_config *cfg, const char *peer, sk_tls_opts *o);

/* Loads the TLS material of every peer that uses TLS; writes one line per peer that fails
 * (naming the file and why) to out (may be NULL). Returns the number of failures. */
int sk_peer_tls_check(const sk_config *cfg, FILE *out);

/* Logs each plaintext peer at WARN (unless security.plaintext is allow) and sets
 * skiff_plaintext_peers{peer} to 1 for it, 0 for the others. 0, or -1 on allocation failure. */
int sk_peer_plaintext_report(const sk_config *cfg, sk_metrics *m);

#endif
