/* Secret references and values: the reference parser, file secrets read, watched and rotated,
 * subscribers told, and a canary value that never shows in what skiff prints about it (origin,
 * errors, config check problems, metrics). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <event2/event.h>

#include "core/config.h"
#include "core/log.h"
#include "core/metrics.h"
#include "secrets/secret.h"

#define CANARY "canary-7f3a9c-do-not-print"

static char *temp_file(const char *content)
{
    char path[] = "/tmp/skiff-test-secret-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(content);
    assert_int_equal(write(fd, content, n), (ssize_t)n);
    close(fd);
    return strdup(path);
}

static void rewrite(const char *path, const char *content)
{
    /* Like a Kubernetes volume update: a new file renamed over the old one (new inode). */
    char tmp[256];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    FILE *f = fopen(tmp, "w");
    assert_non_null(f);
    fputs(content, f);
    fclose(f);
    assert_int_equal(rename(tmp, path), 0);
}

static void expect_ref(const char *text, sk_secret_kind kind, const char *a, const char *b,
                       const char *c)
{
    sk_secret_ref r;
    char err[160];
    if (sk_secret_ref_parse(text, &r, err, sizeof err) != 0)
        fail_msg("%s: %s", text, err);
    assert_int_equal(r.kind, kind);
    if (kind == SK_SECRET_VAULT) {
        assert_int_equal(r.mount_len, strlen(a));
        assert_memory_equal(r.mount, a, r.mount_len);
        assert_int_equal(r.path_len, strlen(b));
        assert_memory_equal(r.path, b, r.path_len);
        assert_int_equal(r.field_len, strlen(c));
        assert_memory_equal(r.field, c, r.field_len);
    } else {
        assert_int_equal(r.path_len, strlen(a));
        assert_memory_equal(r.path, a, r.path_len);
    }
}

static void expect_bad_ref(const char *text, const char *why)
{
    sk_secret_ref r;
    char err[160] = "";
    assert_int_equal(sk_secret_ref_parse(text, &r, err, sizeof err), -1);
    if (!strstr(err, why))
        fail_msg("%s: error \"%s\" does not say \"%s\"", text, err, why);
}

static void test_ref_parse(void **state)
{
    (void)state;
    expect_ref("file:/var/run/secrets/zeebe/client-secret", SK_SECRET_FILE,
               "/var/run/secrets/zeebe/client-secret", NULL, NULL);
    expect_ref("file:relative/x", SK_SECRET_FILE, "relative/x", NULL, NULL);
    expect_ref("vault:secret/zeebe/worker#client_secret", SK_SECRET_VAULT, "secret", "zeebe/worker",
               "client_secret");
    expect_ref("vault:kv/a#f", SK_SECRET_VAULT, "kv", "a", "f");
    expect_ref("hunter2", SK_SECRET_LITERAL, "hunter2", NULL, NULL);
    expect_ref("", SK_SECRET_LITERAL, "", NULL, NULL);
    expect_ref("File:/x", SK_SECRET_LITERAL, "File:/x", NULL, NULL); /* schemes are lowercase */
    expect_bad_ref("file:", "file:<path>");
    expect_bad_ref("file:/a\nb", "file:<path>");
    expect_bad_ref("vault:", "vault:<mount>/<path>#<field>");
    expect_bad_ref("vault:secret#f", "vault:<mount>");
    expect_bad_ref("vault:/x#f", "vault:<mount>");
    expect_bad_ref("vault:secret/x", "vault:<mount>");
    expect_bad_ref("vault:secret/x#", "vault:<mount>");
    expect_bad_ref("vault:secret/#f", "vault:<mount>");
    expect_bad_ref("vault:secret/a#b#c", "vault:<mount>");
    expect_bad_ref("vault:sec#ret/a", "vault:<mount>");
    expect_bad_ref("vault:secret/a b#c", "vault:<mount>");
    expect_bad_ref("vault:secret//a#c", "empty path segment");
    expect_bad_ref("vault:secret/a/#c", "empty path segment");
}

static void test_literal(void **state)
{
    (void)state;
    char err[256] = "";
    sk_secret *s = sk_secret_new("zeebe.client_secret", CANARY, err, sizeof err);
    assert_non_null(s);
    size_t len;
    assert_string_equal(sk_secret_value(s, &len), CANARY);
    assert_int_equal(len, strlen(CANARY));
    assert_string_equal(sk_secret_origin(s), "literal");
    assert_string_equal(sk_secret_name(s), "zeebe.client_secret");
    assert_int_equal(sk_secret_get_kind(s), SK_SECRET_LITERAL);
    assert_int_equal(sk_secret_reload(s), 0);
    sk_secret_free(s);
    sk_secret_free(NULL);
}

static void test_file_and_errors(void **state)
{
    (void)state;
    char *path = temp_file(CANARY "\r\n");
    char ref[300], err[512] = "";
    snprintf(ref, sizeof ref, "file:%s", path);
    sk_secret *s = sk_secret_new("k", ref, err, sizeof err);
    assert_non_null(s);
    assert_string_equal(sk_secret_value(s, NULL), CANARY); /* one trailing CRLF dropped */
    assert_string_equal(sk_secret_origin(s), ref);
    sk_secret_free(s);

    rewrite(path, "a\n\n");
    s = sk_secret_new("k", ref, err, sizeof err);
    assert_string_equal(sk_secret_value(s, NULL), "a\n"); /* only one */
    sk_secret_free(s);

    assert_null(sk_secret_new("k", "file:/nonexistent/skiff-secret", err, sizeof err));
    assert_non_null(strstr(err, "k: file /nonexistent/skiff-secret cannot be read"));
    assert_null(sk_secret_new("k", "vault:secret/a#b", err, sizeof err));
    assert_non_null(strstr(err, "Vault client"));
    assert_null(sk_secret_new("k", "vault:secret", err, sizeof err));
    assert_non_null(strstr(err, "malformed vault reference"));

    FILE *f = fopen(path, "wb");
    fwrite("ab\0cd", 1, 5, f);
    fclose(f);
    assert_null(sk_secret_new("k", ref, err, sizeof err));
    assert_non_null(strstr(err, "NUL byte"));
    f = fopen(path, "wb");
    for (int i = 0; i < SK_SECRET_MAX_BYTES + 1; i++)
        fputc('x', f);
    fclose(f);
    assert_null(sk_secret_new("k", ref, err, sizeof err));
    assert_non_null(strstr(err, "larger than 64KiB"));
    unlink(path);
    free(path);
}

typedef struct {
    int calls;
    char seen[64];
    sk_secret *unsub_me;
} watcher;

static void on_change(void *ud, const sk_secret *s)
{
    watcher *w = ud;
    w->calls++;
    snprintf(w->seen, sizeof w->seen, "%s", sk_secret_value(s, NULL));
    if (w->unsub_me)
        sk_secret_unsubscribe(w->unsub_me, on_change, ud);
}

static void test_reload_and_subscribers(void **state)
{
    (void)state;
    char *path = temp_file("one");
    char ref[300], err[512];
    snprintf(ref, sizeof ref, "file:%s", path);
    sk_secret *s = sk_secret_new("k", ref, err, sizeof err);
    watcher a = {0}, b = {0};
    assert_int_equal(sk_secret_subscribe(s, on_change, &a), 0);
    assert_int_equal(sk_secret_subscribe(s, on_change, &b), 0);
    b.unsub_me = s; /* b leaves from inside its callback */
    assert_int_equal(sk_secret_reload(s), 0);
    assert_int_equal(a.calls, 0);
    assert_int_equal(sk_secret_version(s), 1);
    rewrite(path, "two");
    assert_int_equal(sk_secret_reload(s), 1);
    assert_int_equal(sk_secret_version(s), 2);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.seen, "two");
    assert_int_equal(b.calls, 1);
    unlink(path); /* unreadable: the old value stays */
    assert_int_equal(sk_secret_reload(s), -1);
    assert_string_equal(sk_secret_value(s, NULL), "two");
    rewrite(path, "three");
    assert_int_equal(sk_secret_reload(s), 1);
    assert_int_equal(a.calls, 2);
    assert_int_equal(b.calls, 1);
    sk_secret_unsubscribe(s, on_change, &a);
    rewrite(path, "four");
    assert_int_equal(sk_secret_reload(s), 1);
    assert_int_equal(a.calls, 2);
    sk_secret_free(s);
    unlink(path);
    free(path);
}

typedef struct {
    struct event_base *base;
    const char *path;
    int step;
} rotation;

/* Drives the loop: writes the new value once the watch has started, stops when it is seen. */
static void on_rotated(void *ud, const sk_secret *s)
{
    rotation *r = ud;
    if (strcmp(sk_secret_value(s, NULL), CANARY "-2") == 0)
        event_base_loopbreak(r->base);
}

static void test_watch(void **state)
{
    (void)state;
    char *path = temp_file(CANARY);
    char ref[300], err[512];
    snprintf(ref, sizeof ref, "file:%s", path);
    struct event_base *base = event_base_new();
    sk_metrics *m = sk_metrics_new();
    sk_secret *s = sk_secret_new("schema_registry.password", ref, err, sizeof err);
    rotation r = {.base = base, .path = path};
    assert_int_equal(sk_secret_watch(s, base, m, 20), 0);
    assert_int_equal(sk_secret_subscribe(s, on_rotated, &r), 0);
    rewrite(path, CANARY "-2\n");
    event_base_dispatch(base);
    assert_string_equal(sk_secret_value(s, NULL), CANARY "-2");
    char *text = sk_metrics_render(m, NULL);
    assert_non_null(strstr(text,
                           "skiff_secret_reloads_total{secret=\"schema_registry.password\",result="
                           "\"changed\"} 1"));
    assert_null(strstr(text, CANARY));
    free(text);
    sk_secret_free(s);
    sk_metrics_free(m);
    event_base_free(base);
    unlink(path);
    free(path);
}

static void test_scrub(void **state)
{
    (void)state;
    char err[64];
    sk_secret *s = sk_secret_new("k", "abcd", err, sizeof err);
    char text[] = "xabcdyabcdabcd";
    sk_secret_scrub(s, text);
    assert_string_equal(text, "x****y********");
    sk_secret_free(s);
    s = sk_secret_new("k", "ab", err, sizeof err);
    char text2[] = "about";
    sk_secret_scrub(s, text2);
    assert_string_equal(text2, "about");
    sk_secret_free(s);
}

/* The configuration: a literal secret is never quoted in a problem; a reference is; a file
 * that cannot be read is a problem of config check. */
static char *check(const char *json, int *n)
{
    char *buf = NULL;
    size_t len;
    sk_config cfg;
    FILE *out = open_memstream(&buf, &len);
    *n = sk_config_load_json_text(&cfg, json, strlen(json), "test.json", out);
    fclose(out);
    sk_config_clear(&cfg);
    return buf;
}

static void test_config_never_shows_literal(void **state)
{
    (void)state;
    int n;
    char long_canary[1100];
    memset(long_canary, 'c', sizeof long_canary - 1);
    memcpy(long_canary, CANARY, strlen(CANARY));
    long_canary[sizeof long_canary - 1] = '\0';
    char json[1300];
    snprintf(json, sizeof json, "{\"schema_registry.password\": \"%s\"}", long_canary);
    char *out = check(json, &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(out, "schema_registry.password: value (a secret, not shown)"));
    assert_null(strstr(out, "canary"));
    free(out);
    out = check("{\"schema_registry.password\": 12345678}", &n);
    assert_int_equal(n, 1);
    assert_null(strstr(out, "12345678"));
    free(out);
    out = check("{\"schema_registry.password\": \"vault:nope\"}", &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(out, "\"vault:nope\""));
    assert_non_null(strstr(out, "vault:<mount>/<path>#<field>"));
    free(out);
    out = check("{\"schema_registry.password\": \"file:/nonexistent/pw\"}", &n);
    assert_int_equal(n, 1);
    assert_non_null(strstr(out, "file /nonexistent/pw cannot be read"));
    free(out);
    out = check("{\"schema_registry.password\": \"" CANARY "\"}", &n);
    assert_int_equal(n, 0);
    free(out);
    out = check("{\"schema_registry.password\" \"" CANARY "\"}", &n); /* no colon */
    assert_int_equal(n, 1);
    assert_non_null(strstr(out, "line 1 column"));
    assert_null(strstr(out, "canary"));
    free(out);
}

/* Every live secret of a kind is listed (for the egress output scan), a freed one no more. */
static void test_values_listed(void **state)
{
    (void)state;
    char err[256];
    const char *vals[8];
    size_t lens[8];
    sk_secret *a = sk_secret_new("a", "canary-value-a", err, sizeof err);
    sk_secret *b = sk_secret_new("b", "canary-value-bb", err, sizeof err);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(sk_secret_values(SK_SECRET_LITERAL, vals, lens, 8), 2);
    assert_int_equal(sk_secret_values(SK_SECRET_VAULT, vals, lens, 8), 0);
    assert_int_equal(sk_secret_values(SK_SECRET_LITERAL, vals, lens, 1), 1);
    sk_secret_free(b);
    assert_int_equal(sk_secret_values(SK_SECRET_LITERAL, vals, lens, 8), 1);
    assert_string_equal(vals[0], "canary-value-a");
    assert_int_equal(lens[0], 14);
    sk_secret_free(a);
    assert_int_equal(sk_secret_values(SK_SECRET_LITERAL, vals, lens, 8), 0);
}

int main(void)
{
    sk_log_init("test", SK_LOG_ERROR, stderr);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_parse),
        cmocka_unit_test(test_values_listed),
        cmocka_unit_test(test_literal),
        cmocka_unit_test(test_file_and_errors),
        cmocka_unit_test(test_reload_and_subscribers),
        cmocka_unit_test(test_watch),
        cmocka_unit_test(test_scrub),
        cmocka_unit_test(test_config_never_shows_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
