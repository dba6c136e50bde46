/* grpc_probe: runs one scripted scenario of skiff's gRPC client against a conformance server
 * (sidecar/tests/grpc/conformance.proto) and prints what happened as JSON lines on stdout:
 *   {"event":"state","connected":1}
 *   {"event":"message","call":"A","index":0,"text":"...","payload_len":0,"metadata":{...}}
 *   {"event":"close","call":"A","code":"OK","message":"...","messages":5}
 *   {"event":"cancelled","call":"A"}          (the probe cancelled A; no close follows)
 *   {"event":"end"}
 * test_conformance.py drives it and checks this output and the server's own observations.
 *
 * usage: grpc_probe --target HOST:PORT --case NAME [--tag TAG] [--max-message N]
 *                   [--keepalive-ms N] [--keepalive-timeout-ms N] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <jansson.h>

#include "conformance.pb-c.h"
#include "grpc/grpc.h"

#define MAX_CALLS 64
#define UNARY "/skiff.conformance.Conformance/Unary"
#define STREAM "/skiff.conformance.Conformance/Stream"

typedef struct probe probe;
typedef struct pcall pcall;

struct pcall {
    probe *p;
    char name[8];
    sk_grpc_call *call;
    int messages;
    int open;
    /* Scenario hooks; either may be NULL. */
    void (*on_msg)(pcall *c, const Skiff__Conformance__Reply *r);
    void (*on_done)(pcall *c, int code);
};

struct probe {
    struct event_base *base;
    sk_grpc_channel *ch;
    const char *tag;
    pcall calls[MAX_CALLS];
    int ncalls;
    int open;
    int channel_freed;
    struct event *later;
    void (*later_fn)(probe *p);
};

typedef struct req_spec {
    const char *text;
    int count, sleep_ms, status, payload_size;
    const char *message;
} req_spec;

static void emit(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    if (s != NULL) {
        printf("%s\n", s);
        fflush(stdout);
        free(s);
    }
    json_decref(obj);
}

static void finish(probe *p)
{
    emit(json_pack("{s:s}", "event", "end"));
    event_base_loopbreak(p->base);
}

static void on_state(void *ud, int connected)
{
    (void)ud;
    emit(json_pack("{s:s,s:i}", "event", "state", "connected", connected));
}

static void on_message(void *ud, const uint8_t *msg, size_t len)
{
    pcall *c = ud;
    Skiff__Conformance__Reply *r = skiff__conformance__reply__unpack(NULL, len, msg);
    c->messages++;
    if (r == NULL) {
        emit(json_pack("{s:s,s:s}", "event", "undecodable", "call", c->name));
        return;
    }
    json_t *md = json_object();
    for (size_t i = 0; i < r->n_metadata; i++)
        json_object_set_new(md, r->metadata[i]->key, json_string(r->metadata[i]->value));
    emit(json_pack("{s:s,s:s,s:i,s:s,s:I,s:o}", "event", "message", "call", c->name, "index",
                   r->index, "text", r->text, "payload_len", (json_int_t)r->payload.len, "metadata",
                   md));
    if (c->on_msg != NULL)
        c->on_msg(c, r);
    skiff__conformance__reply__free_unpacked(r, NULL);
}

static void on_close(void *ud, int code, const char *message)
{
    pcall *c = ud;
    probe *p = c->p;
    c->open = 0;
    c->call = NULL;
    p->open--;
    emit(json_pack("{s:s,s:s,s:s,s:s,s:i}", "event", "close", "call", c->name, "code",
                   sk_grpc_code_name(code), "message", message, "messages", c->messages));
    if (c->on_done != NULL)
        c->on_done(c, code);
}

static pcall *start(probe *p, const char *method, const req_spec *spec, int64_t timeout_ms,
                    const sk_grpc_metadata *md, size_t nmd)
{
    Skiff__Conformance__Request req = SKIFF__CONFORMANCE__REQUEST__INIT;
    req.tag = (char *)p->tag;
    req.text = (char *)(spec->text ? spec->text : "");
    req.count = spec->count;
    req.sleep_ms = spec->sleep_ms;
    req.status = spec->status;
    req.message = (char *)(spec->message ? spec->message : "");
    req.payload_size = spec->payload_size;
    uint8_t buf[4096];
    size_t len = skiff__conformance__request__pack(&req, buf);
    if (p->ncalls == MAX_CALLS) {
        fprintf(stderr, "grpc_probe: too many calls\n");
        exit(2);
    }
    pcall *c = &p->calls[p->ncalls];
    /* A, B, ... Z, A1, B1, ... */
    c->name[0] = (char)('A' + p->ncalls % 26);
    c->name[1] = p->ncalls >= 26 ? (char)('0' + p->ncalls / 26) : '\0';
    c->name[2] = '\0';
    p->ncalls++;
    c->p = p;
    c->call =
        sk_grpc_call_start(p->ch, method, buf, len, timeout_ms, md, nmd, on_message, on_close, c);
    if (c->call == NULL) {
        emit(json_pack("{s:s,s:s}", "event", "start_failed", "call", c->name));
        return c;
    }
    c->open = 1;
    p->open++;
    return c;
}

static void cancel(pcall *c)
{
    sk_grpc_call_cancel(c->call);
    c->call = NULL;
    c->open = 0;
    c->p->open--;
    emit(json_pack("{s:s,s:s}", "event", "cancelled", "call", c->name));
}

static void later_cb(evutil_socket_t fd, short what, void *arg)
{
    probe *p = arg;
    (void)fd;
    (void)what;
    p->later_fn(p);
}

static void run_later(probe *p, int ms, void (*fn)(probe *p))
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    p->later_fn = fn;
    evtimer_add(p->later, &tv);
}

static void done_finish(pcall *c, int code)
{
    (void)code;
    finish(c->p);
}

static void done_when_all_closed(pcall *c, int code)
{
    (void)code;
    if (c->p->open == 0)
        finish(c->p);
}

/* Starts a unary call whose close ends the run. */
static void final_unary(probe *p, const char *text, int64_t timeout_ms)
{
    req_spec s = {.text = text};
    start(p, UNARY, &s, timeout_ms, NULL, 0)->on_done = done_finish;
}

/* ---- scenarios ---- */

static void case_unary(probe *p)
{
    final_unary(p, "hello", 5000);
}

static void case_stream(probe *p)
{
    req_spec s = {.text = "tick", .count = 5, .sleep_ms = 10};
    start(p, STREAM, &s, 5000, NULL, 0)->on_done = done_finish;
}

static void case_deadline(probe *p)
{
    req_spec s = {.text = "slow", .sleep_ms = 3000};
    start(p, UNARY, &s, 300, NULL, 0)->on_done = done_finish;
}

/* Cancels from inside its own on_message (re-entrant), then shows the channel still works. */
static void after_cancel(probe *p)
{
    final_unary(p, "after-cancel", 5000);
}

static void cancel_on_first(pcall *c, const Skiff__Conformance__Reply *r)
{
    (void)r;
    if (c->messages == 1) {
        cancel(c);
        run_later(c->p, 500, after_cancel);
    }
}

static void case_cancel(probe *p)
{
    req_spec s = {.text = "endless", .count = 1000, .sleep_ms = 50};
    start(p, STREAM, &s, 0, NULL, 0)->on_msg = cancel_on_first;
}

static void error_stream(pcall *c, int code)
{
    (void)code;
    req_spec s = {.text = "then-fail",
                  .count = 2,
                  .status = SK_GRPC_ABORTED,
                  .message = "stream broke: 50% done, r\xc3\xa9sum\xc3\xa9 \xe2\x98\x83 \"q\"\n"};
    start(c->p, STREAM, &s, 5000, NULL, 0)->on_done = done_finish;
}

static void case_error(probe *p)
{
    req_spec s = {.status = SK_GRPC_FAILED_PRECONDITION,
                  .message = "na\xc3\xafve caf\xc3\xa9 \xe2\x98\x83 100% %41 \ttab"};
    start(p, UNARY, &s, 5000, NULL, 0)->on_done = error_stream;
}

static void case_trailers_only(probe *p)
{
    req_spec s = {.status = SK_GRPC_NOT_FOUND, .message = "no such thing"};
    start(p, UNARY, &s, 5000, NULL, 0)->on_done = done_finish;
}

static void then_small(pcall *c, int code)
{
    (void)code;
    final_unary(c->p, "small", 5000);
}

static void case_max_size(probe *p)
{
    req_spec s = {.text = "big", .payload_size = 100000};
    start(p, UNARY, &s, 5000, NULL, 0)->on_done = then_small;
}

static void case_large(probe *p)
{
    req_spec s = {.text = "large", .payload_size = 1000000};
    start(p, UNARY, &s, 10000, NULL, 0)->on_done = done_finish;
}

static void case_metadata(probe *p)
{
    static const sk_grpc_metadata md[] = {
        {"authorization", "Bearer t0k3n"},
        {"x-skiff-test", "value-1"},
        {"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    };
    req_spec s = {.text = "md"};
    start(p, UNARY, &s, 5000, md, 3)->on_done = done_finish;
}

static void case_concurrent(probe *p)
{
    for (int i = 0; i < 40; i++) {
        char text[16];
        snprintf(text, sizeof text, "c%d", i);
        req_spec s = {.text = text, .count = 3, .sleep_ms = (i % 4) * 20};
        pcall *c = start(p, i % 2 ? STREAM : UNARY, &s, 10000, NULL, 0);
        c->on_done = done_when_all_closed;
    }
}

/* Frees the channel from inside a message callback with another call in flight. */
static void free_channel_inside(pcall *c, const Skiff__Conformance__Reply *r)
{
    (void)r;
    probe *p = c->p;
    if (c->messages == 2 && !p->channel_freed) {
        p->channel_freed = 1;
        sk_grpc_channel_free(p->ch);
        p->ch = NULL;
        emit(json_pack("{s:s}", "event", "channel_freed"));
        run_later(p, 300, finish);
    }
}

static void case_channel_free(probe *p)
{
    req_spec slow = {.text = "slow", .sleep_ms = 5000};
    start(p, UNARY, &slow, 0, NULL, 0);
    req_spec s = {.text = "s", .count = 1000, .sleep_ms = 50};
    start(p, STREAM, &s, 0, NULL, 0)->on_msg = free_channel_inside;
}

/* Server killed (or shut down) under a call: A closes, B is started from A's on_close while
 * the channel is down and must succeed once the server is back. */
static void restart_then_unary(pcall *c, int code)
{
    (void)code;
    final_unary(c->p, "after-restart", 20000);
}

static void case_restart(probe *p)
{
    req_spec s = {.text = "long", .count = 1000, .sleep_ms = 100};
    start(p, STREAM, &s, 0, NULL, 0)->on_done = restart_then_unary;
}

static void case_graceful(probe *p)
{
    req_spec s = {.text = "finishing", .sleep_ms = 1500};
    start(p, UNARY, &s, 20000, NULL, 0)->on_done = restart_then_unary;
}

static void case_keepalive(probe *p)
{
    req_spec s = {.text = "silent", .sleep_ms = 8000};
    start(p, UNARY, &s, 20000, NULL, 0)->on_done = restart_then_unary;
}

static const struct {
    const char *name;
    void (*run)(probe *p);
} cases[] = {
    {"unary", case_unary},
    {"stream", case_stream},
    {"deadline", case_deadline},
    {"cancel", case_cancel},
    {"error", case_error},
    {"trailers_only", case_trailers_only},
    {"max_size", case_max_size},
    {"large", case_large},
    {"metadata", case_metadata},
    {"concurrent", case_concurrent},
    {"channel_free", case_channel_free},
    {"restart", case_restart},
    {"graceful", case_graceful},
    {"keepalive", case_keepalive},
};

static const char *arg(int argc, char **argv, const char *name, const char *dflt)
{
    for (int i = 1; i + 1 < argc; i++) {
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    }
    return dflt;
}

int main(int argc, char **argv)
{
    const char *target = arg(argc, argv, "--target", NULL);
    const char *name = arg(argc, argv, "--case", NULL);
    void (*run)(probe *) = NULL;
    for (size_t i = 0; name != NULL && i < sizeof cases / sizeof cases[0]; i++) {
        if (strcmp(cases[i].name, name) == 0)
            run = cases[i].run;
    }
    if (target == NULL || run == NULL) {
        fprintf(stderr, "usage: grpc_probe --target HOST:PORT --case NAME [--tag T] "
                        "[--max-message N] [--keepalive-ms N] [--keepalive-timeout-ms N]\n");
        return 2;
    }
    static probe p;
    p.tag = arg(argc, argv, "--tag", name);
    p.base = event_base_new();
    p.later = evtimer_new(p.base, later_cb, &p);
    sk_grpc_channel_opts o = {
        .target = target,
        .max_message_bytes = (size_t)strtoull(arg(argc, argv, "--max-message", "0"), NULL, 10),
        .keepalive_ms = strtoll(arg(argc, argv, "--keepalive-ms", "0"), NULL, 10),
        .keepalive_timeout_ms = strtoll(arg(argc, argv, "--keepalive-timeout-ms", "0"), NULL, 10),
        .connect_timeout_ms = 2000,
        .reconnect_initial_ms = 100,
        .reconnect_max_ms = 1000,
    };
    p.ch = sk_grpc_channel_new(p.base, &o, on_state, &p);
    if (p.ch == NULL) {
        fprintf(stderr, "grpc_probe: bad target %s\n", target);
        return 2;
    }
    run(&p);
    event_base_dispatch(p.base);
    sk_grpc_channel_free(p.ch);
    event_free(p.later);
    event_base_free(p.base);
    return 0;
}
