/* Per-job-type settings: the overrides "zeebe.jobs.<type>.<setting>" met during a load, each
 * parsed and checked with the row of zeebe.<setting> (an F_PER_JOB row), and their
 * resolution into sk_config.zeebe_jobs: one entry per item of zeebe.job_types, the global
 * values with that type's overrides applied (an overlay of config_overlay.c per type). Runs
 * inside a load, on its thread. */
#include "core/config_internal.h"

#include <stdlib.h>
#include <string.h>

const char *sk_config_job_setting(const row *r)
{
    return r->key + strlen("zeebe.");
}

static size_t types_row(void)
{
    return (size_t)(sk_config_find_row("zeebe.job_types") - sk_config_table);
}

/* The overrides of type (len bytes), added when absent; NULL (reported against shown and
 * from) when as many types as zeebe.job_types may list have overrides already or out of
 * memory. */
static overlay *over_get(ctx *c, const char *shown, const char *type, size_t len, const char *from)
{
    return sk_overlay_get(c, &c->jobs, type, len, (size_t)sk_config_table[types_row()].max,
                          "job types, the most zeebe.job_types may list", shown, from);
}

void sk_config_set_job_text(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, const char *s, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    sk_overlay_set_text(c, over_get(c, shown, type, type_len, from), r, shown, s, from);
}

void sk_config_set_job_json(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, json_t *j, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    sk_overlay_set_json(c, over_get(c, shown, type, type_len, from), r, shown, j, from);
}

/* ---- resolution ---- */

static int listed(const sk_config *cfg, const char *type)
{
    for (size_t i = 0; i < cfg->zeebe_job_types_len; i++)
        if (strcmp(cfg->zeebe_job_types[i], type) == 0)
            return 1;
    return 0;
}

/* Reports every override of a job type that zeebe.job_types does not list: it would apply to
 * no job, most likely a typo in the type or in the list. */
static void report_unlisted(ctx *c)
{
    const sk_config *cfg = c->cfg;
    char types[256] = "", quoted[128];
    for (size_t i = 0, o = 0; i < cfg->zeebe_job_types_len && o < sizeof types; i++)
        o += (size_t)snprintf(types + o, sizeof types - o, "%s%s", i ? "," : "",
                              cfg->zeebe_job_types[i]);
    sk_config_quote(quoted, sizeof quoted, types);
    for (size_t k = 0; k < c->jobs.n; k++) {
        const overlay *o = &c->jobs.v[k];
        if (listed(cfg, o->name))
            continue;
        for (size_t i = 0; i < NROWS; i++) {
            if (!o->from[i][0])
                continue;
            char key[300], shown[256], type[128];
            snprintf(key, sizeof key, "%s%s.%s", SK_JOBS_PREFIX, o->name,
                     sk_config_job_setting(&sk_config_table[i]));
            sk_config_show_key(shown, sizeof shown, key);
            sk_config_quote(type, sizeof type, o->name);
            sk_config_problem(c,
                              "%s: job type %s is not in zeebe.job_types (%s from %s): the "
                              "value from %s applies to no job type",
                              shown, type, quoted, c->from[types_row()], o->from[i]);
        }
    }
}

/* Fills job for type: each per-job-type setting from its override when there is one, else
 * the global value. */
static int resolve(const ctx *c, const char *type, sk_job_type_config *job)
{
    if (!(job->type = strdup(type)))
        return -1;
    return sk_overlay_apply(c, sk_overlay_find(&c->jobs, type, strlen(type)), F_PER_JOB, job);
}

void sk_config_resolve_jobs(ctx *c)
{
    sk_config *cfg = c->cfg;
    size_t n = cfg->zeebe_job_types_len;
    report_unlisted(c);
    if (n > 0 && !(cfg->zeebe_jobs = calloc(n, sizeof *cfg->zeebe_jobs)))
        sk_config_problem(c, "zeebe.job_types: the settings of each job type could not be "
                             "resolved: out of memory");
    for (size_t i = 0; cfg->zeebe_jobs && i < n; i++) {
        cfg->zeebe_jobs_len = i + 1;
        if (resolve(c, cfg->zeebe_job_types[i], &cfg->zeebe_jobs[i]) < 0) {
            sk_config_problem(c, "zeebe.jobs.%s: settings could not be resolved: out of memory",
                              cfg->zeebe_job_types[i]);
            break;
        }
    }
    sk_overlays_clear(&c->jobs);
}

void sk_config_jobs_free(sk_job_type_config *jobs, size_t n)
{
    for (size_t k = 0; jobs && k < n; k++) {
        free(jobs[k].type);
        sk_overlay_free_fields(F_PER_JOB, &jobs[k]);
    }
    free(jobs);
}

/* ---- docs ---- */

static const char docs_head[] =
    "\n"
    "## Per-job-type settings\n"
    "\n"
    "A key `zeebe.jobs.<type>.<setting>` sets `zeebe.<setting>` for the job type `<type>` "
    "only; the other job types keep the value of `zeebe.<setting>`. `<type>` is everything "
    "between `zeebe.jobs.` and the last `.`, so a job type may contain dots "
    "(`zeebe.jobs.underwriting.score.job_timeout`), and it must be listed in "
    "`zeebe.job_types`. `<setting>` is one of the following, read and checked like its "
    "global key (same forms, bounds and messages):\n"
    "\n";

static const char docs_tail[] =
    "\n"
    "Overrides are read from the config file, the annotations and the command line; for each "
    "job type and setting a later source wins, as for other keys. They are not read from the "
    "environment: in a name such as `SKIFF_ZEEBE_JOBS_A_B_JOB_TIMEOUT` the job type and the "
    "setting could not be told apart. An override of a job type that `zeebe.job_types` does "
    "not list, or of an unknown setting, is an error.\n"
    "\n"
    "**Config file.** Under `zeebe.jobs`, one object per job type, named by the whole job "
    "type: the name is not split at its dots. The flat form "
    "`\"zeebe.jobs.<type>.<setting>\"` works too.\n"
    "\n"
    "```json\n"
    "{\n"
    "  \"zeebe\": {\n"
    "    \"job_types\": [\"underwriting.score\", \"underwriting.price\"],\n"
    "    \"jobs\": {\n"
    "      \"underwriting.score\": {\"job_timeout\": \"10m\", \"fetch_variables\": "
    "[\"applicant\", \"amount\"]},\n"
    "      \"underwriting.price\": {\"max_jobs_active\": 4, \"streaming\": true}\n"
    "    }\n"
    "  }\n"
    "}\n"
    "```\n"
    "\n"
    "**Annotations.** Kubernetes allows at most 63 characters (letters, digits, `-`, `_` and "
    "`.`) after `skiff.io/`; set the overrides of longer job types in the config file or on "
    "the command line.\n"
    "\n"
    "```yaml\n"
    "metadata:\n"
    "  annotations:\n"
    "    skiff.io/zeebe.job_types: \"underwriting.score,underwriting.price\"\n"
    "    skiff.io/zeebe.jobs.underwriting.score.job_timeout: \"10m\"\n"
    "    skiff.io/zeebe.jobs.underwriting.price.streaming: \"true\"\n"
    "```\n"
    "\n"
    "**Command line.**\n"
    "\n"
    "```sh\n"
    "skiff run --zeebe.jobs.underwriting.score.job_timeout=10m\n"
    "```\n";

void sk_config_write_job_docs(FILE *out)
{
    fputs(docs_head, out);
    sk_overlay_write_settings(out, F_PER_JOB, sk_config_job_setting);
    fputs(docs_tail, out);
}
