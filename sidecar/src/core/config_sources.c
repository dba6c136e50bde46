/* The sources of configuration values, in the order they apply: defaults (some read from the
 * environment), JSON config file, annotations file (Kubernetes downward API), environment,
 * command line. Each finds the row of every key it names, hands the value to a setter of
 * config.c and reports what it cannot place (unknown keys, malformed input). */
#include "core/config_internal.h"

#include <string.h>

#include "core/annotations.h"

/* ---- messages ---- */

/* Quotes s for a message: escapes control characters, cuts long values. */
void sk_config_quote(char *out, size_t n, const char *s)
{
    size_t o = 0, max = 80;
    out[o++] = '"';
    for (size_t i = 0; s[i] && o + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == max) {
            o += (size_t)snprintf(out + o, n - o, "...");
            break;
        }
        if (c == '"' || c == '\\')
            o += (size_t)snprintf(out + o, n - o, "\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(out + o, n - o, "\\x%02x", c);
        else
            out[o++] = (char)c;
    }
    snprintf(out + o, n - o, "\"");
}

/* Levenshtein distance of a and b; 64 when either is 64 bytes or longer. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), prev[64], cur[64];
    if (la >= 64 || lb >= 64)
        return 64;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof prev);
    }
    return prev[lb];
}

static int printable(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == '"' || *s == 0x7f)
            return 0;
    return 1;
}

void sk_config_show_key(char *out, size_t n, const char *key)
{
    if (printable(key))
        snprintf(out, n, "%s", key);
    else
        sk_config_quote(out, n, key);
}

/* For a key of the form zeebe.jobs.<type>.<setting> (<type> runs to the last '.'): where
 * <setting> starts in key, and through *r its F_PER_JOB row (NULL when <setting> names
 * none). NULL when key has another form. */
static const char *job_setting(const char *key, const row **r)
{
    size_t plen = strlen(SK_JOBS_PREFIX);
    const char *dot = strncmp(key, SK_JOBS_PREFIX, plen) == 0 ? strrchr(key + plen, '.') : NULL;
    char name[64];
    *r = NULL;
    if (!dot)
        return NULL;
    if (snprintf(name, sizeof name, "zeebe.%s", dot + 1) < (int)sizeof name)
        *r = sk_config_find_row(name);
    if (*r && !((*r)->flags & F_PER_JOB))
        *r = NULL;
    return dot + 1;
}

/* The per-job-type settings, "worker_name, job_timeout, ..." into out (n bytes); out. */
static const char *job_settings(char *out, size_t n)
{
    size_t o = 0;
    out[0] = '\0';
    for (size_t i = 0; i < NROWS && o < n; i++)
        if (sk_config_table[i].flags & F_PER_JOB)
            o += (size_t)snprintf(out + o, n - o, "%s%s", o ? ", " : "",
                                  sk_config_job_setting(&sk_config_table[i]));
    return out;
}

/* Reports an unknown key (shown as prefix + key), with the closest known key when one is
 * close: "--zeebe.adress: unknown option on the command line (did you mean --zeebe.address?)".
 * In zeebe.jobs.<type>.<setting>, only <setting> is compared, with the per-job-type
 * settings. */
static void unknown_key(ctx *c, const char *prefix, const char *key, const char *what)
{
    const row *unused;
    const char *setting = job_setting(key, &unused);
    int route = 0;
    if (!setting && (setting = sk_config_route_key(key, &unused)) != NULL)
        route = 1;
    int flag = route ? F_PER_ROUTE : F_PER_JOB;
    size_t best = 4, bi = NROWS;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        if (setting && !(r->flags & flag))
            continue;
        const char *name = route ? sk_config_route_setting(r) : sk_config_job_setting(r);
        size_t d = setting ? edit_distance(setting, name) : edit_distance(key, r->key);
        if (d < best)
            best = d, bi = i;
    }
    char full[256], shown[256], list[160];
    snprintf(full, sizeof full, "%s%s", prefix, key);
    sk_config_show_key(shown, sizeof shown, full);
    if (bi < NROWS && setting)
        sk_config_problem(c, "%s: %s (did you mean %s%.*s%s?)", shown, what, prefix,
                          (int)(setting - key), key,
                          route ? sk_config_route_setting(&sk_config_table[bi])
                                : sk_config_job_setting(&sk_config_table[bi]));
    else if (bi < NROWS)
        sk_config_problem(c, "%s: %s (did you mean %s%s?)", shown, what, prefix,
                          sk_config_table[bi].key);
    else if (strncmp(key, SK_JOBS_PREFIX, strlen(SK_JOBS_PREFIX)) == 0)
        sk_config_problem(c, "%s: %s: expected %s%s<type>.<setting>, <setting> one of %s", shown,
                          what, prefix, SK_JOBS_PREFIX, job_settings(list, sizeof list));
    else
        sk_config_problem(c, "%s: %s", shown, what);
}

/* Sets key from a source of text values: a key of the table or a per-job-type override.
 * -1 when key is neither (the caller reports it). */
static int set_key_text(ctx *c, const char *key, const char *val, const char *from)
{
    const row *r = sk_config_find_row(key);
    const char *setting;
    if (r) {
        sk_config_set_text(c, r, val, from);
        return 0;
    }
    if (sk_config_route_key(key, &r) && r) {
        sk_config_set_route_text(c, r, key, val, from);
        return 0;
    }
    setting = job_setting(key, &r);
    if (!r)
        return -1;
    const char *type = key + strlen(SK_JOBS_PREFIX);
    sk_config_set_job_text(c, r, key, type, (size_t)(setting - 1 - type), val, from);
    return 0;
}

/* ---- defaults and environment ---- */

/* Value of NAME in a "NAME=value" list; NULL when absent or empty (an empty variable counts
 * as unset, as templates often leave them). */
static const char *env_get(char *const *env, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; env && env[i]; i++)
        if (strncmp(env[i], name, n) == 0 && env[i][n] == '=')
            return env[i][n + 1] ? env[i] + n + 1 : NULL;
    return NULL;
}

void sk_config_env_name(const row *r, char *out, size_t n)
{
    size_t o = (size_t)snprintf(out, n, "SKIFF_");
    for (const char *k = r->key; *k && o + 1 < n; k++)
        out[o++] = *k == '.' ? '_' : (char)(*k >= 'a' && *k <= 'z' ? *k - 32 : *k);
    out[o] = '\0';
}

void sk_config_load_defaults(ctx *c, char *const *env)
{
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        const char *v = NULL;
        char from[128] = "default";
        for (size_t k = 0; r->def_env && r->def_env[k] && !v; k++)
            if ((v = env_get(env, r->def_env[k])))
                snprintf(from, sizeof from, "default (environment %s)", r->def_env[k]);
        sk_config_set_text(c, r, v ? v : r->def, from);
    }
}

/* A boolean variable named "!NAME" in a row's env list means the opposite of the key
 * (ZEEBE_INSECURE_CONNECTION=true is zeebe.tls=false); an invalid value is passed on as it is
 * so that the problem names it. */
static const char *inverse(const row *r, const char *used, const char *v)
{
    for (size_t k = 0; r->env && r->env[k]; k++)
        if (r->env[k][0] == '!' && strcmp(r->env[k] + 1, used) == 0) {
            int b = sk_config_parse_bool(v);
            return b < 0 ? v : b ? "false" : "true";
        }
    return v;
}

void sk_config_load_env(ctx *c, char *const *env)
{
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        char name[64], from[128];
        sk_config_env_name(r, name, sizeof name);
        const char *used = name, *v = env_get(env, name);
        for (size_t k = 0; r->env && r->env[k] && !v; k++)
            v = env_get(env, used = r->env[k] + (r->env[k][0] == '!'));
        if (!v)
            continue;
        snprintf(from, sizeof from, "environment %s", used);
        sk_config_set_text(c, r, inverse(r, used, v), from);
    }
}

/* ---- JSON config file ---- */

/* Walks a JSON object: nested objects extend the key ("zeebe" + "address"), flat dotted
 * names are keys as they are; both forms may be mixed. A name is never split at its dots, so
 * {"zeebe": {"jobs": {"a.b": {"job_timeout": ...}}}} sets zeebe.jobs.a.b.job_timeout, the
 * override of job type "a.b". */
static void walk_json(ctx *c, json_t *obj, const char *prefix, const char *from)
{
    const char *name;
    json_t *v;
    json_object_foreach(obj, name, v)
    {
        char key[256];
        int n = snprintf(key, sizeof key, "%s%s%s", prefix, *prefix ? "." : "", name);
        int fits = n < (int)sizeof key;
        const row *r = fits ? sk_config_find_row(key) : NULL, *jr = NULL, *rr = NULL;
        const char *setting = fits ? job_setting(key, &jr) : NULL;
        if (fits)
            sk_config_route_key(key, &rr);
        if (r && json_is_object(v) && strcmp(key, "egress.routes") == 0) {
            walk_json(c, v, key, from); /* {"egress": {"routes": {"<name>": {...}}}} */
        } else if (r) {
            if (c->seen[r - sk_config_table]++)
                sk_config_problem(c, "%s: set more than once in %s", r->key, from);
            sk_config_set_json(c, r, v, from);
        } else if (json_is_object(v) && n < 200) {
            walk_json(c, v, key, from);
        } else if (rr) {
            sk_config_set_route_json(c, rr, key, v, from);
        } else if (jr) {
            const char *type = key + strlen(SK_JOBS_PREFIX);
            sk_config_set_job_json(c, jr, key, type, (size_t)(setting - 1 - type), v, from);
        } else {
            char what[300];
            snprintf(what, sizeof what, "unknown key in %s", from);
            unknown_key(c, "", key, what);
        }
    }
}

void sk_config_load_json(ctx *c, const char *text, size_t len, const char *path)
{
    char from[300];
    json_error_t e;
    snprintf(from, sizeof from, "file %s", path);
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        /* jansson quotes the token near the error, which may be a secret: line and column
         * say where it is. */
        char *near = strstr(e.text, " near '");
        if (near)
            *near = '\0';
        sk_config_problem(c, "%s line %d column %d: invalid JSON: %s", from, e.line, e.column,
                          e.text);
        return;
    }
    if (json_is_object(root)) {
        memset(c->seen, 0, sizeof c->seen);
        walk_json(c, root, "", from);
    } else {
        sk_config_problem(c, "%s: expected a JSON object at the top level", from);
    }
    json_decref(root);
}

/* ---- annotations file ---- */

typedef struct {
    ctx *c;
    const char *path;
} ann_ctx;

/* Marker annotations the Helm chart (charts/skiff) puts on the pods it injects skiff into:
 * they say that skiff is there and which chart put it, and set nothing. No key of the table is
 * a single word, so a marker never hides a setting. */
static int is_marker(const char *name)
{
    return strcmp(name, "inject") == 0 || strcmp(name, "chart") == 0;
}

/* One well-formed line: skiff.io/<key> sets key (a key of the table or a per-job-type
 * override), other annotations and our markers set nothing. */
static void ann_value(void *ud, int line, const char *key, const char *val)
{
    ann_ctx *a = ud;
    char from[300];
    if (strncmp(key, "skiff.io/", 9) != 0 || is_marker(key + 9))
        return;
    snprintf(from, sizeof from, "annotations %s line %d", a->path, line);
    if (set_key_text(a->c, key + 9, val, from) == 0)
        return;
    char what[350];
    snprintf(what, sizeof what, "unknown key in %s", from);
    unknown_key(a->c, "skiff.io/", key + 9, what);
}

static void ann_error(void *ud, int line, const char *why)
{
    ann_ctx *a = ud;
    sk_config_problem(a->c,
                      "annotations %s line %d: %s: expected key=\"value\" (a Kubernetes "
                      "downward API annotations file)",
                      a->path, line, why);
}

void sk_config_load_annotations(ctx *c, const char *text, size_t len, const char *path)
{
    ann_ctx a = {.c = c, .path = path};
    sk_annotations_parse_lines(text, len, ann_value, ann_error, &a);
}

/* ---- command line ---- */

/* Options after the subcommand: --<key>=<value> or --<key> <value>, <key> a key of the table
 * or a per-job-type override. --config and --annotations name the other sources (the caller
 * reads them) and are skipped here. */
void sk_config_load_cli(ctx *c, int argc, char *const *argv)
{
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *eq = strchr(a, '='), *val = eq ? eq + 1 : NULL;
        char name[256], q[128], from[300];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0' || a[2] == '=') {
            sk_config_quote(q, sizeof q, a);
            sk_config_problem(c,
                              "%s: unexpected argument on the command line: expected "
                              "--<key>=<value> or --<key> <value>",
                              q);
            continue;
        }
        size_t len = eq ? (size_t)(eq - a - 2) : strlen(a) - 2;
        if (len >= sizeof name) {
            sk_config_quote(q, sizeof q, a);
            sk_config_problem(c, "%s: option name longer than %zu bytes on the command line", q,
                              sizeof name - 1);
            continue;
        }
        snprintf(name, sizeof name, "%.*s", (int)len, a + 2);
        if (!eq && i + 1 < argc && strncmp(argv[i + 1], "--", 2) != 0)
            val = argv[++i];
        const row *r = sk_config_find_row(name);
        int ours = strcmp(name, "config") == 0 || strcmp(name, "annotations") == 0;
        if (!r)
            job_setting(name, &r);
        if (!r)
            sk_config_route_key(name, &r);
        if (!r && !ours) {
            unknown_key(c, "--", name, "unknown option on the command line");
        } else if (!val) {
            sk_config_problem(c,
                              "--%s: missing value on the command line: expected "
                              "--%s=<value> or --%s <value>",
                              name, name, name);
        } else if (r) {
            snprintf(from, sizeof from, "command line --%s", name);
            set_key_text(c, name, val, from);
        }
    }
}
