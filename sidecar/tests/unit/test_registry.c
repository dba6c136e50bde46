/* Schema Registry client against an in-process evhttp server on 127.0.0.1 (same loop) that serves
 * canned answers by exact request URI and counts the requests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "schema/registry.h"

#include "http_test_server.h"

#define MAX_ROUTES 16

#define RECORD_SCHEMA                                                                              \
    "{\"schema\":\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"Order\\\",\\\"fields\\\":"        \
    "[{\\\"name\\\":\\\"id\\\",\\\"type\\\":\\\"long\\\"}]}\"}"

typedef struct {
    const char *uri;
    int status;
    const char *body;
    int hits;
} route;

typedef struct {
    test_server server;
    route routes[MAX_ROUTES];
    int nroutes;
    int requests;
    char uri[512], auth[128], accept[256];
    sk_metrics *m;
    sk_registry *reg;
    sk_secret *pass;
} fixture;

typedef struct outcome {
    int calls;
    sk_reg_status st;
    int32_t id;
    const sk_avro_schema *schema;
    char err[512];
    sk_registry **free_it; /* free *free_it from the callback */
} outcome;

static void serve(fixture *f, const char *uri, int status, const char *body)
{
    for (int i = 0; i < f->nroutes; i++)
        if (!strcmp(f->routes[i].uri, uri)) {
            f->routes[i].status = status;
            f->routes[i].body = body;
            return;
        }
    assert_true(f->nroutes < MAX_ROUTES);
    f->routes[f->nroutes++] = (route){.uri = uri, .status = status, .body = body};
}

static int hits(const fixture *f, const char *uri)
{
    for (int i = 0; i < f->nroutes; i++)
        if (!strcmp(f->routes[i].uri, uri))
            return f->routes[i].hits;
    return 0;
}

static void on_server(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    int status = 404;
    const char *body = "{\"error_code\":404,\"message\":\"HTTP 404 Not Found\"}";
    f->requests++;
    snprintf(f->uri, sizeof f->uri, "%s", uri);
    copy_header(req, "Authorization", f->auth, sizeof f->auth);
    copy_header(req, "Accept", f->accept, sizeof f->accept);
    for (int i = 0; i < f->nroutes; i++)
        if (!strcmp(f->routes[i].uri, uri)) {
            f->routes[i].hits++;
            status = f->routes[i].status;
            body = f->routes[i].body;
        }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                      "application/vnd.schemaregistry.v1+json");
    evhttp_send_reply(req, status, "Whatever", b);
    evbuffer_free(b);
}

static void open_registry(fixture *f, const char *user, const char *pass, int64_t ttl_ms,
                          size_t max_ids, const char *path)
{
    char url[128], err[256] = "";
    test_server_url(&f->server, path, url, sizeof url);
    sk_registry_free(f->reg);
    f->reg = NULL;
    sk_secret_free(f->pass);
    f->pass = pass ? sk_secret_new("schema_registry.password", pass, err, sizeof err) : NULL;
    sk_registry_opts o = {.url = url,
                          .username = user,
                          .password = f->pass,
                          .latest_ttl_ms = ttl_ms,
                          .timeout_ms = 5000,
                          .max_ids = max_ids};
    sk_registry_free(f->reg);
    f->reg = sk_registry_new(f->server.base, &o, f->m, err, sizeof err);
    if (!f->reg)
        fail_msg("sk_registry_new: %s", err);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    test_server_start(&f->server, on_server, f);
    f->m = sk_metrics_new();
    open_registry(f, NULL, NULL, 60000, 0, "");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_registry_free(f->reg);
    sk_secret_free(f->pass);
    sk_metrics_free(f->m);
    test_server_stop(&f->server);
    free(f);
    return 0;
}

static void on_lookup(void *ud, sk_reg_status st, int32_t id, const sk_avro_schema *schema,
                      const char *err)
{
    outcome *o = ud;
    o->calls++;
    o->st = st;
    o->id = id;
    o->schema = schema;
    snprintf(o->err, sizeof o->err, "%s", err ? err : "");
    if (st == SK_REG_OK)
        assert_null(err);
    else
        assert_non_null(err);
    if (o->free_it) {
        sk_registry_free(*o->free_it);
        *o->free_it = NULL;
    }
}

static void by_id(fixture *f, int32_t id, outcome *o)
{
    assert_non_null(sk_registry_by_id(f->reg, id, on_lookup, o));
    assert_int_equal(o->calls, 0); /* never from inside the call */
    run_until(&f->server, &o->calls, 1);
}

static void latest(fixture *f, const char *subject, outcome *o)
{
    assert_non_null(sk_registry_latest(f->reg, subject, on_lookup, o));
    assert_int_equal(o->calls, 0);
    run_until(&f->server, &o->calls, 1);
}

static void expect_err(const outcome *o, const char *a, const char *b)
{
    if (!strstr(o->err, a) || (b && !strstr(o->err, b)))
        fail_msg("expected \"%s\" and \"%s\" in: %s", a, b ? b : "", o->err);
}

/* Looks id up and expects status st with an error that contains a and b. */
static void by_id_fails(fixture *f, int32_t id, sk_reg_status st, const char *a, const char *b)
{
    outcome o = {0};
    by_id(f, id, &o);
    assert_int_equal(o.st, st);
    expect_err(&o, a, b);
}

static double metric(fixture *f, const char *result)
{
    static const char *const labels[] = {"result", NULL};
    sk_metric *c =
        sk_metrics_counter(f->m, "skiff_schema_registry_requests_total", "whatever", labels);
    return sk_series_value(sk_metric_series(c, (const char *const[]){result}));
}

static void test_by_id_cached_and_coalesced(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/1", 200, RECORD_SCHEMA);
    outcome a = {0}, b = {0}, c = {0};
    assert_null(sk_registry_cached(f->reg, 1, NULL, NULL));
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &a));
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &b));
    run_until(&f->server, &b.calls, 1);
    run_until(&f->server, &a.calls, 1);
    assert_int_equal(hits(f, "/schemas/ids/1"), 1);
    assert_int_equal(a.st, SK_REG_OK);
    assert_int_equal(a.id, 1);
    assert_non_null(a.schema);
    assert_ptr_equal(a.schema, b.schema);
    if (!strstr(f->accept, "application/vnd.schemaregistry.v1+json"))
        fail_msg("Accept: %s", f->accept);
    assert_string_equal(f->auth, "");

    by_id(f, 1, &c); /* from the cache, still later from the loop */
    assert_int_equal(hits(f, "/schemas/ids/1"), 1);
    assert_ptr_equal(c.schema, a.schema);
    sk_reg_status st = SK_REG_UNAVAILABLE;
    const char *err = "x";
    assert_ptr_equal(sk_registry_cached(f->reg, 1, &st, &err), a.schema);
    assert_int_equal(st, SK_REG_OK);
    assert_null(err);
    assert_true(metric(f, "ok") == 1);
    sk_metric *h = sk_metrics_histogram(f->m, "skiff_schema_registry_request_seconds", "x", NULL,
                                        sk_metrics_latency_buckets, sk_metrics_latency_nbuckets);
    assert_true(sk_series_value(sk_metric_series(h, NULL)) == 1);

    /* The schema is usable. */
    size_t len = 0;
    json_t *v = json_pack("{s:i}", "id", 5);
    uint8_t *bin = sk_avro_from_json(a.schema, v, &len, NULL, 0);
    json_decref(v);
    assert_non_null(bin);
    free(bin);
}

static void test_not_found_cached(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/2", 404, "{\"error_code\":40403,\"message\":\"Schema 2 not found\"}");
    outcome a = {0}, b = {0};
    by_id(f, 2, &a);
    assert_int_equal(a.st, SK_REG_NOT_FOUND);
    assert_null(a.schema);
    expect_err(&a, "schema id 2", "40403");
    by_id(f, 2, &b);
    assert_int_equal(b.st, SK_REG_NOT_FOUND);
    assert_int_equal(hits(f, "/schemas/ids/2"), 1);
    sk_reg_status st;
    const char *err = NULL;
    assert_null(sk_registry_cached(f->reg, 2, &st, &err));
    assert_int_equal(st, SK_REG_NOT_FOUND);
    assert_non_null(err);
    assert_true(metric(f, "not_found") == 1);
}

static void test_invalid_cached(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/3", 200, "{\"schema\":\"{\\\"type\\\":\\\"nonsense\\\"}\"}");
    serve(f, "/schemas/ids/4", 200,
          "{\"schema\":\"syntax = \\\"proto3\\\";\",\"schemaType\":\"PROTOBUF\"}");
    serve(f, "/schemas/ids/5", 200, "{\"schema\":\"\\\"string\\\"\",\"schemaType\":\"AVRO\"}");
    /* A record with the same field name twice: refused like any other unusable schema. */
    serve(f, "/schemas/ids/10", 200,
          "{\"schema\":\"{\\\"type\\\":\\\"record\\\",\\\"name\\\":\\\"R\\\",\\\"fields\\\":["
          "{\\\"name\\\":\\\"a\\\",\\\"type\\\":\\\"int\\\"},"
          "{\\\"name\\\":\\\"a\\\",\\\"type\\\":\\\"int\\\"}]}\"}");
    outcome a = {0}, b = {0};
    by_id_fails(f, 3, SK_REG_INVALID, "schema id 3", "Avro schema");
    by_id(f, 3, &a);
    assert_int_equal(a.st, SK_REG_INVALID);
    assert_int_equal(hits(f, "/schemas/ids/3"), 1);
    by_id_fails(f, 4, SK_REG_INVALID, "schema id 4", "PROTOBUF");
    by_id(f, 5, &b);
    assert_int_equal(b.st, SK_REG_OK);
    sk_reg_status st;
    assert_null(sk_registry_cached(f->reg, 3, &st, NULL));
    assert_int_equal(st, SK_REG_INVALID);
    by_id_fails(f, 10, SK_REG_INVALID, "schema id 10", "duplicate field name \"a\"");
    assert_true(metric(f, "invalid") == 3);
}

static void test_unavailable_not_cached(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/6", 500, "{\"error_code\":50001,\"message\":\"boom\"}");
    outcome a = {0}, b = {0};
    by_id_fails(f, 6, SK_REG_UNAVAILABLE, "schema id 6", "HTTP 500");
    sk_reg_status st = SK_REG_OK;
    assert_null(sk_registry_cached(f->reg, 6, &st, NULL));
    assert_int_equal(st, SK_REG_UNAVAILABLE);
    by_id(f, 6, &a); /* asks again */
    assert_int_equal(a.st, SK_REG_UNAVAILABLE);
    assert_int_equal(hits(f, "/schemas/ids/6"), 2);
    serve(f, "/schemas/ids/6", 200, RECORD_SCHEMA);
    by_id(f, 6, &b);
    assert_int_equal(b.st, SK_REG_OK);
    assert_int_equal(hits(f, "/schemas/ids/6"), 3);
    assert_true(metric(f, "unavailable") == 2);
}

static void test_unavailable_kinds(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/7", 401, "{\"error_code\":40101,\"message\":\"Unauthorized\"}");
    serve(f, "/schemas/ids/8", 200, "not json");
    serve(f, "/schemas/ids/9", 200, "{\"nothing\":1}");
    outcome a = {0};
    by_id_fails(f, 7, SK_REG_UNAVAILABLE, "HTTP 401", "check the registry credentials");
    by_id_fails(f, 8, SK_REG_UNAVAILABLE, "schema id 8", "unparseable");
    by_id(f, 9, &a);
    assert_int_equal(a.st, SK_REG_UNAVAILABLE);
    /* A 404 without the registry's code: a wrong URL, not an unknown id. */
    by_id_fails(f, 10, SK_REG_UNAVAILABLE, "HTTP 404", "check the registry URL");

    /* Nothing listening. */
    int port;
    int fd = refusing_socket(&port);
    char url[64], err[256];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    sk_secret *pw = sk_secret_new("schema_registry.password", "hunter2", err, sizeof err);
    sk_registry_opts o = {.url = url, .username = "bob", .password = pw};
    sk_registry *r = sk_registry_new(f->server.base, &o, NULL, err, sizeof err);
    assert_non_null(r);
    outcome b = {0};
    assert_non_null(sk_registry_by_id(r, 1, on_lookup, &b));
    run_until(&f->server, &b.calls, 1);
    close(fd);
    assert_int_equal(b.st, SK_REG_UNAVAILABLE);
    expect_err(&b, "schema id 1", "unreachable");
    assert_null(strstr(b.err, "hunter2"));
    sk_registry_free(r);
    sk_secret_free(pw);
}

static void test_latest_ttl(void **state)
{
    fixture *f = *state;
    const char *uri = "/subjects/orders-value/versions/latest";
    open_registry(f, NULL, NULL, 50, 0, "/"); /* trailing slash tolerated */
    serve(f, uri, 200,
          "{\"subject\":\"orders-value\",\"version\":1,\"id\":7,\"schema\":\"\\\"string\\\"\"}");
    outcome a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    assert_null(sk_registry_cached_latest(f->reg, "orders-value", NULL));
    assert_non_null(sk_registry_latest(f->reg, "orders-value", on_lookup, &a));
    assert_non_null(sk_registry_latest(f->reg, "orders-value", on_lookup, &b));
    run_until(&f->server, &a.calls, 1);
    run_until(&f->server, &b.calls, 1);
    assert_int_equal(hits(f, uri), 1);
    assert_string_equal(f->uri, uri);
    assert_int_equal(a.st, SK_REG_OK);
    assert_int_equal(a.id, 7);
    assert_ptr_equal(a.schema, b.schema);
    int32_t id = 0;
    assert_ptr_equal(sk_registry_cached_latest(f->reg, "orders-value", &id), a.schema);
    assert_int_equal(id, 7);
    /* The latest entry is the by-id entry: no request for id 7. */
    assert_ptr_equal(sk_registry_cached(f->reg, 7, NULL, NULL), a.schema);
    by_id(f, 7, &c);
    assert_ptr_equal(c.schema, a.schema);
    assert_int_equal(f->requests, 1);

    run_for(&f->server, 0.08); /* past the TTL */
    assert_null(sk_registry_cached_latest(f->reg, "orders-value", NULL));
    serve(f, uri, 200,
          "{\"subject\":\"orders-value\",\"version\":2,\"id\":8,\"schema\":\"\\\"long\\\"\"}");
    latest(f, "orders-value", &d);
    assert_int_equal(hits(f, uri), 2);
    assert_int_equal(d.st, SK_REG_OK);
    assert_int_equal(d.id, 8);
    assert_ptr_not_equal(d.schema, a.schema);
    latest(f, "orders-value", &e); /* within the TTL again */
    assert_int_equal(hits(f, uri), 2);
    assert_int_equal(e.id, 8);
}

static void test_latest_reuses_id_entry(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/1", 200, RECORD_SCHEMA);
    serve(f, "/subjects/s/versions/latest", 200,
          "{\"subject\":\"s\",\"version\":1,\"id\":1,\"schema\":\"\\\"not parsed again\"}");
    serve(f, "/subjects/nope/versions/latest", 404,
          "{\"error_code\":40401,\"message\":\"Subject 'nope' not found.\"}");
    serve(f, "/subjects/bad/versions/latest", 200,
          "{\"subject\":\"bad\",\"version\":1,\"id\":3,\"schema\":\"{}\"}");
    outcome a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    by_id(f, 1, &a);
    latest(f, "s", &b);
    assert_int_equal(b.st, SK_REG_OK);
    assert_ptr_equal(b.schema, a.schema);
    latest(f, "nope", &c);
    assert_int_equal(c.st, SK_REG_NOT_FOUND);
    expect_err(&c, "subject \"nope\"", "40401");
    latest(f, "bad", &d);
    assert_int_equal(d.st, SK_REG_INVALID);
    assert_int_equal(d.id, 3);
    expect_err(&d, "schema id 3", "Avro schema");
    by_id(f, 3, &e); /* settled by the latest answer */
    assert_int_equal(e.st, SK_REG_INVALID);
    assert_int_equal(hits(f, "/schemas/ids/3"), 0);
}

static void test_basic_auth_and_escaping(void **state)
{
    fixture *f = *state;
    const char *uri = "/subjects/a%2Fb%20c%C3%A9-x_y.z~/versions/latest";
    open_registry(f, "alice", "s3cret", 60000, 0, "");
    serve(f, uri, 200,
          "{\"subject\":\"a/b c\",\"version\":1,\"id\":11,\"schema\":\"\\\"int\\\"\"}");
    outcome a = {0};
    latest(f, "a/b c\xc3\xa9-x_y.z~", &a);
    assert_string_equal(f->uri, uri);
    assert_int_equal(a.st, SK_REG_OK);
    assert_int_equal(a.id, 11);
    assert_string_equal(f->auth, "Basic YWxpY2U6czNjcmV0");
}

/* A password from a file: a rotated file is used from the next request on. */
static void test_password_file_rotated(void **state)
{
    fixture *f = *state;
    char path[] = "/tmp/skiff-test-pw-XXXXXX", ref[64];
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "s3cret\n", 7), 7);
    close(fd);
    snprintf(ref, sizeof ref, "file:%s", path);
    open_registry(f, "alice", ref, 0, 0, "");
    serve(f, "/subjects/t-value/versions/latest", 200,
          "{\"subject\":\"t-value\",\"version\":1,\"id\":3,\"schema\":\"\\\"int\\\"\"}");
    outcome a = {0}, b = {0};
    latest(f, "t-value", &a);
    assert_string_equal(f->auth, "Basic YWxpY2U6czNjcmV0"); /* alice:s3cret */
    FILE *w = fopen(path, "w");
    fputs("n3w", w);
    fclose(w);
    assert_int_equal(sk_secret_reload(f->pass), 1);
    latest(f, "t-value", &b);
    assert_string_equal(f->auth, "Basic YWxpY2U6bjN3"); /* alice:n3w */
    unlink(path);
}

static void test_cancel(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/1", 200, RECORD_SCHEMA);
    outcome a = {0}, b = {0}, c = {0}, d = {0};
    sk_registry_lookup *la = sk_registry_by_id(f->reg, 1, on_lookup, &a);
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &b));
    sk_registry_cancel(la); /* waiting on the shared request */
    run_until(&f->server, &b.calls, 1);
    sk_registry_cancel(sk_registry_by_id(f->reg, 1, on_lookup, &c)); /* answered, not delivered */
    sk_registry_cancel(NULL);
    by_id(f, 1, &d);
    run_for(&f->server, 0.05);
    assert_int_equal(a.calls + c.calls, 0);
    assert_int_equal(b.st, SK_REG_OK);
    assert_int_equal(hits(f, "/schemas/ids/1"), 1);
}

static void test_free_registry(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/1", 200, RECORD_SCHEMA);
    serve(f, "/schemas/ids/2", 200, RECORD_SCHEMA);
    outcome a = {0}, b = {0}, c = {0};
    by_id(f, 1, &a);
    /* In flight, queued from the cache, and a subject: all dropped without callbacks. */
    assert_non_null(sk_registry_by_id(f->reg, 2, on_lookup, &b));
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &c));
    assert_non_null(sk_registry_latest(f->reg, "t", on_lookup, &c));
    sk_registry_free(f->reg);
    f->reg = NULL;
    run_for(&f->server, 0.1);
    assert_int_equal(b.calls + c.calls, 0);
    sk_registry_free(NULL);

    /* Freed from inside a callback while another lookup waits. */
    open_registry(f, NULL, NULL, 60000, 0, "");
    outcome d = {.free_it = &f->reg}, e = {0};
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &d));
    assert_non_null(sk_registry_by_id(f->reg, 1, on_lookup, &e));
    run_until(&f->server, &d.calls, 1);
    run_for(&f->server, 0.05);
    assert_null(f->reg);
    assert_int_equal(e.calls, 0);
}

static void test_cache_bound(void **state)
{
    fixture *f = *state;
    serve(f, "/schemas/ids/1", 200, RECORD_SCHEMA);
    serve(f, "/schemas/ids/2", 200, RECORD_SCHEMA);
    open_registry(f, NULL, NULL, 60000, 1, "");
    outcome a = {0};
    by_id(f, 1, &a);
    assert_int_equal(a.st, SK_REG_OK);
    by_id_fails(f, 2, SK_REG_UNAVAILABLE, "schema id 2", "cache full");
    assert_int_equal(hits(f, "/schemas/ids/2"), 0);
    sk_metric *full = sk_metrics_counter(f->m, "skiff_schema_registry_cache_full_total", "x", NULL);
    assert_true(sk_series_value(sk_metric_series(full, NULL)) == 1);
}

static void test_bad_arguments(void **state)
{
    fixture *f = *state;
    char err[128] = "";
    sk_registry_opts o = {0};
    assert_null(sk_registry_new(f->server.base, &o, NULL, err, sizeof err));
    assert_non_null(strstr(err, "no URL"));
    outcome a = {0};
    assert_null(sk_registry_latest(f->reg, "", on_lookup, &a));
    assert_null(sk_registry_latest(f->reg, NULL, on_lookup, &a));
    assert_null(sk_registry_by_id(NULL, 1, on_lookup, &a));
    assert_null(sk_registry_by_id(f->reg, 1, NULL, &a));
    assert_null(sk_registry_cached(NULL, 1, NULL, NULL));
    assert_null(sk_registry_cached_latest(f->reg, "x", NULL));
}

static void version(fixture *f, const char *subject, int32_t v, outcome *o)
{
    assert_non_null(sk_registry_version(f->reg, subject, v, on_lookup, o));
    assert_int_equal(o->calls, 0);
    run_until(&f->server, &o->calls, 1);
}

/* One version of a subject, with the registry's credentials: its id and schema, the schema kept
 * by id (a later by-id lookup is answered from the cache); the version itself is asked again
 * each time. */
static void test_version(void **state)
{
    fixture *f = *state;
    open_registry(f, "alice", "s3cret", 60000, 0, "");
    const char *uri = "/subjects/a%2Fb-value/versions/2";
    serve(f, uri, 200,
          "{\"subject\":\"a/b-value\",\"version\":2,\"id\":21,\"schema\":\"{\\\"type\\\":"
          "\\\"record\\\",\\\"name\\\":\\\"R\\\",\\\"fields\\\":[{\\\"name\\\":\\\"x\\\","
          "\\\"type\\\":\\\"long\\\"}]}\"}");
    outcome a = {0}, b = {0}, c = {0};
    version(f, "a/b-value", 2, &a);
    assert_string_equal(f->uri, uri);
    assert_string_equal(f->auth, "Basic YWxpY2U6czNjcmV0");
    assert_int_equal(a.st, SK_REG_OK);
    assert_int_equal(a.id, 21);
    assert_non_null(a.schema);
    by_id(f, 21, &b);
    assert_ptr_equal(b.schema, a.schema);
    assert_int_equal(hits(f, "/schemas/ids/21"), 0);
    version(f, "a/b-value", 2, &c);
    assert_ptr_equal(c.schema, a.schema);
    assert_int_equal(hits(f, uri), 2);
    assert_true(metric(f, "ok") == 2);
}

/* The subject or the version unknown: NOT_FOUND naming both; a 5xx or a refused connection:
 * UNAVAILABLE; a version whose schema is not Avro: INVALID. Nothing of it is cached. */
static void test_version_failures(void **state)
{
    fixture *f = *state;
    serve(f, "/subjects/s/versions/9", 404,
          "{\"error_code\":40402,\"message\":\"Version 9 not found.\"}");
    serve(f, "/subjects/nope/versions/1", 404,
          "{\"error_code\":40401,\"message\":\"Subject 'nope' not found.\"}");
    serve(f, "/subjects/s/versions/3", 500, "{\"error_code\":50001,\"message\":\"boom\"}");
    serve(f, "/subjects/p/versions/1", 200,
          "{\"subject\":\"p\",\"version\":1,\"id\":30,\"schemaType\":\"PROTOBUF\","
          "\"schema\":\"syntax = \\\"proto3\\\";\"}");
    outcome a = {0}, b = {0}, c = {0}, d = {0}, e = {0};
    version(f, "s", 9, &a);
    assert_int_equal(a.st, SK_REG_NOT_FOUND);
    expect_err(&a, "version 9 of subject \"s\"", "40402");
    version(f, "nope", 1, &b);
    assert_int_equal(b.st, SK_REG_NOT_FOUND);
    expect_err(&b, "version 1 of subject \"nope\"", "40401");
    version(f, "s", 3, &c);
    assert_int_equal(c.st, SK_REG_UNAVAILABLE);
    expect_err(&c, "version 3 of subject \"s\"", "HTTP 500");
    version(f, "p", 1, &d);
    assert_int_equal(d.st, SK_REG_INVALID);
    assert_int_equal(d.id, 30);
    expect_err(&d, "schema id 30", "PROTOBUF");
    serve(f, "/subjects/s/versions/9", 200,
          "{\"subject\":\"s\",\"version\":9,\"id\":31,\"schema\":\"\\\"string\\\"\"}");
    version(f, "s", 9, &e); /* registered meanwhile */
    assert_int_equal(e.st, SK_REG_OK);
    assert_int_equal(e.id, 31);
    assert_true(metric(f, "not_found") == 2);
    assert_true(metric(f, "unavailable") == 1);
    assert_true(metric(f, "invalid") == 1);
    /* "latest", 0 and an empty subject are not versions. */
    assert_null(sk_registry_version(f->reg, "s", -1, on_lookup, &e));
    assert_null(sk_registry_version(f->reg, "s", 0, on_lookup, &e));
    assert_null(sk_registry_version(f->reg, "", 1, on_lookup, &e));
    assert_null(sk_registry_version(f->reg, "s", 1, NULL, &e));
}

/* Freed with a version request in flight, and with a cancelled one: no callback, no leak. */
static void test_version_free_in_flight(void **state)
{
    fixture *f = *state;
    outcome a = {0}, b = {0};
    assert_non_null(sk_registry_version(f->reg, "s", 1, on_lookup, &a));
    sk_registry_cancel(sk_registry_version(f->reg, "s", 2, on_lookup, &b));
    sk_registry_free(f->reg);
    f->reg = NULL;
    run_for(&f->server, 0.1);
    assert_int_equal(a.calls + b.calls, 0);
}

int main(void)
{
    setenv("no_proxy", "*", 1); /* the tests talk to 127.0.0.1 directly */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_by_id_cached_and_coalesced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_found_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_not_cached, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unavailable_kinds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_ttl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_latest_reuses_id_entry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_basic_auth_and_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_password_file_rotated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_registry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cache_bound, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_failures, setup, teardown),
        cmocka_unit_test_setup_teardown(test_version_free_in_flight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
