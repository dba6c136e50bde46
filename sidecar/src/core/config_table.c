/* The configuration table: one row per setting, in the order of docs/configuration.md. The rows
 * live in one file per area (config_table_<area>.inc), each a ROWS(...) list that this file
 * includes, in docs order, inside the one initializer: the table stays one array, so a row's
 * index is its place in the docs and in every per-row array of a load. */
#include <stddef.h>

#include "core/config_internal.h"

#define OFF(f) offsetof(sk_config, f)
#define JOB(f) offsetof(sk_job_type_config, f)
#define ROUTE(f) offsetof(sk_egress_route_config, f)
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const kafka_orderings[] = {"key", "partition", "none", NULL};
const char *const sk_trace_samplers[] = {"parentbased_always_on",
                                         "parentbased_always_off",
                                         "parentbased_traceidratio",
                                         "always_on",
                                         "always_off",
                                         "traceidratio",
                                         NULL};
const char *const sk_otlp_protocols[] = {"http/protobuf", "grpc", NULL};
const char *const sk_otlp_compressions[] = {"none", "gzip", NULL};
const char *const sk_kafka_codecs[] = {"none", "gzip", "snappy", "lz4", "zstd", NULL};
const char *const sk_plaintext_modes[] = {"allow", "warn", "refuse", NULL};
const char *const sk_kafka_protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl", NULL};
const char *const sk_kafka_sasl_mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", NULL};

/* Each area file wraps its rows in ROWS(...), which clang-format lays out as it would inside
 * this initializer (bare rows at the top of a file it indents as one long expression). */
#define ROWS(...) __VA_ARGS__,

const row sk_config_table[NROWS] = {
#include "core/config_table_core.inc"
#include "core/config_table_oauth.inc"
#include "core/config_table_vault.inc"
#include "core/config_table_kafka.inc"
#include "core/config_table_security.inc"
#include "core/config_table_otlp.inc"
#include "core/config_table_egress.inc"
};
#undef ROWS

_Static_assert(sizeof sk_config_table / sizeof sk_config_table[0] == NROWS,
               "NROWS must count the rows of sk_config_table");
