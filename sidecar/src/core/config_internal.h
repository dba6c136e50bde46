/* Private to sidecar/src/core/config*.c.
 *
 * config_table.c holds the table (its rows in config_table_<area>.inc, one file per area);
 * config.c the value parsers, validation, load orchestration and the docs; config_sources.c
 * reads the sources (defaults, JSON config file, annotations file, environment, command line)
 * and hands each value to a setter of config.c, which parses it against its row, stores it in
 * sk_config or reports why not. config_jobs.c keeps the per-job-type overrides
 * ("zeebe.jobs.<type>.<setting>", parsed with the row of "zeebe.<setting>") and resolves them
 * into sk_config.zeebe_jobs; config_egress.c does the same for the per-route ones
 * ("egress.routes.<name>.<setting>"), both through the overlays of config_overlay.c. A load
 * runs on the caller's thread with all its state in one ctx; nothing is kept between loads. */
#ifndef SK_CONFIG_INTERNAL_H
#define SK_CONFIG_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

typedef enum { T_STRING, T_INT, T_DURATION, T_SIZE, T_BOOL, T_ENUM, T_LIST, T_ADDRESS } ctype;

enum {
    F_ZERO_OK = 1,    /* 0 is accepted besides min..max (it means "off" or "peer default") */
    F_DISTINCT = 2,   /* list: a repeated item is invalid (other lists ignore repeats) */
    F_PER_JOB = 4,    /* zeebe.<setting> that zeebe.jobs.<type>.<setting> may override */
    F_SECRET = 8,     /* string: a secret reference (secrets/secret.h); a literal never shown */
    F_PER_ROUTE = 16, /* egress.<setting> that egress.routes.<name>.<setting> may override */
};

#define KIB 1024LL
#define MIB (1024LL * 1024)
#define GIB (1024LL * 1024 * 1024)
#define SEC 1000LL
#define MIN (60 * SEC)
#define HOUR (60 * MIN)

#define SK_JOBS_PREFIX "zeebe.jobs."      /* of the per-job-type keys */
#define SK_ROUTES_PREFIX "egress.routes." /* of the per-route keys */

/* One setting. Defaults are written in the text form every source uses and go through the
 * same parser; bounds apply to the value (string: length, list: items, address: port). */
typedef struct row {
    const char *key;
    ctype type;
    const char *def;
    const char *const *def_env; /* variables read at load time; the first set replaces def */
    int64_t min, max;
    int flags;
    const char *const *env;          /* ecosystem variables after SKIFF_<KEY>; the first set wins */
    const char *const *choices;      /* enum names, the stored value is the index */
    size_t off, off_len;             /* field in sk_config; list length field */
    size_t job_off, job_off_len;     /* F_PER_JOB: the same in sk_job_type_config */
    size_t route_off, route_off_len; /* F_PER_ROUTE: the same in sk_egress_route_config */
    const char *help;
} row;

#define NROWS 139 /* rows in the table; config_table.c checks the count at compile time */

/* The overrides of one job type or one route (config_overlay.c). A value sits in the field of
 * vals that its row describes, as the global one does in sk_config; the other fields of vals
 * stay zero. */
typedef struct {
    char *name;
    sk_config vals;
    char from[NROWS][128];     /* where each override came from, "" when not set */
    unsigned char seen[NROWS]; /* set by the JSON config file (set twice: a problem) */
} overlay;

/* The overlays of one kind met so far in a load, n of them. */
typedef struct {
    overlay *v;
    size_t n;
} overlays;

/* One load in progress. */
typedef struct {
    sk_config *cfg;
    FILE *out; /* problem lines, may be NULL */
    int problems;
    char from[NROWS][128];     /* where the value in force came from */
    unsigned char seen[NROWS]; /* keys set by the JSON config file (set twice: a problem) */
    overlays jobs;             /* per-job-type overrides (config_jobs.c) */
    overlays routes;           /* per-route overrides (config_egress.c) */
} ctx;

/* ---- config_table.c ---- */

/* The table, NROWS rows in the order of the docs. */
extern const row sk_config_table[NROWS];

/* ---- config.c ---- */

/* A row by key (NULL for an unknown key). */
const row *sk_config_find_row(const char *key);

/* Counts a problem and writes it as one line to c->out (when set). */
void sk_config_problem(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses s as the value of r coming from `from` (as messages name the source: "environment
 * SKIFF_LOG_LEVEL"); stores it or reports why not. */
void sk_config_set_text(ctx *c, const row *r, const char *s, const char *from);
/* A JSON value from the config file: strings read like any other source, numbers are
 * milliseconds or bytes, arrays are lists. j stays owned by the caller. */
void sk_config_set_json(ctx *c, const row *r, json_t *j, const char *from);
/* The same into the field of dst that r describes, a problem naming `key` (as messages show
 * it); 0 when stored, -1 when reported. */
int sk_config_put_text(ctx *c, const row *r, const char *key, sk_config *dst, const char *s,
                       const char *from);
int sk_config_put_json(ctx *c, const row *r, const char *key, sk_config *dst, json_t *j,
                       const char *from);

/* A bound of r in the unit the docs and messages use ("30s", "4MiB", "100"). */
void sk_config_fmt_bound(const row *r, char *out, size_t n, int64_t v);
/* " distinct" for lists whose items must differ, else "". */
const char *sk_config_distinct(const row *r);

/* ---- config_sources.c ---- */

/* Quotes s for a message into out (n bytes): escapes control characters, cuts long values. */
void sk_config_quote(char *out, size_t n, const char *s);
/* key as messages show it into out (n bytes): as it is, or quoted when it has spaces, quotes
 * or control characters. */
void sk_config_show_key(char *out, size_t n, const char *key);
/* SKIFF_<KEY> of r ('.' becomes '_', upper case) into out (n bytes). */
void sk_config_env_name(const row *r, char *out, size_t n);

/* The sources, in the order they apply; each stores through the setters above and reports its
 * own problems. env may be NULL. The file sources get the text of the file named `path`, read
 * by config.c. */
void sk_config_load_defaults(ctx *c, char *const *env);
void sk_config_load_json(ctx *c, const char *text, size_t len, const char *path);
void sk_config_load_annotations(ctx *c, const char *text, size_t len, const char *path);
void sk_config_load_env(ctx *c, char *const *env);
void sk_config_load_cli(ctx *c, int argc, char *const *argv);

/* ---- config_security.c ---- */

/* The rules of the security and TLS keys, and security.plaintext=refuse (one problem per
 * plaintext peer). Runs after the other cross-key rules. */
void sk_config_check_security(ctx *c);
/* oauth.token_url, oauth.client_id and oauth.client_secret: the zeebe.* ones when unset. */
void sk_config_oauth_client(ctx *c);

/* ---- config_overlay.c ---- */

/* What config_jobs.c and config_egress.c share: the overrides of the rows of one flag
 * (F_PER_JOB: zeebe.jobs.<type>.<setting>, F_PER_ROUTE: egress.routes.<name>.<setting>) kept
 * per name while a load runs, then applied over the global values into the resolved struct
 * (sk_job_type_config or sk_egress_route_config, through each row's job_off or route_off). */

/* The overlay named by the len bytes at name in s; NULL when there is none. */
overlay *sk_overlay_find(const overlays *s, const char *name, size_t len);
/* The same, added when absent. NULL, reported against shown (the key as messages show it) and
 * from, when s holds max overlays already ("overrides name more than <max> <what>") or out of
 * memory. */
overlay *sk_overlay_get(ctx *c, overlays *s, const char *name, size_t len, size_t max,
                        const char *what, const char *shown, const char *from);
/* Stores the value of r in o (a later source replaces an earlier one) or reports why not;
 * the JSON form reports a key the config file sets twice. */
void sk_overlay_set_text(ctx *c, overlay *o, const row *r, const char *shown, const char *s,
                         const char *from);
void sk_overlay_set_json(ctx *c, overlay *o, const row *r, const char *shown, json_t *j,
                         const char *from);
/* Fills dst with the value of each row of flag: o's override when it has one (o may be NULL),
 * else the global one of c->cfg. -1 when out of memory; what was copied stays in dst for
 * sk_overlay_free_fields. */
int sk_overlay_apply(const ctx *c, const overlay *o, int flag, void *dst);
/* Frees the strings and lists of the rows of flag in dst (NULL fields accepted). */
void sk_overlay_free_fields(int flag, void *dst);
/* Frees every overlay of s and leaves it empty. */
void sk_overlays_clear(overlays *s);
/* The docs list of the rows of flag, "- `<setting>`: `<key>`" each, setting as named by
 * setting(). */
void sk_overlay_write_settings(FILE *out, int flag, const char *(*setting)(const row *r));

/* ---- config_jobs.c ---- */

/* The name of an F_PER_JOB row as <setting> of zeebe.jobs.<type>.<setting> ("job_timeout"). */
const char *sk_config_job_setting(const row *r);

/* The override "zeebe.jobs.<type>.<setting>" named key: r is the F_PER_JOB row of
 * zeebe.<setting>, <type> the type_len bytes at type (inside key). Stores the value for that
 * type (a later source replaces an earlier one) or reports why not. */
void sk_config_set_job_text(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, const char *s, const char *from);
/* The same for a value of the JSON config file (a key set twice in it is a problem). */
void sk_config_set_job_json(ctx *c, const row *r, const char *key, const char *type,
                            size_t type_len, json_t *j, const char *from);
/* Once every source is applied: reports overrides of types that are not in zeebe.job_types,
 * fills c->cfg->zeebe_jobs and frees the overrides. */
void sk_config_resolve_jobs(ctx *c);
/* Frees n resolved entries and the array (NULL accepted; entries may be half-filled). */
void sk_config_jobs_free(sk_job_type_config *jobs, size_t n);
/* The "Per-job-type settings" section of docs/configuration.md. */
void sk_config_write_job_docs(FILE *out);

/* ---- config_egress.c ---- */

/* The name of an F_PER_ROUTE row as <setting> of egress.routes.<name>.<setting>. */
const char *sk_config_route_setting(const row *r);
/* For a key egress.routes.<name>.<setting> (<name> runs to the last '.'): where <setting>
 * starts in key and through *r its F_PER_ROUTE row (NULL when <setting> names none). NULL when
 * key has another form. */
const char *sk_config_route_key(const char *key, const row **r);
/* The override named key (r its F_PER_ROUTE row, found by sk_config_route_key): stores the
 * value for that route (a later source replaces an earlier one) or reports why not. */
void sk_config_set_route_text(ctx *c, const row *r, const char *key, const char *s,
                              const char *from);
/* The same for a value of the JSON config file (a key set twice in it is a problem). */
void sk_config_set_route_json(ctx *c, const row *r, const char *key, json_t *j, const char *from);
/* Once every source is applied: checks egress.listen and every route, fills
 * c->cfg->egress_routes and frees the overrides. */
void sk_config_resolve_routes(ctx *c);
/* Frees n resolved routes and the array (NULL accepted; entries may be half-filled). */
void sk_config_routes_free(sk_egress_route_config *routes, size_t n);
/* The "Per-route egress settings" section of docs/configuration.md. */
void sk_config_write_route_docs(FILE *out);

#endif
