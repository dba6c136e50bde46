/* Overlays: the overrides of one job type or one route met during a load, each parsed and
 * checked with the row it overrides, then applied over the global values. config_jobs.c and
 * config_egress.c keep one set each; the flag of their rows (F_PER_JOB, F_PER_ROUTE) selects
 * the field offsets of the resolved struct. Runs inside a load, on its thread. */
#include "core/config_internal.h"

#include <stdlib.h>
#include <string.h>

overlay *sk_overlay_find(const overlays *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n; i++)
        if (strlen(s->v[i].name) == len && memcmp(s->v[i].name, name, len) == 0)
            return &s->v[i];
    return NULL;
}

overlay *sk_overlay_get(ctx *c, overlays *s, const char *name, size_t len, size_t max,
                        const char *what, const char *shown, const char *from)
{
    overlay *o = sk_overlay_find(s, name, len), *grown;
    if (o)
        return o;
    if (s->n == max) {
        sk_config_problem(c, "%s: value from %s not stored: overrides name more than %zu %s", shown,
                          from, max, what);
        return NULL;
    }
    if (!(grown = realloc(s->v, (s->n + 1) * sizeof *grown))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", shown, from);
        return NULL;
    }
    s->v = grown;
    o = memset(&grown[s->n], 0, sizeof *o);
    if (!(o->name = strndup(name, len))) {
        sk_config_problem(c, "%s: value from %s could not be stored: out of memory", shown, from);
        return NULL;
    }
    s->n++;
    return o;
}

void sk_overlay_set_text(ctx *c, overlay *o, const row *r, const char *shown, const char *s,
                         const char *from)
{
    if (o && sk_config_put_text(c, r, shown, &o->vals, s, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
}

void sk_overlay_set_json(ctx *c, overlay *o, const row *r, const char *shown, json_t *j,
                         const char *from)
{
    if (!o)
        return;
    if (o->seen[r - sk_config_table]++)
        sk_config_problem(c, "%s: set more than once in %s", shown, from);
    if (sk_config_put_json(c, r, shown, &o->vals, j, from) == 0)
        snprintf(o->from[r - sk_config_table], sizeof o->from[0], "%s", from);
}

void sk_overlays_clear(overlays *s)
{
    for (size_t k = 0; k < s->n; k++) {
        free(s->v[k].name);
        sk_config_clear(&s->v[k].vals);
    }
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

/* ---- resolution ---- */

/* Where the field of r sits in the resolved struct of flag, and its list length. */
static size_t field_off(const row *r, int flag)
{
    return flag == F_PER_JOB ? r->job_off : r->route_off;
}

static size_t field_off_len(const row *r, int flag)
{
    return flag == F_PER_JOB ? r->job_off_len : r->route_off_len;
}

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

/* Copies the field r describes from src (an sk_config) into dst; -1 when out of memory. */
static int copy_field(const row *r, int flag, const sk_config *src, char *dst)
{
    const char *from = (const char *)src + r->off;
    char *to = dst + field_off(r, flag);
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
        memcpy(dst + field_off_len(r, flag), (const char *)src + r->off_len, sizeof(size_t));
        return copy_list(*(char **const *)from, *(const size_t *)((const char *)src + r->off_len),
                         (char ***)to);
    }
    return -1;
}

int sk_overlay_apply(const ctx *c, const overlay *o, int flag, void *dst)
{
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        const sk_config *src = o && o->from[i][0] ? &o->vals : c->cfg;
        if ((r->flags & flag) && copy_field(r, flag, src, dst) < 0)
            return -1;
    }
    return 0;
}

static void free_list(char **list)
{
    for (size_t k = 0; list && list[k]; k++)
        free(list[k]);
    free(list);
}

void sk_overlay_free_fields(int flag, void *dst)
{
    for (size_t i = 0; i < NROWS; i++) {
        const row *r = &sk_config_table[i];
        char *field = (char *)dst + field_off(r, flag);
        if ((r->flags & flag) && (r->type == T_STRING || r->type == T_ADDRESS))
            free(*(char **)field);
        if ((r->flags & flag) && r->type == T_LIST)
            free_list(*(char ***)field);
    }
}

void sk_overlay_write_settings(FILE *out, int flag, const char *(*setting)(const row *r))
{
    for (size_t i = 0; i < NROWS; i++)
        if (sk_config_table[i].flags & flag)
            fprintf(out, "- `%s`: `%s`\n", setting(&sk_config_table[i]), sk_config_table[i].key);
}
