/* The OTLP exporter's TLS settings: the OpenTelemetry variables (the per-signal ones win), when
 * an endpoint is TLS (https://; OTLP/gRPC without a scheme unless otlp.insecure), the
 * plaintext report, and the rules on the files (only for a TLS endpoint; certificate and key
 * together). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/config.h"
#include "config_test_helpers.h"

static void test_variables(void **state)
{
    (void)state;
    sk_config cfg;
    srcs s = {.env = LIST("OTEL_EXPORTER_OTLP_ENDPOINT=https://collector:4318",
                          "OTEL_EXPORTER_OTLP_CERTIFICATE=/general/ca.pem",
                          "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=/general/client.pem",
                          "OTEL_EXPORTER_OTLP_CLIENT_KEY=/general/client.key",
                          "OTEL_EXPORTER_OTLP_INSECURE=true")};
    load_ok(&cfg, &s);
    assert_string_equal(cfg.otlp_ca_file, "/general/ca.pem");
    assert_string_equal(cfg.otlp_cert_file, "/general/client.pem");
    assert_string_equal(cfg.otlp_key_file, "/general/client.key");
    assert_int_equal(cfg.otlp_insecure, 1);
    sk_config_clear(&cfg);
    srcs traces = {.env = LIST("OTEL_EXPORTER_OTLP_ENDPOINT=https://collector:4318",
                               "OTEL_EXPORTER_OTLP_CERTIFICATE=/general/ca.pem",
                               "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=/traces/ca.pem",
                               "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=/general/client.pem",
                               "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE=/traces/client.pem",
                               "OTEL_EXPORTER_OTLP_CLIENT_KEY=/general/client.key",
                               "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY=/traces/client.key",
                               "OTEL_EXPORTER_OTLP_INSECURE=true",
                               "OTEL_EXPORTER_OTLP_TRACES_INSECURE=false")};
    load_ok(&cfg, &traces);
    assert_string_equal(cfg.otlp_ca_file, "/traces/ca.pem");
    assert_string_equal(cfg.otlp_cert_file, "/traces/client.pem");
    assert_string_equal(cfg.otlp_key_file, "/traces/client.key");
    assert_int_equal(cfg.otlp_insecure, 0);
    sk_config_clear(&cfg);
}

/* 1, 0 or -1 from sk_config_otlp_tls, and "otlp" in the plaintext report exactly when 0. */
static int otlp_tls(const char *const *argv)
{
    sk_config cfg;
    load_ok(&cfg, &(srcs){.argv = argv});
    int tls = sk_config_otlp_tls(&cfg);
    sk_plaintext_peer peers[SK_PLAINTEXT_PEERS_MAX];
    size_t n = sk_config_plaintext_peers(&cfg, peers);
    int listed = 0;
    for (size_t i = 0; i < n; i++)
        listed |= strcmp(peers[i].peer, "otlp") == 0;
    assert_int_equal(listed, tls == 0);
    sk_config_clear(&cfg);
    return tls;
}

static void test_which_endpoints_are_tls(void **state)
{
    (void)state;
#define GRPC "--zeebe.tls=true", "--otlp.protocol=grpc"
    assert_int_equal(otlp_tls(LIST("--zeebe.tls=true")), -1);
    assert_int_equal(otlp_tls(LIST("--zeebe.tls=true", "--otlp.endpoint=http://c:4318")), 0);
    assert_int_equal(otlp_tls(LIST("--zeebe.tls=true", "--otlp.endpoint=https://c:4318")), 1);
    /* OTLP/HTTP: insecure does not apply, the scheme decides. */
    assert_int_equal(
        otlp_tls(LIST("--zeebe.tls=true", "--otlp.endpoint=https://c", "--otlp.insecure=true")), 1);
    assert_int_equal(otlp_tls(LIST(GRPC, "--otlp.endpoint=c:4317")), 1);
    assert_int_equal(otlp_tls(LIST(GRPC, "--otlp.endpoint=c:4317", "--otlp.insecure=true")), 0);
    assert_int_equal(otlp_tls(LIST(GRPC, "--otlp.endpoint=http://c:4317")), 0);
    assert_int_equal(otlp_tls(LIST(GRPC, "--otlp.endpoint=https://c:4317", "--otlp.insecure=true")),
                     1);
    /* The per-signal endpoint wins over the general one. */
    assert_int_equal(otlp_tls(LIST(GRPC, "--otlp.endpoint=https://c:4317",
                                   "--otlp.traces_endpoint=http://t:4317")),
                     0);
#undef GRPC
}

static void test_refuse_names_the_endpoint(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST("--zeebe.tls=true", "--otlp.protocol=grpc", "--otlp.endpoint=c:4317",
                           "--otlp.insecure=true", "--security.plaintext=refuse")};
    assert_int_equal(load(&cfg, &s, &problems), 1);
    expect_in(problems, "but otlp.endpoint c:4317 is reached without TLS");
    free(problems);
    sk_config_clear(&cfg);
}

static void test_tls_files(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs plain = {.argv = LIST("--otlp.endpoint=http://c:4318", "--otlp.ca_file=/ca.pem")};
    assert_int_equal(load(&cfg, &plain, &problems), 1);
    expect_in(problems, "otlp.ca_file: set (from command line --otlp.ca_file) but the OTLP "
                        "endpoint is not TLS");
    free(problems);
    sk_config_clear(&cfg);
    srcs half = {.env = LIST("OTEL_EXPORTER_OTLP_ENDPOINT=https://c:4318",
                             "OTEL_EXPORTER_OTLP_CLIENT_KEY=/k.pem")};
    assert_int_equal(load(&cfg, &half, &problems), 1);
    expect_in(problems, "otlp.key_file: set (from environment OTEL_EXPORTER_OTLP_CLIENT_KEY) "
                        "but otlp.cert_file is empty");
    free(problems);
    sk_config_clear(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_variables),
        cmocka_unit_test(test_which_endpoints_are_tls),
        cmocka_unit_test(test_refuse_names_the_endpoint),
        cmocka_unit_test(test_tls_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
