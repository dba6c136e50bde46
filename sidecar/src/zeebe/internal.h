/* Shared between the Zeebe source's files: the source object, activated jobs and commands. */
#ifndef SK_ZEEBE_INTERNAL_H
#define SK_ZEEBE_INTERNAL_H

#include "grpc/grpc.h"
#include "zeebe/zeebe.h"
#include "core/backoff.h"

typedef struct worker worker;

struct sk_zeebe {
    struct event_base *base;
    sk_grpc_channel *ch;
    sk_dispatcher *d;
    const sk_config *cfg;
    worker **workers;
    size_t nworkers;
    size_t pending;   /* commands in flight or waiting to retry */
    struct cmd *cmds; /* commands in flight or waiting to retry */
    int stopping;
    int closing;
    int connected;
    sk_metric *m_requests; /* by method and code */
    sk_metric *m_jobs;     /* by job type and outcome */
    sk_metric *m_latency;  /* activation to command acknowledged, by job type */
    sk_metric *m_open;     /* jobs held, by job type */
};

/* An activated job while a handler works on it; owned by the dispatcher task as its ctx. */
typedef struct zjob {
    worker *w;
    const char *type;
    int64_t key;
    int32_t retries;
    int64_t deadline_ms;
    double activated_at;
} zjob;

/* Result of a job: sent with retries on transient errors until the job deadline. Takes
 * ownership of j. */
void sk_zeebe_complete(sk_zeebe *z, zjob *j, const char *variables);
void sk_zeebe_fail(sk_zeebe *z, zjob *j, int32_t retries, const char *message, int64_t backoff_ms,
                   const char *variables);
void sk_zeebe_throw(sk_zeebe *z, zjob *j, const char *code, const char *message,
                    const char *variables);
/* Drops every command still pending (skiff is exiting). */
void sk_zeebe_cmds_free(sk_zeebe *z);
/* Counts one gateway answer. */
void sk_zeebe_count_request(sk_zeebe *z, const char *method, int code);
/* Called by a command when its job is over, to free the worker's credit. */
void sk_zeebe_job_done(zjob *j);

double sk_zeebe_now(void);
int sk_zeebe_transient(int code);

#endif
