#include "core/config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/config_internal.h"
#include "core/reader_item.h"
#include "secrets/secret.h"

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

static int secret_ref_ok(const char *s)
{
    sk_secret_ref ref;
    char err[160];
    return sk_secret_ref_parse(s, &ref, err, sizeof err) == 0;
}

/* How a value is shown in a message: quoted, except a secret that is not a reference (a
 * malformed reference is a reference: it starts with its scheme). */
static void show_value(const row *r, char *out, size_t n, const char *s)
{
    sk_secret_ref ref;
    char err[160];
    if ((r->flags & F_SECRET) && sk_secret_ref_parse(s, &ref, err, sizeof err) == 0 &&
        ref.kind == SK_SECRET_LITERAL)
        snprintf(out, n, "(a secret, not shown)");
    else
        sk_config_quote(out, n, s);
}

static int parse_text(const row *r, const char *s, value *v)
{
    char host[256];
    int port;
    switch (r->type) {
    case T_STRING:
        if (strlen(s) < (size_t)r->min || strlen(s) > (size_t)r->max)
            return RANGE;
        if ((r->flags & F_SECRET) && !secret_ref_ok(s))
            return BAD;
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
        if (r->flags & F_SECRET)
            snprintf(out, n,
                     "a secret: file:<path>, vault:<mount>/<path>#<field> or the value itself, "
                     "%s..%s bytes",
                     lo, hi);
        else
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
        if (strcmp(sk_config_table[i].key, key) == 0)
            return &sk_config_table[i];
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
    show_value(r, q, sizeof q, s);
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
    if (r->flags & F_SECRET)
        snprintf(shown, sizeof shown, "(a secret, not shown)");
    free(dump);
    report(c, r, key, rc, shown, from);
    return -1;
}

void sk_config_set_text(ctx *c, const row *r, const char *s, const char *from)
{
    if (sk_config_put_text(c, r, r->key, c->cfg, s, from) == 0)
        snprintf(c->from[r - sk_config_table], sizeof c->from[0], "%s", from);
}

void sk_config_set_json(ctx *c, const row *r, json_t *j, const char *from)
{
    if (sk_config_put_json(c, r, r->key, c->cfg, j, from) == 0)
        snprintf(c->from[r - sk_config_table], sizeof c->from[0], "%s", from);
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
    return (size_t)(find_row(key) - sk_config_table);
}

/* A duration key whose value must not exceed another's. */
static void check_at_most(ctx *c, const char *key, int64_t v, const char *max_key, int64_t max)
{
    if (v <= max)
        return;
    char a[32], b[32];
    fmt_unit(a, sizeof a, v, duration_units);
    fmt_unit(b, sizeof b, max, duration_units);
    sk_config_problem(
        c, "%s: value \"%s\" from %s is larger than %s (\"%s\" from %s): expected at most %s", key,
        a, c->from[row_index(key)], max_key, b, c->from[row_index(max_key)], max_key);
}

/* kafka.reader_schemas: "<topic>=file:<path>" or "<topic>=subject:<subject>:<version>" items
 * (core/reader_item.h), each topic one of kafka.topics, once. */
static void check_reader_schemas(ctx *c)
{
    const sk_config *cfg = c->cfg;
    const char *from = c->from[row_index("kafka.reader_schemas")];
    for (size_t i = 0; i < cfg->kafka_reader_schemas_len; i++) {
        const char *item = cfg->kafka_reader_schemas[i];
        sk_reader_item ri;
        char why[300];
        if (sk_reader_item_parse(item, &ri, why, sizeof why) != 0) {
            sk_config_problem(c, "kafka.reader_schemas: item \"%.100s\" from %s: %s", item, from,
                              why);
            continue;
        }
        size_t tlen = ri.topic_len;
        int known = 0, twice = 0;
        for (size_t j = 0; j < cfg->kafka_topics_len; j++)
            known |= strlen(cfg->kafka_topics[j]) == tlen &&
                     strncmp(cfg->kafka_topics[j], item, tlen) == 0;
        for (size_t j = 0; j < i; j++)
            twice |= strncmp(cfg->kafka_reader_schemas[j], item, tlen + 1) == 0;
        if (!known || twice)
            sk_config_problem(c, "kafka.reader_schemas: item \"%.100s\" from %s: %s", item, from,
                              twice ? "a second reader schema for the topic"
                                    : "the topic is not in kafka.topics");
    }
}

/* Kafka needs its brokers as addresses and a Schema Registry (every record is Avro). */
static void check_kafka(ctx *c)
{
    sk_config *cfg = c->cfg;
    char host[256];
    int port;
    for (size_t i = 0; i < cfg->kafka_brokers_len; i++)
        if (sk_config_parse_address(cfg->kafka_brokers[i], host, sizeof host, &port) != 0 ||
            port == 0)
            sk_config_problem(c, "kafka.brokers: item \"%.100s\" from %s: expected host:port",
                              cfg->kafka_brokers[i], c->from[row_index("kafka.brokers")]);
    if (cfg->kafka_topics_len > 0 && cfg->kafka_brokers_len == 0)
        sk_config_problem(c,
                          "kafka.topics: set (from %s) but kafka.brokers is empty: expected "
                          "the brokers to consume from",
                          c->from[row_index("kafka.topics")]);
    for (size_t i = 0; i < cfg->kafka_topics_len; i++)
        for (size_t j = 0; j < cfg->zeebe_job_types_len; j++)
            if (strcmp(cfg->kafka_topics[i], cfg->zeebe_job_types[j]) == 0)
                sk_config_problem(c,
                                  "kafka.topics: \"%.100s\" is also in zeebe.job_types: "
                                  "expected distinct names (a handler's hello names either)",
                                  cfg->kafka_topics[i]);
    check_reader_schemas(c);
    if (cfg->kafka_brokers_len > 0 && cfg->registry_url[0] == '\0')
        sk_config_problem(c,
                          "schema_registry.url: empty while kafka.brokers is set (from %s): "
                          "expected the Schema Registry URL (records are Avro)",
                          c->from[row_index("kafka.brokers")]);
    if (cfg->kafka_group_id[0] == '\0') {
        char *id = strdup(cfg->service_name);
        if (id) {
            free(cfg->kafka_group_id);
            cfg->kafka_group_id = id;
        }
    }
}

/* A secret setting naming a file that cannot be read is a problem now rather than at start. */
static void check_secrets(ctx *c)
{
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        if (!(r->flags & F_SECRET))
            continue;
        const char *text = *(char **)((char *)c->cfg + r->off);
        sk_secret_ref ref;
        char err[512];
        if (!text || sk_secret_ref_parse(text, &ref, err, sizeof err) < 0 ||
            ref.kind != SK_SECRET_FILE)
            continue;
        sk_secret *s = sk_secret_new(r->key, text, err, sizeof err);
        if (!s)
            sk_config_problem(c, "%s (from %s)", err, c->from[i]);
        sk_secret_free(s);
    }
}

/* Vault: a vault: reference needs vault.address and vault.role; an address is http(s). */
static void check_vault(ctx *c)
{
    const sk_config *cfg = c->cfg;
    const char *a = cfg->vault_address;
    for (size_t i = 0; i < NROWS && !a[0]; i++) {
        const row *r = &sk_config_table[i];
        const char *text = (r->flags & F_SECRET) ? *(char **)((char *)c->cfg + r->off) : NULL;
        if (text && strncmp(text, "vault:", 6) == 0)
            sk_config_problem(c, "%s: a vault: reference (from %s) but vault.address is empty",
                              r->key, c->from[i]);
    }
    if (!a[0])
        return;
    if (strncmp(a, "http://", 7) != 0 && strncmp(a, "https://", 8) != 0)
        sk_config_problem(c, "vault.address: %s (from %s): expected http://... or https://...", a,
                          c->from[row_index("vault.address")]);
    if (!cfg->vault_role[0])
        sk_config_problem(c, "vault.role: empty while vault.address is set: expected the role "
                             "of the Kubernetes auth method");
}

/* OAuth for the gateway: a client id needs the token URL and the secret, and the other way
 * round. */
static void check_oauth(ctx *c)
{
    const sk_config *cfg = c->cfg;
    const char *url = cfg->zeebe_token_url;
    int any = cfg->zeebe_client_id[0] || cfg->zeebe_client_secret[0] || url[0];
    if (cfg->kafka_oauthbearer && !cfg->zeebe_client_id[0])
        sk_config_problem(c,
                          "kafka.oauthbearer: true (from %s) but zeebe.client_id is empty: "
                          "expected the OAuth client whose tokens Kafka gets",
                          c->from[row_index("kafka.oauthbearer")]);
    if (!any)
        return;
    if (!cfg->zeebe_client_id[0])
        sk_config_problem(c, "zeebe.client_id: empty while zeebe.client_secret or "
                             "zeebe.authorization_server_url is set: expected the OAuth client id");
    if (!cfg->zeebe_client_secret[0])
        sk_config_problem(c, "zeebe.client_secret: empty while zeebe.client_id or "
                             "zeebe.authorization_server_url is set: expected the client secret");
    if (!url[0])
        sk_config_problem(c, "zeebe.authorization_server_url: empty while zeebe.client_id or "
                             "zeebe.client_secret is set: expected the token endpoint URL");
    else if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        sk_config_problem(c,
                          "zeebe.authorization_server_url: value \"%.200s\" from %s is not valid: "
                          "expected an http:// or https:// URL",
                          url, c->from[row_index("zeebe.authorization_server_url")]);
}

/* Rules that tie keys together, checked once every source is applied. */
static void cross_check(ctx *c)
{
    const sk_config *cfg = c->cfg;
    check_secrets(c);
    check_vault(c);
    check_oauth(c);
    sk_config_oauth_client(c);
    check_at_most(c, "oauth.backoff_initial", cfg->oauth_backoff_initial_ms, "oauth.backoff_max",
                  cfg->oauth_backoff_max_ms);
    check_at_most(c, "zeebe.backoff_initial", cfg->zeebe_backoff_initial_ms, "zeebe.backoff_max",
                  cfg->zeebe_backoff_max_ms);
    check_at_most(c, "kafka.retry_backoff_initial", cfg->kafka_backoff_initial_ms,
                  "kafka.retry_backoff_max", cfg->kafka_backoff_max_ms);
    check_at_most(c, "kafka.heartbeat_interval", cfg->kafka_heartbeat_ms, "kafka.session_timeout",
                  cfg->kafka_session_timeout_ms);
    check_at_most(c, "kafka.session_timeout", cfg->kafka_session_timeout_ms,
                  "kafka.max_poll_interval", cfg->kafka_max_poll_ms);
    check_kafka(c);
    sk_config_check_security(c);
}

/* Once every source is applied: the rules that tie keys together, then the settings of each
 * job type. */
static int finish(ctx *c)
{
    cross_check(c);
    sk_config_resolve_jobs(c);
    sk_config_resolve_routes(c);
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
        release(cfg, &sk_config_table[i]);
    sk_config_jobs_free(cfg->zeebe_jobs, cfg->zeebe_jobs_len);
    sk_config_routes_free(cfg->egress_routes, cfg->egress_routes_len);
    memset(cfg, 0, sizeof *cfg);
}
