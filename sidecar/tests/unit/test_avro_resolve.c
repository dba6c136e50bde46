/* Avro schema resolution: one test per rule of the specification's "Schema Resolution"
 * (promotions, defaults of every type in their JSON encodings, aliases, enum defaults, union
 * branch choice, nested and recursive records) and the incompatibilities, at plan time and at
 * value time. Values are written with the writer's schema by our encoder, read with the
 * reader's. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "schema/avro_resolve.h"

static sk_avro_schema *schema(const char *json)
{
    char err[256] = "";
    sk_avro_schema *s = sk_avro_schema_parse(json, strlen(json), err, sizeof(err));
    if (!s)
        fail_msg("schema %s: %s", json, err);
    return s;
}

static json_t *parse(const char *text)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("bad test JSON %s: %s", text, jerr.text);
    return v;
}

static uint8_t *encode(const sk_avro_schema *s, const char *value, size_t *len)
{
    char err[256] = "";
    json_t *v = parse(value);
    uint8_t *b = sk_avro_from_json(s, v, len, err, sizeof(err));
    json_decref(v);
    if (!b)
        fail_msg("encode %s: %s", value, err);
    return b;
}

/* Writes `value` with schema w, reads it with r; *incompat and err as sk_avro_resolve's.
 * The plan must build. */
static json_t *resolve(const char *w, const char *value, const char *r, int *incompat, char *err,
                       size_t errlen)
{
    sk_avro_schema *ws = schema(w), *rs = schema(r);
    sk_avro_plan *p = sk_avro_plan_new(ws, rs, err, errlen);
    if (!p)
        fail_msg("plan %s -> %s: %s", w, r, err);
    size_t len = 0;
    uint8_t *b = encode(ws, value, &len);
    json_t *got = sk_avro_resolve(p, b, len, incompat, err, errlen);
    free(b);
    sk_avro_plan_free(p);
    sk_avro_schema_free(ws);
    sk_avro_schema_free(rs);
    return got;
}

static void check(const char *w, const char *value, const char *r, const char *want)
{
    char err[512] = "";
    int incompat = -1;
    json_t *got = resolve(w, value, r, &incompat, err, sizeof err);
    if (!got)
        fail_msg("%s as %s: %s", value, r, err);
    assert_int_equal(incompat, 0);
    json_t *wv = parse(want);
    if (!json_equal(got, wv)) {
        char *g = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
        fail_msg("got %s, want %s", g ? g : "(null)", want);
    }
    json_decref(wv);
    json_decref(got);
}

/* The value is well-formed for the writer and has no place in the reader's schema. */
static void value_incompatible(const char *w, const char *value, const char *r, const char *msg)
{
    char err[512] = "";
    int incompat = -1;
    json_t *got = resolve(w, value, r, &incompat, err, sizeof err);
    assert_null(got);
    assert_int_equal(incompat, 1);
    if (!strstr(err, msg))
        fail_msg("error \"%s\" does not say \"%s\"", err, msg);
}

static void plan_fails(const char *w, const char *r, const char *msg)
{
    sk_avro_schema *ws = schema(w), *rs = schema(r);
    char err[512] = "";
    sk_avro_plan *p = sk_avro_plan_new(ws, rs, err, sizeof err);
    assert_null(p);
    if (!strstr(err, msg))
        fail_msg("error \"%s\" does not say \"%s\"", err, msg);
    sk_avro_schema_free(ws);
    sk_avro_schema_free(rs);
}

#define REC(fields) "{\"type\":\"record\",\"name\":\"ns.R\",\"fields\":[" fields "]}"

/* ---- promotions ---- */

static void test_promote_int(void **st)
{
    (void)st;
    check("\"int\"", "-7", "\"long\"", "-7");
    check("\"int\"", "2147483647", "\"long\"", "2147483647");
    check("\"int\"", "3", "\"float\"", "3.0");
    check("\"int\"", "-5", "\"double\"", "-5.0");
    check("\"int\"", "16777217", "\"float\"", "16777216.0"); /* rounded to float */
}

static void test_promote_long(void **st)
{
    (void)st;
    check("\"long\"", "9007199254740993", "\"double\"", "9007199254740992.0");
    check("\"long\"", "-12", "\"float\"", "-12.0");
}

static void test_promote_float(void **st)
{
    (void)st;
    check("\"float\"", "1.5", "\"double\"", "1.5");
    check("\"float\"", "-0.25", "\"double\"", "-0.25");
}

static void test_string_bytes(void **st)
{
    (void)st;
    check("\"string\"", "\"abc\"", "\"bytes\"", "\"abc\"");
    check("\"bytes\"", "\"h\\u00c3\\u00a9\"", "\"string\"", "\"h\\u00e9\""); /* UTF-8 */
}

static void test_bytes_not_utf8(void **st)
{
    (void)st;
    /* byte 0xE9 alone is not UTF-8 */
    value_incompatible("\"bytes\"", "\"\\u00e9\"", "\"string\"", "not valid UTF-8");
}

static void test_no_demotion(void **st)
{
    (void)st;
    plan_fails("\"long\"", "\"int\"", "the writer's long cannot be read as the reader's int");
    plan_fails("\"double\"", "\"float\"", "cannot be read");
    plan_fails("\"string\"", "\"int\"", "cannot be read");
    plan_fails("\"boolean\"", "\"null\"", "cannot be read");
}

/* ---- records: fields by name, skipped, defaults, aliases ---- */

static void test_record_reordered_and_skipped(void **st)
{
    (void)st;
    check(REC("{\"name\":\"a\",\"type\":\"int\"},{\"name\":\"gone\",\"type\":{\"type\":\"array\","
              "\"items\":\"string\"}},{\"name\":\"b\",\"type\":\"string\"}"),
          "{\"a\":1,\"gone\":[\"x\",\"y\"],\"b\":\"B\"}",
          REC("{\"name\":\"b\",\"type\":\"string\"},{\"name\":\"a\",\"type\":\"long\"}"),
          "{\"b\":\"B\",\"a\":1}");
}

#define W_ONE REC("{\"name\":\"a\",\"type\":\"int\"}")
#define R_WITH(def) REC("{\"name\":\"a\",\"type\":\"int\"}," def)

/* A reader field the writer lacks takes its default, in the JSON encoding of its type. */
static void test_defaults_primitive(void **st)
{
    (void)st;
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"n\",\"type\":\"null\",\"default\":null}"),
          "{\"a\":1,\"n\":null}");
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"f\",\"type\":\"boolean\",\"default\":true}"),
          "{\"a\":1,\"f\":true}");
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"i\",\"type\":\"int\",\"default\":-3}"),
          "{\"a\":1,\"i\":-3}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"l\",\"type\":\"long\",\"default\":1099511627776}"),
          "{\"a\":1,\"l\":1099511627776}");
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"x\",\"type\":\"float\",\"default\":0.5}"),
          "{\"a\":1,\"x\":0.5}");
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"d\",\"type\":\"double\",\"default\":2.25}"),
          "{\"a\":1,\"d\":2.25}");
    check(W_ONE, "{\"a\":1}", R_WITH("{\"name\":\"s\",\"type\":\"string\",\"default\":\"dé\"}"),
          "{\"a\":1,\"s\":\"dé\"}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"b\",\"type\":\"bytes\",\"default\":\"\\u0001\\u00ff\"}"),
          "{\"a\":1,\"b\":\"\\u0001\\u00ff\"}");
}

static void test_defaults_complex(void **st)
{
    (void)st;
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"arr\",\"type\":{\"type\":\"array\",\"items\":\"int\"},"
                 "\"default\":[1,2]}"),
          "{\"a\":1,\"arr\":[1,2]}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"},"
                 "\"default\":{\"k\":\"v\"}}"),
          "{\"a\":1,\"m\":{\"k\":\"v\"}}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"X\","
                 "\"Y\"]},\"default\":\"Y\"}"),
          "{\"a\":1,\"e\":\"Y\"}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F\",\"size\":2},"
                 "\"default\":\"\\u0001\\u00fe\"}"),
          "{\"a\":1,\"fx\":\"\\u0001\\u00fe\"}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"r\",\"type\":{\"type\":\"record\",\"name\":\"In\",\"fields\":[{"
                 "\"name\":\"z\",\"type\":\"int\"},{\"name\":\"w\",\"type\":\"string\","
                 "\"default\":\"w0\"}]},\"default\":{\"z\":9}}"),
          "{\"a\":1,\"r\":{\"z\":9,\"w\":\"w0\"}}");
}

/* A union's default is of its first branch. */
static void test_defaults_union(void **st)
{
    (void)st;
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"u\",\"type\":[\"null\",\"string\"],\"default\":null}"),
          "{\"a\":1,\"u\":null}");
    check(W_ONE, "{\"a\":1}",
          R_WITH("{\"name\":\"u\",\"type\":[\"long\",\"string\"],\"default\":7}"),
          "{\"a\":1,\"u\":{\"long\":7}}");
}

static void test_field_without_default(void **st)
{
    (void)st;
    plan_fails(W_ONE, R_WITH("{\"name\":\"email\",\"type\":\"string\"}"),
               "$.email: reader field has no default and the writer's ns.R has no such field");
}

static void test_field_alias(void **st)
{
    (void)st;
    check(REC("{\"name\":\"old_name\",\"type\":\"int\"}"), "{\"old_name\":5}",
          REC("{\"name\":\"new_name\",\"type\":\"long\",\"aliases\":[\"old_name\"]}"),
          "{\"new_name\":5}");
}

static void test_record_alias_and_namespace(void **st)
{
    (void)st;
    /* the same unqualified name in another namespace matches */
    check("{\"type\":\"record\",\"name\":\"a.R\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}",
          "{\"x\":1}",
          "{\"type\":\"record\",\"name\":\"b.R\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}",
          "{\"x\":1}");
    check("{\"type\":\"record\",\"name\":\"Old\",\"fields\":[{\"name\":\"x\",\"type\":\"int\"}]}",
          "{\"x\":1}",
          "{\"type\":\"record\",\"name\":\"New\",\"aliases\":[\"Old\"],\"fields\":[{\"name\":\"x\","
          "\"type\":\"int\"}]}",
          "{\"x\":1}");
    plan_fails("{\"type\":\"record\",\"name\":\"Old\",\"fields\":[]}",
               "{\"type\":\"record\",\"name\":\"New\",\"fields\":[]}",
               "the writer's Old cannot be read as the reader's New");
}

static void test_nested_records(void **st)
{
    (void)st;
    check(REC("{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":"
              "\"n\",\"type\":\"int\"},{\"name\":\"drop\",\"type\":\"string\"}]}}"),
          "{\"c\":{\"n\":2,\"drop\":\"z\"}}",
          REC("{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":\"C\",\"fields\":[{\"name\":"
              "\"n\",\"type\":\"double\"},{\"name\":\"add\",\"type\":\"int\",\"default\":4}]}}"),
          "{\"c\":{\"n\":2.0,\"add\":4}}");
    plan_fails(REC("{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":\"C\",\"fields\":[]}}"),
               REC("{\"name\":\"c\",\"type\":{\"type\":\"record\",\"name\":\"C\",\"fields\":[{"
                   "\"name\":\"deep\",\"type\":\"int\"}]}}"),
               "$.c.deep: reader field has no default");
}

static void test_recursive_record(void **st)
{
    (void)st;
    const char *w = "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"v\",\"type\":"
                    "\"int\"},{\"name\":\"next\",\"type\":[\"null\",\"L\"]}]}";
    const char *r = "{\"type\":\"record\",\"name\":\"L\",\"fields\":[{\"name\":\"v\",\"type\":"
                    "\"long\"},{\"name\":\"next\",\"type\":[\"null\",\"L\"]},{\"name\":\"t\","
                    "\"type\":\"string\",\"default\":\"-\"}]}";
    check(w, "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}", r,
          "{\"v\":1,\"next\":{\"v\":2,\"next\":null,\"t\":\"-\"},\"t\":\"-\"}");
}

/* ---- enums ---- */

#define ENUM(syms, rest) "{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[" syms "]" rest "}"

static void test_enum_by_symbol(void **st)
{
    (void)st;
    check(ENUM("\"A\",\"B\",\"C\"", ""), "\"B\"", ENUM("\"C\",\"B\"", ""), "\"B\"");
}

static void test_enum_default(void **st)
{
    (void)st;
    check(ENUM("\"A\",\"NEW\"", ""), "\"NEW\"",
          ENUM("\"UNKNOWN\",\"A\"", ",\"default\":\"UNKNOWN\""), "\"UNKNOWN\"");
}

static void test_enum_unknown_symbol(void **st)
{
    (void)st;
    value_incompatible(
        REC("{\"name\":\"e\",\"type\":" ENUM("\"A\",\"NEW\"", "") "}"), "{\"e\":\"NEW\"}",
        REC("{\"name\":\"e\",\"type\":" ENUM("\"A\"", "") "}"),
        "$.e: symbol \"NEW\" is not in the reader's enum ns.E, which has no default");
    /* the known symbols still resolve */
    check(ENUM("\"A\",\"NEW\"", ""), "\"A\"", ENUM("\"A\"", ""), "\"A\"");
}

static void test_enum_bad_default(void **st)
{
    (void)st;
    char err[256] = "";
    const char *s = ENUM("\"A\"", ",\"default\":\"Z\"");
    assert_null(sk_avro_schema_parse(s, strlen(s), err, sizeof err));
}

/* ---- unions ---- */

static void test_writer_union_to_plain(void **st)
{
    (void)st;
    check("[\"null\",\"int\"]", "5", "\"long\"", "5");
    value_incompatible("[\"null\",\"int\"]", "null", "\"long\"",
                       "the writer's union branch null cannot be read as the reader's long");
    plan_fails("[\"null\",\"boolean\"]", "\"long\"", "no branch of the writer's union matches");
}

static void test_reader_union_branch_choice(void **st)
{
    (void)st;
    /* the same type first, even when a promotion comes earlier */
    check("\"int\"", "3", "[\"long\",\"int\"]", "{\"int\":3}");
    /* else the first promotion */
    check("\"int\"", "3", "[\"string\",\"double\",\"long\"]", "{\"double\":3.0}");
    /* a nullable union is unwrapped as in the plain mapping */
    check("\"string\"", "\"s\"", "[\"null\",\"string\"]", "\"s\"");
    plan_fails("\"boolean\"", "[\"null\",\"string\"]", "no branch of the reader's union matches");
}

static void test_union_to_union(void **st)
{
    (void)st;
    check("[\"null\",\"int\",\"string\"]", "{\"string\":\"x\"}", "[\"string\",\"null\",\"long\"]",
          "{\"string\":\"x\"}");
    check("[\"null\",\"int\",\"string\"]", "{\"int\":4}", "[\"string\",\"null\",\"long\"]",
          "{\"long\":4}");
    check("[\"null\",\"int\",\"string\"]", "null", "[\"string\",\"null\",\"long\"]", "null");
    value_incompatible("[\"int\",\"boolean\"]", "{\"boolean\":true}", "[\"null\",\"long\"]",
                       "union branch boolean");
}

/* ---- arrays, maps, fixed ---- */

static void test_array_map_recursive(void **st)
{
    (void)st;
    check("{\"type\":\"array\",\"items\":\"int\"}", "[1,2,3]",
          "{\"type\":\"array\",\"items\":\"double\"}", "[1.0,2.0,3.0]");
    check("{\"type\":\"map\",\"values\":" ENUM("\"A\",\"B\"", "") "}", "{\"x\":\"B\",\"y\":\"A\"}",
          "{\"type\":\"map\",\"values\":" ENUM("\"B\",\"A\"", "") "}", "{\"x\":\"B\",\"y\":\"A\"}");
    plan_fails("{\"type\":\"array\",\"items\":\"string\"}",
               "{\"type\":\"array\",\"items\":\"int\"}", "cannot be read");
    plan_fails("{\"type\":\"map\",\"values\":\"int\"}", "{\"type\":\"array\",\"items\":\"int\"}",
               "cannot be read");
}

static void test_fixed(void **st)
{
    (void)st;
    check("{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}", "\"ab\"",
          "{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}", "\"ab\"");
    plan_fails("{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}",
               "{\"type\":\"fixed\",\"name\":\"F\",\"size\":3}", "cannot be read");
    plan_fails("{\"type\":\"fixed\",\"name\":\"F\",\"size\":2}",
               "{\"type\":\"fixed\",\"name\":\"G\",\"size\":2}", "cannot be read");
}

/* ---- logical types ---- */

#define LT(type, lt) "{\"type\":\"" type "\",\"logicalType\":\"" lt "\"}"
#define DEC(scale)                                                                                 \
    "{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":9,\"scale\":" scale "}"

static void test_logical_types(void **st)
{
    (void)st;
    check(LT("long", "timestamp-millis"), "\"2024-01-02T03:04:05.123Z\"",
          LT("long", "timestamp-millis"), "\"2024-01-02T03:04:05.123Z\"");
    check(LT("long", "timestamp-millis"), "\"1970-01-01T00:00:01.000Z\"", "\"long\"", "1000");
    check(LT("int", "date"), "\"1970-01-11\"", "\"long\"", "10");
    check(DEC("2"), "\"12.34\"", DEC("2"), "\"12.34\"");
    /* the same encoding would show another number: refused */
    plan_fails(DEC("2"), DEC("3"),
               "the writer's bytes (decimal) cannot be read as the reader's "
               "bytes (decimal)");
    plan_fails(LT("long", "timestamp-micros"), LT("long", "timestamp-millis"),
               "(timestamp-micros) cannot be read as the reader's long (timestamp-millis)");
    plan_fails(LT("int", "date"), LT("long", "timestamp-millis"), "(date) cannot be read");
}

/* ---- malformed bodies are not incompatibilities ---- */

static void test_malformed_body(void **st)
{
    (void)st;
    sk_avro_schema *ws = schema(REC("{\"name\":\"a\",\"type\":\"string\"}"));
    sk_avro_schema *rs = schema(REC("{\"name\":\"a\",\"type\":\"bytes\"}"));
    char err[256] = "";
    sk_avro_plan *p = sk_avro_plan_new(ws, rs, err, sizeof err);
    assert_non_null(p);
    const uint8_t truncated[] = {0x08, 'a'};
    int incompat = -1;
    assert_null(sk_avro_resolve(p, truncated, sizeof truncated, &incompat, err, sizeof err));
    assert_int_equal(incompat, 0);
    assert_non_null(strstr(err, "exceeds"));
    const uint8_t trailing[] = {0x02, 'a', 0x00};
    assert_null(sk_avro_resolve(p, trailing, sizeof trailing, &incompat, err, sizeof err));
    assert_int_equal(incompat, 0);
    assert_non_null(strstr(err, "trailing"));
    sk_avro_plan_free(p);
    sk_avro_plan_free(NULL);
    sk_avro_schema_free(ws);
    sk_avro_schema_free(rs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_promote_int),
        cmocka_unit_test(test_promote_long),
        cmocka_unit_test(test_promote_float),
        cmocka_unit_test(test_string_bytes),
        cmocka_unit_test(test_bytes_not_utf8),
        cmocka_unit_test(test_no_demotion),
        cmocka_unit_test(test_record_reordered_and_skipped),
        cmocka_unit_test(test_defaults_primitive),
        cmocka_unit_test(test_defaults_complex),
        cmocka_unit_test(test_defaults_union),
        cmocka_unit_test(test_field_without_default),
        cmocka_unit_test(test_field_alias),
        cmocka_unit_test(test_record_alias_and_namespace),
        cmocka_unit_test(test_nested_records),
        cmocka_unit_test(test_recursive_record),
        cmocka_unit_test(test_enum_by_symbol),
        cmocka_unit_test(test_enum_default),
        cmocka_unit_test(test_enum_unknown_symbol),
        cmocka_unit_test(test_enum_bad_default),
        cmocka_unit_test(test_writer_union_to_plain),
        cmocka_unit_test(test_reader_union_branch_choice),
        cmocka_unit_test(test_union_to_union),
        cmocka_unit_test(test_array_map_recursive),
        cmocka_unit_test(test_fixed),
        cmocka_unit_test(test_logical_types),
        cmocka_unit_test(test_malformed_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
