/* libFuzzer target: the JSON config file source (parsing, key walk, per-job-type overrides,
 * value parsers, problem reporting, resolution of each job type's settings), through
 * sk_config_load_json_text. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A resolved entry holds valid values whatever the input: the global ones or accepted
 * overrides. */
static int job_valid(const sk_config *cfg, size_t i)
{
    const sk_job_type_config *j = &cfg->zeebe_jobs[i];
    return j->type && strcmp(j->type, cfg->zeebe_job_types[i]) == 0 && j->worker_name &&
           j->job_timeout_ms >= 1000 && j->max_jobs_active >= 1 && j->max_jobs_active <= 10000 &&
           j->request_timeout_ms >= 0 && j->fetch_variables &&
           !j->fetch_variables[j->fetch_variables_len] && j->tenant_ids &&
           !j->tenant_ids[j->tenant_ids_len] && (j->streaming == 0 || j->streaming == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    sk_config cfg;
    int problems = sk_config_load_json_text(&cfg, (const char *)data, size, "fuzz.json", sink);
    /* Whatever the input, cfg holds valid values: defaults or accepted ones. */
    if (problems < 0 || !cfg.service_name || !cfg.zeebe_address || !cfg.zeebe_job_types ||
        cfg.zeebe_max_jobs_active < 1 || cfg.handler_max_frame < 1024 ||
        cfg.zeebe_jobs_len != cfg.zeebe_job_types_len)
        __builtin_trap();
    for (size_t i = 0; i < cfg.zeebe_jobs_len; i++)
        if (!job_valid(&cfg, i))
            __builtin_trap();
    sk_config_clear(&cfg);
    return 0;
}
