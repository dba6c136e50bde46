/* Configuration: one table (key, type, default, bounds, help) drives parsing, validation,
 * `skiff config check` and docs/configuration.md. Sources, later ones winning: defaults <
 * JSON config file < annotations file (Kubernetes downward API, keys "skiff.io/<key>") <
 * environment (SKIFF_<KEY> with '.' -> '_' and upper case, plus the ecosystem's variables) <
 * command line (--<key>=<value>). Some zeebe.* settings may also be set for one job type:
 * "zeebe.jobs.<type>.<setting>" (file, annotations and command line only). */
#ifndef SK_CONFIG_H
#define SK_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/annotations.h"

/* The zeebe.* settings of one job type: the global values with that type's overrides
 * ("zeebe.jobs.<type>.<setting>") applied. Owned by the sk_config that holds it. */
typedef struct sk_job_type_config {
    char *type;                 /* an item of zeebe.job_types */
    char *worker_name;          /* zeebe.worker_name */
    int64_t job_timeout_ms;     /* zeebe.job_timeout */
    int64_t max_jobs_active;    /* zeebe.max_jobs_active */
    int64_t request_timeout_ms; /* zeebe.request_timeout */
    char **fetch_variables;     /* zeebe.fetch_variables, NULL-terminated */
    size_t fetch_variables_len;
    char **tenant_ids; /* zeebe.tenant_ids, NULL-terminated */
    size_t tenant_ids_len;
    int streaming; /* zeebe.streaming */
} sk_job_type_config;

/* The egress.* settings of one route: the global egress.<setting> values with that route's
 * overrides ("egress.routes.<name>.<setting>") applied. Owned by the sk_config that holds it. */
typedef struct sk_egress_route_config {
    char *name;                  /* the route: the first path segment handlers call */
    char *upstream;              /* egress.upstream: base URL */
    char *credential;            /* egress.credential: a secret reference, "" none */
    char *credential_header;     /* egress.credential_header (lower case) */
    char *oauth_audience;        /* egress.oauth_audience */
    char *ca_file;               /* egress.ca_file */
    int64_t connect_timeout_ms;  /* egress.connect_timeout */
    int64_t ttfb_timeout_ms;     /* egress.ttfb_timeout */
    int64_t timeout_ms;          /* egress.timeout */
    int64_t requests_per_minute; /* egress.requests_per_minute, 0: no limit */
    int64_t tokens_per_minute;   /* egress.tokens_per_minute, 0: no limit */
    int64_t max_concurrent;      /* egress.max_concurrent, 0: no limit */
    int64_t max_queued;          /* egress.max_queued */
    int64_t queue_timeout_ms;    /* egress.queue_timeout */
    int64_t retries;             /* egress.retries */
    int64_t retry_backoff_ms;    /* egress.retry_backoff */
    int retry_post;              /* egress.retry_post */
    char *breaker_failure_ratio; /* egress.breaker_failure_ratio (text, checked) */
    double breaker_ratio;        /* the same, parsed */
    int64_t breaker_min_calls;   /* egress.breaker_min_calls */
    int64_t breaker_consecutive; /* egress.breaker_consecutive_failures */
    int64_t breaker_open_ms;     /* egress.breaker_open_time */
    int64_t max_request_bytes;   /* egress.max_request_bytes */
    int64_t max_tokens;          /* egress.max_tokens, 0: no cap */
    char **deny_patterns;        /* egress.deny_patterns, NULL-terminated */
    size_t deny_patterns_len;
    int strip_control_chars; /* egress.strip_control_chars */
    int log_bodies;          /* egress.log_bodies */
} sk_egress_route_config;

/* kafka.ordering */
typedef enum { SK_KAFKA_ORDER_KEY, SK_KAFKA_ORDER_PARTITION, SK_KAFKA_ORDER_NONE } sk_kafka_order;
/* Topic classes of the platform's topic standards, each with its compression. */
typedef enum { SK_TOPIC_BUSINESS, SK_TOPIC_AGENT, SK_TOPIC_DLQ, SK_TOPIC_OTHER } sk_topic_class;
/* kafka.compression_*: index into {"none", "gzip", "snappy", "lz4", "zstd"} */
extern const char *const sk_kafka_codecs[];
/* security.plaintext */
typedef enum { SK_PLAINTEXT_ALLOW, SK_PLAINTEXT_WARN, SK_PLAINTEXT_REFUSE } sk_plaintext_mode;
/* kafka.security.protocol: index into {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"} */
typedef enum {
    SK_KAFKA_PLAINTEXT,
    SK_KAFKA_SSL,
    SK_KAFKA_SASL_PLAINTEXT,
    SK_KAFKA_SASL_SSL
} sk_kafka_protocol;
extern const char *const sk_kafka_protocols[];
extern const char *const sk_kafka_sasl_mechanisms[]; /* kafka.sasl.mechanisms */

typedef struct sk_config {
    char *service_name;               /* service.name */
    int log_level;                    /* log.level (sk_log_level) */
    char *admin_address;              /* admin.address "host:port" */
    char *handler_socket;             /* handler.socket */
    int64_t handler_max_frame;        /* handler.max_frame (bytes) */
    int64_t handler_hello_timeout_ms; /* handler.hello_timeout */
    char **handler_secrets;           /* handler.secrets: allow-list of the secret call */
    size_t handler_secrets_len;
    char **handler_token_audiences; /* handler.token_audiences: allow-list of the token call */
    size_t handler_token_audiences_len;
    char *zeebe_address;    /* zeebe.address "host:port" */
    char **zeebe_job_types; /* zeebe.job_types, NULL-terminated */
    size_t zeebe_job_types_len;
    char *zeebe_worker_name;          /* zeebe.worker_name */
    int64_t zeebe_job_timeout_ms;     /* zeebe.job_timeout */
    int64_t zeebe_max_jobs_active;    /* zeebe.max_jobs_active */
    int64_t zeebe_request_timeout_ms; /* zeebe.request_timeout (long poll) */
    char **zeebe_fetch_variables;     /* zeebe.fetch_variables, NULL-terminated */
    size_t zeebe_fetch_variables_len;
    char **zeebe_tenant_ids; /* zeebe.tenant_ids, NULL-terminated */
    size_t zeebe_tenant_ids_len;
    int zeebe_streaming;              /* zeebe.streaming */
    int64_t zeebe_stream_recycle_ms;  /* zeebe.stream_recycle, 0: never */
    int64_t zeebe_backoff_initial_ms; /* zeebe.backoff_initial */
    int64_t zeebe_backoff_max_ms;     /* zeebe.backoff_max */
    char *zeebe_client_id;            /* zeebe.client_id ("" = no OAuth) */
    char *zeebe_client_secret;        /* zeebe.client_secret (a secret reference) */
    char *zeebe_token_url;            /* zeebe.authorization_server_url */
    char *zeebe_token_audience;       /* zeebe.token_audience */
    char *zeebe_token_scope;          /* zeebe.token_scope */
    char *oauth_token_url;            /* oauth.token_url (zeebe's when unset) */
    char *oauth_client_id;            /* oauth.client_id (zeebe's when unset) */
    char *oauth_client_secret;        /* oauth.client_secret (zeebe's when unset) */
    int64_t oauth_refresh_ahead_ms;   /* oauth.refresh_ahead */
    int64_t oauth_timeout_ms;         /* oauth.timeout */
    int64_t oauth_backoff_initial_ms; /* oauth.backoff_initial */
    int64_t oauth_backoff_max_ms;     /* oauth.backoff_max */
    char *oauth_ca_file;              /* oauth.ca_file */
    char *oauth_cert_file;            /* oauth.cert_file */
    char *oauth_key_file;             /* oauth.key_file */
    char *vault_address;              /* vault.address ("" = no Vault) */
    char *vault_cacert;               /* vault.cacert */
    char *vault_client_cert;          /* vault.client_cert */
    char *vault_client_key;           /* vault.client_key */
    char *vault_namespace;            /* vault.namespace */
    char *vault_auth_mount;           /* vault.auth_mount */
    char *vault_role;                 /* vault.role */
    char *vault_token_path;           /* vault.token_path */
    int64_t vault_refresh_ms;         /* vault.refresh_interval */
    int64_t vault_timeout_ms;         /* vault.timeout */
    int64_t grpc_max_message_bytes;   /* grpc.max_message_size */
    int64_t grpc_keepalive_ms;        /* grpc.keepalive */
    char **kafka_brokers;             /* kafka.brokers "host:port" items, NULL-terminated */
    size_t kafka_brokers_len;
    char **kafka_topics; /* kafka.topics, NULL-terminated */
    size_t kafka_topics_len;
    char **kafka_reader_schemas; /* kafka.reader_schemas (core/reader_item.h), NULL-ended */
    size_t kafka_reader_schemas_len;
    char *kafka_group_id;              /* kafka.group_id ("" until resolved: service.name) */
    int kafka_ordering;                /* kafka.ordering (sk_kafka_order) */
    int64_t kafka_max_attempts;        /* kafka.max_attempts */
    int64_t kafka_backoff_initial_ms;  /* kafka.retry_backoff_initial */
    int64_t kafka_backoff_max_ms;      /* kafka.retry_backoff_max */
    int64_t kafka_task_timeout_ms;     /* kafka.task_timeout */
    int64_t kafka_commit_interval_ms;  /* kafka.commit_interval */
    int64_t kafka_max_buffered;        /* kafka.max_buffered (records per partition) */
    int64_t kafka_delivery_timeout_ms; /* kafka.delivery_timeout */
    int64_t kafka_producer_queue;      /* kafka.producer_queue_size (bytes) */
    int64_t kafka_session_timeout_ms;  /* kafka.session_timeout */
    int64_t kafka_heartbeat_ms;        /* kafka.heartbeat_interval */
    int64_t kafka_max_poll_ms;         /* kafka.max_poll_interval */
    int kafka_compression[4];          /* kafka.compression_* by sk_topic_class */
    int kafka_oauthbearer;             /* kafka.oauthbearer */
    char *kafka_oauthbearer_audience;  /* kafka.oauthbearer_audience */
    char *kafka_oauthbearer_scope;     /* kafka.oauthbearer_scope */
    char *registry_url;                /* schema_registry.url */
    char *registry_username;           /* schema_registry.username */
    char *registry_password;           /* schema_registry.password */
    int64_t registry_latest_ttl_ms;    /* schema_registry.latest_ttl */
    int64_t registry_timeout_ms;       /* schema_registry.timeout */
    int64_t shutdown_grace_ms;         /* shutdown.grace_period */
    /* Security and TLS. */
    int security_plaintext;       /* security.plaintext (sk_plaintext_mode) */
    int security_literal_secrets; /* security.literal_secrets (sk_plaintext_mode) */
    int64_t tls_reload_ms;        /* tls.reload_interval */
    int zeebe_tls;                /* zeebe.tls */
    char *zeebe_ca_file;          /* zeebe.ca_file */
    char *zeebe_cert_file;        /* zeebe.cert_file */
    char *zeebe_key_file;         /* zeebe.key_file */
    char *zeebe_server_name;      /* zeebe.server_name */
    int kafka_security_protocol;  /* kafka.security.protocol (sk_kafka_protocol) */
    char *kafka_ssl_ca;           /* kafka.ssl.ca.location */
    char *kafka_ssl_cert;         /* kafka.ssl.certificate.location */
    char *kafka_ssl_key;          /* kafka.ssl.key.location */
    int kafka_sasl_mechanism;     /* kafka.sasl.mechanisms (index) */
    char *kafka_sasl_username;    /* kafka.sasl.username */
    char *kafka_sasl_password;    /* kafka.sasl.password (the one place it is read: kafka.c) */
    char *registry_ca_file;       /* schema_registry.ca_file */
    char *registry_cert_file;     /* schema_registry.cert_file */
    char *registry_key_file;      /* schema_registry.key_file */
    /* Tracing. */
    char *trace_zeebe_variable;      /* trace.zeebe_variable */
    int trace_sampler;               /* trace.sampler (index into sk_trace_samplers) */
    char *trace_sampler_arg;         /* trace.sampler_arg */
    char *trace_resource_attributes; /* trace.resource_attributes */
    char *otlp_endpoint;             /* otlp.endpoint */
    char *otlp_traces_endpoint;      /* otlp.traces_endpoint */
    int otlp_protocol;               /* otlp.protocol (index into sk_otlp_protocols) */
    int otlp_compression;            /* otlp.compression (index into sk_otlp_compressions) */
    char *otlp_headers;              /* otlp.headers */
    int64_t otlp_timeout_ms;         /* otlp.timeout */
    char *otlp_ca_file;              /* otlp.ca_file */
    char *otlp_cert_file;            /* otlp.cert_file */
    char *otlp_key_file;             /* otlp.key_file */
    int otlp_insecure;               /* otlp.insecure */
    int64_t bsp_schedule_delay_ms;   /* otlp.batch_delay */
    int64_t bsp_export_timeout_ms;   /* otlp.export_timeout */
    int64_t bsp_max_queue;           /* otlp.max_queue_size */
    int64_t bsp_max_batch;           /* otlp.max_batch_size */
    /* Egress (the global values of the per-route settings; use egress_routes). */
    char *egress_listen;       /* egress.listen "host:port", "" = off */
    char **egress_route_names; /* egress.routes, NULL-terminated */
    size_t egress_route_names_len;
    char *egress_upstream;
    char *egress_credential;
    char *egress_credential_header;
    char *egress_oauth_audience;
    char *egress_ca_file;
    int64_t egress_connect_timeout_ms;
    int64_t egress_ttfb_timeout_ms;
    int64_t egress_timeout_ms;
    int64_t egress_requests_per_minute;
    int64_t egress_tokens_per_minute;
    int64_t egress_max_concurrent;
    int64_t egress_max_queued;
    int64_t egress_queue_timeout_ms;
    int64_t egress_retries;
    int64_t egress_retry_backoff_ms;
    int egress_retry_post;
    char *egress_breaker_failure_ratio;
    int64_t egress_breaker_min_calls;
    int64_t egress_breaker_consecutive;
    int64_t egress_breaker_open_ms;
    int64_t egress_max_request_bytes;
    int64_t egress_max_tokens;
    char **egress_deny_patterns;
    size_t egress_deny_patterns_len;
    int egress_strip_control_chars;
    int egress_log_bodies;
    /* Resolved at the end of a load: one entry per route (the items of egress.routes, then
     * the routes only overrides name), in order; NULL when there is none. */
    sk_egress_route_config *egress_routes;
    size_t egress_routes_len;
    /* Resolved at the end of a load: one entry per zeebe.job_types item, in order (NULL when
     * there is none). Use these rather than the global zeebe.* values above. */
    sk_job_type_config *zeebe_jobs;
    size_t zeebe_jobs_len;
} sk_config;

/* Names of trace.sampler and otlp.protocol values, by stored index. */
extern const char *const sk_trace_samplers[];
extern const char *const sk_otlp_protocols[];
extern const char *const sk_otlp_compressions[];

/* Where the values come from. Any pointer may be NULL (source absent). */
typedef struct sk_config_sources {
    const char *file_path;        /* JSON config file (--config / SKIFF_CONFIG) */
    const char *annotations_path; /* downward API file (--annotations / SKIFF_ANNOTATIONS) */
    char *const *environ;         /* NULL-terminated "NAME=value" list */
    int argc;                     /* command-line options after the subcommand */
    char *const *argv;
} sk_config_sources;

/* Loads every source, validates every key and reports every problem at once: one line per
 * problem to `problems` (may be NULL; key, source, expected form). Returns the number of
 * problems (0 = ok); cfg is always filled (an invalid value leaves the previous valid one,
 * ultimately the default; zeebe_jobs is resolved from whatever values are in force) and must be
 * released with sk_config_clear. An empty environment variable counts as unset. In argv, --config
 * and --annotations (and their values) are skipped: the caller reads them into file_path and
 * annotations_path. */
int sk_config_load(sk_config *cfg, const sk_config_sources *src, FILE *problems);
void sk_config_clear(sk_config *cfg);

/* A peer reached without TLS (security.plaintext): its name, the key of its address, the
 * address and how to turn TLS on. Strings point into cfg or are static. */
typedef struct sk_plaintext_peer {
    const char *peer;
    const char *key;
    const char *address;
    const char *fix;
} sk_plaintext_peer;
#define SK_PLAINTEXT_PEERS_MAX 6
/* The peers of cfg that are configured without TLS (at most SK_PLAINTEXT_PEERS_MAX): the
 * gateway, Kafka, the Schema Registry, the OAuth token endpoint, Vault and the OTLP endpoint;
 * returns how many. */
size_t sk_config_plaintext_peers(const sk_config *cfg, sk_plaintext_peer *out);

/* The OTLP traces URL in force (otlp.traces_endpoint, else otlp.endpoint; may be ""), and
 * whether it is reached over TLS: 1 (https://, or OTLP/gRPC without a scheme unless
 * otlp.insecure), 0 (plaintext), -1 (no endpoint: nothing is exported). */
const char *sk_config_otlp_url(const sk_config *cfg);
int sk_config_otlp_tls(const sk_config *cfg);

#define SK_LITERAL_SECRETS_MAX 8
/* The keys of the secret settings of cfg that hold a literal secret (not a vault: or file:
 * reference, not empty, not inherited from another setting), at most SK_LITERAL_SECRETS_MAX;
 * returns how many. Never the values. */
size_t sk_config_literal_secrets(const sk_config *cfg, const char **keys);

/* Writes docs/configuration.md (Markdown) generated from the table. */
void sk_config_write_docs(FILE *out);

/* Parsers shared by the sources, exposed for tests and fuzzing. The downward API parser
 * (sk_annotations_parse) lives in core/annotations.h. */
/* "250ms", "30s", "5m", "1h", combinations such as "1m30s", or a bare integer (milliseconds);
 * -1 when invalid. */
int64_t sk_config_parse_duration(const char *s);
/* "4MiB", "64KiB", "1GiB", "4MB" or a bare integer (bytes); -1 when invalid. */
int64_t sk_config_parse_size(const char *s);
/* "true"/"false", "yes"/"no", "on"/"off", "1"/"0" (any case): 1 or 0; -1 when invalid. */
int sk_config_parse_bool(const char *s);
/* "host:port" or "[ipv6]:port" (port 0..65535): fills host (brackets removed) and port;
 * 0 on success, -1 when invalid or when host does not fit in hostlen. */
int sk_config_parse_address(const char *s, char *host, size_t hostlen, int *port);

/* Like sk_config_load with built-in defaults and `text` as the JSON config file called `name`
 * (no other source); for tests and fuzzing. */
int sk_config_load_json_text(sk_config *cfg, const char *text, size_t len, const char *name,
                             FILE *problems);

#endif
