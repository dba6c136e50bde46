/* Credentials and secrets settings: the gateway's OAuth client and the general one, what
 * handlers may ask for (secrets, tokens) and the literal-secrets policy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "core/config.h"
#include "config_test_helpers.h"

/* OAuth for the gateway: Camunda's variables, the three settings go together. */
static void test_oauth_settings(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("CAMUNDA_CLIENT_ID=worker", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                          "CAMUNDA_OAUTH_URL=http://kc:8080/realms/r/protocol/openid-connect/token",
                          "CAMUNDA_TOKEN_AUDIENCE=zeebe-api", "ZEEBE_TOKEN_SCOPE=a b",
                          "CAMUNDA_OAUTH_TOKEN_REFRESH_THRESHOLD_MS=5000")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.zeebe_client_id, "worker");
    assert_string_equal(cfg.zeebe_client_secret, "s3cret-canary");
    assert_string_equal(cfg.zeebe_token_url,
                        "http://kc:8080/realms/r/protocol/openid-connect/token");
    assert_string_equal(cfg.zeebe_token_audience, "zeebe-api");
    assert_string_equal(cfg.zeebe_token_scope, "a b");
    assert_int_equal(cfg.oauth_refresh_ahead_ms, 5000);
    /* the general OAuth client is the gateway's when unset */
    assert_string_equal(cfg.oauth_client_id, "worker");
    assert_string_equal(cfg.oauth_client_secret, "s3cret-canary");
    assert_string_equal(cfg.oauth_token_url,
                        "http://kc:8080/realms/r/protocol/openid-connect/token");
    sk_config_clear(&cfg);
    s.env = LIST("CAMUNDA_CLIENT_ID=worker", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                 "CAMUNDA_OAUTH_URL=http://kc/token");
    s.argv = LIST("--oauth.client_id=egress", "--oauth.client_secret=file:/dev/null",
                  "--oauth.token_url=https://other/token");
    load_ok(&cfg, &s);
    assert_string_equal(cfg.oauth_client_id, "egress");
    assert_string_equal(cfg.oauth_client_secret, "file:/dev/null");
    assert_string_equal(cfg.oauth_token_url, "https://other/token");
    sk_config_clear(&cfg);
    s.argv = LIST("--oauth.client_id=egress");
    load_one_problem(&s, LIST("oauth.client_secret: empty while oauth.client_id is set"));
    s.argv = LIST("--oauth.client_secret=file:/dev/null");
    load_one_problem(&s, LIST("oauth.client_id: empty while oauth.client_secret is set"));
    s.argv = LIST("--oauth.token_url=kc/token");
    load_one_problem(&s, LIST("oauth.token_url: value \"kc/token\"", "http:// or https://"));
    s.argv = NULL;
    s.env = LIST("ZEEBE_CLIENT_ID=worker");
    char *p;
    assert_int_equal(load(&cfg, &s, &p), 2);
    expect_in(p, "zeebe.client_secret: empty while");
    expect_in(p, "zeebe.authorization_server_url: empty while");
    free(p);
    sk_config_clear(&cfg);
    s.env = LIST("ZEEBE_CLIENT_ID=w", "ZEEBE_CLIENT_SECRET=s3cret-canary",
                 "ZEEBE_AUTHORIZATION_SERVER_URL=kc:8080/token");
    load_one_problem(
        &s, LIST("zeebe.authorization_server_url: value \"kc:8080/token\"", "http:// or https://"));
}

static void test_handler_call_settings(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.argv = LIST("--handler.secrets=vault:secret/app/*#token,vault:kv/db#password",
                           "--vault.address=https://vault:8200", "--vault.role=r",
                           "--handler.token_audiences=billing,search", "--oauth.client_id=c",
                           "--oauth.client_secret=file:/dev/null",
                           "--oauth.token_url=https://kc/token")};
    load_ok(&cfg, &s);
    assert_int_equal(cfg.handler_secrets_len, 2);
    assert_string_equal(cfg.handler_secrets[1], "vault:kv/db#password");
    assert_int_equal(cfg.handler_token_audiences_len, 2);
    sk_config_clear(&cfg);
    s.argv = LIST("--handler.secrets=vault:secret/a*#x", "--vault.address=https://vault:8200",
                  "--vault.role=r");
    load_one_problem(&s, LIST("handler.secrets: item \"vault:secret/a*#x\"", "`*` only"));
    s.argv = LIST("--handler.secrets=vault:secret/a#x");
    load_one_problem(&s, LIST("handler.secrets: set", "vault.address is empty"));
    s.argv = LIST("--handler.token_audiences=billing");
    load_one_problem(&s, LIST("handler.token_audiences: set", "oauth.client_id"));
}

static void test_literal_secrets(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("ZEEBE_CLIENT_ID=w", "ZEEBE_CLIENT_SECRET=canary-literal-4d1e",
                          "ZEEBE_AUTHORIZATION_SERVER_URL=https://kc/token",
                          "SKIFF_SECURITY_LITERAL_SECRETS=refuse")};
    char *p;
    /* one problem (oauth.client_secret is the same setting), naming key and source only */
    assert_int_equal(load(&cfg, &s, &p), 1);
    expect_in(p, "zeebe.client_secret: a literal secret (from environment ZEEBE_CLIENT_SECRET)");
    expect_in(p, "security.literal_secrets is refuse (from environment");
    assert_null(strstr(p, "canary-literal-4d1e"));
    free(p);
    sk_config_clear(&cfg);
    const char *keys[SK_LITERAL_SECRETS_MAX];
    s.argv = LIST("--schema_registry.password=canary-literal-4d1e",
                  "--zeebe.client_secret=file:/dev/null", "--security.literal_secrets=warn");
    load_ok(&cfg, &s);
    assert_int_equal(sk_config_literal_secrets(&cfg, keys), 1);
    assert_string_equal(keys[0], "schema_registry.password");
    sk_config_clear(&cfg);
    s.argv = LIST("--zeebe.client_secret=vault:secret/app#s", "--vault.address=https://v",
                  "--vault.role=r");
    load_ok(&cfg, &s);
    assert_int_equal(sk_config_literal_secrets(&cfg, keys), 0);
    sk_config_clear(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_oauth_settings),
        cmocka_unit_test(test_handler_call_settings),
        cmocka_unit_test(test_literal_secrets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
