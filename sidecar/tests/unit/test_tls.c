/* TLS layer: loading a peer's material, the errors that name the file and the cause, reloading
 * changed files (a bad set refused, the old one kept; a good one put in force with the change
 * told), and client SSLs. Certificates come from devstack/certs.sh, made per run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>
#include <openssl/ssl.h>

#include "net/tls.h"

static char dir[256];  /* certs.sh output */
static char work[300]; /* files a test rewrites */

static const char *cert(const char *name)
{
    static char buf[4][400];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", dir, name);
    return buf[i];
}

static int setup(void **state)
{
    (void)state;
    const char *src = getenv("SKIFF_SOURCE_DIR");
    char cmd[800];
    snprintf(dir, sizeof dir, "/tmp/skiff-test-tls-XXXXXX");
    if (!src || !mkdtemp(dir))
        return -1;
    snprintf(cmd, sizeof cmd, "%s/devstack/certs.sh %s", src, dir);
    snprintf(work, sizeof work, "%s/work", dir);
    return system(cmd) == 0 && mkdir(work, 0700) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Copies certs/<from> over work/<to>, by rename (as a Secret volume swaps files). */
static void install(const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "cp %s/%s %s/.tmp && mv %s/.tmp %s/%s", dir, from, work, work, work,
             to);
    assert_int_equal(system(cmd), 0);
}

static const char *wfile(const char *name)
{
    static char buf[4][400];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof buf[i], "%s/%s", work, name);
    return buf[i];
}

static void expect_error(const sk_tls_opts *o, const char *needle)
{
    char err[512] = "";
    sk_tls *t = sk_tls_new(o, NULL, 0, NULL, err, sizeof err);
    assert_null(t);
    if (!strstr(err, needle) || !strstr(err, o->peer))
        fail_msg("error \"%s\" lacks \"%s\" or the peer", err, needle);
    assert_int_equal(sk_tls_check(o, err, sizeof err), -1);
}

static void test_loads_a_full_set(void **state)
{
    (void)state;
    char err[512];
    sk_tls_opts o = {.peer = "zeebe",
                     .ca_file = cert("ca.pem"),
                     .cert_file = cert("client.pem"),
                     .key_file = cert("client.key"),
                     .alpn = "h2"};
    sk_tls *t = sk_tls_new(&o, NULL, 0, NULL, err, sizeof err);
    assert_non_null(t);
    assert_string_equal(sk_tls_peer(t), "zeebe");
    assert_true(sk_tls_cert_not_after(t) > (int64_t)time(NULL));
    SSL *ip = sk_tls_new_ssl(t, "127.0.0.1"), *dns = sk_tls_new_ssl(t, "localhost");
    assert_non_null(ip);
    assert_non_null(dns);
    SSL_free(ip);
    SSL_free(dns);
    sk_tls_free(t);
    assert_int_equal(sk_tls_check(&o, err, sizeof err), 0);
}

static void test_system_store_without_files(void **state)
{
    (void)state;
    char err[512];
    sk_tls_opts o = {.peer = "schema_registry"};
    sk_tls *t = sk_tls_new(&o, NULL, 0, NULL, err, sizeof err);
    assert_non_null(t);
    assert_int_equal(sk_tls_cert_not_after(t), 0);
    sk_tls_free(t);
}

static void test_bad_files_are_named(void **state)
{
    (void)state;
    sk_tls_opts garbage_ca = {.peer = "zeebe", .ca_file = cert("garbage.pem")};
    expect_error(&garbage_ca, "garbage.pem: no usable PEM certificate");
    sk_tls_opts missing = {.peer = "kafka", .ca_file = cert("nope.pem")};
    expect_error(&missing, "nope.pem: cannot read");
    sk_tls_opts mismatch = {
        .peer = "zeebe", .cert_file = cert("client.pem"), .key_file = cert("server.key")};
    expect_error(&mismatch, "server.key: not a PEM key of certificate");
    sk_tls_opts garbage_cert = {
        .peer = "zeebe", .cert_file = cert("garbage.pem"), .key_file = cert("client.key")};
    expect_error(&garbage_cert, "garbage.pem: not a PEM certificate");
    sk_tls_opts no_key = {.peer = "zeebe", .cert_file = cert("client.pem")};
    expect_error(&no_key, "a client certificate without its key");
    sk_tls_opts no_cert = {.peer = "zeebe", .key_file = cert("client.key")};
    expect_error(&no_cert, "a client key without its certificate");
}

typedef struct seen {
    int calls;
    int changed_cert;
} seen;

static void on_change(void *ud, int changed_cert)
{
    seen *s = ud;
    s->calls++;
    s->changed_cert = changed_cert;
}

static void test_reload_keeps_old_on_bad_and_takes_good(void **state)
{
    (void)state;
    char err[512];
    install("client.pem", "c.pem");
    install("client.key", "c.key");
    install("ca.pem", "ca.pem");
    sk_tls_opts o = {.peer = "zeebe",
                     .ca_file = wfile("ca.pem"),
                     .cert_file = wfile("c.pem"),
                     .key_file = wfile("c.key")};
    sk_tls *t = sk_tls_new(&o, NULL, 0, NULL, err, sizeof err);
    assert_non_null(t);
    seen s = {0};
    sk_tls_on_change(t, on_change, &s);
    int64_t first = sk_tls_cert_not_after(t);
    assert_int_equal(sk_tls_reload(t, err, sizeof err), 0); /* nothing changed */

    install("garbage.pem", "c.pem");
    assert_int_equal(sk_tls_reload(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PEM certificate"));
    assert_int_equal(sk_tls_reload(t, err, sizeof err), 0); /* the same bad set: not again */
    assert_int_equal(s.calls, 0);
    assert_int_equal(sk_tls_cert_not_after(t), first);
    SSL *ssl = sk_tls_new_ssl(t, "localhost"); /* the old material still serves */
    assert_non_null(ssl);
    assert_non_null(SSL_get_certificate(ssl));
    SSL_free(ssl);

    install("client2.pem", "c.pem"); /* half rotated: the key is still the old one */
    assert_int_equal(sk_tls_reload(t, err, sizeof err), -1);
    assert_non_null(strstr(err, "not a PEM key of certificate"));
    install("client2.key", "c.key");
    assert_int_equal(sk_tls_reload(t, err, sizeof err), 1);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.changed_cert, 1);

    install("other-ca.pem", "ca.pem"); /* only the CA: not a client certificate change */
    assert_int_equal(sk_tls_reload(t, err, sizeof err), 1);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.changed_cert, 0);
    sk_tls_free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loads_a_full_set),
        cmocka_unit_test(test_system_store_without_files),
        cmocka_unit_test(test_bad_files_are_named),
        cmocka_unit_test(test_reload_keeps_old_on_bad_and_takes_good),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
