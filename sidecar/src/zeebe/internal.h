/* Shared between the Zeebe source's files: the source object, the activation workers, activated
 * jobs and the gateway commands.
 *
 *   worker.c    one worker per job type: long polling and the job stream, metrics, lifecycle
 *   jobs.c      an activated job from the wire to its dispatcher task and back (source ops,
 *               deadline watch, extend)
 *   commands.c  CompleteJob, FailJob, ThrowError, UpdateJobTimeout, PublishMessage, retried on
 *               transient errors until their deadline
 *   publish.c   the handlers' publish_message call */
#ifndef SK_ZEEBE_INTERNAL_H
#define SK_ZEEBE_INTERNAL_H

#include "core/backoff.h"
#include "gateway.pb-c.h"
#include "grpc/grpc.h"
#include "trace/trace.h"
#include "zeebe/zeebe.h"

struct event;

struct sk_zeebe {
    struct event_base *base;
    sk_grpc_channel *ch;
    struct sk_tls *tls;           /* zeebe.tls: the gateway's TLS material, else NULL */
    struct sk_grpc_transport *tp; /* its transport, else NULL (h2c) */
    sk_oauth_client *token;       /* NULL: no credentials */
    sk_grpc_auth auth;            /* the channel's credentials, from token */
    char *bearer;                 /* "Bearer <token>" last handed to the channel */
    sk_dispatcher *d;
    const sk_config *cfg;
    struct worker **workers;
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
    sk_metric *m_backoff;  /* activation retry delay in force, by job type */
    sk_metric *m_streamed; /* jobs received from the job stream, by job type */
    sk_metric *m_streams;  /* job streams open, by job type */
    sk_metric *m_overdue;  /* deadlines passed while a handler held the job, by job type */
    sk_metric *m_unenc;    /* handler results whose variables could not be encoded */
    sk_metric *m_cmd_s;    /* gateway command attempt latency, by method */
};

/* The activation of one job type. */
typedef struct worker {
    sk_zeebe *z;
    const sk_job_type_config *jc;
    const char *type;    /* jc->type */
    sk_grpc_call *call;  /* the pending ActivateJobs long poll */
    struct event *timer; /* next poll (backoff or next turn) */
    sk_backoff bo;
    int64_t open;    /* jobs of this type held by skiff */
    size_t received; /* jobs received by the pending poll */
    /* job stream (zeebe.streaming) */
    sk_grpc_call *stream;
    int stream_paused;          /* no free credit: flow control holds the gateway back */
    struct event *stream_timer; /* reopen after an error, or recycle */
    sk_backoff stream_bo;
    sk_series *m_open, *m_backoff, *m_streamed, *m_streams;
} worker;

/* An activated job from the moment it is read off the wire until its command is acknowledged.
 * While a handler holds it, it is its dispatcher task's ctx; then its result command owns it.
 * An UpdateJobTimeout in flight holds a reference. */
typedef struct zjob {
    worker *w;
    const char *type;
    int64_t key;
    int32_t retries;
    int64_t deadline_ms;    /* epoch ms, as the gateway said (moved by extend) */
    double activated_at;    /* sk_mono_s() */
    struct event *deadline; /* fires at deadline_ms while a handler holds the job */
    int held;               /* a handler (or the dispatcher queue) has it */
    int gone;               /* its life is over; only references keep it */
    int refs;
    char id[48]; /* task id: "z-<key>", "z-<key>-<deadline>" for a second activation */
} zjob;

/* ---- jobs.c ---- */

/* Turns a job read off the wire (at received_at, sk_mono_s()) into a dispatcher task. */
void sk_zeebe_submit(worker *w, const GatewayProtocol__ActivatedJob *job, double received_at);
/* Gives a streamed job that no handler can take back to the engine at once. */
void sk_zeebe_yield(worker *w, const GatewayProtocol__ActivatedJob *job);
/* Ends a job's life: frees its credit and drops the lifecycle reference. */
void sk_zeebe_job_end(zjob *j);
void sk_zeebe_job_release(zjob *j);
/* The engine moved the job's deadline to timeout_ms from now (UpdateJobTimeout): so does
 * skiff, and its watch if a handler holds the job. */
void sk_zeebe_job_extended(zjob *j, int64_t timeout_ms);
/* The engine no longer has this held job: tells its handler, if it can be told. */
void sk_zeebe_job_gone(zjob *j);

/* ---- worker.c ---- */

/* A job of w has ended: free credits may let the worker poll or reopen its stream. */
void sk_zeebe_worker_credit(worker *w);
void sk_zeebe_count_request(sk_zeebe *z, const char *method, int code);
/* One attempt of a gateway command took seconds (skiff_zeebe_command_duration_seconds). */
void sk_zeebe_observe_command(sk_zeebe *z, const char *method, double seconds);
void sk_zeebe_count_job(sk_zeebe *z, const char *type, const char *outcome);

/* ---- commands.c ---- */

/* Result commands: take over the job's life (sk_zeebe_job_end once acknowledged or given
 * up). outcome: the skiff_zeebe_jobs_total label counted when the gateway acknowledges. */
void sk_zeebe_complete(sk_zeebe *z, zjob *j, const char *variables);
void sk_zeebe_fail(sk_zeebe *z, zjob *j, int32_t retries, const char *message, int64_t backoff_ms,
                   const char *variables, const char *outcome);
void sk_zeebe_throw(sk_zeebe *z, zjob *j, const char *code, const char *message,
                    const char *variables);
/* UpdateJobTimeout for a held job; answers reply (may be NULL) with the new deadline. */
void sk_zeebe_update_timeout(sk_zeebe *z, zjob *j, int64_t timeout_ms, sk_reply *reply);
/* PublishMessage: answers reply with the message key, retried on transient errors until
 * deadline_ms (epoch ms). Takes req (a packed PublishMessageRequest) and span (its CLIENT span
 * from sk_zeebe_cmd_span; NULL: a child of the active span). */
#define SK_ZEEBE_PUBLISH_METHOD "/gateway_protocol.Gateway/PublishMessage"
void sk_zeebe_publish_send(sk_zeebe *z, uint8_t *req, size_t len, int64_t deadline_ms,
                           sk_reply *reply, sk_span *span);
/* The CLIENT span of a command to method ("/service/Method"), named "service/Method" with the
 * rpc.* and server.* attributes: child of parent, else of the active span, else a new trace.
 * NULL when out of memory. */
sk_span *sk_zeebe_cmd_span(sk_zeebe *z, const char *method, const sk_trace_ctx *parent);
/* Drops every command still pending (skiff is exiting). */
void sk_zeebe_cmds_free(sk_zeebe *z);
int sk_zeebe_transient(int code);

/* ---- publish.c ---- */

/* The `publish_message` call method (sk_method_fn; ud is the sk_zeebe). */
void sk_zeebe_publish_call(void *ud, const json_t *params, sk_reply *reply);

#endif
