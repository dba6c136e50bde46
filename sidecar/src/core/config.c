#include "core/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config_internal.h"

#define OFF(f) offsetof(sk_config, f)
#define JOB(f) offsetof(sk_job_type_config, f)
#define ENV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

static const row table[] = {
    {.key = "service.name",
     .type = T_STRING,
     .def = "skiff",
     .min = 1,
     .max = 255,
     .env = ENV("OTEL_SERVICE_NAME"),
     .off = OFF(service_name),
     .help = "Service name in every log line (`service_name`) and in exported telemetry."},
    {.key = "log.level",
     .type = T_ENUM,
     .def = "info",
     .choices = log_levels,
     .off = OFF(log_level),
     .help = "Lowest level of the JSON log lines written to stderr."},
    {.key = "admin.address",
     .type = T_ADDRESS,
     .def = "0.0.0.0:9464",
     .min = 0,
     .max = 65535,
     .off = OFF(admin_address),
     .help = "Listen address of the admin HTTP server (`/metrics`, `/healthz`, `/readyz`). "
             "Port 0 picks a free port."},
    {.key = "handler.socket",
     .type = T_STRING,
     .def = "/run/skiff/handler.sock",
     .min = 1,
     .max = 107,
     .off = OFF(handler_socket),
     .help = "Path of the Unix socket handlers connect to, on a volume shared with the "
             "handler container (107 bytes at most, the limit of a socket address)."},
    {.key = "handler.max_frame",
     .type = T_SIZE,
     .def = "4MiB",
     .min = KIB,
     .max = 64 * MIB,
     .off = OFF(handler_max_frame),
     .help = "Largest frame exchanged with a handler; a larger one is a protocol error and "
             "closes the connection."},
    {.key = "handler.hello_timeout",
     .type = T_DURATION,
     .def = "10s",
     .min = 100,
     .max = 5 * MIN,
     .off = OFF(handler_hello_timeout_ms),
     .help = "Time a new handler connection has to send its `hello` frame."},
    {.key = "zeebe.address",
     .type = T_ADDRESS,
     .def = "127.0.0.1:26500",
     .min = 1,
     .max = 65535,
     .env = ENV("ZEEBE_ADDRESS", "CAMUNDA_ZEEBE_ADDRESS"),
     .off = OFF(zeebe_address),
     .help = "Address of the Zeebe gateway (gRPC). `ZEEBE_ADDRESS` is the variable of `zbctl` "
             "and Camunda's clients; `CAMUNDA_ZEEBE_ADDRESS` the one of the platform's Helm "
             "values."},
    {.key = "zeebe.job_types",
     .type = T_LIST,
     .def = "",
     .min = 0,
     .max = 100,
     .flags = F_DISTINCT,
     .off = OFF(zeebe_job_types),
     .off_len = OFF(zeebe_job_types_len),
     .help = "Job types to work on, one activation loop each. Empty: no job is activated."},
    {.key = "zeebe.worker_name",
     .type = T_STRING,
     .def = "skiff",
     .def_env = ENV("POD_NAME", "HOSTNAME"),
     .min = 1,
     .max = 255,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_worker_name),
     .job_off = JOB(worker_name),
     .help = "Worker name sent with activations; Zeebe records it on each job it hands out. "
             "The default is read from the environment when the configuration is loaded."},
    {.key = "zeebe.job_timeout",
     .type = T_DURATION,
     .def = "5m",
     .min = SEC,
     .max = 168 * HOUR,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_job_timeout_ms),
     .job_off = JOB(job_timeout_ms),
     .help = "How long an activated job stays reserved for this worker before Zeebe hands it "
             "to another one; a handler may extend it."},
    {.key = "zeebe.max_jobs_active",
     .type = T_INT,
     .def = "32",
     .min = 1,
     .max = 10000,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_max_jobs_active),
     .job_off = JOB(max_jobs_active),
     .help = "Most jobs of one job type in flight at once; activation also never asks for "
             "more than the free capacity of the connected handlers."},
    {.key = "zeebe.request_timeout",
     .type = T_DURATION,
     .def = "20s",
     .min = 0,
     .max = HOUR,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_request_timeout_ms),
     .job_off = JOB(request_timeout_ms),
     .help = "How long an activation request waits for jobs (long polling). 0: the "
             "gateway's default."},
    {.key = "zeebe.fetch_variables",
     .type = T_LIST,
     .def = "",
     .min = 0,
     .max = 1000,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_fetch_variables),
     .off_len = OFF(zeebe_fetch_variables_len),
     .job_off = JOB(fetch_variables),
     .job_off_len = JOB(fetch_variables_len),
     .help = "Variables to fetch with each job (`fetchVariable` of `ActivateJobs`). Empty: "
             "all variables visible at the job's scope."},
    {.key = "zeebe.tenant_ids",
     .type = T_LIST,
     .def = "",
     .min = 0,
     .max = 100,
     .flags = F_PER_JOB,
     .off = OFF(zeebe_tenant_ids),
     .off_len = OFF(zeebe_tenant_ids_len),
     .job_off = JOB(tenant_ids),
     .job_off_len = JOB(tenant_ids_len),
     .help = "Tenants whose jobs to activate (`tenantIds`), on a multi-tenant cluster. Empty: "
             "the gateway's default tenant (`<default>`)."},
    {.key = "zeebe.streaming",
     .type = T_BOOL,
     .def = "false",
     .flags = F_PER_JOB,
     .off = OFF(zeebe_streaming),
     .job_off = JOB(streaming),
     .help = "Also receive jobs pushed by the gateway as they are created "
             "(`StreamActivatedJobs`); polling still picks up the backlog. Off by default, "
             "like in Camunda's clients."},
    {.key = "zeebe.stream_recycle",
     .type = T_DURATION,
     .def = "5m",
     .min = 10 * SEC,
     .max = 24 * HOUR,
     .flags = F_ZERO_OK,
     .off = OFF(zeebe_stream_recycle_ms),
     .help = "With `zeebe.streaming`, a job stream is closed and reopened after this long so "
             "that the load rebalances across gateways. 0: never."},
    {.key = "zeebe.backoff_initial",
     .type = T_DURATION,
     .def = "100ms",
     .min = 1,
     .max = MIN,
     .off = OFF(zeebe_backoff_initial_ms),
     .help = "First retry delay after a transient gateway error (UNAVAILABLE, "
             "RESOURCE_EXHAUSTED, ...); it doubles per attempt, with jitter."},
    {.key = "zeebe.backoff_max",
     .type = T_DURATION,
     .def = "10s",
     .min = 1,
     .max = HOUR,
     .off = OFF(zeebe_backoff_max_ms),
     .help = "Largest retry delay; at least `zeebe.backoff_initial`."},
    {.key = "grpc.max_message_size",
     .type = T_SIZE,
     .def = "4MiB",
     .min = 64 * KIB,
     .max = GIB,
     .off = OFF(grpc_max_message_bytes),
     .help = "Largest gRPC message sent or received; the gateway's default limit is also "
             "4MiB."},
    {.key = "grpc.keepalive",
     .type = T_DURATION,
     .def = "45s",
     .min = 30 * SEC,
     .max = HOUR,
     .flags = F_ZERO_OK,
     .env = ENV("ZEEBE_KEEP_ALIVE"),
     .off = OFF(grpc_keepalive_ms),
     .help = "Interval of HTTP/2 keepalive PINGs to the gateway; 0 turns them off. The gateway "
             "closes connections that ping more often than every 30s. `ZEEBE_KEEP_ALIVE` "
             "(milliseconds) is the variable of Camunda's clients."},
    {.key = "shutdown.grace_period",
     .type = T_DURATION,
     .def = "25s",
     .min = 0,
     .max = HOUR,
     .off = OFF(shutdown_grace_ms),
     .help = "On SIGTERM, time tasks in flight have to finish before they are failed back "
             "to Zeebe with their retries unchanged. Keep it below the pod's "
             "`terminationGracePeriodSeconds`."},
};

_Static_assert(sizeof table / sizeof table[0] == NROWS, "NROWS must count the rows of table");

/* The table for config_sources.c; this file, and its unit test that includes it, say table. */
const row *const sk_config_table = table;

/* ---- value parsers ---- */

/* A unit of a duration (scale in milliseconds) or of a size (in bytes). */
typedef struct {
    const char *name;
    int64_t scale;
} unit;

/* Reads decimal digits at *p (at least one); -1 on none or overflow. */
static int read_digits(const char **p, int64_t *out)
{
    const char *s = *p;
    int64_t v = 0;
    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    *p = s;
    *out = v;
    return 0;
}

static int parse_int(const char *s, int64_t *out)
{
    int neg = *s == '-';
    if (*s == '-' || *s == '+')
        s++;
    if (read_digits(&s, out) < 0 || *s)
        return -1;
    if (neg)
        *out = -*out;
    return 0;
}

int64_t sk_config_parse_duration(const char *s)
{
    static const unit units[] = {{"ms", 1}, {"s", SEC}, {"m", MIN}, {"h", HOUR}};
    int64_t total = 0, n;
    const char *p = s;
    if (!s || !*s)
        return -1;
    if (read_digits(&p, &n) == 0 && *p == '\0')
        return n;
    while (*s) {
        if (read_digits(&s, &n) < 0)
            return -1;
        size_t i = 0;
        while (i < 4 && strncmp(s, units[i].name, strlen(units[i].name)) != 0)
            i++;
        if (i == 4 || n > (INT64_MAX - total) / units[i].scale)
            return -1;
        total += n * units[i].scale;
        s += strlen(units[i].name);
    }
    return total;
}

int64_t sk_config_parse_size(const char *s)
{
    static const unit units[] = {{"", 1},      {"B", 1},     {"KiB", KIB},    {"MiB", MIB},
                                 {"GiB", GIB}, {"Ki", KIB},  {"Mi", MIB},     {"Gi", GIB},
                                 {"kB", 1000}, {"KB", 1000}, {"MB", 1000000}, {"GB", 1000000000}};
    int64_t n;
    if (!s || read_digits(&s, &n) < 0)
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(s, units[i].name) == 0)
            return n > INT64_MAX / units[i].scale ? -1 : n * units[i].scale;
    return -1;
}

int sk_config_parse_bool(const char *s)
{
    static const char *const t[] = {"true", "yes", "on", "1"}, *const f[] = {"false", "no", "off",
                                                                             "0"};
    for (size_t i = 0; s && i < 4; i++) {
        if (strcasecmp(s, t[i]) == 0)
            return 1;
        if (strcasecmp(s, f[i]) == 0)
            return 0;
    }
    return -1;
}

static int valid_host(const char *h, size_t n, int v6)
{
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = h[i];
        int ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                 c == '.' || c == ':' || c == '%';
        if (!v6)
            ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                 c == '.' || c == '-' || c == '_';
        if (!ok)
            return 0;
    }
    return 1;
}

int sk_config_parse_address(const char *s, char *host, size_t hostlen, int *port)
{
    const char *colon = s ? strrchr(s, ':') : NULL;
    if (!colon)
        return -1;
    const char *h = s;
    size_t n = (size_t)(colon - s);
    int v6 = s[0] == '[';
    if (v6) {
        if (n < 2 || colon[-1] != ']')
            return -1;
        h++, n -= 2;
    }
    int64_t p;
    const char *ps = colon + 1;
    if (!valid_host(h, n, v6) || (v6 && !memchr(h, ':', n)) || n >= hostlen ||
        read_digits(&ps, &p) < 0 || *ps || p > 65535)
        return -1;
    memcpy(host, h, n);
    host[n] = '\0';
    *port = (int)p;
    return 0;
}

/* ---- values ---- */

typedef struct {
    int64_t i;
    char *s;
    char **list;
    size_t nlist;
} value;

enum { OK, BAD, RANGE, NOMEM };

static void value_clear(value *v)
{
    free(v->s);
    for (size_t i = 0; i < v->nlist; i++)
        free(v->list[i]);
    free(v->list);
    *v = (value){0};
}

static int in_bounds(const row *r, int64_t v)
{
    return ((r->flags & F_ZERO_OK) && v == 0) || (v >= r->min && v <= r->max);
}

/* Adds item (n bytes, trimmed of spaces) unless empty or already there; BAD for an item
 * already there when the row wants them distinct. */
static int list_add(const row *r, value *v, const char *item, size_t n)
{
    while (n && (*item == ' ' || *item == '\t'))
        item++, n--;
    while (n && (item[n - 1] == ' ' || item[n - 1] == '\t'))
        n--;
    if (n == 0)
        return OK;
    for (size_t i = 0; i < v->nlist; i++)
        if (strlen(v->list[i]) == n && memcmp(v->list[i], item, n) == 0)
            return (r->flags & F_DISTINCT) ? BAD : OK;
    char **nl = realloc(v->list, (v->nlist + 2) * sizeof(char *));
    if (!nl)
        return NOMEM;
    v->list = nl;
    if (!(nl[v->nlist] = strndup(item, n)))
        return NOMEM;
    nl[++v->nlist] = NULL;
    return OK;
}

static int parse_list(const row *r, const char *s, value *v)
{
    for (const char *p = s;; p++) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        int rc = list_add(r, v, p, n);
        if (rc != OK)
            return rc;
        if (!comma)
            return v->nlist <= (size_t)r->max ? OK : RANGE;
        p = comma;
    }
}

static int parse_text(const row *r, const char *s, value *v)
{
    char host[256];
    int port;
    switch (r->type) {
    case T_STRING:
        if (strlen(s) < (size_t)r->min || strlen(s) > (size_t)r->max)
            return RANGE;
        return (v->s = strdup(s)) ? OK : NOMEM;
    case T_ADDRESS:
        if (sk_config_parse_address(s, host, sizeof host, &port) < 0)
            return BAD;
        if (!in_bounds(r, port))
            return RANGE;
        return (v->s = strdup(s)) ? OK : NOMEM;
    case T_INT:
        if (parse_int(s, &v->i) < 0)
            return BAD;
        return in_bounds(r, v->i) ? OK : RANGE;
    case T_DURATION:
    case T_SIZE:
        v->i = r->type == T_SIZE ? sk_config_parse_size(s) : sk_config_parse_duration(s);
        return v->i < 0 ? BAD : in_bounds(r, v->i) ? OK : RANGE;
    case T_BOOL:
        v->i = sk_config_parse_bool(s);
        return v->i < 0 ? BAD : OK;
    case T_ENUM:
        for (v->i = 0; r->choices[v->i]; v->i++)
            if (strcasecmp(s, r->choices[v->i]) == 0)
                return OK;
        return BAD;
    case T_LIST:
        return parse_list(r, s, v);
    }
    return BAD;
}

/* Frees what the field of cfg that r describes owns (a string, a list and its items). */
static void release(sk_config *cfg, const row *r)
{
    char *base = (char *)cfg;
    if (r->type == T_STRING || r->type == T_ADDRESS)
        free(*(char **)(base + r->off));
    if (r->type == T_LIST) {
        char **list = *(char ***)(base + r->off);
        for (size_t k = 0; list && list[k]; k++)
            free(list[k]);
        free(list);
    }
}

/* Moves v into the field of cfg that r describes, releasing the value it replaces. */
static void store(sk_config *cfg, const row *r, value *v)
{
    char *base = (char *)cfg;
    release(cfg, r);
    switch (r->type) {
    case T_STRING:
    case T_ADDRESS:
        *(char **)(base + r->off) = v->s;
        v->s = NULL;
        break;
    case T_INT:
    case T_DURATION:
    case T_SIZE:
        *(int64_t *)(base + r->off) = v->i;
        break;
    case T_BOOL:
    case T_ENUM:
        *(int *)(base + r->off) = (int)v->i;
        break;
    case T_LIST:
        if (!v->list)
            v->list = calloc(1, sizeof(char *));
        *(char ***)(base + r->off) = v->list;
        *(size_t *)(base + r->off_len) = v->list ? v->nlist : 0;
        v->list = NULL;
        v->nlist = 0;
        break;
    }
    value_clear(v);
}

/* ---- formatting for messages and docs ---- */

/* Largest first; the last one (scale 1) takes any value. */
static const unit duration_units[] = {{"h", HOUR}, {"m", MIN}, {"s", SEC}, {"ms", 1}};
static const unit size_units[] = {{"GiB", GIB}, {"MiB", MIB}, {"KiB", KIB}, {"", 1}};

/* v in the largest unit that divides it ("90s", "4MiB", "1500ms"); 0 has no unit. */
static void fmt_unit(char *out, size_t n, int64_t v, const unit *u)
{
    while (v != 0 && v % u->scale != 0)
        u++;
    snprintf(out, n, "%lld%s", (long long)(v / u->scale), v ? u->name : "");
}

void sk_config_fmt_bound(const row *r, char *out, size_t n, int64_t v)
{
    if (r->type == T_DURATION)
        fmt_unit(out, n, v, duration_units);
    else if (r->type == T_SIZE)
        fmt_unit(out, n, v, size_units);
    else
        snprintf(out, n, "%lld", (long long)v);
}

const char *sk_config_distinct(const row *r)
{
    return (r->flags & F_DISTINCT) ? " distinct" : "";
}

/* The expected form of a value, for problem messages. */
static void fmt_expected(const row *r, char *out, size_t n)
{
    char lo[32], hi[32];
    const char *zero = (r->flags & F_ZERO_OK) ? "0 or " : "";
    sk_config_fmt_bound(r, lo, sizeof lo, r->min);
    sk_config_fmt_bound(r, hi, sizeof hi, r->max);
    switch (r->type) {
    case T_STRING:
        snprintf(out, n, "a string of %s..%s bytes", lo, hi);
        break;
    case T_INT:
        snprintf(out, n, "%san integer in %s..%s", zero, lo, hi);
        break;
    case T_DURATION:
        snprintf(out, n,
                 "%sa duration such as 250ms, 30s, 5m or 1h (a bare integer is "
                 "milliseconds) in %s..%s",
                 zero, lo, hi);
        break;
    case T_SIZE:
        snprintf(out, n,
                 "%sa size such as 64KiB, 4MiB, 1GiB or 4MB (a bare integer is bytes) "
                 "in %s..%s",
                 zero, lo, hi);
        break;
    case T_BOOL:
        snprintf(out, n, "true or false");
        break;
    case T_ENUM: {
        size_t len = (size_t)snprintf(out, n, "one of");
        for (size_t i = 0; r->choices[i] && len < n; i++)
            len += (size_t)snprintf(out + len, n - len, "%s %s", i ? "," : "", r->choices[i]);
        break;
    }
    case T_LIST:
        snprintf(out, n,
                 "a comma-separated list (in a config file also a JSON array of "
                 "strings) of at most %s%s items",
                 hi, sk_config_distinct(r));
        break;
    case T_ADDRESS:
        snprintf(out, n, "host:port or [ipv6]:port with a port in %s..%s", lo, hi);
        break;
    }
}

/* ---- problems and setters ---- */

void sk_config_problem(ctx *c, const char *fmt, ...)
{
    c->problems++;
    if (!c->out)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
}

static const row *find_row(const char *key)
{
    for (size_t i = 0; i < NROWS; i++)
        if (strcmp(table[i].key, key) == 0)
            return &table[i];
    return NULL;
}

/* find_row for config_sources.c (the unit test calls find_row too). */
const row *sk_config_find_row(const char *key)
{
    return find_row(key);
}

static void report(ctx *c, const row *r, const char *key, int rc, const char *shown,
                   const char *from)
{
    char exp[256];
    fmt_expected(r, exp, sizeof exp);
    if (rc == NOMEM)
        sk_config_problem(c, "%s: value %s from %s could not be stored: out of memory", key, shown,
                          from);
    else
        sk_config_problem(c, "%s: value %s from %s is %s: expected %s", key, shown, from,
                          rc == RANGE ? "out of range" : "not valid", exp);
}

int sk_config_put_text(ctx *c, const row *r, const char *key, sk_config *dst, const char *s,
                       const char *from)
{
    value v = {0};
    int rc = parse_text(r, s, &v);
    if (rc == OK) {
        store(dst, r, &v);
        return 0;
    }
    char q[128];
    sk_config_quote(q, sizeof q, s);
    report(c, r, key, rc, q, from);
    value_clear(&v);
    return -1;
}

static int json_list(json_t *a, const row *r, value *v)
{
    size_t i;
    json_t *item;
    json_array_foreach(a, i, item)
    {
        if (!json_is_string(item))
            return BAD;
        int rc = list_add(r, v, json_string_value(item), json_string_length(item));
        if (rc != OK)
            return rc;
    }
    return v->nlist <= (size_t)r->max ? OK : RANGE;
}

int sk_config_put_json(ctx *c, const row *r, const char *key, sk_config *dst, json_t *j,
                       const char *from)
{
    value v = {0};
    int rc = BAD;
    if (json_is_string(j))
        return sk_config_put_text(c, r, key, dst, json_string_value(j), from);
    if (json_is_integer(j) && (r->type == T_INT || r->type == T_DURATION || r->type == T_SIZE)) {
        v.i = json_integer_value(j);
        rc = in_bounds(r, v.i) ? OK : RANGE;
    } else if (json_is_boolean(j) && r->type == T_BOOL) {
        v.i = json_is_true(j);
        rc = OK;
    } else if (json_is_array(j) && r->type == T_LIST) {
        rc = json_list(j, r, &v);
    }
    if (rc == OK) {
        store(dst, r, &v);
        return 0;
    }
    value_clear(&v);
    char *dump = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    char shown[100];
    snprintf(shown, sizeof shown, "%.80s%s", dump ? dump : "?",
             dump && strlen(dump) > 80 ? "..." : "");
    free(dump);
    report(c, r, key, rc, shown, from);
    return -1;
}

void sk_config_set_text(ctx *c, const row *r, const char *s, const char *from)
{
    if (sk_config_put_text(c, r, r->key, c->cfg, s, from) == 0)
        snprintf(c->from[r - table], sizeof c->from[0], "%s", from);
}

void sk_config_set_json(ctx *c, const row *r, json_t *j, const char *from)
{
    if (sk_config_put_json(c, r, r->key, c->cfg, j, from) == 0)
        snprintf(c->from[r - table], sizeof c->from[0], "%s", from);
}

/* ---- loading ---- */

#define FILE_MAX (1024 * 1024)

/* Reads a whole file (at most FILE_MAX bytes) into a malloc'ed NUL-terminated buffer. */
static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot be read: %s", strerror(errno));
        return NULL;
    }
    char *buf = malloc(FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
    if (!buf || ferror(f) || n > FILE_MAX) {
        snprintf(err, errlen, "%s",
                 !buf           ? "out of memory"
                 : n > FILE_MAX ? "is larger than 1MiB"
                                : "cannot be read: read error");
        if (buf && ferror(f) && errno)
            snprintf(err, errlen, "cannot be read: %s", strerror(errno));
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

typedef void (*text_source)(ctx *c, const char *text, size_t len, const char *path);

/* Reads the file a source names and hands its text to load; a file that cannot be read is a
 * problem of that source (`what` "file", named by `named_by` "--config or SKIFF_CONFIG"). */
static void load_path(ctx *c, const char *path, const char *what, const char *named_by,
                      text_source load)
{
    char err[160];
    size_t len;
    char *text = read_file(path, &len, err, sizeof err);
    if (!text) {
        sk_config_problem(c, "%s %s: %s (named by %s)", what, path, err, named_by);
        return;
    }
    load(c, text, len, path);
    free(text);
}

static size_t row_index(const char *key)
{
    return (size_t)(find_row(key) - table);
}

/* Rules that tie keys together, checked once every source is applied. */
static void cross_check(ctx *c)
{
    const sk_config *cfg = c->cfg;
    if (cfg->zeebe_backoff_initial_ms > cfg->zeebe_backoff_max_ms) {
        char a[32], b[32];
        fmt_unit(a, sizeof a, cfg->zeebe_backoff_initial_ms, duration_units);
        fmt_unit(b, sizeof b, cfg->zeebe_backoff_max_ms, duration_units);
        sk_config_problem(c,
                          "zeebe.backoff_initial: value \"%s\" from %s is larger than "
                          "zeebe.backoff_max (\"%s\" from %s): expected at most "
                          "zeebe.backoff_max",
                          a, c->from[row_index("zeebe.backoff_initial")], b,
                          c->from[row_index("zeebe.backoff_max")]);
    }
}

/* Once every source is applied: the rules that tie keys together, then the settings of each
 * job type. */
static int finish(ctx *c)
{
    cross_check(c);
    sk_config_resolve_jobs(c);
    return c->problems;
}

int sk_config_load(sk_config *cfg, const sk_config_sources *src, FILE *problems)
{
    static const sk_config_sources none = {0};
    ctx c = {.cfg = cfg, .out = problems};
    if (!src)
        src = &none;
    memset(cfg, 0, sizeof *cfg);
    sk_config_load_defaults(&c, src->environ);
    if (src->file_path)
        load_path(&c, src->file_path, "file", "--config or SKIFF_CONFIG", sk_config_load_json);
    if (src->annotations_path)
        load_path(&c, src->annotations_path, "annotations", "--annotations or SKIFF_ANNOTATIONS",
                  sk_config_load_annotations);
    if (src->environ)
        sk_config_load_env(&c, src->environ);
    if (src->argc > 0 && src->argv)
        sk_config_load_cli(&c, src->argc, src->argv);
    return finish(&c);
}

int sk_config_load_json_text(sk_config *cfg, const char *text, size_t len, const char *name,
                             FILE *problems)
{
    ctx c = {.cfg = cfg, .out = problems};
    memset(cfg, 0, sizeof *cfg);
    sk_config_load_defaults(&c, NULL);
    sk_config_load_json(&c, text, len, name ? name : "<text>");
    return finish(&c);
}

void sk_config_clear(sk_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < NROWS; i++)
        release(cfg, &table[i]);
    sk_config_jobs_free(cfg->zeebe_jobs, cfg->zeebe_jobs_len);
    memset(cfg, 0, sizeof *cfg);
}
