/* Avro schema handling: errors and paths shared by the codec, the capped avro-c allocator,
 * the schema compiler (JSON schema -> node tree) and sk_avro_schema_parse/free. */
#include "schema/avro_internal.h"

#include <avro.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sk_avro_kind_names[] = {"null",   "boolean", "int",    "long",   "float",
                                          "double", "bytes",   "string", "record", "enum",
                                          "array",  "map",     "union",  "fixed"};

/* ---- errors and paths -------------------------------------------------------------------- */

size_t sk_avro_path_push(path *p, const char *fmt, ...)
{
    size_t saved = p->len;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(p->buf + p->len, sizeof(p->buf) - p->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        p->len += (size_t)n < sizeof(p->buf) - p->len ? (size_t)n : sizeof(p->buf) - p->len - 1;
    return saved;
}

void sk_avro_path_pop(path *p, size_t saved)
{
    p->len = saved;
    p->buf[saved] = '\0';
}

int sk_avro_fail(errbuf *e, const path *p, const char *fmt, ...)
{
    if (e->set || !e->err || e->errlen == 0)
        return -1;
    e->set = 1;
    int n;
    if (p && p->len > 120) /* keep the message visible: elide the middle of a deep path */
        n = snprintf(e->err, e->errlen, "%.40s...%s: ", p->buf, p->buf + p->len - 60);
    else
        n = snprintf(e->err, e->errlen, "%s: ", p ? p->buf : "$");
    if (n < 0 || (size_t)n >= e->errlen)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->err + n, e->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- avro-c allocator: one allocation never exceeds SK_AVRO_MAX_BYTES -------------------- */

static void *capped_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    (void)ud;
    (void)osize;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (nsize > SK_AVRO_MAX_BYTES)
        return NULL;
    return realloc(ptr, nsize);
}

static pthread_once_t alloc_once = PTHREAD_ONCE_INIT;

static void install_allocator(void)
{
    avro_set_allocator(capped_alloc, NULL);
}

/* ---- schema compiler --------------------------------------------------------------------- */

static node *new_node(compiler *c, kind k)
{
    sk_avro_schema *s = c->s;
    if (s->n_all == s->cap_all) {
        size_t cap = s->cap_all ? s->cap_all * 2 : 16;
        node **all = realloc(s->all, cap * sizeof(*all));
        if (!all)
            return NULL;
        s->all = all;
        s->cap_all = cap;
    }
    node *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->k = k;
    n->nu_other = -1;
    n->enum_def = -1;
    s->all[s->n_all++] = n;
    return n;
}

static node *lookup_named(const sk_avro_schema *s, const char *full)
{
    for (size_t i = 0; i < s->n_all; i++)
        if (s->all[i]->name && strcmp(s->all[i]->name, full) == 0)
            return s->all[i];
    return NULL;
}

static int primitive_kind(const char *t)
{
    for (int k = K_NULL; k <= K_STRING; k++)
        if (strcmp(t, sk_avro_kind_names[k]) == 0)
            return k;
    return -1;
}

static node *resolve_ref(compiler *c, const char *name, const char *ns)
{
    int pk = primitive_kind(name);
    if (pk >= 0)
        return new_node(c, (kind)pk);
    node *n = NULL;
    if (!strchr(name, '.') && ns && *ns) {
        char full[512];
        snprintf(full, sizeof(full), "%s.%s", ns, name);
        n = lookup_named(c->s, full);
    }
    if (!n)
        n = lookup_named(c->s, name);
    if (!n)
        sk_avro_fail(&c->e, NULL, "unknown type \"%s\"", name);
    return n;
}

static const char *jstr(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* Full name and namespace of a named type (Avro's rules); 0 or -1. */
static int full_name(compiler *c, json_t *o, const char *ns, char **full, char **own_ns)
{
    const char *name = jstr(o, "name");
    if (!name || !*name)
        return sk_avro_fail(&c->e, NULL, "named type without a name");
    const char *dot = strrchr(name, '.');
    const char *nsv = json_is_string(json_object_get(o, "namespace")) ? jstr(o, "namespace") : ns;
    size_t need = strlen(name) + (nsv ? strlen(nsv) : 0) + 2;
    char *f = malloc(need);
    *own_ns = malloc(need);
    if (!f || !*own_ns) {
        free(f);
        return sk_avro_fail(&c->e, NULL, "out of memory");
    }
    if (dot) {
        snprintf(f, need, "%s", name);
        snprintf(*own_ns, need, "%.*s", (int)(dot - name), name);
    } else {
        snprintf(f, need, "%s%s%s", nsv && *nsv ? nsv : "", nsv && *nsv ? "." : "", name);
        snprintf(*own_ns, need, "%s", nsv ? nsv : "");
    }
    if (lookup_named(c->s, f)) {
        sk_avro_fail(&c->e, NULL, "type \"%s\" defined twice", f);
        free(f);
        return -1;
    }
    *full = f;
    return 0;
}

static node *compile(compiler *c, json_t *j, const char *ns, int depth);

/* "aliases": a NULL-terminated copy (ns given: names without a dot are qualified by it, as
 * Avro says for the aliases of named types); nothing when absent. */
static int compile_aliases(compiler *c, json_t *a, const char *ns, char ***out)
{
    if (!json_is_array(a) || json_array_size(a) == 0)
        return 0;
    if (!(*out = calloc(json_array_size(a) + 1, sizeof(char *))))
        return sk_avro_fail(&c->e, NULL, "out of memory");
    for (size_t i = 0, n = 0; i < json_array_size(a); i++) {
        const char *name = json_string_value(json_array_get(a, i));
        if (!name)
            return sk_avro_fail(&c->e, NULL, "an alias is not a string");
        size_t need = strlen(name) + (ns ? strlen(ns) : 0) + 2;
        if (!((*out)[n] = malloc(need)))
            return sk_avro_fail(&c->e, NULL, "out of memory");
        int qualify = ns && *ns && !strchr(name, '.');
        snprintf((*out)[n++], need, "%s%s%s", qualify ? ns : "", qualify ? "." : "", name);
    }
    return 0;
}

/* The enum's "default" symbol (used when resolving an unknown writer symbol). */
static int enum_default(compiler *c, node *n, json_t *o)
{
    json_t *d = json_object_get(o, "default");
    if (!d)
        return 0;
    for (size_t i = 0; json_is_string(d) && i < n->n; i++)
        if (strcmp(n->symbols[i], json_string_value(d)) == 0) {
            n->enum_def = (int)i;
            return 0;
        }
    return sk_avro_fail(&c->e, NULL, "enum \"%s\": default is not one of its symbols", n->name);
}

/* Avro's rule for a field name: [A-Za-z_][A-Za-z0-9_]*. */
static int name_valid(const char *s)
{
    if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return 0;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return 0;
    return 1;
}

/* A field's name, checked, and its member text `,"name":` written once for the text writer.
 * avro-c refuses an invalid name before (its "Invalid Avro identifier"), but not a duplicate;
 * the name is checked here too because avro_text.c writes it without escaping. A duplicate
 * would be two members in the text and one in the tree (and Avro forbids it). */
static int field_name(compiler *c, const node *n, field *fd, const char *fname)
{
    for (const field *o = n->fields; o < fd; o++)
        if (strcmp(o->name, fname) == 0)
            return sk_avro_fail(&c->e, NULL, "record \"%s\": duplicate field name \"%.64s\"",
                                n->name, fname);
    if (!name_valid(fname))
        return sk_avro_fail(&c->e, NULL,
                            "record \"%s\": field name \"%.64s\" is not a valid Avro name "
                            "(letters, digits and '_', not starting with a digit)",
                            n->name, fname);
    size_t len = strlen(fname);
    fd->name = strdup(fname);
    fd->key = malloc(len + 5);
    if (!fd->name || !fd->key)
        return sk_avro_fail(&c->e, NULL, "out of memory");
    fd->key[0] = ',';
    fd->key[1] = '"';
    memcpy(fd->key + 2, fname, len);
    memcpy(fd->key + 2 + len, "\":", 3);
    fd->key_len = len + 4;
    return 0;
}

static int compile_fields(compiler *c, node *n, json_t *fields, const char *ns, int depth)
{
    if (!json_is_array(fields))
        return sk_avro_fail(&c->e, NULL, "record \"%s\" without a fields array", n->name);
    n->fields = calloc(json_array_size(fields) + 1, sizeof(field));
    if (!n->fields)
        return sk_avro_fail(&c->e, NULL, "out of memory");
    size_t i;
    json_t *f;
    json_array_foreach(fields, i, f)
    {
        const char *fname = jstr(f, "name");
        if (!fname)
            return sk_avro_fail(&c->e, NULL, "record \"%s\": field without a name", n->name);
        field *fd = &n->fields[n->n++];
        if (field_name(c, n, fd, fname) < 0 ||
            !(fd->type = compile(c, json_object_get(f, "type"), ns, depth + 1)))
            return -1;
        fd->def_json = json_object_get(f, "default");
        if (compile_aliases(c, json_object_get(f, "aliases"), NULL, &fd->aliases) < 0)
            return -1;
    }
    return 0;
}

static int compile_named(compiler *c, node *n, json_t *o, const char *ns, int depth)
{
    char *own_ns = NULL;
    int rc = full_name(c, o, ns, &n->name, &own_ns);
    if (rc == 0 && n->k == K_RECORD) {
        rc = compile_fields(c, n, json_object_get(o, "fields"), own_ns, depth);
    } else if (rc == 0 && n->k == K_ENUM) {
        json_t *syms = json_object_get(o, "symbols");
        n->symbols = calloc(json_array_size(syms) + 1, sizeof(char *));
        if (!json_is_array(syms) || !n->symbols)
            rc = sk_avro_fail(&c->e, NULL, "enum \"%s\" without symbols", n->name);
        for (size_t i = 0; rc == 0 && i < json_array_size(syms); i++) {
            const char *sym = json_string_value(json_array_get(syms, i));
            if (!sym || !(n->symbols[n->n++] = strdup(sym)))
                rc = sk_avro_fail(&c->e, NULL, "enum \"%s\": bad symbol", n->name);
        }
        if (rc == 0)
            rc = enum_default(c, n, o);
    } else if (rc == 0) {
        json_t *size = json_object_get(o, "size");
        json_int_t sz = json_integer_value(size);
        if (!json_is_integer(size) || sz < 0 || sz > 1 << 20)
            rc = sk_avro_fail(&c->e, NULL, "fixed \"%s\": bad size", n->name);
        n->size = (size_t)sz;
    }
    if (rc == 0)
        rc = compile_aliases(c, json_object_get(o, "aliases"), own_ns, &n->aliases);
    free(own_ns);
    return rc;
}

/* Logical types we map; an invalid or unknown annotation leaves the underlying type (spec). */
static void set_logical(node *n, json_t *o)
{
    const char *lt = jstr(o, "logicalType");
    if (!lt)
        return;
    if (strcmp(lt, "decimal") == 0 && (n->k == K_BYTES || n->k == K_FIXED)) {
        json_int_t p = json_integer_value(json_object_get(o, "precision"));
        json_int_t sc = json_integer_value(json_object_get(o, "scale"));
        if (p <= 0 || p > 600 || sc < 0 || sc > p)
            return;
        n->lt = L_DECIMAL;
        n->precision = (int)p;
        n->scale = (int)sc;
    } else if (strcmp(lt, "date") == 0 && n->k == K_INT) {
        n->lt = L_DATE;
    } else if (strcmp(lt, "timestamp-millis") == 0 && n->k == K_LONG) {
        n->lt = L_TS_MILLIS;
    } else if (strcmp(lt, "timestamp-micros") == 0 && n->k == K_LONG) {
        n->lt = L_TS_MICROS;
    } else if (strcmp(lt, "uuid") == 0 && n->k == K_STRING) {
        n->lt = L_UUID;
    }
}

static node *compile_union(compiler *c, json_t *j, const char *ns, int depth)
{
    node *n = new_node(c, K_UNION);
    if (!n || !(n->branches = calloc(json_array_size(j) + 1, sizeof(node *))))
        return NULL;
    size_t i;
    json_t *b;
    int nulls = 0;
    json_array_foreach(j, i, b)
    {
        if (!(n->branches[n->n++] = compile(c, b, ns, depth + 1)))
            return NULL;
        nulls += n->branches[i]->k == K_NULL;
    }
    if (n->n == 2 && nulls == 1)
        n->nu_other = n->branches[0]->k == K_NULL ? 1 : 0;
    return n;
}

static node *compile_object(compiler *c, json_t *o, const char *ns, int depth)
{
    json_t *type = json_object_get(o, "type");
    if (!json_is_string(type))
        return compile(c, type, ns, depth + 1);
    const char *t = json_string_value(type);
    node *n = NULL;
    if (strcmp(t, "record") == 0 || strcmp(t, "error") == 0 || strcmp(t, "enum") == 0 ||
        strcmp(t, "fixed") == 0) {
        n = new_node(c, t[0] == 'f' ? K_FIXED : t[0] == 'e' && t[1] == 'n' ? K_ENUM : K_RECORD);
        if (!n || compile_named(c, n, o, ns, depth) < 0)
            return NULL;
    } else if (strcmp(t, "array") == 0 || strcmp(t, "map") == 0) {
        n = new_node(c, t[0] == 'a' ? K_ARRAY : K_MAP);
        if (!n || !(n->items = compile(c, json_object_get(o, t[0] == 'a' ? "items" : "values"), ns,
                                       depth + 1)))
            return NULL;
    } else if (!(n = resolve_ref(c, t, ns))) {
        return NULL;
    } else if (n->name) {
        return n; /* {"type": "SomeNamedType"}: annotations belong to the definition */
    }
    set_logical(n, o);
    return n;
}

static node *compile(compiler *c, json_t *j, const char *ns, int depth)
{
    if (depth > 2 * SK_AVRO_MAX_DEPTH) {
        sk_avro_fail(&c->e, NULL, "schema nested deeper than %d", 2 * SK_AVRO_MAX_DEPTH);
        return NULL;
    }
    if (json_is_string(j))
        return resolve_ref(c, json_string_value(j), ns);
    if (json_is_array(j))
        return compile_union(c, j, ns, depth);
    if (json_is_object(j))
        return compile_object(c, j, ns, depth);
    sk_avro_fail(&c->e, NULL, "invalid schema element");
    return NULL;
}

const char *sk_avro_type_name(const node *n)
{
    return n->name ? n->name : sk_avro_kind_names[n->k];
}

sk_avro_schema *sk_avro_schema_parse(const char *json, size_t len, char *err, size_t errlen)
{
    compiler c = {.e = {.err = err, .errlen = errlen}};
    pthread_once(&alloc_once, install_allocator);
    avro_schema_t as = NULL;
    if (avro_schema_from_json_length(json, len, &as) != 0) {
        sk_avro_fail(&c.e, NULL, "invalid Avro schema: %.200s", avro_strerror());
        return NULL;
    }
    avro_schema_decref(as);
    json_error_t jerr;
    json_t *j = json_loadb(json, len, JSON_DECODE_ANY, &jerr);
    c.s = calloc(1, sizeof(*c.s));
    if (!j || !c.s) {
        sk_avro_fail(&c.e, NULL, "invalid schema JSON: %s", j ? "out of memory" : jerr.text);
        goto fail;
    }
    c.s->root = compile(&c, j, "", 0);
    if (!c.s->root || sk_avro_compile_defaults(&c) < 0)
        goto fail;
    json_decref(j);
    return c.s;
fail:
    json_decref(j);
    sk_avro_schema_free(c.s);
    return NULL;
}

static void free_names(char **names)
{
    for (size_t i = 0; names && names[i]; i++)
        free(names[i]);
    free(names);
}

void sk_avro_schema_free(sk_avro_schema *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_all; i++) {
        node *n = s->all[i];
        for (size_t f = 0; n->fields && f < n->n; f++) {
            free(n->fields[f].name);
            free(n->fields[f].key);
            free(n->fields[f].def);
            free_names(n->fields[f].aliases);
        }
        free_names(n->aliases);
        for (size_t k = 0; n->symbols && k < n->n; k++)
            free(n->symbols[k]);
        free(n->fields);
        free(n->symbols);
        free(n->branches);
        free(n->name);
        free(n);
    }
    free(s->all);
    free(s);
}
