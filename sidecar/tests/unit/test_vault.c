/* The Vault client against an in-process Vault API: Kubernetes login with the JWT re-read at
 * every login, a vault: secret read after login and refreshed (a new version tells the
 * subscribers), a 403 on a read leading to a new login, renewal of the token and a refused
 * renewal leading to a login, logins retried after a refusal; and the login and KV parsers.
 * A canary secret value never shows in the metrics. */
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

#include "core/config.h"
#include "core/log.h"
#include "secrets/secret.h"
#include "secrets/vault.h"

#include "config_test_helpers.h"
#include "http_test_server.h"

#define CANARY "canary-vault-77a1-value"

typedef struct {
    test_server server;
    int logins, renewals, reads;
    int login_status;  /* answer of logins */
    int renew_status;  /* answer of renewals */
    int renew_lease_s; /* lease of renewed tokens (0: lease_s) */
    int deny_reads;    /* answer this many reads with 403 */
    int lease_s;       /* lease of issued tokens */
    int version;       /* of the KV secret */
    char value[64];    /* of the KV secret's field "password" */
    char last_jwt[128], last_token[64], last_ns[64], last_path[256];
    sk_metrics *m;
    sk_vault *v;
    sk_secret *s;
    char jwt_path[64];
    int changes; /* subscriber calls */
} fixture;

static void send_json(struct evhttp_request *req, int status, const char *body)
{
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, status, "X", b);
    evbuffer_free(b);
}

static void answer_auth(struct evhttp_request *req, int status, int n, int lease)
{
    char body[256];
    if (status != 200) {
        send_json(req, status, "{\"errors\":[\"permission denied\"]}");
        return;
    }
    snprintf(body, sizeof body,
             "{\"auth\":{\"client_token\":\"s.token-%d\",\"lease_duration\":%d,"
             "\"renewable\":true,\"policies\":[\"skiff\"]}}",
             n, lease);
    send_json(req, 200, body);
}

static void on_login(fixture *f, struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    char body[512] = "";
    size_t n = evbuffer_get_length(in);
    evbuffer_copyout(in, body, n < sizeof body - 1 ? n : sizeof body - 1);
    const char *jwt = strstr(body, "\"jwt\":\"");
    snprintf(f->last_jwt, sizeof f->last_jwt, "%s", jwt ? jwt + 7 : "");
    char *q = strchr(f->last_jwt, '"');
    if (q)
        *q = '\0';
    assert_non_null(strstr(body, "\"role\":\"skiff\""));
    f->logins++;
    answer_auth(req, f->login_status, f->logins, f->lease_s);
}

static void on_read(fixture *f, struct evhttp_request *req)
{
    char body[256];
    f->reads++;
    if (f->deny_reads > 0) {
        f->deny_reads--;
        send_json(req, 403, "{\"errors\":[\"permission denied\"]}");
        return;
    }
    snprintf(body, sizeof body,
             "{\"data\":{\"data\":{\"password\":\"%s\"},\"metadata\":{\"version\":%d}}}", f->value,
             f->version);
    send_json(req, 200, body);
}

static void on_server(struct evhttp_request *req, void *arg)
{
    fixture *f = arg;
    const char *uri = evhttp_request_get_uri(req);
    snprintf(f->last_path, sizeof f->last_path, "%s", uri);
    copy_header(req, "X-Vault-Token", f->last_token, sizeof f->last_token);
    copy_header(req, "X-Vault-Namespace", f->last_ns, sizeof f->last_ns);
    if (strcmp(uri, "/v1/auth/kubernetes/login") == 0)
        on_login(f, req);
    else if (strcmp(uri, "/v1/auth/token/renew-self") == 0)
        answer_auth(req, f->renew_status, 100 + ++f->renewals,
                    f->renew_lease_s ? f->renew_lease_s : f->lease_s);
    else if (strcmp(uri, "/v1/secret/data/skiff/registry") == 0)
        on_read(f, req);
    else
        send_json(req, 404, "{\"errors\":[]}");
}

static void write_jwt(fixture *f, const char *jwt)
{
    FILE *fp = fopen(f->jwt_path, "w");
    assert_non_null(fp);
    fprintf(fp, "%s\n", jwt);
    fclose(fp);
}

static void on_change(void *ud, const sk_secret *s)
{
    (void)s;
    ((fixture *)ud)->changes++;
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->login_status = 200;
    f->renew_status = 200;
    f->lease_s = 3600;
    f->version = 1;
    snprintf(f->value, sizeof f->value, "%s", CANARY);
    test_server_start(&f->server, on_server, f);
    f->m = sk_metrics_new();
    snprintf(f->jwt_path, sizeof f->jwt_path, "/tmp/skiff-vault-jwt-XXXXXX");
    close(mkstemp(f->jwt_path));
    write_jwt(f, "jwt-one");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sk_secret_free(f->s);
    sk_vault_free(f->v);
    sk_metrics_free(f->m);
    test_server_stop(&f->server);
    unlink(f->jwt_path);
    free(f);
    return 0;
}

static void start(fixture *f, int64_t refresh_ms)
{
    char url[64], err[256];
    test_server_url(&f->server, "", url, sizeof url);
    sk_vault_opts o = {.address = url,
                       .namespace_ = "team-a",
                       .auth_mount = "kubernetes",
                       .role = "skiff",
                       .token_path = f->jwt_path,
                       .refresh_ms = refresh_ms,
                       .backoff_initial_ms = 20,
                       .backoff_max_ms = 100};
    f->v = sk_vault_new(f->server.base, f->m, &o, err, sizeof err);
    assert_non_null(f->v);
    sk_vault_install(f->v);
    f->s = sk_secret_new("schema_registry.password", "vault:secret/skiff/registry#password", err,
                         sizeof err);
    assert_non_null(f->s);
    assert_int_equal(sk_secret_subscribe(f->s, on_change, f), 0);
}

static int is_ready(fixture *f)
{
    char why[256];
    return sk_vault_ready(f->v, why, sizeof why);
}

static void wait_ready(fixture *f)
{
    double deadline = sk_mono_s() + 10;
    while (!is_ready(f) && sk_mono_s() < deadline)
        event_base_loop(f->server.base, EVLOOP_ONCE);
    assert_true(is_ready(f));
}

static void test_login_and_read(void **state)
{
    fixture *f = *state;
    start(f, 60000);
    char why[256];
    assert_int_equal(sk_vault_ready(f->v, why, sizeof why), 0);
    assert_string_equal(sk_secret_value(f->s, NULL), "");
    assert_int_equal(sk_secret_pending(f->s), 1);
    wait_ready(f);
    assert_int_equal(sk_secret_pending(f->s), 0);
    assert_int_equal(f->changes, 1); /* the first value is a change */
    assert_int_equal(f->logins, 1);
    assert_string_equal(f->last_jwt, "jwt-one");
    assert_string_equal(f->last_token, "s.token-1");
    assert_string_equal(f->last_ns, "team-a");
    assert_string_equal(sk_secret_value(f->s, NULL), CANARY);
    assert_string_equal(sk_secret_origin(f->s), "vault:secret/skiff/registry#password");
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(strstr(text, "skiff_vault_logins_total{result=\"ok\"} 1"));
    assert_non_null(strstr(text, "skiff_vault_secret_reads_total{secret=\"schema_registry."
                                 "password\",result=\"ok\"} 1"));
    assert_null(strstr(text, CANARY));
    assert_null(strstr(text, "skiff/registry"));
    free(text);
}

static void test_new_version_notifies(void **state)
{
    fixture *f = *state;
    start(f, 100);
    wait_ready(f);
    int changes = f->changes;
    f->version = 2;
    snprintf(f->value, sizeof f->value, "rotated-value");
    double deadline = sk_mono_s() + 10;
    while (f->changes == changes && sk_mono_s() < deadline)
        event_base_loop(f->server.base, EVLOOP_ONCE);
    assert_int_equal(f->changes, changes + 1);
    assert_string_equal(sk_secret_value(f->s, NULL), "rotated-value");
    assert_int_equal(f->logins, 1);
}

static void test_denied_read_logs_in_again(void **state)
{
    fixture *f = *state;
    start(f, 100);
    wait_ready(f);
    write_jwt(f, "jwt-two");
    f->deny_reads = 1;
    run_until(&f->server, &f->logins, 2);
    assert_string_equal(f->last_jwt, "jwt-two"); /* read again at this login */
    wait_ready(f);
    assert_string_equal(sk_secret_value(f->s, NULL), CANARY); /* kept through the 403 */
}

static void test_renewal_and_refused_renewal(void **state)
{
    fixture *f = *state;
    f->lease_s = 1;
    start(f, 60000);
    wait_ready(f);
    run_until(&f->server, &f->renewals, 1);
    assert_int_equal(f->logins, 1);
    assert_string_equal(f->last_token, "s.token-1");
    f->renew_status = 403;
    run_until(&f->server, &f->logins, 2);
    wait_ready(f);
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(strstr(text, "skiff_vault_renewals_total{result=\"refused\"} 1"));
    free(text);
}

/* A renewal whose lease comes back cut short (the max TTL) is followed by a login. */
static void test_max_ttl_logs_in_again(void **state)
{
    fixture *f = *state;
    f->lease_s = 3;
    f->renew_lease_s = 1;
    start(f, 60000);
    wait_ready(f);
    run_until(&f->server, &f->logins, 2);
    assert_true(f->renewals >= 1);
    char *text = sk_metrics_render(f->m, NULL);
    assert_non_null(strstr(text, "skiff_vault_renewals_total{result=\"exhausted\"} 1"));
    assert_non_null(strstr(text, "skiff_vault_renewals_total{result=\"ok\"} 0"));
    free(text);
}

static void test_config_rows(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.annotations = "skiff.io/vault.role=\"skiff\"\n",
              .env = LIST("VAULT_ADDR=https://vault.example:8200", "VAULT_CACERT=/etc/ca.pem",
                          "VAULT_NAMESPACE=team-a",
                          "SKIFF_SCHEMA_REGISTRY_PASSWORD=vault:secret/skiff/r#password")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.vault_address, "https://vault.example:8200");
    assert_string_equal(cfg.vault_cacert, "/etc/ca.pem");
    assert_string_equal(cfg.vault_namespace, "team-a");
    assert_string_equal(cfg.vault_role, "skiff");
    assert_string_equal(cfg.vault_auth_mount, "kubernetes");
    assert_int_equal(cfg.vault_refresh_ms, 60000);
    sk_config_clear(&cfg);
    load_one_problem(&(srcs){.env = LIST("SKIFF_SCHEMA_REGISTRY_PASSWORD=vault:secret/r#p")},
                     LIST("schema_registry.password", "vault.address is empty"));
    load_one_problem(&(srcs){.env = LIST("VAULT_ADDR=http://v:8200")}, LIST("vault.role", "empty"));
    load_one_problem(&(srcs){.env = LIST("VAULT_ADDR=v:8200", "SKIFF_VAULT_ROLE=r")},
                     LIST("vault.address", "https://"));
}

static void test_refused_login_retried(void **state)
{
    fixture *f = *state;
    f->login_status = 403;
    start(f, 60000);
    run_until(&f->server, &f->logins, 2);
    assert_int_equal(is_ready(f), 0);
    char why[256];
    sk_vault_ready(f->v, why, sizeof why);
    assert_non_null(strstr(why, "permission denied"));
    f->login_status = 200;
    wait_ready(f);
}

static void test_missing_jwt(void **state)
{
    fixture *f = *state;
    unlink(f->jwt_path);
    start(f, 60000);
    run_for(&f->server, 0.2);
    assert_int_equal(f->logins, 0);
    char why[256];
    assert_int_equal(sk_vault_ready(f->v, why, sizeof why), 0);
    assert_non_null(strstr(why, "service-account token"));
    write_jwt(f, "jwt-late");
    wait_ready(f);
    assert_string_equal(f->last_jwt, "jwt-late");
}

static void test_no_resolver(void **state)
{
    (void)state;
    char err[256];
    assert_null(sk_secret_new("x", "vault:secret/a#b", err, sizeof err));
    assert_non_null(strstr(err, "vault.address"));
}

static void test_parse_auth(void **state)
{
    (void)state;
    char why[256];
    sk_vault_auth a;
    const char *ok = "{\"auth\":{\"client_token\":\"s.abc\",\"lease_duration\":60,"
                     "\"renewable\":true}}";
    assert_int_equal(sk_vault_parse_auth(200, ok, strlen(ok), &a, why, sizeof why), SK_VAULT_OK);
    assert_string_equal(a.client_token, "s.abc");
    assert_int_equal(a.lease_ms, 60000);
    assert_int_equal(a.renewable, 1);
    sk_vault_auth_clear(&a);
    const char *denied = "{\"errors\":[\"permission denied\"]}";
    assert_int_equal(sk_vault_parse_auth(403, denied, strlen(denied), &a, why, sizeof why),
                     SK_VAULT_REFUSED);
    assert_non_null(strstr(why, "permission denied"));
    const char *bad[] = {"{}",
                         "[]",
                         "{\"auth\":{\"client_token\":\"a b\",\"lease_duration\":1}}",
                         "{\"auth\":{\"client_token\":\"x\",\"lease_duration\":-1}}",
                         "{\"auth\":{\"client_token\":\"x\",\"lease_duration\":1,"
                         "\"renewable\":\"yes\"}}",
                         "not json"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(sk_vault_parse_auth(200, bad[i], strlen(bad[i]), &a, why, sizeof why),
                         SK_VAULT_ERROR);
        assert_null(a.client_token);
    }
    assert_int_equal(sk_vault_parse_auth(503, "", 0, &a, why, sizeof why), SK_VAULT_ERROR);
}

static void test_parse_kv(void **state)
{
    (void)state;
    char why[256], *val;
    size_t len;
    int64_t ver;
    const char *ok = "{\"data\":{\"data\":{\"p\":\"v1\"},\"metadata\":{\"version\":3}}}";
    assert_int_equal(sk_vault_parse_kv(200, ok, strlen(ok), "p", &val, &len, &ver, why, sizeof why),
                     SK_VAULT_OK);
    assert_string_equal(val, "v1");
    assert_int_equal(len, 2);
    assert_int_equal(ver, 3);
    free(val);
    assert_int_equal(sk_vault_parse_kv(200, ok, strlen(ok), "q", &val, &len, &ver, why, sizeof why),
                     SK_VAULT_NOT_FOUND);
    assert_int_equal(
        sk_vault_parse_kv(404, "{\"errors\":[]}", 13, "p", &val, &len, &ver, why, sizeof why),
        SK_VAULT_NOT_FOUND);
    assert_int_equal(sk_vault_parse_kv(403, "", 0, "p", &val, &len, &ver, why, sizeof why),
                     SK_VAULT_REFUSED);
    const char *num = "{\"data\":{\"data\":{\"p\":5},\"metadata\":{\"version\":1}}}";
    assert_int_equal(
        sk_vault_parse_kv(200, num, strlen(num), "p", &val, &len, &ver, why, sizeof why),
        SK_VAULT_ERROR);
    const char *nul = "{\"data\":{\"data\":{\"p\":\"a\\u0000b\"},\"metadata\":{\"version\":1}}}";
    assert_int_equal(
        sk_vault_parse_kv(200, nul, strlen(nul), "p", &val, &len, &ver, why, sizeof why),
        SK_VAULT_ERROR);
    const char *v1 = "{\"data\":{\"p\":\"kv1 shape\"}}";
    assert_int_equal(sk_vault_parse_kv(200, v1, strlen(v1), "p", &val, &len, &ver, why, sizeof why),
                     SK_VAULT_ERROR);
    assert_null(val);
}

static void test_parse_kv1_and_mount(void **state)
{
    (void)state;
    char why[256], *val;
    size_t len;
    int64_t lease;
    const char *ok = "{\"lease_duration\":30,\"data\":{\"p\":\"old-style\"}}";
    assert_int_equal(
        sk_vault_parse_kv1(200, ok, strlen(ok), "p", &val, &len, &lease, why, sizeof why),
        SK_VAULT_OK);
    assert_string_equal(val, "old-style");
    assert_int_equal(lease, 30000);
    free(val);
    assert_int_equal(
        sk_vault_parse_kv1(200, ok, strlen(ok), "q", &val, &len, &lease, why, sizeof why),
        SK_VAULT_NOT_FOUND);
    const char *bad = "{\"lease_duration\":-1,\"data\":{\"p\":\"x\"}}";
    assert_int_equal(
        sk_vault_parse_kv1(200, bad, strlen(bad), "p", &val, &len, &lease, why, sizeof why),
        SK_VAULT_ERROR);
    assert_null(val);
    int version;
    const char *v2 = "{\"data\":{\"type\":\"kv\",\"path\":\"secret/\",\"options\":"
                     "{\"version\":\"2\"}}}";
    const char *v1 = "{\"data\":{\"type\":\"kv\",\"path\":\"old/\",\"options\":null}}";
    assert_int_equal(sk_vault_parse_mount(200, v2, strlen(v2), &version, why, sizeof why),
                     SK_VAULT_OK);
    assert_int_equal(version, 2);
    assert_int_equal(sk_vault_parse_mount(200, v1, strlen(v1), &version, why, sizeof why),
                     SK_VAULT_OK);
    assert_int_equal(version, 1);
    assert_int_equal(sk_vault_parse_mount(403, "{}", 2, &version, why, sizeof why),
                     SK_VAULT_REFUSED);
    assert_int_equal(sk_vault_parse_mount(200, "{\"data\":{}}", 11, &version, why, sizeof why),
                     SK_VAULT_ERROR);
}

int main(void)
{
    sk_log_init("test", SK_LOG_ERROR, stderr);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_login_and_read, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_version_notifies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_denied_read_logs_in_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_renewal_and_refused_renewal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_ttl_logs_in_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_login_retried, setup, teardown),
        cmocka_unit_test(test_config_rows),
        cmocka_unit_test_setup_teardown(test_missing_jwt, setup, teardown),
        cmocka_unit_test(test_no_resolver),
        cmocka_unit_test(test_parse_kv1_and_mount),
        cmocka_unit_test(test_parse_auth),
        cmocka_unit_test(test_parse_kv),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
