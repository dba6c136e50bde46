/* Egress settings: the per-route overrides "egress.routes.<name>.<setting>" met during a load,
 * each parsed and checked with the row of egress.<setting> (an F_PER_ROUTE row), their
 * resolution into sk_config.egress_routes (one entry per route: the global values with that
 * route's overrides applied) and the checks of egress.listen and of each route. Runs inside a
 * load, on its thread. Modelled on config_jobs.c. */
#include "core/config_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 64

/* The overrides of one route. A value sits in the field of vals that its row describes, as
 * the global one does in sk_config; the other fields of vals stay zero. */
struct route_over {
    char *name;
    sk_config vals;
    char from[NROWS][128];     /* where each override came from, "" when not set */
    unsigned char seen[NROWS]; /* set by the JSON config file (set twice: a problem) */
};

const char *sk_config_route_setting(const row *r)
{
    return r->key + strlen("egress.");
}

const char *sk_config_route_key(const char *key, const row **r)
{
    size_t plen = strlen(SK_ROUTES_PREFIX);
    const char *dot = strncmp(key, SK_ROUTES_PREFIX, plen) == 0 ? strrchr(key + plen, '.') : NULL;
    char name[64];
    *r = NULL;
    if (!dot || dot == key + plen)
        return NULL;
    if (snprintf(name, sizeof name, "egress.%s", dot + 1) < (int)sizeof name)
        *r = sk_config_find_row(name);
    if (*r && !((*r)->flags & F_PER_ROUTE))
        *r = NULL;
    return dot + 1;
}

static size_t row_of(const char *key)
{
    return (size_t)(sk_config_find_row(key) - sk_config_table);
}

static route_over *over_find(const ctx *c, const char *name, size_t len)
{
    for (size_t i = 0; i < c->nroutes; i++)
        if (strlen(c->routes[i].name) == len && memcmp(c->routes[i].name, name, len) == 0)
            return &c->routes[i];
    return NULL;
}

/* The overrides of the route named in key, added when absent; NULL (reported) when too many
 * routes have overrides or out of memory. */
static route_over *over_get(ctx *c, const char *key, const char *shown, const char *from)
{
    const row *unused;
    const char *name = key + strlen(SK_ROUTES_PREFIX);
    size_t len = (size_t)(sk_config_route_key(key, &unused) - 1 - name);
    route_over *o = over_find(c, name, len), *grown;
    if (o)
        return o;
    if (c->nroutes == MAX_ROUTES) {
        sk_config_problem(c, "%s: value from %s not stored: overrides name more than %d routes",
                          shown, from, MAX_ROUTES);
        return NULL;
    }
    if (!(grown = realloc(c->routes, (c->nroutes + 1) * sizeof *grown))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", shown, from);
        return NULL;
    }
    c->routes = grown;
    o = memset(&grown[c->nroutes], 0, sizeof *o);
    if (!(o->name = strndup(name, len))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", shown, from);
        return NULL;
    }
    c->nroutes++;
    return o;
}

void sk_config_set_route_text(ctx *c, const row *r, const char *key, const char *s,
                              const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    route_over *o = over_get(c, key, shown, from);
    if (o && sk_config_put_text(c, r, shown, &o->vals, s, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
}

void sk_config_set_route_json(ctx *c, const row *r, const char *key, json_t *j, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    route_over *o = over_get(c, key, shown, from);
    if (!o)
        return;
    if (o->seen[r - sk_config_table]++)
        sk_config_problem(c, "%s: set more than once in %s", shown, from);
    if (sk_config_put_json(c, r, shown, &o->vals, j, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
}

/* ---- resolution ---- */

static int copy_list(char *const *list, size_t len, char ***out)
{
    if (!list)
        return 0;
    char **copy = calloc(len + 1, sizeof *copy);
    *out = copy; /* the caller's to free, also when a strdup below fails */
    if (!copy)
        return -1;
    for (size_t k = 0; k < len; k++)
        if (!(copy[k] = strdup(list[k])))
            return -1;
    return 0;
}

/* Copies the field r describes from src (an sk_config) into route; -1 when out of memory. */
static int copy_field(const row *r, const sk_config *src, sk_egress_route_config *route)
{
    const char *from = (const char *)src + r->off;
    char *to = (char *)route + r->route_off;
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
        memcpy((char *)route + r->route_off_len, (const char *)src + r->off_len, sizeof(size_t));
        return copy_list(*(char **const *)from, *(const size_t *)((const char *)src + r->off_len),
                         (char ***)to);
    }
    return -1;
}

/* Where the value of row i in force for a route came from. */
static const char *origin(const ctx *c, const route_over *o, size_t i)
{
    return o && o->from[i][0] ? o->from[i] : c->from[i];
}

static int name_ok(const char *s)
{
    if (!*s || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return 0;
    return 1;
}

static int header_name_ok(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
            return 0;
    return 1;
}

/* The rules of one resolved route; problems name the key as the user wrote it. */
static void check_route(ctx *c, const route_over *o, sk_egress_route_config *rt)
{
    const char *n = rt->name, *u = rt->upstream;
    for (char *h = rt->credential_header; *h; h++)
        *h = (char)(*h >= 'A' && *h <= 'Z' ? *h + 32 : *h);
    if (!name_ok(n))
        sk_config_problem(c,
                          "egress.routes: route name \"%.80s\" is not valid: expected 1 to 64 "
                          "letters, digits, '-' or '_'",
                          n);
    if (!u[0])
        sk_config_problem(c,
                          "egress.routes.%s.upstream: empty: every route needs the base URL "
                          "of its upstream",
                          n);
    else if (strncmp(u, "https://", 8) != 0 && strncmp(u, "http://", 7) != 0)
        sk_config_problem(c,
                          "egress.routes.%s.upstream: value \"%.200s\" from %s is not valid: "
                          "expected an http:// or https:// URL",
                          n, u, origin(c, o, row_of("egress.upstream")));
    else if (strncmp(u, "http://", 7) == 0 && c->cfg->security_plaintext == SK_PLAINTEXT_REFUSE)
        sk_config_problem(c,
                          "egress.routes.%s.upstream: \"%.200s\" (from %s) is plaintext "
                          "HTTP and security.plaintext is refuse: expected https://",
                          n, u, origin(c, o, row_of("egress.upstream")));
    if (rt->credential[0] && rt->oauth_audience[0])
        sk_config_problem(c,
                          "egress.routes.%s: both credential and oauth_audience are set: "
                          "expected one of them",
                          n);
    if (!header_name_ok(rt->credential_header))
        sk_config_problem(c,
                          "egress.routes.%s.credential_header: \"%.100s\" is not a header "
                          "name: expected letters, digits, '-' or '_'",
                          n, rt->credential_header);
    char *end = NULL;
    rt->breaker_ratio = strtod(rt->breaker_failure_ratio, &end);
    if (!end || *end || !(rt->breaker_ratio > 0 && rt->breaker_ratio <= 1))
        sk_config_problem(c,
                          "egress.routes.%s.breaker_failure_ratio: \"%.16s\" (from %s) is not "
                          "valid: expected a number in (0, 1] such as 0.5",
                          n, rt->breaker_failure_ratio,
                          origin(c, o, row_of("egress.breaker_failure_ratio")));
}

/* Fills rt for the route name: each setting from its override when there is one, else the
 * global value. */
static int resolve(const ctx *c, const char *name, sk_egress_route_config *rt)
{
    const route_over *o = over_find(c, name, strlen(name));
    if (!(rt->name = strdup(name)))
        return -1;
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        const sk_config *src = o && o->from[i][0] ? &o->vals : c->cfg;
        if ((r->flags & F_PER_ROUTE) && copy_field(r, src, rt) < 0)
            return -1;
    }
    return 0;
}

/* egress.listen: empty, or host:port with a port; 0.0.0.0 and :: are refused (the endpoint
 * injects credentials: it must not be open to the network by accident). */
static void check_listen(ctx *c)
{
    const char *l = c->cfg->egress_listen;
    char host[256];
    int port;
    if (!l[0])
        return;
    if (sk_config_parse_address(l, host, sizeof host, &port) < 0 || port <= 0)
        sk_config_problem(c,
                          "egress.listen: value \"%.200s\" from %s is not valid: expected "
                          "host:port such as 127.0.0.1:8088",
                          l, c->from[row_of("egress.listen")]);
    else if (!strcmp(host, "0.0.0.0") || !strcmp(host, "::") || !host[0])
        sk_config_problem(c,
                          "egress.listen: \"%.200s\" (from %s) listens on every interface: "
                          "expected a loopback address (127.0.0.1:<port>) or one named "
                          "address",
                          l, c->from[row_of("egress.listen")]);
}

/* The route names in order: egress.routes, then the routes only overrides name. */
static size_t route_names(const ctx *c, const char **names)
{
    const sk_config *cfg = c->cfg;
    size_t n = 0;
    for (size_t i = 0; i < cfg->egress_route_names_len && n < MAX_ROUTES; i++)
        names[n++] = cfg->egress_route_names[i];
    for (size_t k = 0; k < c->nroutes && n < MAX_ROUTES; k++) {
        size_t i = 0;
        while (i < n && strcmp(names[i], c->routes[k].name) != 0)
            i++;
        if (i == n)
            names[n++] = c->routes[k].name;
    }
    return n;
}

static void free_overs(ctx *c)
{
    for (size_t k = 0; k < c->nroutes; k++) {
        free(c->routes[k].name);
        sk_config_clear(&c->routes[k].vals);
    }
    free(c->routes);
    c->routes = NULL;
    c->nroutes = 0;
}

void sk_config_resolve_routes(ctx *c)
{
    sk_config *cfg = c->cfg;
    const char *names[MAX_ROUTES];
    size_t n = route_names(c, names);
    check_listen(c);
    if (n > 0 && !(cfg->egress_routes = calloc(n, sizeof *cfg->egress_routes)))
        sk_config_problem(c, "egress.routes: the settings of each route could not be resolved: "
                             "out of memory");
    for (size_t i = 0; cfg->egress_routes && i < n; i++) {
        cfg->egress_routes_len = i + 1;
        if (resolve(c, names[i], &cfg->egress_routes[i]) < 0) {
            sk_config_problem(c,
                              "egress.routes.%s: settings could not be resolved: out of "
                              "memory",
                              names[i]);
            break;
        }
        check_route(c, over_find(c, names[i], strlen(names[i])), &cfg->egress_routes[i]);
    }
    free_overs(c);
}

static void free_list(char **list)
{
    for (size_t k = 0; list && list[k]; k++)
        free(list[k]);
    free(list);
}

void sk_config_routes_free(sk_egress_route_config *routes, size_t n)
{
    for (size_t k = 0; routes && k < n; k++) {
        free(routes[k].name);
        for (size_t i = 0; i < NROWS; i++) {
            const row *r = &sk_config_table[i];
            char *field = (char *)&routes[k] + r->route_off;
            if ((r->flags & F_PER_ROUTE) && (r->type == T_STRING || r->type == T_ADDRESS))
                free(*(char **)field);
            if ((r->flags & F_PER_ROUTE) && r->type == T_LIST)
                free_list(*(char ***)field);
        }
    }
    free(routes);
}

/* ---- docs ---- */

static const char docs_head[] =
    "\n"
    "## Per-route egress settings\n"
    "\n"
    "A key `egress.routes.<name>.<setting>` sets `egress.<setting>` for the route `<name>` "
    "only; the other routes keep the value of `egress.<setting>`. A route exists when "
    "`egress.routes` lists it or a per-route key names it; every route needs an `upstream`. "
    "`<setting>` is one of the following, read and checked like its global key:\n"
    "\n";

static const char docs_tail[] =
    "\n"
    "Overrides are read from the config file, the annotations and the command line, not from "
    "the environment (the route and the setting could not be told apart in a variable's "
    "name).\n"
    "\n"
    "```json\n"
    "{\n"
    "  \"egress\": {\n"
    "    \"listen\": \"127.0.0.1:8088\",\n"
    "    \"routes\": {\n"
    "      \"openai\": {\"upstream\": \"https://api.openai.com/v1\", \"credential\": "
    "\"vault:secret/llm#openai\", \"requests_per_minute\": 600},\n"
    "      \"anthropic\": {\"upstream\": \"https://api.anthropic.com/v1\", \"credential\": "
    "\"file:/var/run/secrets/llm/anthropic\", \"credential_header\": \"x-api-key\"}\n"
    "    }\n"
    "  }\n"
    "}\n"
    "```\n"
    "\n"
    "```yaml\n"
    "metadata:\n"
    "  annotations:\n"
    "    skiff.io/egress.listen: \"127.0.0.1:8088\"\n"
    "    skiff.io/egress.routes.openai.upstream: \"https://api.openai.com/v1\"\n"
    "    skiff.io/egress.routes.openai.credential: \"vault:secret/llm#openai\"\n"
    "```\n";

void sk_config_write_route_docs(FILE *out)
{
    fputs(docs_head, out);
    for (size_t i = 0; i < NROWS; i++)
        if (sk_config_table[i].flags & F_PER_ROUTE)
            fprintf(out, "- `%s`: `%s`\n", sk_config_route_setting(&sk_config_table[i]),
                    sk_config_table[i].key);
    fputs(docs_tail, out);
}
