/* Private to the Avro <-> JSON codec (avro_schema.c, avro_logical.c, avro_decode.c,
 * avro_encode.c): the compiled schema, error and path buffers, and the functions the pieces
 * call across files. Not for use outside sidecar/src/schema/avro_*.c. */
#ifndef SK_AVRO_INTERNAL_H
#define SK_AVRO_INTERNAL_H

#include "schema/avro_json.h"

/* ---- compiled schema --------------------------------------------------------------------- */

typedef enum {
    K_NULL,
    K_BOOLEAN,
    K_INT,
    K_LONG,
    K_FLOAT,
    K_DOUBLE,
    K_BYTES,
    K_STRING,
    K_RECORD,
    K_ENUM,
    K_ARRAY,
    K_MAP,
    K_UNION,
    K_FIXED,
} kind;

typedef enum { L_NONE, L_DECIMAL, L_DATE, L_TS_MILLIS, L_TS_MICROS, L_UUID } logical;

typedef struct node node;

typedef struct field {
    char *name; /* an Avro name ([A-Za-z_][A-Za-z0-9_]*): nothing to escape in JSON */
    char *key;  /* `,"name":`, the member's text as avro_text.c writes it */
    size_t key_len;
    node *type;
    uint8_t *def; /* pre-encoded default, NULL when the field has none */
    size_t def_len;
    json_t *def_json; /* kept until the defaults are compiled */
    char **aliases;   /* NULL-terminated, NULL when none (schema resolution) */
} field;

struct node {
    kind k;
    logical lt;
    int precision, scale;
    char *name;  /* full name of a named type; NULL otherwise */
    size_t size; /* fixed */
    size_t n;    /* fields, symbols or branches */
    field *fields;
    char **symbols;
    node **branches;
    node *items;    /* array items, map values */
    int nu_other;   /* union ["null", X] / [X, "null"]: index of X, else -1 */
    int enum_def;   /* enum: index of the "default" symbol, else -1 (schema resolution) */
    char **aliases; /* named types: full names, NULL-terminated, NULL when none */
};

struct sk_avro_schema {
    node *root;
    node **all; /* every node, for freeing; named types are looked up here too */
    size_t n_all, cap_all;
};

/* ---- errors and paths -------------------------------------------------------------------- */

typedef struct path {
    char buf[512];
    size_t len;
} path;

typedef struct errbuf {
    char *err;
    size_t errlen;
    int set;
} errbuf;

/* ---- schema compiler --------------------------------------------------------------------- */

typedef struct compiler {
    sk_avro_schema *s;
    errbuf e;
} compiler;

#define DEC_MAX_BYTES 256 /* decimal: two's-complement big-endian unscaled integer */

extern const char *const sk_avro_kind_names[];

/* ---- avro_schema.c: errors, paths, names --------------------------------------------------- */

size_t sk_avro_path_push(path *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sk_avro_path_pop(path *p, size_t saved);
int sk_avro_fail(errbuf *e, const path *p, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *sk_avro_type_name(const node *n);

/* ---- avro_logical.c: text, decimal, dates and timestamps, uuid ----------------------------- */

int sk_avro_utf8_valid(const uint8_t *s, size_t n);
/* bytes -> JSON string of code points U+0000..U+00FF. */
json_t *sk_avro_bytes_to_json(const uint8_t *b, size_t n);
/* JSON string of code points <= U+00FF -> bytes (malloc'ed, *n). NULL when a code point is
 * above U+00FF (*bad set) or on allocation failure. */
uint8_t *sk_avro_json_to_bytes(const json_t *j, size_t *n, int *bad);
int sk_avro_uuid_valid(const char *s, size_t n);
/* Decimal text of the unscaled value in b[0..n) with `scale` fraction digits. */
json_t *sk_avro_decimal_to_json(const uint8_t *b, size_t n, int scale);
/* The same text into out (n <= DEC_MAX_BYTES); returns its length. */
#define SK_AVRO_DECIMAL_TEXT_MAX (DEC_MAX_BYTES * 3 + 16)
size_t sk_avro_decimal_text(const uint8_t *b, size_t n, int scale,
                            char out[SK_AVRO_DECIMAL_TEXT_MAX]);
/* Parses "[-]digits[.digits]" into unscaled digits (no leading zeros, "" for 0); -1 + msg. */
int sk_avro_decimal_digits(const char *s, int scale, int precision, char *dig, size_t cap, int *neg,
                           const char **msg);
/* Days since the epoch -> "YYYY-MM-DD"; NULL outside years 0001..9999. */
json_t *sk_avro_date_to_json(int64_t days);
/* Units since the epoch -> RFC 3339 UTC with `digits` fraction digits; NULL outside years
 * 0001..9999. */
json_t *sk_avro_timestamp_to_json(int64_t v, int64_t unit, int digits);
/* The texts of the two above into out, without a JSON value: their length, 0 outside years
 * 0001..9999 (digits <= 9). */
size_t sk_avro_date_text(int64_t days, char out[16]);
size_t sk_avro_timestamp_text(int64_t v, int64_t unit, int digits, char out[40]);
/* "YYYY-MM-DD" -> days since the epoch; -1 when invalid. */
int sk_avro_parse_date(const char *s, int64_t *days);
/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.f](Z|+hh:mm|-hh:mm)" -> units since the epoch (UTC). */
int sk_avro_parse_timestamp(const char *s, int64_t unit, int digits, int64_t *out);

/* ---- avro_decode.c: the bounded binary reader, for avro_resolve.c ------------------------ */

typedef struct reader {
    const uint8_t *p;
    size_t len, pos;
    size_t budget; /* values still allowed to take no input bytes (null, empty record...) */
    int depth;
    path path;
    errbuf e;
    int incompatible; /* avro_resolve.c: the failure is a value the reader cannot take */
} reader;

/* One value of schema n (the writer's and reader's when they agree on the encoding). */
json_t *sk_avro_read_value(reader *r, const node *n);
int sk_avro_read_long(reader *r, int64_t *out);
int sk_avro_read_bytes(reader *r, size_t n, const uint8_t **out);
/* A length-prefixed UTF-8 string. */
int sk_avro_read_text(reader *r, const uint8_t **b, size_t *len);
/* The next block count of an array or map of the writer's items. */
int sk_avro_read_block(reader *r, const node *items, size_t *count);

/* ---- avro_encode.c ------------------------------------------------------------------------- */

/* Encodes every field default once (Avro JSON encoding, union defaults use branch 0). */
int sk_avro_compile_defaults(compiler *c);

#endif
