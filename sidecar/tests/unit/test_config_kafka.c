/* Kafka and Schema Registry settings: defaults, the platform's variables, and the rules that
 * tie them together (brokers as addresses, a registry for Kafka, the group id default, the
 * plaintext profile of an OAUTHBEARER client). */
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

static void test_defaults_leave_kafka_off(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    assert_int_equal(load(&cfg, &(srcs){0}, &problems), 0);
    assert_int_equal(cfg.kafka_brokers_len, 0);
    assert_int_equal(cfg.kafka_topics_len, 0);
    assert_string_equal(cfg.kafka_group_id, "skiff");
    assert_int_equal(cfg.kafka_ordering, SK_KAFKA_ORDER_KEY);
    assert_int_equal(cfg.kafka_max_attempts, 5);
    assert_string_equal(sk_kafka_codecs[cfg.kafka_compression[SK_TOPIC_BUSINESS]], "zstd");
    assert_string_equal(sk_kafka_codecs[cfg.kafka_compression[SK_TOPIC_AGENT]], "lz4");
    assert_string_equal(sk_kafka_codecs[cfg.kafka_compression[SK_TOPIC_DLQ]], "gzip");
    assert_int_equal(cfg.kafka_producer_queue, 4 * 1024 * 1024);
    free(problems);
    sk_config_clear(&cfg);
}

static void test_platform_variables(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.env = LIST("KAFKA_BOOTSTRAP_SERVERS=k1:9092,k2:9092",
                          "SCHEMA_REGISTRY_URL=http://registry:8081", "OTEL_SERVICE_NAME=quote",
                          "SKIFF_KAFKA_TOPICS=business.policy.issued.v1")};
    assert_int_equal(load(&cfg, &s, &problems), 0);
    assert_int_equal(cfg.kafka_brokers_len, 2);
    assert_string_equal(cfg.kafka_brokers[1], "k2:9092");
    assert_string_equal(cfg.registry_url, "http://registry:8081");
    assert_string_equal(cfg.kafka_group_id, "quote");
    assert_string_equal(cfg.kafka_topics[0], "business.policy.issued.v1");
    free(problems);
    sk_config_clear(&cfg);
}

static void test_explicit_group_and_annotations(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.annotations = "skiff.io/kafka.brokers=\"k:9092\"\n"
                             "skiff.io/schema_registry.url=\"http://r:8081\"\n"
                             "skiff.io/kafka.group_id=\"underwriting\"\n"
                             "skiff.io/kafka.ordering=\"partition\"\n"
                             "skiff.io/kafka.compression_dlq=\"zstd\"\n"};
    assert_int_equal(load(&cfg, &s, &problems), 0);
    assert_string_equal(cfg.kafka_group_id, "underwriting");
    assert_int_equal(cfg.kafka_ordering, SK_KAFKA_ORDER_PARTITION);
    assert_string_equal(sk_kafka_codecs[cfg.kafka_compression[SK_TOPIC_DLQ]], "zstd");
    free(problems);
    sk_config_clear(&cfg);
}

static void test_rules_reported_together(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST("--kafka.brokers=k:9092,nohost", "--kafka.topics=t",
                           "--kafka.retry_backoff_initial=2m", "--kafka.compression_agent=brotli")};
    assert_int_equal(load(&cfg, &s, &problems), 4);
    assert_non_null(strstr(problems, "kafka.brokers: item \"nohost\""));
    assert_non_null(strstr(problems, "schema_registry.url: empty while kafka.brokers is set"));
    assert_non_null(strstr(problems, "kafka.retry_backoff_initial: value \"2m\""));
    assert_non_null(strstr(problems, "kafka.compression_agent"));
    free(problems);
    sk_config_clear(&cfg);
}

static void test_topics_need_brokers(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST("--kafka.topics=t")};
    assert_int_equal(load(&cfg, &s, &problems), 1);
    assert_non_null(strstr(problems, "kafka.topics: set (from command line"));
    free(problems);
    sk_config_clear(&cfg);
}

static void test_topic_and_job_type_distinct(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST("--kafka.brokers=k:9092", "--schema_registry.url=http://r",
                           "--kafka.topics=orders", "--zeebe.job_types=orders")};
    assert_int_equal(load(&cfg, &s, &problems), 1);
    assert_non_null(strstr(problems, "kafka.topics: \"orders\" is also in zeebe.job_types"));
    free(problems);
    sk_config_clear(&cfg);
}

#define OAUTH_ARGS                                                                                 \
    "--kafka.brokers=k:9092", "--schema_registry.url=https://r", "--kafka.oauthbearer=true",       \
        "--zeebe.client_id=c", "--zeebe.client_secret=s",                                          \
        "--zeebe.authorization_server_url=https://idp/token", "--zeebe.tls=true"

/* The peer names sk_config_plaintext_peers reports for cfg, comma-joined into buf. */
static const char *plaintext_names(const sk_config *cfg, char *buf, size_t len)
{
    sk_plaintext_peer peers[SK_PLAINTEXT_PEERS_MAX];
    size_t n = sk_config_plaintext_peers(cfg, peers);
    buf[0] = '\0';
    for (size_t i = 0; i < n; i++)
        snprintf(buf + strlen(buf), len - strlen(buf), "%s%s", i ? "," : "", peers[i].peer);
    return buf;
}

static void test_oauthbearer_over_sasl_plaintext_is_plaintext(void **state)
{
    (void)state;
    const char *const *cases[] = {LIST(OAUTH_ARGS),
                                  LIST(OAUTH_ARGS, "--kafka.security.protocol=sasl_plaintext")};
    for (size_t i = 0; i < 2; i++) {
        sk_config cfg;
        char *problems, names[64];
        assert_int_equal(load(&cfg, &(srcs){.argv = cases[i]}, &problems), 0);
        assert_string_equal(plaintext_names(&cfg, names, sizeof names), "kafka");
        free(problems);
        sk_config_clear(&cfg);
    }
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST(OAUTH_ARGS, "--kafka.security.protocol=sasl_plaintext",
                           "--security.plaintext=refuse")};
    assert_int_equal(load(&cfg, &s, &problems), 1);
    assert_non_null(strstr(problems,
                           "security.plaintext: refuse (from command line --security.plaintext) "
                           "but kafka.brokers k:9092 is reached without TLS"));
    free(problems);
    sk_config_clear(&cfg);
}

static void test_oauthbearer_over_tls_is_not_plaintext(void **state)
{
    (void)state;
    const char *const *cases[] = {
        LIST(OAUTH_ARGS, "--security.plaintext=refuse", "--kafka.security.protocol=sasl_ssl"),
        LIST(OAUTH_ARGS, "--security.plaintext=refuse", "--kafka.security.protocol=ssl")};
    for (size_t i = 0; i < 2; i++) {
        sk_config cfg;
        char *problems, names[64];
        /* No kafka.sasl.username: the OAUTHBEARER token is the credential. */
        assert_int_equal(load(&cfg, &(srcs){.argv = cases[i]}, &problems), 0);
        assert_string_equal(plaintext_names(&cfg, names, sizeof names), "");
        free(problems);
        sk_config_clear(&cfg);
    }
}

/* HTTP peers reached over http:// count too: the token endpoint, Vault and the OTLP endpoint. */
static void test_http_peers_over_http_are_plaintext(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems, names[128];
    srcs s = {.argv = LIST("--zeebe.tls=true", "--zeebe.client_id=c", "--zeebe.client_secret=s",
                           "--zeebe.authorization_server_url=http://idp/token",
                           "--vault.address=http://vault:8200", "--vault.role=r",
                           "--otlp.endpoint=http://collector:4318")};
    assert_int_equal(load(&cfg, &s, &problems), 0);
    assert_string_equal(plaintext_names(&cfg, names, sizeof names), "oauth,vault,otlp");
    free(problems);
    sk_config_clear(&cfg);
    srcs tls = {.argv =
                    LIST("--zeebe.tls=true", "--zeebe.client_id=c", "--zeebe.client_secret=s",
                         "--zeebe.authorization_server_url=https://idp/token",
                         "--vault.address=https://vault:8200", "--vault.role=r",
                         "--otlp.endpoint=https://collector:4318", "--security.plaintext=refuse")};
    assert_int_equal(load(&cfg, &tls, &problems), 0);
    assert_string_equal(plaintext_names(&cfg, names, sizeof names), "");
    free(problems);
    sk_config_clear(&cfg);
    srcs refuse = {.argv = LIST("--zeebe.tls=true", "--vault.address=http://vault:8200",
                                "--vault.role=r", "--security.plaintext=refuse")};
    assert_int_equal(load(&cfg, &refuse, &problems), 1);
    assert_non_null(strstr(problems, "but vault.address http://vault:8200 is reached without TLS"));
    free(problems);
    sk_config_clear(&cfg);
}

/* The token endpoint's TLS files: only with an https:// URL, certificate and key together. */
static void test_oauth_tls_files(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
#define OAUTH_CLIENT "--zeebe.tls=true", "--zeebe.client_id=c", "--zeebe.client_secret=s"
    srcs ok = {.argv = LIST(OAUTH_CLIENT, "--zeebe.authorization_server_url=https://idp/token",
                            "--oauth.ca_file=/ca.pem", "--oauth.cert_file=/c.pem",
                            "--oauth.key_file=/k.pem")};
    assert_int_equal(load(&cfg, &ok, &problems), 0);
    assert_string_equal(cfg.oauth_ca_file, "/ca.pem");
    free(problems);
    sk_config_clear(&cfg);
    srcs http = {.argv = LIST(OAUTH_CLIENT, "--zeebe.authorization_server_url=http://idp/token",
                              "--oauth.ca_file=/ca.pem")};
    assert_int_equal(load(&cfg, &http, &problems), 1);
    assert_non_null(strstr(problems, "oauth.ca_file: set (from command line --oauth.ca_file) but "
                                     "zeebe.authorization_server_url is not https://"));
    free(problems);
    sk_config_clear(&cfg);
    srcs half = {.argv = LIST(OAUTH_CLIENT, "--zeebe.authorization_server_url=https://idp/token",
                              "--oauth.cert_file=/c.pem")};
    assert_int_equal(load(&cfg, &half, &problems), 1);
    assert_non_null(strstr(problems, "oauth.cert_file: set (from command line --oauth.cert_file) "
                                     "but oauth.key_file is empty"));
    free(problems);
    sk_config_clear(&cfg);
#undef OAUTH_CLIENT
}

static void test_sasl_ssl_without_oauthbearer_needs_a_user(void **state)
{
    (void)state;
    sk_config cfg;
    char *problems;
    srcs s = {.argv = LIST("--kafka.brokers=k:9092", "--schema_registry.url=https://r",
                           "--kafka.security.protocol=sasl_ssl")};
    assert_int_equal(load(&cfg, &s, &problems), 1);
    assert_non_null(strstr(problems, "kafka.sasl.username: empty while kafka.security.protocol "
                                     "is sasl_ssl"));
    free(problems);
    sk_config_clear(&cfg);
}

/* kafka.reader_schemas: "<topic>=file:<path>" or "<topic>=subject:<subject>:<version>" items
 * of topics in kafka.topics, once each. */
static void test_kafka_reader_schemas(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
#define KAFKA_BASE                                                                                 \
    "--kafka.brokers=k:9092", "--kafka.topics=orders,users", "--schema_registry.url=http://r:8081"
    srcs ok = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=orders=file:schemas/o.avsc")};
    assert_int_equal(load(&cfg, &ok, &p), 0);
    assert_int_equal(cfg.kafka_reader_schemas_len, 1);
    assert_string_equal(cfg.kafka_reader_schemas[0], "orders=file:schemas/o.avsc");
    free(p);
    sk_config_clear(&cfg);
    srcs form = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=orders=orders-value:2")};
    load_one_problem(&form, LIST("kafka.reader_schemas: item \"orders=orders-value:2\" from "
                                 "command line --kafka.reader_schemas: expected "
                                 "<topic>=file:<path> or <topic>=subject:<subject>:<version>"));
    srcs empty = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=orders=file:")};
    load_one_problem(&empty, LIST("no path: expected <topic>=file:<path>"));
    srcs subject = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=orders=subject:o-value:3")};
    assert_int_equal(load(&cfg, &subject, &p), 0);
    assert_string_equal(cfg.kafka_reader_schemas[0], "orders=subject:o-value:3");
    free(p);
    sk_config_clear(&cfg);
    srcs latest = {.argv =
                       LIST(KAFKA_BASE, "--kafka.reader_schemas=orders=subject:o-value:latest")};
    load_one_problem(&latest,
                     LIST("\"orders=subject:o-value:latest\"", "version \"latest\" is refused"));
    srcs topic2 = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=users=file:a.avsc,"
                                            "users=subject:u-value:1")};
    load_one_problem(&topic2, LIST("\"users=subject:u-value:1\"", "a second reader schema"));
    srcs unknown = {.argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=other=file:x.avsc")};
    load_one_problem(&unknown, LIST("\"other=file:x.avsc\"", "not in kafka.topics"));
    srcs twice = {
        .argv = LIST(KAFKA_BASE, "--kafka.reader_schemas=users=file:a.avsc,users=file:b.avsc")};
    load_one_problem(&twice, LIST("\"users=file:b.avsc\"", "a second reader schema"));
#undef KAFKA_BASE
}

/* The consumer group's timings: defaults are librdkafka's, and they must nest. */
static void test_kafka_group_timings(void **state)
{
    (void)state;
    sk_config cfg;
    char *p;
    srcs ok = {.env = LIST("SKIFF_KAFKA_SESSION_TIMEOUT=6s")};
    assert_int_equal(load(&cfg, &ok, &p), 0);
    assert_int_equal(cfg.kafka_session_timeout_ms, 6000);
    assert_int_equal(cfg.kafka_heartbeat_ms, 3000);
    assert_int_equal(cfg.kafka_max_poll_ms, 300000);
    free(p);
    sk_config_clear(&cfg);
    srcs poll = {.argv = LIST("--kafka.max_poll_interval=10s")};
    load_one_problem(&poll, LIST("kafka.session_timeout: value \"45s\" from default is larger "
                                 "than kafka.max_poll_interval (\"10s\" from command line "
                                 "--kafka.max_poll_interval)"));
    srcs beat = {.argv = LIST("--kafka.heartbeat_interval=1m")};
    load_one_problem(&beat,
                     LIST("kafka.heartbeat_interval: value \"1m\" from command line "
                          "--kafka.heartbeat_interval is larger than kafka.session_timeout"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kafka_reader_schemas),
        cmocka_unit_test(test_defaults_leave_kafka_off),
        cmocka_unit_test(test_platform_variables),
        cmocka_unit_test(test_explicit_group_and_annotations),
        cmocka_unit_test(test_rules_reported_together),
        cmocka_unit_test(test_topics_need_brokers),
        cmocka_unit_test(test_topic_and_job_type_distinct),
        cmocka_unit_test(test_oauthbearer_over_sasl_plaintext_is_plaintext),
        cmocka_unit_test(test_oauthbearer_over_tls_is_not_plaintext),
        cmocka_unit_test(test_http_peers_over_http_are_plaintext),
        cmocka_unit_test(test_sasl_ssl_without_oauthbearer_needs_a_user),
        cmocka_unit_test(test_oauth_tls_files),
        cmocka_unit_test(test_kafka_group_timings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
