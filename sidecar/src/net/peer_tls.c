#include "net/peer_tls.h"

#include <string.h>

#include "core/log.h"

static const char *const peers[] = {"zeebe", "kafka", "schema_registry", "oauth", "otlp", NULL};

int sk_peer_tls_opts(const sk_config *cfg, const char *peer, sk_tls_opts *o)
{
    *o = (sk_tls_opts){.peer = peer};
    if (strcmp(peer, "zeebe") == 0) {
        if (!cfg->zeebe_tls)
            return 0;
        *o = (sk_tls_opts){.peer = peer,
                           .ca_file = cfg->zeebe_ca_file,
                           .cert_file = cfg->zeebe_cert_file,
                           .key_file = cfg->zeebe_key_file,
                           .server_name = cfg->zeebe_server_name,
                           .alpn = "h2"};
        return 1;
    }
    if (strcmp(peer, "kafka") == 0) {
        int p = cfg->kafka_security_protocol;
        if (cfg->kafka_brokers_len == 0 || (p != SK_KAFKA_SSL && p != SK_KAFKA_SASL_SSL))
            return 0;
        *o = (sk_tls_opts){.peer = peer,
                           .ca_file = cfg->kafka_ssl_ca,
                           .cert_file = cfg->kafka_ssl_cert,
                           .key_file = cfg->kafka_ssl_key};
        return 1;
    }
    if (strcmp(peer, "schema_registry") == 0 && strncmp(cfg->registry_url, "https://", 8) == 0) {
        *o = (sk_tls_opts){.peer = peer,
                           .ca_file = cfg->registry_ca_file,
                           .cert_file = cfg->registry_cert_file,
                           .key_file = cfg->registry_key_file};
        return 1;
    }
    if (strcmp(peer, "oauth") == 0 && cfg->zeebe_client_id[0] &&
        strncmp(cfg->zeebe_token_url, "https://", 8) == 0) {
        *o = (sk_tls_opts){.peer = peer,
                           .ca_file = cfg->oauth_ca_file,
                           .cert_file = cfg->oauth_cert_file,
                           .key_file = cfg->oauth_key_file};
        return 1;
    }
    if (strcmp(peer, "otlp") == 0 && sk_config_otlp_tls(cfg) == 1) {
        int grpc = strcmp(sk_otlp_protocols[cfg->otlp_protocol], "grpc") == 0;
        *o = (sk_tls_opts){.peer = peer,
                           .ca_file = cfg->otlp_ca_file,
                           .cert_file = cfg->otlp_cert_file,
                           .key_file = cfg->otlp_key_file,
                           .alpn = grpc ? "h2" : NULL};
        return 1;
    }
    return 0;
}

int sk_peer_tls_check(const sk_config *cfg, FILE *out)
{
    int failed = 0;
    for (size_t i = 0; peers[i]; i++) {
        sk_tls_opts o;
        char err[512];
        if (!sk_peer_tls_opts(cfg, peers[i], &o) || sk_tls_check(&o, err, sizeof err) == 0)
            continue;
        failed++;
        if (out)
            fprintf(out, "TLS of %s\n", err);
    }
    return failed;
}

int sk_peer_plaintext_report(const sk_config *cfg, sk_metrics *m)
{
    static const char *const labels[] = {"peer", NULL};
    sk_metric *g =
        sk_metrics_gauge(m, "skiff_plaintext_peers",
                         "1 for a peer configured without TLS (security.plaintext)", labels);
    if (g == NULL)
        return -1;
    for (size_t i = 0; peers[i]; i++)
        sk_series_set(sk_metric_series(g, (const char *[]){peers[i]}), 0);
    sk_plaintext_peer pp[SK_PLAINTEXT_PEERS_MAX];
    size_t n = sk_config_plaintext_peers(cfg, pp);
    for (size_t i = 0; i < n; i++) {
        sk_series_set(sk_metric_series(g, (const char *[]){pp[i].peer}), 1);
        if (cfg->security_plaintext != SK_PLAINTEXT_ALLOW)
            SK_WARN("security",
                    "%s (%s %s) is reached without TLS (plaintext): set %s, or "
                    "security.plaintext=allow when a mesh encrypts pod traffic",
                    pp[i].peer, pp[i].key, pp[i].address, pp[i].fix);
    }
    return 0;
}
