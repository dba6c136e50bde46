/* The rules of the security block: TLS files that go together, TLS settings of a peer that does
 * not use TLS, SASL without a user, and the plaintext profile (security.plaintext). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config_internal.h"
#include "secrets/grants.h"
#include "secrets/secret.h"

static const char *from(ctx *c, const char *key)
{
    return c->from[sk_config_find_row(key) - sk_config_table];
}

static int is_default(ctx *c, const char *key)
{
    return strncmp(from(c, key), "default", 7) == 0;
}

/* A client certificate needs its key and the other way round. */
static void check_pair(ctx *c, const char *cert_key, const char *cert, const char *key_key,
                       const char *key)
{
    if ((cert[0] != '\0') == (key[0] != '\0'))
        return;
    const char *set = cert[0] ? cert_key : key_key, *unset = cert[0] ? key_key : cert_key;
    sk_config_problem(c, "%s: set (from %s) but %s is empty: expected both or neither", set,
                      from(c, set), unset);
}

/* TLS settings of a peer whose connection is not TLS: a mistake, not something to ignore. */
static void check_unused(ctx *c, const char *key, const char *v, const char *why)
{
    if (v[0] != '\0')
        sk_config_problem(c, "%s: set (from %s) but %s: expected no TLS files for it", key,
                          from(c, key), why);
}

static void check_zeebe(ctx *c)
{
    sk_config *cfg = c->cfg;
    const char *files = cfg->zeebe_ca_file[0]     ? "zeebe.ca_file"
                        : cfg->zeebe_cert_file[0] ? "zeebe.cert_file"
                        : cfg->zeebe_key_file[0]  ? "zeebe.key_file"
                                                  : NULL;
    /* As in Camunda's clients, a CA or client certificate path alone means TLS. */
    if (files && !cfg->zeebe_tls && is_default(c, "zeebe.tls"))
        cfg->zeebe_tls = 1;
    else if (files && !cfg->zeebe_tls)
        sk_config_problem(c,
                          "%s: set (from %s) but zeebe.tls is false (from %s): expected "
                          "zeebe.tls=true, or no TLS files",
                          files, from(c, files), from(c, "zeebe.tls"));
    check_pair(c, "zeebe.cert_file", cfg->zeebe_cert_file, "zeebe.key_file", cfg->zeebe_key_file);
}

static void check_kafka_security(ctx *c)
{
    sk_config *cfg = c->cfg;
    int p = cfg->kafka_security_protocol;
    if (p == SK_KAFKA_PLAINTEXT || p == SK_KAFKA_SASL_PLAINTEXT) {
        const char *why = "kafka.security.protocol is not ssl or sasl_ssl";
        check_unused(c, "kafka.ssl.ca.location", cfg->kafka_ssl_ca, why);
        check_unused(c, "kafka.ssl.certificate.location", cfg->kafka_ssl_cert, why);
        check_unused(c, "kafka.ssl.key.location", cfg->kafka_ssl_key, why);
    }
    check_pair(c, "kafka.ssl.certificate.location", cfg->kafka_ssl_cert, "kafka.ssl.key.location",
               cfg->kafka_ssl_key);
    if ((p == SK_KAFKA_SASL_PLAINTEXT || p == SK_KAFKA_SASL_SSL) && !cfg->kafka_oauthbearer &&
        cfg->kafka_sasl_username[0] == '\0')
        sk_config_problem(c,
                          "kafka.sasl.username: empty while kafka.security.protocol is %s "
                          "(from %s): expected the SASL user",
                          sk_kafka_protocols[p], from(c, "kafka.security.protocol"));
}

static void check_registry(ctx *c)
{
    sk_config *cfg = c->cfg;
    if (strncmp(cfg->registry_url, "https://", 8) != 0) {
        const char *why = "schema_registry.url is not https://";
        check_unused(c, "schema_registry.ca_file", cfg->registry_ca_file, why);
        check_unused(c, "schema_registry.cert_file", cfg->registry_cert_file, why);
        check_unused(c, "schema_registry.key_file", cfg->registry_key_file, why);
    }
    check_pair(c, "schema_registry.cert_file", cfg->registry_cert_file, "schema_registry.key_file",
               cfg->registry_key_file);
}

static void check_oauth_tls(ctx *c)
{
    sk_config *cfg = c->cfg;
    if (strncmp(cfg->zeebe_token_url, "https://", 8) != 0) {
        const char *why = "zeebe.authorization_server_url is not https://";
        check_unused(c, "oauth.ca_file", cfg->oauth_ca_file, why);
        check_unused(c, "oauth.cert_file", cfg->oauth_cert_file, why);
        check_unused(c, "oauth.key_file", cfg->oauth_key_file, why);
    }
    check_pair(c, "oauth.cert_file", cfg->oauth_cert_file, "oauth.key_file", cfg->oauth_key_file);
}

const char *sk_config_otlp_url(const sk_config *cfg)
{
    return cfg->otlp_traces_endpoint && cfg->otlp_traces_endpoint[0] ? cfg->otlp_traces_endpoint
                                                                     : cfg->otlp_endpoint;
}

/* OTLP/gRPC to a scheme-less endpoint is TLS unless otlp.insecure (the OpenTelemetry rule);
 * otherwise the scheme decides. */
int sk_config_otlp_tls(const sk_config *cfg)
{
    const char *url = sk_config_otlp_url(cfg);
    if (!url || !url[0])
        return -1;
    if (strncmp(url, "https://", 8) == 0)
        return 1;
    int grpc = strcmp(sk_otlp_protocols[cfg->otlp_protocol], "grpc") == 0;
    return grpc && strncmp(url, "http://", 7) != 0 && !cfg->otlp_insecure;
}

static void check_otlp_tls(ctx *c)
{
    sk_config *cfg = c->cfg;
    if (sk_config_otlp_tls(cfg) != 1) {
        const char *why = "the OTLP endpoint is not TLS (http://, or insecure OTLP/gRPC)";
        check_unused(c, "otlp.ca_file", cfg->otlp_ca_file, why);
        check_unused(c, "otlp.cert_file", cfg->otlp_cert_file, why);
        check_unused(c, "otlp.key_file", cfg->otlp_key_file, why);
    }
    check_pair(c, "otlp.cert_file", cfg->otlp_cert_file, "otlp.key_file", cfg->otlp_key_file);
}

/* An http:// URL of an HTTP peer (an empty setting is no peer). */
static int http_url(const char *url)
{
    return url && strncmp(url, "http://", 7) == 0;
}

size_t sk_config_plaintext_peers(const sk_config *cfg, sk_plaintext_peer *out)
{
    size_t n = 0;
    if (!cfg->zeebe_tls)
        out[n++] =
            (sk_plaintext_peer){"zeebe", "zeebe.address", cfg->zeebe_address, "zeebe.tls=true"};
    int p = cfg->kafka_security_protocol;
    if (cfg->kafka_brokers_len > 0 && p != SK_KAFKA_SSL && p != SK_KAFKA_SASL_SSL)
        out[n++] = (sk_plaintext_peer){"kafka", "kafka.brokers", cfg->kafka_brokers[0],
                                       "kafka.security.protocol=ssl or sasl_ssl"};
    if (http_url(cfg->registry_url))
        out[n++] = (sk_plaintext_peer){"schema_registry", "schema_registry.url", cfg->registry_url,
                                       "an https:// URL"};
    if (cfg->zeebe_client_id[0] && http_url(cfg->zeebe_token_url))
        out[n++] = (sk_plaintext_peer){"oauth", "zeebe.authorization_server_url",
                                       cfg->zeebe_token_url, "an https:// URL"};
    if (http_url(cfg->vault_address))
        out[n++] =
            (sk_plaintext_peer){"vault", "vault.address", cfg->vault_address, "an https:// URL"};
    if (sk_config_otlp_tls(cfg) == 0)
        out[n++] = (sk_plaintext_peer){"otlp", "otlp.endpoint", sk_config_otlp_url(cfg),
                                       "an https:// URL (OTLP/gRPC: or otlp.insecure=false)"};
    return n;
}

/* The allow-lists of the handlers' secret and token calls, and what they need. */
static void check_handler_calls(ctx *c)
{
    sk_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->handler_secrets_len; i++) {
        char why[160];
        if (sk_grant_pattern_check(cfg->handler_secrets[i], why, sizeof why) != 0)
            sk_config_problem(c, "handler.secrets: item \"%.200s\" from %s: %s",
                              cfg->handler_secrets[i], from(c, "handler.secrets"), why);
    }
    if (cfg->handler_secrets_len && !cfg->vault_address[0])
        sk_config_problem(c,
                          "handler.secrets: set (from %s) but vault.address is empty: "
                          "expected the Vault the secrets are read from",
                          from(c, "handler.secrets"));
    if (cfg->handler_token_audiences_len && !cfg->oauth_client_id[0])
        sk_config_problem(c,
                          "handler.token_audiences: set (from %s) but there is no OAuth "
                          "client: expected oauth.client_id (or zeebe.client_id)",
                          from(c, "handler.token_audiences"));
    else if (cfg->handler_token_audiences_len && !cfg->oauth_token_url[0])
        sk_config_problem(c,
                          "handler.token_audiences: set (from %s) but oauth.token_url is "
                          "empty: expected the token endpoint",
                          from(c, "handler.token_audiences"));
}

/* An unset oauth.* setting takes the zeebe.* one (copied, so clearing frees each once). */
static void inherit(ctx *c, const char *key, char **dst, const char *src, const char *src_key)
{
    char *copy = strdup(src);
    if (!copy) {
        sk_config_problem(c, "%s: out of memory", key);
        return;
    }
    free(*dst);
    *dst = copy;
    snprintf(c->from[sk_config_find_row(key) - sk_config_table], sizeof c->from[0], "default (%s)",
             src_key);
}

/* The general OAuth client (oauth.token_url, oauth.client_id, oauth.client_secret): the
 * gateway's unless set; a client id of its own needs its own secret. */
void sk_config_oauth_client(ctx *c)
{
    sk_config *cfg = c->cfg;
    const char *url = cfg->oauth_token_url;
    if (url[0] && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        sk_config_problem(c,
                          "oauth.token_url: value \"%.200s\" from %s is not valid: expected "
                          "an http:// or https:// URL",
                          url, from(c, "oauth.token_url"));
    if (!cfg->oauth_token_url[0] && cfg->zeebe_token_url[0])
        inherit(c, "oauth.token_url", &cfg->oauth_token_url, cfg->zeebe_token_url,
                "zeebe.authorization_server_url");
    if (cfg->oauth_client_id[0] && !cfg->oauth_client_secret[0])
        sk_config_problem(c,
                          "oauth.client_secret: empty while oauth.client_id is set (from %s): "
                          "expected the secret of that client",
                          from(c, "oauth.client_id"));
    if (!cfg->oauth_client_id[0] && cfg->oauth_client_secret[0])
        sk_config_problem(c,
                          "oauth.client_id: empty while oauth.client_secret is set (from %s): "
                          "expected the client the secret belongs to",
                          from(c, "oauth.client_secret"));
    if (!cfg->oauth_client_id[0] && !cfg->oauth_client_secret[0] && cfg->zeebe_client_id[0]) {
        inherit(c, "oauth.client_id", &cfg->oauth_client_id, cfg->zeebe_client_id,
                "zeebe.client_id");
        inherit(c, "oauth.client_secret", &cfg->oauth_client_secret, cfg->zeebe_client_secret,
                "zeebe.client_secret");
    }
    check_handler_calls(c);
}

static int literal_at(const sk_config *cfg, const row *r)
{
    const char *text = *(char *const *)((const char *)cfg + r->off);
    sk_secret_ref ref;
    char err[160];
    return text && text[0] && sk_secret_ref_parse(text, &ref, err, sizeof err) == 0 &&
           ref.kind == SK_SECRET_LITERAL;
}

/* oauth.client_secret taken over from zeebe.client_secret (the same client) is reported once. */
static int inherited(const sk_config *cfg, const row *r)
{
    return strcmp(r->key, "oauth.client_secret") == 0 &&
           strcmp(cfg->oauth_client_id, cfg->zeebe_client_id) == 0 &&
           strcmp(cfg->oauth_client_secret, cfg->zeebe_client_secret) == 0;
}

size_t sk_config_literal_secrets(const sk_config *cfg, const char **keys)
{
    size_t n = 0;
    for (size_t i = 0; i < NROWS && n < SK_LITERAL_SECRETS_MAX; i++) {
        const row *r = &sk_config_table[i];
        if ((r->flags & F_SECRET) && literal_at(cfg, r) && !inherited(cfg, r))
            keys[n++] = r->key;
    }
    return n;
}

/* security.literal_secrets=refuse: each secret setting holding the secret itself. */
static void check_literal_secrets(ctx *c)
{
    if (c->cfg->security_literal_secrets != SK_PLAINTEXT_REFUSE)
        return;
    const char *keys[SK_LITERAL_SECRETS_MAX];
    size_t n = sk_config_literal_secrets(c->cfg, keys);
    for (size_t i = 0; i < n; i++)
        sk_config_problem(c,
                          "%s: a literal secret (from %s) but security.literal_secrets is refuse "
                          "(from %s): expected vault:<mount>/<path>#<field> or file:<path>",
                          keys[i], from(c, keys[i]), from(c, "security.literal_secrets"));
}

void sk_config_check_security(ctx *c)
{
    check_literal_secrets(c);
    check_pair(c, "vault.client_cert", c->cfg->vault_client_cert, "vault.client_key",
               c->cfg->vault_client_key);
    if (strncmp(c->cfg->vault_address, "http://", 7) == 0)
        check_unused(c, "vault.client_cert", c->cfg->vault_client_cert,
                     "vault.address is not https://");
    check_zeebe(c);
    check_kafka_security(c);
    check_registry(c);
    check_oauth_tls(c);
    check_otlp_tls(c);
    if (c->cfg->security_plaintext != SK_PLAINTEXT_REFUSE)
        return;
    sk_plaintext_peer peers[SK_PLAINTEXT_PEERS_MAX];
    size_t n = sk_config_plaintext_peers(c->cfg, peers);
    for (size_t i = 0; i < n; i++)
        sk_config_problem(c,
                          "security.plaintext: refuse (from %s) but %s %.200s is reached "
                          "without TLS: expected %s",
                          from(c, "security.plaintext"), peers[i].key, peers[i].address,
                          peers[i].fix);
}
