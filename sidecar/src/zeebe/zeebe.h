/* Zeebe source: one gateway channel, one activation loop per configured job type, and the job
 * commands (CompleteJob, FailJob, ThrowError) that carry handler results back. Loop thread
 * only. Jobs become dispatcher tasks; every activated job ends in exactly one command sent to
 * the gateway (or, if the gateway rejects it as NOT_FOUND, counted as lost by the engine). */
#ifndef SK_ZEEBE_H
#define SK_ZEEBE_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/metrics.h"
#include "handler/dispatcher.h"
#include "secrets/oauth.h"

struct event_base;
typedef struct sk_zeebe sk_zeebe;

/* token: NULL, or the OAuth client whose token goes as `authorization: Bearer` on every
 * gateway call (calls wait for a token; one refresh and one retry on UNAUTHENTICATED); it must
 * outlive the source. */
sk_zeebe *sk_zeebe_new(struct event_base *base, const sk_config *cfg, sk_dispatcher *d,
                       sk_metrics *metrics, sk_oauth_client *token, char *err, size_t errlen);
/* Gateway reachable (HTTP/2 connection up). */
int sk_zeebe_connected(const sk_zeebe *z);
/* Why the gateway is not connected ("" when no attempt failed yet); for readiness. */
const char *sk_zeebe_last_error(const sk_zeebe *z);
/* Shutdown: stops activating (cancels pending long polls); commands keep going. */
void sk_zeebe_stop(sk_zeebe *z);
/* Job commands sent or waiting for a retry. */
size_t sk_zeebe_pending(const sk_zeebe *z);
void sk_zeebe_free(sk_zeebe *z);

#endif
