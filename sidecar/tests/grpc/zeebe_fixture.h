/* The Zeebe source under test, shared by test_zeebe_worker.c and test_zeebe_jobs.c: a scripted
 * in-process HTTP/2 server (fake_h2_server) plays the gateway, a real dispatcher routes jobs to
 * a handler session driven over a socketpair as a handler would. The gateway records every
 * request (decoded with the generated protobuf-c code) and answers each with the next scripted
 * reply of its method: ActivateJobs with jobs, the job commands, UpdateJobTimeout and
 * PublishMessage with a status, and StreamActivatedJobs with a stream kept open that the test
 * pushes jobs on, or ends, whenever it likes. Everything runs on the test's own loop. */
#ifndef SK_TEST_ZEEBE_FIXTURE_H
#define SK_TEST_ZEEBE_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "core/config.h"
#include "core/metrics.h"
#include "fake_h2_server.h"
#include "gateway.pb-c.h"
#include "grpc/grpc.h"
#include "handler/dispatcher.h"
#include "handler/session.h"
#include "zeebe/zeebe.h"

/* The gateway methods the fake knows. */
enum { M_ACTIVATE, M_COMPLETE, M_FAIL, M_THROW, M_UPDATE, M_PUBLISH, M_STREAM, M_COUNT };

#define HOLD (-1) /* a scripted answer: none (a unary request stays open; a stream opens) */
#define MAX_SCRIPT 8
#define MAX_REQS 64
#define MAX_JOBS 16
#define MAX_PUSH 16 /* job streams per test */
/* libevent times timers with a coarse monotonic clock: one may fire a tick before the exact
 * delay measured with gettimeofday. */
#define SLACK 10
/* The key the fake gateway gives every published message: 2^53 + 3, beyond a double. */
#define PUBLISH_KEY 9007199254740995LL

/* A job the fake gateway activates. deadline_in_ms 0: one minute. */
typedef struct job_spec {
    int64_t key;
    int32_t retries;
    int64_t deadline_in_ms;
    const char *variables;
    const char *headers;
} job_spec;

/* How the gateway answers one request. A StreamActivatedJobs request answered with HOLD or OK
 * gets its response headers and stays open, jobs (if any) pushed at once; another code ends
 * it at once (trailers-only). */
typedef struct reply {
    int code; /* gRPC status or HOLD */
    const job_spec *jobs;
    size_t njobs;
} reply;

/* A server-streaming response: bytes queued for the data provider, which defers when it has
 * none (the stream stays open) and ends with grpc-status end_code once end_code >= 0. */
typedef struct push {
    fstream *st;
    uint8_t *out;
    size_t len, cap, off;
    int end_code;
} push;

typedef struct seen { /* one request the gateway received */
    fstream *st;
    int method;
    double at_ms;
    push *push; /* StreamActivatedJobs only */
} seen;

typedef struct zf_fixture {
    struct event_base *base;
    fserver *srv;
    sk_metrics *metrics;
    sk_dispatcher *d;
    sk_zeebe *z;
    sk_config cfg;
    sk_job_type_config job; /* the one job type, "work" */
    char address[32];
    char *types[2];
    /* the handler */
    sk_session *s;
    int fd, closed;
    uint8_t in[65536];
    size_t inlen;
    /* the gateway's script and what it saw */
    reply script[M_COUNT][MAX_SCRIPT];
    int nscript[M_COUNT], next[M_COUNT], dflt[M_COUNT];
    seen reqs[MAX_REQS];
    int nreqs;
    push pushes[MAX_PUSH];
    int npushes;
    int64_t last_deadline; /* of the last job handed out */
    int garble;            /* ActivateJobs answers carry bytes that are not protobuf */
} zf_fixture;

/* cmocka setup / teardown: a fixture with one job type "work" (max_jobs_active 32, timeout
 * 30 s, request timeout 20 s, backoff 50..200 ms), ActivateJobs and StreamActivatedJobs held,
 * every other method answered OK. */
int zf_setup(void **state);
int zf_teardown(void **state);
/* Starts the source with fx->cfg and fx->job as the test left them. */
void zf_start(zf_fixture *fx);

/* ---- the loop ---- */
double zf_now_ms(void);
void zf_run_for(struct event_base *base, int ms);
/* Runs the loop until the gateway has seen n requests of a method (or ms pass). */
int zf_wait_reqs(zf_fixture *fx, int method, int n, int ms);
/* Runs the loop until no command is pending (or ms pass). */
int zf_wait_idle(zf_fixture *fx, int ms);

/* ---- the gateway ---- */
int zf_count(const zf_fixture *fx, int method);
/* The i-th request of a method (fails the test if it never arrived). */
seen *zf_nth(zf_fixture *fx, int method, int i);
void zf_then(zf_fixture *fx, int method, int code);
void zf_then_jobs(zf_fixture *fx, int method, const job_spec *jobs, size_t n);
/* Answers a held unary request now (ActivateJobs: with jobs). */
void zf_answer_later(zf_fixture *fx, seen *r, int code);
void zf_answer_jobs_later(zf_fixture *fx, seen *r, const job_spec *jobs, size_t n);
/* The value of a request header ("" when absent), valid until the next call. */
const char *zf_header(const seen *r, const char *name);
/* Pushes jobs on the i-th job stream / ends it with a grpc-status. */
void zf_push(zf_fixture *fx, int i, const job_spec *jobs, size_t n);
void zf_end_stream(zf_fixture *fx, int i, int code);
/* Runs the loop until the i-th request of a method has closed (or ms pass); 1 if it has. */
int zf_wait_closed(zf_fixture *fx, int method, int i, int ms);
/* The i-th request of a method, decoded; free with protobuf_c_message_free_unpacked. */
void *zf_request(zf_fixture *fx, int method, int i, const ProtobufCMessageDescriptor *desc);
GatewayProtocol__ActivateJobsRequest *zf_activate_req(zf_fixture *fx, int i);
int32_t zf_max_jobs(zf_fixture *fx, int i);
GatewayProtocol__CompleteJobRequest *zf_complete_req(zf_fixture *fx, int i);
/* The FailJob request for a job key. */
GatewayProtocol__FailJobRequest *zf_fail_req(zf_fixture *fx, int64_t key);
GatewayProtocol__ThrowErrorRequest *zf_throw_req(zf_fixture *fx, int i);
/* Asserts that a JSON text equals the expected JSON text. */
void zf_assert_json(const char *text, const char *expected);
/* Asserts that got (ngot strings) equals expected (n strings), in order. */
void zf_assert_strings(char **got, size_t ngot, const char *const *expected, size_t n);

/* ---- the handler ---- */
void zf_send_json(zf_fixture *fx, const char *json);
/* Next frame from skiff to the handler, or NULL when none comes within ms. */
json_t *zf_next_frame(zf_fixture *fx, int ms);
json_t *zf_expect_frame(zf_fixture *fx, const char *type);
/* Connects a handler serving "work" with this capacity (features: a JSON array text or NULL)
 * and completes the handshake. */
void zf_join(zf_fixture *fx, int capacity);
void zf_join_features(zf_fixture *fx, int capacity, const char *features);
/* Receives the next task frame and checks its id. */
void zf_expect_task(zf_fixture *fx, const char *id);
/* Receives a reply frame for ref: its result when ok, else checks the error code (NULL). */
json_t *zf_expect_reply(zf_fixture *fx, const char *ref, const char *error_code);

/* ---- metrics ---- */
/* The value of one rendered sample, e.g. `skiff_zeebe_jobs_overdue_total{job_type="work"}`
 * (a histogram's _count); 0 when the series does not exist. */
double zf_sample(zf_fixture *fx, const char *sample);
/* skiff_zeebe_jobs_total{job_type="work",outcome=...} */
double zf_jobs_total(zf_fixture *fx, const char *outcome);

#endif
