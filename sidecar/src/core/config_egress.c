/* Egress settings: the per-route overrides "egress.routes.<name>.<setting>" met during a load,
 * each parsed and checked with the row of egress.<setting> (an F_PER_ROUTE row), their
 * resolution into sk_config.egress_routes (one entry per route: the global values with that
 * route's overrides applied) and the checks of egress.listen and of each route. Runs inside a
 * load, on its thread. The overrides are overlays of config_overlay.c, as in config_jobs.c. */
#include "core/config_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_ROUTES 64

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

/* The overrides of the route named in key, added when absent; NULL (reported) when too many
 * routes have overrides or out of memory. */
static overlay *over_get(ctx *c, const char *key, const char *shown, const char *from)
{
    const row *unused;
    const char *name = key + strlen(SK_ROUTES_PREFIX);
    size_t len = (size_t)(sk_config_route_key(key, &unused) - 1 - name);
    return sk_overlay_get(c, &c->routes, name, len, MAX_ROUTES, "routes", shown, from);
}

void sk_config_set_route_text(ctx *c, const row *r, const char *key, const char *s,
                              const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    sk_overlay_set_text(c, over_get(c, key, shown, from), r, shown, s, from);
}

void sk_config_set_route_json(ctx *c, const row *r, const char *key, json_t *j, const char *from)
{
    char shown[256];
    sk_config_show_key(shown, sizeof shown, key);
    sk_overlay_set_json(c, over_get(c, key, shown, from), r, shown, j, from);
}

/* ---- resolution ---- */

/* Where the value of row i in force for a route came from. */
static const char *origin(const ctx *c, const overlay *o, size_t i)
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
static void check_route(ctx *c, const overlay *o, sk_egress_route_config *rt)
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
    if (!(rt->name = strdup(name)))
        return -1;
    return sk_overlay_apply(c, sk_overlay_find(&c->routes, name, strlen(name)), F_PER_ROUTE, rt);
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
    for (size_t k = 0; k < c->routes.n && n < MAX_ROUTES; k++) {
        size_t i = 0;
        while (i < n && strcmp(names[i], c->routes.v[k].name) != 0)
            i++;
        if (i == n)
            names[n++] = c->routes.v[k].name;
    }
    return n;
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
        check_route(c, sk_overlay_find(&c->routes, names[i], strlen(names[i])),
                    &cfg->egress_routes[i]);
    }
    sk_overlays_clear(&c->routes);
}

void sk_config_routes_free(sk_egress_route_config *routes, size_t n)
{
    for (size_t k = 0; routes && k < n; k++) {
        free(routes[k].name);
        sk_overlay_free_fields(F_PER_ROUTE, &routes[k]);
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
    sk_overlay_write_settings(out, F_PER_ROUTE, sk_config_route_setting);
    fputs(docs_tail, out);
}
