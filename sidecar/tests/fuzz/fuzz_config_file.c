/* libFuzzer target: the JSON config file source (parsing, key walk, value parsers, problem
 * reporting), through sk_config_load_json_text. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *sink;
    if (!sink)
        sink = fopen("/dev/null", "w");
    sk_config cfg;
    int problems = sk_config_load_json_text(&cfg, (const char *)data, size, "fuzz.json", sink);
    /* Whatever the input, cfg holds valid values: defaults or accepted ones. */
    if (problems < 0 || !cfg.service_name || !cfg.zeebe_address || !cfg.zeebe_job_types ||
        cfg.zeebe_max_jobs_active < 1 || cfg.handler_max_frame < 1024)
        __builtin_trap();
    sk_config_clear(&cfg);
    return 0;
}
