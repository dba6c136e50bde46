/* gateway_probe: runs one case of skiff's gRPC client against a real Zeebe gateway (grpc-java)
 * and prints one JSON line with what the client saw. tests/integration/test_gateway_grpc.py
 * drives it and checks the output against the engine's record stream.
 *
 * usage: gateway_probe --target HOST:PORT --case NAME [options]
 *
 * cases:
 *   topology    unary Topology                       -> code, topology{gatewayVersion, ...}
 *   activate    ActivateJobs (server streaming)      -> code, messages, jobs[...]
 *   deadline    ActivateJobs long poll (requestTimeout 10 s) with a 300 ms call timeout
 *               -> DEADLINE_EXCEEDED, elapsed_ms; then, after --linger-ms on the same
 *               connection, a Topology call -> after{...}
 *   cancel      ActivateJobs long poll (requestTimeout 20 s) cancelled after 300 ms with
 *               sk_grpc_call_cancel; the loop stays alive --linger-ms, then a Topology call on
 *               the same channel -> cancelled, closes_after_cancel (must be 0), after{...}
 *   not_found   CompleteJob on an unknown job key (the gateway answers trailers-only)
 *               -> NOT_FOUND and the gateway's message. The default key is the largest key of
 *               partition 1: Zeebe keys carry the partition id in their top bits (key >> 51),
 *               and for key 1 (partition 0) the gateway answers UNAVAILABLE without asking
 *               the broker.
 *   size_limit  ActivateJobs with a small channel max_message_bytes (default 2048) for a job
 *               whose response is larger -> RESOURCE_EXHAUSTED, then Topology on the same
 *               channel -> after{code OK}
 *
 * options (defaults per case in brackets):
 *   --type T                job type (activate, deadline, cancel, size_limit)
 *   --worker W              worker name ["gateway-probe"]
 *   --max-jobs N            maxJobsToActivate [1]
 *   --job-timeout-ms N      job activation timeout [300000]
 *   --request-timeout-ms N  ActivateJobs long-poll requestTimeout [activate 5000, deadline 10000,
 *                           cancel 20000, size_limit 5000]
 *   --call-timeout-ms N     our call deadline (grpc-timeout) [deadline 300, others 30000]
 *   --cancel-after-ms N     cancel: when to cancel [300]
 *   --linger-ms N           cancel, deadline: loop time on the open connection after the
 *                           cancel / the deadline before the Topology call [cancel 500,
 *                           deadline 0]
 *   --max-message N         channel receive limit [size_limit 2048, others the default]
 *   --job-key K             not_found: the job key [2^52 - 1]
 *   --max-run-ms N          give up (exit 1, "probe_timeout":true) [60000]
 *
 * Output fields: case, code, message, messages (response messages of the main call),
 * elapsed_ms (start to close of the main call), connects (times the channel became
 * connected), plus per case: topology, jobs [{key, type, worker, retries, deadline,
 * processInstanceKey, elementId, bpmnProcessId, variables_len, variables}], cancelled,
 * closes_after_cancel, after {code, message, gatewayVersion}. Exit 0 once the case ran.
 * Progress notes for a driver that must act at the right moment go to stderr, one line each:
 * "gateway_probe: cancelled" (cancel) and "gateway_probe: closed <CODE>" (deadline). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>

#include "gateway.pb-c.h"
#include "grpc/grpc.h"

#define M_ACTIVATE "/gateway_protocol.Gateway/ActivateJobs"
#define M_COMPLETE "/gateway_protocol.Gateway/CompleteJob"
#define M_TOPOLOGY "/gateway_protocol.Gateway/Topology"

typedef struct probe probe;
typedef struct gcall gcall;

struct gcall {
    probe *p;
    sk_grpc_call *call;
    int kind; /* 'A' ActivateJobs, 'T' Topology, 'C' CompleteJob */
    int messages;
    int closed;
    int code;
    char message[1100];
    int64_t t0, t1;
    json_t *jobs;     /* ActivateJobs: decoded jobs */
    json_t *topology; /* Topology: decoded response */
    void (*on_done)(gcall *c);
};

struct probe {
    struct event_base *base;
    sk_grpc_channel *ch;
    const char *name;
    const char *type;
    const char *worker;
    int64_t max_jobs, job_timeout_ms, request_timeout_ms, call_timeout_ms;
    int64_t cancel_after_ms, linger_ms, job_key;
    int connects;
    int finished;
    int cancelled;
    int closes_after_cancel;
    gcall main;  /* the case's call */
    gcall after; /* the follow-up Topology call (cancel, size_limit) */
    struct event *timer;
    void (*timer_fn)(probe *p);
    struct event *guard;
    json_t *out;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void finish(probe *p)
{
    if (p->finished)
        return;
    p->finished = 1;
    if (p->cancelled)
        json_object_set_new(p->out, "closes_after_cancel", json_integer(p->closes_after_cancel));
    json_object_set_new(p->out, "connects", json_integer(p->connects));
    char *s = json_dumps(p->out, JSON_COMPACT);
    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    event_base_loopbreak(p->base);
}

static void on_state(void *ud, int connected)
{
    probe *p = ud;
    if (connected)
        p->connects++;
}

/* ---- decoding ---- */

static json_t *job_json(const GatewayProtocol__ActivatedJob *j)
{
    const char *vars = j->variables ? j->variables : "";
    json_t *parsed = json_loads(vars, JSON_DECODE_ANY, NULL);
    return json_pack(
        "{s:I,s:s,s:s,s:i,s:I,s:I,s:s,s:s,s:I,s:o}", "key", (json_int_t)j->key, "type",
        j->type ? j->type : "", "worker", j->worker ? j->worker : "", "retries", j->retries,
        "deadline", (json_int_t)j->deadline, "processInstanceKey",
        (json_int_t)j->processinstancekey, "elementId", j->elementid ? j->elementid : "",
        "bpmnProcessId", j->bpmnprocessid ? j->bpmnprocessid : "", "variables_len",
        (json_int_t)strlen(vars), "variables", parsed != NULL ? parsed : json_string(vars));
}

static json_t *topology_json(const GatewayProtocol__TopologyResponse *t)
{
    json_t *brokers = json_array();
    for (size_t i = 0; i < t->n_brokers; i++) {
        const GatewayProtocol__BrokerInfo *b = t->brokers[i];
        json_array_append_new(brokers, json_pack("{s:i,s:s,s:i,s:s,s:i}", "nodeId", b->nodeid,
                                                 "host", b->host ? b->host : "", "port", b->port,
                                                 "version", b->version ? b->version : "",
                                                 "partitions", (int)b->n_partitions));
    }
    return json_pack("{s:s,s:i,s:i,s:i,s:o}", "gatewayVersion",
                     t->gatewayversion ? t->gatewayversion : "", "clusterSize", t->clustersize,
                     "partitionsCount", t->partitionscount, "replicationFactor",
                     t->replicationfactor, "brokers", brokers);
}

static void on_message(void *ud, const uint8_t *msg, size_t len)
{
    gcall *c = ud;
    c->messages++;
    if (c->kind == 'A') {
        GatewayProtocol__ActivateJobsResponse *r =
            gateway_protocol__activate_jobs_response__unpack(NULL, len, msg);
        if (r == NULL) {
            json_array_append_new(c->jobs, json_pack("{s:b}", "undecodable", 1));
            return;
        }
        for (size_t i = 0; i < r->n_jobs; i++)
            json_array_append_new(c->jobs, job_json(r->jobs[i]));
        gateway_protocol__activate_jobs_response__free_unpacked(r, NULL);
    } else if (c->kind == 'T') {
        GatewayProtocol__TopologyResponse *r =
            gateway_protocol__topology_response__unpack(NULL, len, msg);
        json_decref(c->topology);
        c->topology = r ? topology_json(r) : json_pack("{s:b}", "undecodable", 1);
        if (r != NULL)
            gateway_protocol__topology_response__free_unpacked(r, NULL);
    }
}

static void on_close(void *ud, int code, const char *message)
{
    gcall *c = ud;
    probe *p = c->p;
    if (p->finished)
        return; /* the channel is being freed */
    if (c == &p->main && p->cancelled) {
        p->closes_after_cancel++; /* must never happen: cancel means no on_close */
        return;
    }
    c->call = NULL;
    c->closed = 1;
    c->code = code;
    c->t1 = now_ms();
    snprintf(c->message, sizeof c->message, "%s", message);
    if (c->on_done != NULL)
        c->on_done(c);
}

/* ---- calls ---- */

static void start_call(probe *p, gcall *c, int kind, const char *method,
                       const ProtobufCMessage *req, int64_t timeout_ms, void (*on_done)(gcall *))
{
    size_t len = protobuf_c_message_get_packed_size(req);
    uint8_t *buf = malloc(len ? len : 1);
    if (buf == NULL) {
        fprintf(stderr, "gateway_probe: out of memory\n");
        exit(2);
    }
    protobuf_c_message_pack(req, buf);
    c->p = p;
    c->kind = kind;
    c->on_done = on_done;
    c->jobs = json_array();
    c->t0 = now_ms();
    c->call =
        sk_grpc_call_start(p->ch, method, buf, len, timeout_ms, NULL, 0, on_message, on_close, c);
    free(buf);
    if (c->call == NULL) {
        json_object_set_new(p->out, "error", json_string("sk_grpc_call_start returned NULL"));
        finish(p);
    }
}

static void start_activate(probe *p, void (*on_done)(gcall *))
{
    GatewayProtocol__ActivateJobsRequest r = GATEWAY_PROTOCOL__ACTIVATE_JOBS_REQUEST__INIT;
    r.type = (char *)p->type;
    r.worker = (char *)p->worker;
    r.timeout = p->job_timeout_ms;
    r.maxjobstoactivate = (int32_t)p->max_jobs;
    r.requesttimeout = p->request_timeout_ms;
    start_call(p, &p->main, 'A', M_ACTIVATE, &r.base, p->call_timeout_ms, on_done);
}

static void start_topology(probe *p, gcall *c, void (*on_done)(gcall *))
{
    GatewayProtocol__TopologyRequest r = GATEWAY_PROTOCOL__TOPOLOGY_REQUEST__INIT;
    start_call(p, c, 'T', M_TOPOLOGY, &r.base, 10000, on_done);
}

/* Main call's outcome into the output object. */
static void put_main(probe *p)
{
    gcall *c = &p->main;
    json_object_set_new(p->out, "code",
                        c->closed ? json_string(sk_grpc_code_name(c->code)) : json_null());
    json_object_set_new(p->out, "message", json_string(c->message));
    json_object_set_new(p->out, "messages", json_integer(c->messages));
    json_object_set_new(p->out, "elapsed_ms",
                        json_integer((json_int_t)((c->t1 ? c->t1 : now_ms()) - c->t0)));
    if (c->kind == 'A')
        json_object_set(p->out, "jobs", c->jobs);
    if (c->topology != NULL)
        json_object_set(p->out, "topology", c->topology);
}

static void after_done(gcall *c)
{
    probe *p = c->p;
    const char *version = "";
    if (c->topology != NULL)
        version = json_string_value(json_object_get(c->topology, "gatewayVersion"));
    json_object_set_new(p->out, "after",
                        json_pack("{s:s,s:s,s:s}", "code", sk_grpc_code_name(c->code), "message",
                                  c->message, "gatewayVersion", version ? version : ""));
    put_main(p);
    finish(p);
}

static void main_done(gcall *c)
{
    put_main(c->p);
    finish(c->p);
}

static void note(const char *what)
{
    fprintf(stderr, "gateway_probe: %s\n", what);
    fflush(stderr);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    probe *p = arg;
    (void)fd;
    (void)what;
    p->timer_fn(p);
}

static void run_later(probe *p, int64_t ms, void (*fn)(probe *p))
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    p->timer_fn = fn;
    evtimer_add(p->timer, &tv);
}

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
    probe *p = arg;
    (void)fd;
    (void)what;
    json_object_set_new(p->out, "probe_timeout", json_true());
    put_main(p);
    finish(p);
}

/* ---- cases ---- */

static void case_topology(probe *p)
{
    start_topology(p, &p->main, main_done);
}

static void case_activate(probe *p)
{
    start_activate(p, main_done);
}

static void then_topology(probe *p)
{
    start_topology(p, &p->after, after_done);
}

static void deadline_done(gcall *c)
{
    char what[64];
    snprintf(what, sizeof what, "closed %s", sk_grpc_code_name(c->code));
    note(what);
    run_later(c->p, c->p->linger_ms, then_topology);
}

static void case_deadline(probe *p)
{
    start_activate(p, deadline_done);
}

static void do_cancel(probe *p)
{
    gcall *c = &p->main;
    if (c->closed) { /* closed before we could cancel: report it as it is */
        json_object_set_new(p->out, "cancelled", json_false());
        put_main(p);
        finish(p);
        return;
    }
    sk_grpc_call_cancel(c->call);
    c->call = NULL;
    c->t1 = now_ms();
    p->cancelled = 1;
    json_object_set_new(p->out, "cancelled", json_true());
    note("cancelled");
    run_later(p, p->linger_ms, then_topology);
}

static void case_cancel(probe *p)
{
    start_activate(p, main_done); /* main_done only if the gateway answers before the cancel */
    run_later(p, p->cancel_after_ms, do_cancel);
}

static void size_limit_done(gcall *c)
{
    start_topology(c->p, &c->p->after, after_done);
}

static void case_size_limit(probe *p)
{
    start_activate(p, size_limit_done);
}

static void case_not_found(probe *p)
{
    GatewayProtocol__CompleteJobRequest r = GATEWAY_PROTOCOL__COMPLETE_JOB_REQUEST__INIT;
    r.jobkey = p->job_key;
    r.variables = "{}";
    start_call(p, &p->main, 'C', M_COMPLETE, &r.base, p->call_timeout_ms, main_done);
}

static const struct {
    const char *name;
    void (*run)(probe *p);
    int64_t request_timeout_ms, call_timeout_ms, linger_ms;
    size_t max_message;
} cases[] = {
    {"topology", case_topology, 0, 30000, 0, 0},
    {"activate", case_activate, 5000, 30000, 0, 0},
    {"deadline", case_deadline, 10000, 300, 0, 0},
    {"cancel", case_cancel, 20000, 30000, 500, 0},
    {"not_found", case_not_found, 0, 30000, 0, 0},
    {"size_limit", case_size_limit, 5000, 30000, 0, 2048},
};

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return dflt;
}

static int64_t num(int argc, char **argv, const char *name, int64_t dflt)
{
    const char *v = arg(argc, argv, name, NULL);
    return v != NULL ? strtoll(v, NULL, 10) : dflt;
}

int main(int argc, char **argv)
{
    const char *target = arg(argc, argv, "--target", NULL);
    const char *name = arg(argc, argv, "--case", NULL);
    size_t ci = sizeof cases / sizeof cases[0];
    for (size_t i = 0; name != NULL && i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(cases[i].name, name) == 0)
            ci = i;
    }
    if (target == NULL || ci == sizeof cases / sizeof cases[0]) {
        fprintf(stderr, "usage: gateway_probe --target HOST:PORT --case "
                        "topology|activate|deadline|cancel|not_found|size_limit [--type T] "
                        "[--worker W] [--max-jobs N] [--job-timeout-ms N] "
                        "[--request-timeout-ms N] [--call-timeout-ms N] [--cancel-after-ms N] "
                        "[--linger-ms N] [--max-message N] [--job-key K] [--max-run-ms N]\n");
        return 2;
    }
    static probe p;
    p.name = name;
    p.type = arg(argc, argv, "--type", "gateway-probe");
    p.worker = arg(argc, argv, "--worker", "gateway-probe");
    p.max_jobs = num(argc, argv, "--max-jobs", 1);
    p.job_timeout_ms = num(argc, argv, "--job-timeout-ms", 300000);
    p.request_timeout_ms = num(argc, argv, "--request-timeout-ms", cases[ci].request_timeout_ms);
    p.call_timeout_ms = num(argc, argv, "--call-timeout-ms", cases[ci].call_timeout_ms);
    p.cancel_after_ms = num(argc, argv, "--cancel-after-ms", 300);
    p.linger_ms = num(argc, argv, "--linger-ms", cases[ci].linger_ms);
    p.job_key = num(argc, argv, "--job-key", ((int64_t)1 << 52) - 1);
    p.out = json_pack("{s:s,s:s}", "case", name, "target", target);
    p.base = event_base_new();
    p.timer = evtimer_new(p.base, timer_cb, &p);
    p.guard = evtimer_new(p.base, guard_cb, &p);
    sk_grpc_channel_opts o = {
        .target = target,
        .max_message_bytes =
            (size_t)num(argc, argv, "--max-message", (int64_t)cases[ci].max_message),
        .connect_timeout_ms = 5000,
        .reconnect_initial_ms = 200,
        .reconnect_max_ms = 2000,
    };
    p.ch = sk_grpc_channel_new(p.base, &o, on_state, &p);
    if (p.base == NULL || p.timer == NULL || p.guard == NULL || p.out == NULL || p.ch == NULL) {
        fprintf(stderr, "gateway_probe: cannot set up (bad target %s?)\n", target);
        return 2;
    }
    int64_t max_run = num(argc, argv, "--max-run-ms", 60000);
    struct timeval gtv = {(time_t)(max_run / 1000), (suseconds_t)(max_run % 1000) * 1000};
    evtimer_add(p.guard, &gtv);
    cases[ci].run(&p);
    event_base_dispatch(p.base);
    int timed_out = json_is_true(json_object_get(p.out, "probe_timeout"));
    p.finished = 1;
    sk_grpc_channel_free(p.ch); /* open calls close with CANCELLED, ignored above */
    json_decref(p.main.jobs);
    json_decref(p.main.topology);
    json_decref(p.after.jobs);
    json_decref(p.after.topology);
    json_decref(p.out);
    event_free(p.timer);
    event_free(p.guard);
    event_base_free(p.base);
    return timed_out ? 1 : 0;
}
