/* Unit tests of the C SDK: the frame codec, the poll-loop session over a socketpair (the test
 * plays skiff), and the blocking handler against a listening socket. The .c is included to
 * reach its static functions. */
#include "../skiff_handler.c"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

static void put_frame(int fd, const char *json)
{
    size_t n = strlen(json);
    unsigned char h[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                          (unsigned char)(n >> 8), (unsigned char)n};
    assert_int_equal(write(fd, h, 4), 4);
    assert_int_equal(write(fd, json, n), (ssize_t)n);
}

/* Reads one frame the SDK sent (blocking). */
static json_t *get_frame(int fd)
{
    unsigned char h[4];
    assert_int_equal(recv(fd, h, 4, MSG_WAITALL), 4);
    size_t n = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
    char *body = malloc(n);
    assert_int_equal(recv(fd, body, n, MSG_WAITALL), (ssize_t)n);
    json_t *f = json_loadb(body, n, JSON_ALLOW_NUL, NULL);
    free(body);
    assert_non_null(f);
    return f;
}

static const char *type_of(json_t *f)
{
    return json_string_value(json_object_get(f, "type"));
}

static void test_parse_needs_whole_frame(void **state)
{
    (void)state;
    const unsigned char f[] = "\x00\x00\x00\x19{\"type\":\"ping\",\"ref\":\"7\"}";
    json_t *out;
    size_t used;
    skh_error e;
    assert_int_equal(skh_frame_parse(f, 3, 100, &out, &used, &e), 0);
    assert_int_equal(skh_frame_parse(f, 28, 100, &out, &used, &e), 0);
    assert_int_equal(skh_frame_parse(f, 29, 100, &out, &used, &e), 1);
    assert_int_equal(used, 29);
    assert_string_equal(type_of(out), "ping");
    json_decref(out);
}

static void test_parse_rejects_bad_lengths_and_bodies(void **state)
{
    (void)state;
    json_t *out;
    size_t used;
    skh_error e;
    assert_int_equal(skh_frame_parse((const unsigned char *)"\0\0\0\0", 4, 100, &out, &used, &e),
                     -1);
    assert_int_equal(skh_frame_parse((const unsigned char *)"\0\0\1\0", 4, 100, &out, &used, &e),
                     -1);
    assert_string_equal(e.code, "malformed_frame");
    assert_int_equal(skh_frame_parse((const unsigned char *)"\0\0\0\2[]", 6, 100, &out, &used, &e),
                     -2);
    assert_int_equal(used, 6);
    assert_int_equal(
        skh_frame_parse((const unsigned char *)"\0\0\0\x0a{\"type\":1}", 14, 100, &out, &used, &e),
        -2);
    const unsigned char dup[] = "\0\0\0\x17{\"type\":\"a\",\"type\":\"b\"}";
    assert_int_equal(skh_frame_parse(dup, sizeof dup - 1, 100, &out, &used, &e), -2);
}

static void test_encode_is_compact_and_bounded(void **state)
{
    (void)state;
    json_t *f = json_pack("{s:s,s:s}", "type", "ping", "ref", "7");
    size_t n;
    skh_error e;
    char *data = skh_frame_encode(f, 100, &n, &e);
    assert_int_equal(n, 29);
    assert_memory_equal(data, "\x00\x00\x00\x19{\"type\":\"ping\",\"ref\":\"7\"}", 29);
    free(data);
    assert_null(skh_frame_encode(f, 10, &n, &e));
    assert_string_equal(e.code, SKH_E_INVALID_PARAMS);
    json_decref(f);
}

/* A connection on one end of a socketpair; the test holds the other end as skiff. */
typedef struct pair {
    skh_conn *c;
    int skiff;
} pair;

static pair open_pair(const char *const *jobs, const char *const *topics)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    skh_options o = {.name = "t", .capacity = 2, .job_types = jobs, .topics = topics};
    pair p = {.c = skh_conn_new(&o, NULL), .skiff = sv[1]};
    assert_non_null(p.c);
    fcntl(sv[0], F_SETFL, O_NONBLOCK);
    p.c->fd = sv[0];
    p.c->state = ST_HELLO;
    return p;
}

static void close_pair(pair *p)
{
    skh_conn_free(p->c);
    close(p->skiff);
}

/* Runs process() until it reports an event (the test wrote everything before). */
static int next_event(skh_conn *c, skh_event *ev)
{
    for (int i = 0; i < 100; i++) {
        if (skh_conn_process(c, ev))
            return ev->type;
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        poll(&pfd, 1, 100);
    }
    return SKH_EV_NONE;
}

static const char *const JOBS[] = {"score", NULL};
static const char *const TOPICS[] = {"t.v1", NULL};

static void welcome(pair *p, const char *features)
{
    char w[256];
    snprintf(w, sizeof w,
             "{\"type\":\"welcome\",\"version\":1,\"session\":\"s-1\",\"max_frame\":400,"
             "\"features\":%s,\"methods\":[\"publish_message\"]}",
             features);
    put_frame(p->skiff, w);
    skh_event ev;
    assert_int_equal(next_event(p->c, &ev), SKH_EV_WELCOME);
    skh_event_clear(&ev);
}

static void test_hello_member_order(void **state)
{
    (void)state;
    skh_options o = {.name = "n", .capacity = 3, .job_types = JOBS, .topics = TOPICS};
    skh_conn *c = skh_conn_new(&o, NULL);
    json_t *h = hello_frame(c);
    char *text = json_dumps(h, JSON_COMPACT);
    assert_string_equal(text, "{\"type\":\"hello\",\"version\":1,\"name\":\"n\",\"capacity\":3,"
                              "\"job_types\":[\"score\"],\"topics\":[\"t.v1\"],"
                              "\"features\":[\"cancel\",\"batch\"]}");
    free(text);
    json_decref(h);
    skh_conn_free(c);
    o.no_batch = 1;
    c = skh_conn_new(&o, NULL);
    h = hello_frame(c);
    json_t *only_cancel = json_pack("[s]", "cancel");
    assert_true(json_equal(json_object_get(h, "features"), only_cancel));
    json_decref(only_cancel);
    json_decref(h);
    skh_conn_free(c);
}

static void test_conn_new_needs_a_route(void **state)
{
    (void)state;
    skh_options o = {.name = "n", .capacity = 1};
    skh_error e;
    assert_null(skh_conn_new(&o, &e));
    assert_string_equal(e.code, SKH_E_INVALID_ARGUMENT);
    o.capacity = 0;
    o.job_types = JOBS;
    assert_null(skh_conn_new(&o, &e));
}

static void test_session_task_result_and_ping(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[\"extend\"]");
    assert_int_equal(skh_conn_max_frame(p.c), 400);
    assert_true(skh_conn_has_feature(p.c, "extend"));
    put_frame(p.skiff, "{\"type\":\"ping\",\"ref\":\"9\"}");
    put_frame(p.skiff, "{\"type\":\"task\",\"id\":\"z-1\",\"source\":\"zeebe\",\"job_type\":"
                       "\"score\",\"deadline\":5,\"variables\":{\"n\":\"\\u0000\"},"
                       "\"zeebe\":{\"key\":\"2251799813685321\"}}");
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_TASK);
    skh_task *t = ev.task;
    skh_event_clear(&ev);
    json_t *pong = get_frame(p.skiff);
    assert_string_equal(type_of(pong), "pong");
    json_decref(pong);
    assert_string_equal(skh_task_id(t), "z-1");
    assert_int_equal(skh_task_attempt(t), 1);
    assert_string_equal(json_string_value(json_object_get(skh_task_zeebe(t), "key")),
                        "2251799813685321");
    assert_int_equal(json_string_length(json_object_get(skh_task_variables(t), "n")), 1);
    assert_int_equal(skh_conn_in_flight(p.c), 1);
    assert_int_equal(skh_task_complete(t, skh_task_variables(t)), 0);
    assert_int_equal(skh_conn_in_flight(p.c), 0);
    assert_int_equal(skh_task_complete(t, NULL), -1); /* one result per task */
    json_t *r = get_frame(p.skiff);
    assert_string_equal(type_of(r), "complete");
    assert_true(json_equal(json_object_get(r, "variables"), skh_task_variables(t)));
    json_decref(r);
    skh_task_free(t);
    close_pair(&p);
}

static skh_task *take_task(pair *p, const char *json)
{
    skh_event ev;
    put_frame(p->skiff, json);
    assert_int_equal(next_event(p->c, &ev), SKH_EV_TASK);
    skh_task *t = ev.task;
    skh_event_clear(&ev);
    return t;
}

static void test_too_large_result_becomes_fail(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[]");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"z-2\",\"job_type\":\"score\"}");
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    json_t *v = json_pack("{s:s}", "blob", big);
    assert_int_equal(skh_task_complete(t, v), 0);
    json_decref(v);
    json_t *r = get_frame(p.skiff);
    assert_string_equal(type_of(r), "fail");
    assert_non_null(strstr(json_string_value(json_object_get(r, "message")), "max_frame"));
    json_decref(r);
    skh_task_free(t);
    close_pair(&p);
}

static void test_fail_carries_structured_error(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[]");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"z-3\",\"job_type\":\"score\"}");
    assert_int_equal(SKH_FAIL(t, "boom"), 0);
    json_t *r = get_frame(p.skiff);
    json_t *err = json_object_get(r, "error");
    assert_string_equal(json_string_value(json_object_get(r, "message")), "boom");
    assert_null(json_object_get(r, "retries"));
    assert_string_equal(json_string_value(json_object_get(err, "type")), "error");
    json_t *frame = json_array_get(json_object_get(err, "stack"), 0);
    assert_non_null(strstr(json_string_value(json_object_get(frame, "file")), "test_skiff"));
    assert_string_equal(json_string_value(json_object_get(frame, "function")),
                        "test_fail_carries_structured_error");
    assert_true(json_integer_value(json_object_get(frame, "line")) > 0);
    json_decref(r);
    skh_task_free(t);
    close_pair(&p);
}

static void test_kafka_results(void **state)
{
    (void)state;
    pair p = open_pair(NULL, TOPICS);
    welcome(&p, "[\"extend\"]");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"k-1\",\"source\":\"kafka\","
                                "\"topic\":\"t.v1\",\"attempt\":3,\"value\":null}");
    assert_int_equal(skh_task_source(t), SKH_SOURCE_KAFKA);
    assert_int_equal(skh_task_attempt(t), 3);
    char ref[24];
    skh_error e;
    assert_int_equal(skh_conn_extend(p.c, t, 1000, ref, &e), -1);
    assert_string_equal(e.code, SKH_E_UNSUPPORTED);
    assert_non_null(strstr(e.message, "cannot be extended"));
    assert_int_equal(skh_task_nack(t, "poison", -1, 1), 0);
    json_t *r = get_frame(p.skiff);
    assert_string_equal(type_of(r), "nack");
    assert_true(json_is_true(json_object_get(r, "dead_letter")));
    assert_null(json_object_get(r, "retry_backoff_ms"));
    json_decref(r);
    skh_task_free(t);
    close_pair(&p);
}

static void test_cancel_frees_the_task_and_refuses_requests(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[\"extend\"]");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"z-4\",\"job_type\":\"score\"}");
    char ref[24];
    skh_error e;
    assert_int_equal(skh_conn_extend(p.c, t, 0, ref, &e), -1);
    assert_string_equal(e.code, SKH_E_INVALID_ARGUMENT);
    put_frame(p.skiff, "{\"type\":\"cancel\",\"id\":\"z-4\",\"reason\":\"something-new\"}");
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_CANCEL);
    assert_ptr_equal(ev.task, t);
    assert_string_equal(ev.reason, "job_gone"); /* an unknown reason reads job_gone */
    skh_event_clear(&ev);
    assert_int_equal(skh_conn_in_flight(p.c), 0);
    assert_int_equal(skh_conn_extend(p.c, t, 1000, ref, &e), -1);
    assert_string_equal(e.code, SKH_E_CANCELLED);
    assert_int_equal(skh_task_complete(t, NULL), -1);
    skh_task_free(t);
    close_pair(&p);
}

static void test_calls_and_replies(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[]");
    char ref[24];
    skh_error e;
    json_t *params = json_pack("{s:s}", "name", "paid");
    assert_int_equal(skh_conn_call(p.c, "produce", params, NULL, ref, &e), -1);
    assert_string_equal(e.code, SKH_E_UNSUPPORTED);
    assert_int_equal(skh_conn_call(p.c, "publish_message", params, NULL, ref, &e), 0);
    json_decref(params);
    json_t *call = get_frame(p.skiff);
    assert_string_equal(type_of(call), "call");
    assert_string_equal(json_string_value(json_object_get(call, "ref")), ref);
    json_decref(call);
    char reply[128];
    snprintf(reply, sizeof reply,
             "{\"type\":\"reply\",\"ref\":\"%s\",\"ok\":false,\"error\":{\"code\":\"new_code\","
             "\"message\":\"m\"}}",
             ref);
    put_frame(p.skiff, reply);
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_REPLY);
    assert_string_equal(ev.ref, ref);
    assert_false(ev.ok);
    assert_string_equal(ev.error.code, "new_code");
    skh_event_clear(&ev);
    close_pair(&p);
}

static void test_bad_frames_are_skipped_then_bad_length_closes(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[]");
    put_frame(p.skiff, "not json");
    put_frame(p.skiff, "{\"type\":\"task\"}");                                 /* no id */
    put_frame(p.skiff, "{\"type\":\"task\",\"id\":\"z-5\",\"variables\":[]}"); /* bad member */
    put_frame(p.skiff, "{\"type\":\"task\",\"id\":\"z-7\",\"tracestate\":7}");
    put_frame(p.skiff, "{\"type\":\"future\"}");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"z-6\",\"job_type\":\"score\"}");
    assert_string_equal(skh_task_id(t), "z-6"); /* the bad ones were no events */
    json_t *r = get_frame(p.skiff);
    assert_string_equal(type_of(r), "fail");
    assert_string_equal(json_string_value(json_object_get(r, "id")), "z-5");
    json_decref(r);
    r = get_frame(p.skiff);
    assert_string_equal(json_string_value(json_object_get(r, "id")), "z-7");
    assert_non_null(strstr(json_string_value(json_object_get(r, "message")), "tracestate"));
    json_decref(r);
    assert_int_equal(write(p.skiff, "\0\0\0\0", 4), 4);
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_CLOSED);
    skh_event_clear(&ev);
    assert_int_equal(skh_task_complete(t, NULL), -1); /* its session is gone */
    assert_int_equal(skh_conn_fd(p.c), -1);
    skh_task_free(t);
    close_pair(&p);
}

static void test_refused_hello(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    put_frame(p.skiff, "{\"type\":\"error\",\"code\":\"unsupported_version\",\"message\":\"v9\"}");
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_CLOSED);
    assert_true(ev.refused);
    assert_string_equal(ev.error.code, "unsupported_version");
    skh_event_clear(&ev);
    close_pair(&p);
}

/* --- the blocking handler ---------------------------------------------------------------- */

static int job_echo(skh_task *t, void *arg)
{
    (void)arg;
    json_t *result = NULL;
    skh_error e;
    if (skh_task_publish_message(t, "paid", NULL, NULL, 0, NULL, NULL, &result, &e) < 0)
        return skh_task_fail_here(t, e.code, __FILE__, __LINE__, __func__);
    int rc = skh_task_complete(t, result);
    json_decref(result);
    return rc;
}

static void *run_thread(void *arg)
{
    skh_error e;
    static int rc;
    rc = skh_handler_run(arg, &e);
    return &rc;
}

/* A blocking handler with one job, connected to a listening socket (its accepted end in s);
 * fn's arg is the handler when handler_arg is set, else NULL. */
typedef struct {
    char dir[32], sock[64];
    int lfd, s;
    skh_handler *h;
    pthread_t th;
} served;

static void handler_up(served *v, const char *job, skh_task_fn fn, int handler_arg)
{
    snprintf(v->dir, sizeof v->dir, "/tmp/skh-test-XXXXXX");
    assert_non_null(mkdtemp(v->dir));
    snprintf(v->sock, sizeof v->sock, "%s/s", v->dir);
    v->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", v->sock);
    assert_int_equal(bind(v->lfd, (struct sockaddr *)&sa, sizeof sa), 0);
    assert_int_equal(listen(v->lfd, 1), 0);
    skh_options o = {.name = "unit", .capacity = 1, .socket_path = v->sock};
    v->h = skh_handler_new(&o, NULL);
    assert_int_equal(skh_handler_job(v->h, job, fn, handler_arg ? v->h : NULL), 0);
    pthread_create(&v->th, NULL, run_thread, v->h);
    v->s = accept(v->lfd, NULL, NULL);
}

/* After the drain: run returned 0; everything closed and removed. */
static void handler_down(served *v)
{
    void *rc;
    pthread_join(v->th, &rc);
    assert_int_equal(*(int *)rc, 0);
    skh_handler_free(v->h);
    close(v->s);
    close(v->lfd);
    unlink(v->sock);
    rmdir(v->dir);
}

static void test_handler_serves_calls_and_drains(void **state)
{
    (void)state;
    served v;
    handler_up(&v, "echo", job_echo, 0);
    int s = v.s;
    json_t *hello = get_frame(s);
    assert_string_equal(json_string_value(json_object_get(hello, "name")), "unit");
    json_decref(hello);
    put_frame(s, "{\"type\":\"welcome\",\"version\":1,\"session\":\"s\",\"max_frame\":4096,"
                 "\"methods\":[\"publish_message\"]}");
    put_frame(s, "{\"type\":\"task\",\"id\":\"z-1\",\"job_type\":\"echo\"}");
    json_t *call = get_frame(s);
    char reply[160];
    snprintf(reply, sizeof reply,
             "{\"type\":\"reply\",\"ref\":\"%s\",\"ok\":true,\"result\":{\"key\":\"1\"}}",
             json_string_value(json_object_get(call, "ref")));
    json_decref(call);
    put_frame(s, "{\"type\":\"drain\",\"deadline\":1}");
    put_frame(s, reply);
    json_t *done = get_frame(s);
    assert_string_equal(type_of(done), "complete");
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(done, "variables"), "key")), "1");
    json_decref(done);
    handler_down(&v);
}

/* secret on the task (a value with a NUL byte), token on the handler (a typed error), an
 * empty reference refused locally. */
static int job_secret_token(skh_task *t, void *arg)
{
    char *value = NULL, *token = NULL, *none = NULL;
    size_t len = 0;
    skh_error e, te = {0}, ee = {0};
    if (skh_task_secret(t, "vault:secret/app/db#password", &value, &len, &e) < 0)
        return skh_task_fail_here(t, e.code, __FILE__, __LINE__, __func__);
    int trc = skh_handler_token(arg, "billing-api", &token, NULL, &te);
    int erc = skh_task_secret(t, "", &none, NULL, &ee);
    json_t *vars =
        json_pack("{s:s%,s:I,s:i,s:s,s:s,s:b,s:i,s:s}", "secret", value, len, "len",
                  (json_int_t)len, "token_rc", trc, "token_code", te.code, "token_message",
                  te.message, "token_null", token == NULL, "empty_rc", erc, "empty_code", ee.code);
    free(value);
    int rc = skh_task_complete(t, vars);
    json_decref(vars);
    return rc;
}

static void reply_to(int s, const char *method, const char *body)
{
    json_t *call = get_frame(s);
    assert_string_equal(json_string_value(json_object_get(call, "method")), method);
    char reply[256];
    snprintf(reply, sizeof reply, "{\"type\":\"reply\",\"ref\":\"%s\",%s}",
             json_string_value(json_object_get(call, "ref")), body);
    json_decref(call);
    put_frame(s, reply);
}

static void test_handler_secret_and_token(void **state)
{
    (void)state;
    served v;
    handler_up(&v, "calls", job_secret_token, 1);
    int s = v.s;
    json_decref(get_frame(s));
    put_frame(s, "{\"type\":\"welcome\",\"version\":1,\"session\":\"s\",\"max_frame\":4096,"
                 "\"methods\":[\"publish_message\",\"secret\",\"token\"]}");
    put_frame(s, "{\"type\":\"task\",\"id\":\"z-1\",\"job_type\":\"calls\"}");
    reply_to(s, "secret", "\"ok\":true,\"result\":{\"value\":\"s3\\u0000t\",\"version\":2}");
    reply_to(s, "token", "\"ok\":false,\"error\":{\"code\":\"forbidden\",\"message\":\"no\"}");
    json_t *done = get_frame(s);
    json_t *vars = json_object_get(done, "variables");
    assert_string_equal(type_of(done), "complete");
    assert_int_equal(json_string_length(json_object_get(vars, "secret")), 4);
    assert_memory_equal(json_string_value(json_object_get(vars, "secret")), "s3\0t", 4);
    assert_int_equal(json_integer_value(json_object_get(vars, "len")), 4);
    assert_int_equal(json_integer_value(json_object_get(vars, "token_rc")), -1);
    assert_string_equal(json_string_value(json_object_get(vars, "token_code")), "forbidden");
    assert_string_equal(json_string_value(json_object_get(vars, "token_message")), "no");
    assert_true(json_is_true(json_object_get(vars, "token_null")));
    assert_int_equal(json_integer_value(json_object_get(vars, "empty_rc")), -1);
    assert_string_equal(json_string_value(json_object_get(vars, "empty_code")),
                        SKH_E_INVALID_ARGUMENT);
    json_decref(done);
    put_frame(s, "{\"type\":\"drain\",\"deadline\":1}");
    handler_down(&v);
}

/* Trace context on publish_message: the task's traceparent and tracestate on the task's call,
 * a traceparent alone on the handler's (the NULL tracestate left out), neither on the plain
 * call. */
static int job_traced(skh_task *t, void *arg)
{
    skh_trace mine = {skh_task_traceparent(t), skh_task_tracestate(t)};
    skh_trace parent_only = {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", NULL};
    json_t *r1 = NULL, *r2 = NULL, *r3 = NULL;
    skh_error e;
    /* one after the other (the frames' order is the test's), all three even if one fails */
    int rc = skh_task_publish_message_traced(t, "paid", "o-1", NULL, 0, NULL, NULL, &mine, &r1, &e);
    rc |= skh_handler_publish_message_traced(arg, "paid", "o-2", NULL, 0, NULL, NULL, &parent_only,
                                             &r2, &e);
    rc |= skh_task_publish_message(t, "paid", "o-3", NULL, 0, NULL, NULL, &r3, &e);
    json_decref(r1);
    json_decref(r2);
    json_decref(r3);
    return rc;
}

static json_t *call_params(int s)
{
    json_t *call = get_frame(s), *params = json_incref(json_object_get(call, "params"));
    assert_string_equal(json_string_value(json_object_get(call, "method")), "publish_message");
    char reply[160];
    snprintf(reply, sizeof reply,
             "{\"type\":\"reply\",\"ref\":\"%s\",\"ok\":true,\"result\":{\"key\":\"1\"}}",
             json_string_value(json_object_get(call, "ref")));
    json_decref(call);
    put_frame(s, reply);
    return params;
}

static void test_handler_publish_message_trace_context(void **state)
{
    (void)state;
    served v;
    handler_up(&v, "traced", job_traced, 1);
    int s = v.s;
    json_decref(get_frame(s));
    put_frame(s, "{\"type\":\"welcome\",\"version\":1,\"session\":\"s\",\"max_frame\":4096,"
                 "\"methods\":[\"publish_message\"]}");
    put_frame(s, "{\"type\":\"task\",\"id\":\"z-1\",\"job_type\":\"traced\","
                 "\"traceparent\":\"00-11111111111111111111111111111111-2222222222222222-01\","
                 "\"tracestate\":\"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7\"}");
    json_t *p1 = call_params(s), *p2 = call_params(s), *p3 = call_params(s);
    assert_string_equal(json_string_value(json_object_get(p1, "traceparent")),
                        "00-11111111111111111111111111111111-2222222222222222-01");
    assert_string_equal(json_string_value(json_object_get(p1, "tracestate")),
                        "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
    assert_string_equal(json_string_value(json_object_get(p1, "correlation_key")), "o-1");
    assert_string_equal(json_string_value(json_object_get(p2, "traceparent")),
                        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
    assert_null(json_object_get(p2, "tracestate"));
    assert_null(json_object_get(p3, "traceparent"));
    assert_null(json_object_get(p3, "tracestate"));
    json_decref(p1);
    json_decref(p2);
    json_decref(p3);
    json_t *done = get_frame(s);
    assert_string_equal(type_of(done), "complete");
    json_decref(done);
    put_frame(s, "{\"type\":\"drain\",\"deadline\":1}");
    handler_down(&v);
}

static void test_handler_waits_for_skiff_until_stopped(void **state)
{
    (void)state;
    skh_options o = {.name = "unit",
                     .capacity = 1,
                     .socket_path = "/nonexistent/skiff.sock",
                     .backoff_initial_ms = 1,
                     .backoff_max_ms = 2};
    skh_handler *h = skh_handler_new(&o, NULL);
    assert_int_equal(skh_handler_job(h, "echo", job_echo, NULL), 0);
    pthread_t th;
    pthread_create(&th, NULL, run_thread, h);
    skh_handler_stop(h);
    void *rc;
    pthread_join(th, &rc);
    assert_int_equal(*(int *)rc, 0);
    skh_handler_free(h);
}

/* 1.4: the items of a tasks frame are events one by one, as if each had come alone: an item
 * without an id or that is not a task is skipped, a malformed one answered on the spot; the
 * frame after it (a ping) comes after them; an error with an index is an event, the session
 * goes on. */
static void test_tasks_frame_items_one_by_one(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[\"batch\"]");
    put_frame(p.skiff, "{\"type\":\"error\",\"code\":\"unknown_task\",\"message\":\"no\","
                       "\"id\":\"z-0\",\"index\":1}");
    skh_event ev;
    assert_int_equal(next_event(p.c, &ev), SKH_EV_ERROR);
    assert_int_equal(ev.index, 1);
    skh_event_clear(&ev);
    put_frame(p.skiff, "{\"type\":\"tasks\",\"tasks\":["
                       "{\"type\":\"task\",\"id\":\"z-a\",\"job_type\":\"score\"},"
                       "{\"type\":\"task\",\"job_type\":\"score\"},"
                       "{\"type\":\"cancel\",\"id\":\"z-a\"},7,"
                       "{\"type\":\"task\",\"id\":\"z-m\",\"variables\":[]},"
                       "{\"type\":\"task\",\"id\":\"z-b\",\"job_type\":\"score\"}]}");
    put_frame(p.skiff, "{\"type\":\"ping\",\"ref\":\"after\"}");
    const char *want[] = {"z-a", "z-b"};
    skh_task *t[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(next_event(p.c, &ev), SKH_EV_TASK);
        t[i] = ev.task;
        assert_string_equal(skh_task_id(t[i]), want[i]);
        skh_event_clear(&ev);
    }
    assert_int_equal(skh_conn_in_flight(p.c), 2);
    while (skh_conn_process(p.c, &ev))
        skh_event_clear(&ev);
    json_t *f = get_frame(p.skiff);
    assert_string_equal(type_of(f), "fail");
    assert_string_equal(json_string_value(json_object_get(f, "id")), "z-m");
    json_decref(f);
    f = get_frame(p.skiff);
    assert_string_equal(type_of(f), "pong");
    json_decref(f);
    for (int i = 0; i < 2; i++)
        skh_task_free(t[i]);
    close_pair(&p);
}

/* Fills the socket from the SDK's side with pongs, so that what the SDK queues next waits. */
static void fill_socket(pair *p)
{
    const char pong[] = "\0\0\0\x19{\"type\":\"pong\",\"ref\":\"f\"}";
    const ssize_t n = sizeof pong - 1;
    ssize_t k;
    while ((k = send(p->c->fd, pong, (size_t)n, MSG_DONTWAIT)) == n)
        ;
    if (k > 0) /* the rest of a partial pong waits in the output buffer */
        assert_int_equal(buf_append(pong + k, (size_t)(n - k), &p->c->out), 0);
}

/* Reads frames (skipping pongs) until n results arrived, flushing the SDK meanwhile; the ids
 * in order in ids, the number of results frames returned; *closed (when not NULL) is set if
 * the session ended meanwhile. */
static int read_results(pair *p, int n, char ids[][8], int max, int *closed)
{
    buf in = {0};
    int got = 0, frames = 0;
    for (int round = 0; got < n && round < 100000; round++) {
        skh_event ev;
        while (skh_conn_process(p->c, &ev)) {
            if (ev.type == SKH_EV_CLOSED && closed != NULL)
                *closed = 1;
            skh_event_clear(&ev);
        }
        assert_int_equal(buf_reserve(&in, 65536), 0);
        ssize_t k = recv(p->skiff, in.data + in.len, 65536, MSG_DONTWAIT);
        in.len += k > 0 ? (size_t)k : 0;
        json_t *f;
        size_t used;
        while (skh_frame_parse((unsigned char *)in.data + in.off, in.len - in.off, (size_t)max, &f,
                               &used, NULL) == 1) {
            in.off += used;
            json_t *items = json_object_get(f, "results");
            if (strcmp(type_of(f), "results") == 0) {
                frames++;
                assert_true(json_array_size(items) >= 2);
            }
            int result = strcmp(type_of(f), "pong") != 0 && strcmp(type_of(f), "call") != 0;
            for (size_t i = 0; result && i < (items ? json_array_size(items) : 1); i++) {
                json_t *r = items ? json_array_get(items, i) : f;
                snprintf(ids[got++], 8, "%s", json_string_value(json_object_get(r, "id")));
            }
            json_decref(f);
        }
    }
    free(in.data);
    assert_int_equal(got, n);
    return frames;
}

/* Results that wait for the socket together leave as results frames (never above max_frame;
 * a call between them ends a run) when skiff's welcome lists batch, else one by one. */
static void results_waiting_together(const char *features, int want_frames)
{
    pair p = open_pair(JOBS, NULL);
    welcome(&p, features);
    skh_task *t[5];
    char tj[96];
    for (int i = 0; i < 5; i++) {
        snprintf(tj, sizeof tj, "{\"type\":\"task\",\"id\":\"z-%d\",\"job_type\":\"score\"}", i);
        t[i] = take_task(&p, tj);
    }
    fill_socket(&p);
    assert_int_equal(skh_task_complete(t[0], NULL), 0);
    assert_int_equal(skh_task_ack(t[1]), 0);
    char ref[24];
    json_t *params = json_pack("{s:s}", "name", "m");
    assert_int_equal(skh_conn_call(p.c, "publish_message", params, NULL, ref, NULL), 0);
    json_decref(params);
    char pad[300];
    memset(pad, 'p', sizeof pad - 1);
    pad[sizeof pad - 1] = '\0';
    json_t *v = json_pack("{s:s}", "pad", pad);
    assert_int_equal(skh_task_complete(t[2], NULL), 0);
    assert_int_equal(skh_task_complete(t[3], NULL), 0);
    assert_int_equal(skh_task_complete(t[4], v), 0); /* does not fit next to them in 400 */
    json_decref(v);
    char ids[5][8];
    assert_int_equal(read_results(&p, 5, ids, 400, NULL), want_frames);
    const char *want[] = {"z-0", "z-1", "z-2", "z-3", "z-4"};
    for (int i = 0; i < 5; i++) {
        assert_string_equal(ids[i], want[i]);
        skh_task_free(t[i]);
    }
    close_pair(&p);
}

static void test_results_join_while_the_socket_is_busy(void **state)
{
    (void)state;
    results_waiting_together("[\"batch\"]", 2);
}

static void test_no_results_frame_without_batch_welcome(void **state)
{
    (void)state;
    results_waiting_together("[\"cancel\"]", 0);
}

/* skh_conn_close after the last result of a drain, while the socket is busy: the result still
 * goes out before the session closes. */
static void test_close_writes_the_queued_results_first(void **state)
{
    (void)state;
    pair p = open_pair(JOBS, NULL);
    welcome(&p, "[\"batch\"]");
    skh_task *t = take_task(&p, "{\"type\":\"task\",\"id\":\"z-9\",\"job_type\":\"score\"}");
    fill_socket(&p);
    assert_int_equal(skh_task_complete(t, NULL), 0);
    skh_conn_close(p.c);
    assert_true(skh_conn_wants_write(p.c));
    char ids[1][8];
    int closed = 0;
    read_results(&p, 1, ids, 400, &closed);
    assert_string_equal(ids[0], "z-9");
    skh_event ev;
    if (!closed) {
        assert_int_equal(next_event(p.c, &ev), SKH_EV_CLOSED);
        skh_event_clear(&ev);
    }
    assert_int_equal(skh_conn_fd(p.c), -1);
    skh_task_free(t);
    close_pair(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_needs_whole_frame),
        cmocka_unit_test(test_parse_rejects_bad_lengths_and_bodies),
        cmocka_unit_test(test_encode_is_compact_and_bounded),
        cmocka_unit_test(test_hello_member_order),
        cmocka_unit_test(test_conn_new_needs_a_route),
        cmocka_unit_test(test_session_task_result_and_ping),
        cmocka_unit_test(test_too_large_result_becomes_fail),
        cmocka_unit_test(test_fail_carries_structured_error),
        cmocka_unit_test(test_kafka_results),
        cmocka_unit_test(test_cancel_frees_the_task_and_refuses_requests),
        cmocka_unit_test(test_calls_and_replies),
        cmocka_unit_test(test_bad_frames_are_skipped_then_bad_length_closes),
        cmocka_unit_test(test_refused_hello),
        cmocka_unit_test(test_handler_serves_calls_and_drains),
        cmocka_unit_test(test_handler_secret_and_token),
        cmocka_unit_test(test_handler_publish_message_trace_context),
        cmocka_unit_test(test_handler_waits_for_skiff_until_stopped),
        cmocka_unit_test(test_tasks_frame_items_one_by_one),
        cmocka_unit_test(test_results_join_while_the_socket_is_busy),
        cmocka_unit_test(test_no_results_frame_without_batch_welcome),
        cmocka_unit_test(test_close_writes_the_queued_results_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
