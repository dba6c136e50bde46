/* Per-job-type settings: the overrides "zeebe.jobs.<type>.<setting>" met during a load, each
 * parsed and checked with the row of zeebe.<setting> (an F_PER_JOB row), and their
 * resolution into sk_config.zeebe_jobs: one entry per item of zeebe.job_types, the global
 * values with that type's overrides applied. Runs inside a load, on its thread. */
#include "core/config_internal.h"

#include <stdlib.h>
#include <string.h>

/* The overrides of one job type. A value sits in the field of vals that its row describes,
 * as the global one does in sk_config; the other fields of vals stay zero. */
struct job_over {
    char *type;
    sk_config vals;
    char from[NROWS][128];     /* where each override came from, "" when not set */
    unsigned char seen[NROWS]; /* set by the JSON config file (set twice: a problem) */
};

const char *sk_config_job_setting(const row *r)
{
    return r->key + strlen("zeebe.");
}

static size_t types_row(void)
{
    return (size_t)(sk_config_find_row("zeebe.job_types") - sk_config_table);
}

static job_over *over_find(const ctx *c, const char *type, size_t len)
{
    for (size_t i = 0; i < c->njobs; i++)
        if (strlen(c->jobs[i].type) == len && memcmp(c->jobs[i].type, type, len) == 0)
            return &c->jobs[i];
    return NULL;
}

/* The overrides of type (len bytes), added when absent. NULL, reported against key and from,
 * when as many types as zeebe.job_types may list have overrides already or out of memory. */
static job_over *over_get(ctx *c, const char *key, const char *type, size_t len, const char *from)
{
    job_over *o = over_find(c, type, len), *grown;
    size_t max = (size_t)sk_config_table[types_row()].max;
    if (o)
        return o;
    if (c->njobs == max) {
        sk_config_problem(c,
                          "%s: value from %s not stored: overrides name more than %zu job "
                          "types, the most zeebe.job_types may list",
                          key, from, max);
        return NULL;
    }
    if (!(grown = realloc(c->jobs, (c->njobs + 1) * sizeof *grown))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", key, from);
        return NULL;
    }
    c->jobs = grown;
    o = memset(&grown[c->njobs], 0, sizeof *o);
    if (!(o->type = strndup(type, len))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", key, from);
        return NULL;
    }
    c->njobs++;
    return o;
}

void sk_config_set_job_text(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, const char *s, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    job_over *o = over_get(c, shown, type, type_len, from);
    if (o && sk_config_put_text(c, r, shown, &o->vals, s, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
}

void sk_config_set_job_json(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, json_t *j, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    job_over *o = over_get(c, shown, type, type_len, from);
    if (!o)
        return;
    if (o->seen[r - sk_config_table]++)
        sk_config_problem(c, "%s: set more than once in %s", shown, from);
    if (sk_config_put_json(c, r, shown, &o->vals, j, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
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
    for (size_t k = 0; k < c->njobs; k++) {
        const job_over *o = &c->jobs[k];
        if (listed(cfg, o->type))
            continue;
        for (size_t i = 0; i < NROWS; i++) {
            if (!o->from[i][0])
                continue;
            char key[300], shown[256], type[128];
            snprintf(key, sizeof key, "%s%s.%s", SK_JOBS_PREFIX, o->type,
                     sk_config_job_setting(&sk_config_table[i]));
            sk_config_show_key(shown, sizeof shown, key);
            sk_config_quote(type, sizeof type, o->type);
            sk_config_problem(c,
                              "%s: job type %s is not in zeebe.job_types (%s from %s): the "
                              "value from %s applies to no job type",
                              shown, type, quoted, c->from[types_row()], o->from[i]);
        }
    }
}

static int copy_list(char *const *list, size_t len, char ***out)
{
    if (!list)
        return 0;
    char **copy = calloc(len + 1, sizeof *copy);
    if (!(*out = copy))
        return -1;
    for (size_t k = 0; k < len; k++)
        if (!(copy[k] = strdup(list[k])))
            return -1;
    return 0;
}

/* Copies the field r describes from src (an sk_config) into job; -1 when out of memory. */
static int copy_field(const row *r, const sk_config *src, sk_job_type_config *job)
{
    const char *from = (const char *)src + r->off;
    char *to = (char *)job + r->job_off;
    switch (r->type) {
    case T_STRING:
    case T_ADDRESS: {
        const char *s = *(char *const *)from;
        return !s || (*(char **)to = strdup(s)) ? 0 : -1;
    }
    case T_INT:
    case T_DURATION:
    case T_SIZE:
        memcpy(to, from, sizeof(int64_t));
        return 0;
    case T_BOOL:
    case T_ENUM:
        memcpy(to, from, sizeof(int));
        return 0;
    case T_LIST:
        memcpy((char *)job + r->job_off_len, (const char *)src + r->off_len, sizeof(size_t));
        return copy_list(*(char **const *)from, *(const size_t *)((const char *)src + r->off_len),
                         (char ***)to);
    }
    return -1;
}

/* Fills job for type: each per-job-type setting from its override when there is one, else
 * the global value. */
static int resolve(const ctx *c, const char *type, sk_job_type_config *job)
{
    const job_over *o = over_find(c, type, strlen(type));
    if (!(job->type = strdup(type)))
        return -1;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        const sk_config *src = o && o->from[i][0] ? &o->vals : c->cfg;
        if ((r->flags & F_PER_JOB) && copy_field(r, src, job) < 0)
            return -1;
    }
    return 0;
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
    for (size_t k = 0; k < c->njobs; k++) {
        free(c->jobs[k].type);
        sk_config_clear(&c->jobs[k].vals);
    }
    free(c->jobs);
    c->jobs = NULL;
    c->njobs = 0;
}

static void free_list(char **list)
{
    for (size_t k = 0; list && list[k]; k++)
        free(list[k]);
    free(list);
}

void sk_config_jobs_free(sk_job_type_config *jobs, size_t n)
{
    for (size_t k = 0; jobs && k < n; k++) {
        free(jobs[k].type);
        for (size_t i = 0; i < NROWS; i++) {
            const row *r = &sk_config_table[i];
            char *field = (char *)&jobs[k] + r->job_off;
            if ((r->flags & F_PER_JOB) && (r->type == T_STRING || r->type == T_ADDRESS))
                free(*(char **)field);
            if ((r->flags & F_PER_JOB) && r->type == T_LIST)
                free_list(*(char ***)field);
        }
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
    for (size_t i = 0; i < NROWS; i++)
        if (sk_config_table[i].flags & F_PER_JOB)
            fprintf(out, "- `%s`: `%s`\n", sk_config_job_setting(&sk_config_table[i]),
                    sk_config_table[i].key);
    fputs(docs_tail, out);
}
