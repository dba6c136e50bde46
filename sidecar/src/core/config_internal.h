/* Private to sidecar/src/core/config.c and config_sources.c.
 *
 * config.c holds the table, the value parsers, validation, load orchestration and the docs;
 * config_sources.c reads the sources (defaults, JSON config file, annotations file,
 * environment, command line) and hands each value to a setter of config.c, which parses it
 * against its row, stores it in sk_config or reports why not. A load runs on the caller's
 * thread with all its state in one ctx; nothing is kept between loads. */
#ifndef SK_CONFIG_INTERNAL_H
#define SK_CONFIG_INTERNAL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/config.h"

typedef enum { T_STRING, T_INT, T_DURATION, T_SIZE, T_BOOL, T_ENUM, T_LIST, T_ADDRESS } ctype;

enum { F_ZERO_OK = 1 }; /* 0 is accepted besides min..max (it means "off" or "peer default") */

/* One setting. Defaults are written in the text form every source uses and go through the
 * same parser; bounds apply to the value (string: length, list: items, address: port). */
typedef struct row {
    const char *key;
    ctype type;
    const char *def;
    const char *const *def_env; /* variables read at load time; the first set replaces def */
    int64_t min, max;
    int flags;
    const char *const *env;     /* ecosystem variables after SKIFF_<KEY>; the first set wins */
    const char *const *choices; /* enum names, the stored value is the index */
    size_t off, off_len;        /* field in sk_config; list length field */
    const char *help;
} row;

#define NROWS 17 /* rows in the table; config.c checks the count at compile time */

/* One load in progress. */
typedef struct {
    sk_config *cfg;
    FILE *out; /* problem lines, may be NULL */
    int problems;
    char from[NROWS][128];     /* where the value in force came from */
    unsigned char seen[NROWS]; /* keys set by the JSON config file (set twice: a problem) */
} ctx;

/* ---- config.c ---- */

/* The table, NROWS rows in the order of the docs, and its lookup (NULL for an unknown key). */
extern const row *const sk_config_table;
const row *sk_config_find_row(const char *key);

/* Counts a problem and writes it as one line to c->out (when set). */
void sk_config_problem(ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses s as the value of r coming from `from` (as messages name the source: "environment
 * SKIFF_LOG_LEVEL"); stores it or reports why not. */
void sk_config_set_text(ctx *c, const row *r, const char *s, const char *from);
/* A JSON value from the config file: strings read like any other source, numbers are
 * milliseconds or bytes, arrays are lists. j stays owned by the caller. */
void sk_config_set_json(ctx *c, const row *r, json_t *j, const char *from);

/* ---- config_sources.c ---- */

/* Quotes s for a message into out (n bytes): escapes control characters, cuts long values. */
void sk_config_quote(char *out, size_t n, const char *s);
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

#endif
