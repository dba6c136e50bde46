/* Avro -> JSON text without a tree: byte for byte jansson's compact text of the tree path's
 * value, for every type (the fuzz targets' schemas), and on every single-byte mutation and
 * truncation of those bodies the direct writer succeeds exactly where the tree path does. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "../fuzz/fuzz_avro_schemas.h"
#include "schema/avro_text.h"

/* Valid values of schemas[0] (every type and logical type), [1] (recursion, maps) and [2] (a
 * general union at the top). */
static const struct {
    int schema;
    const char *json;
} values[] = {
    {0, "{\"n\":null,\"b\":true,\"i\":-5,\"l\":1234567890123,\"f\":1.5,\"d\":0.1,"
        "\"s\":\"h\\u0001\\u001f\\\"\\\\/\\u007f \\u00e9\\n\\b\\f\\r\\t\\u2028\\u0000z\","
        "\"by\":\"\\u0000\\u00ff\\u0080a\\\"\\u001f\",\"fx\":\"ab\\u00ffd\",\"e\":\"B\","
        "\"a\":[1,-2,2147483647,-2147483648],\"m\":{\"k1\":\"v\",\"k\\u0002\\\"\":\"w\"},"
        "\"ou\":\"x\",\"uo\":null,\"gu\":{\"string\":\"g\"},\"dec\":\"-12.345\","
        "\"decf\":\"3.1416\",\"dt\":\"2024-02-29\",\"tsm\":\"2024-01-02T03:04:05.678Z\","
        "\"tsu\":\"1970-01-01T00:00:00.000001Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
        "\"opt\":{\"x\":1,\"y\":null},\"next\":null}"},
    {0, "{\"n\":null,\"b\":false,\"i\":0,\"l\":-9223372036854775808,\"f\":-1e-3,"
        "\"d\":-2.5e-300,\"s\":\"\",\"by\":\"\",\"fx\":\"\\u0000\\u0000\\u0000\\u0000\","
        "\"e\":\"A\",\"a\":[],\"m\":{},\"ou\":null,\"uo\":9223372036854775807,"
        "\"gu\":{\"int\":3},\"dec\":\"0.000\",\"decf\":\"-0.0001\",\"dt\":\"0001-01-01\","
        "\"tsm\":\"9999-12-31T23:59:59.999Z\",\"tsu\":\"1969-12-31T23:59:59.999999Z\","
        "\"u\":\"00000000-0000-0000-0000-000000000000\",\"opt\":{\"x\":-7,\"y\":\"z\"},"
        "\"next\":{\"n\":null,\"b\":true,\"i\":1,\"l\":2,\"f\":3e38,\"d\":1e20,"
        "\"s\":\"\\u00e9\\ud83d\\ude00\",\"by\":\"x\",\"fx\":\"wxyz\",\"e\":\"C\",\"a\":[7],"
        "\"m\":{\"only\":\"\"},\"ou\":\"\",\"uo\":-1,\"gu\":{\"f.F4\":\"wxyz\"},"
        "\"dec\":\"99999999999999999.999\",\"decf\":\"0.0000\",\"dt\":\"1970-01-01\","
        "\"tsm\":\"1970-01-01T00:00:00.000Z\",\"tsu\":\"2000-02-29T12:00:00.500000Z\","
        "\"u\":\"FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF\",\"opt\":{\"x\":0,\"y\":null},"
        "\"next\":null}}"},
    {0, "{\"n\":null,\"b\":true,\"i\":1,\"l\":1,\"f\":-0.0,\"d\":1e-7,\"s\":\"s\",\"by\":\"b\","
        "\"fx\":\"abcd\",\"e\":\"A\",\"a\":[0],\"m\":{\"a\":\"1\",\"b\":\"2\",\"c\":\"3\"},"
        "\"ou\":null,\"uo\":null,\"gu\":{\"f.E\":\"C\"},\"dec\":\"1.000\",\"decf\":\"1.0000\","
        "\"dt\":\"9999-12-31\",\"tsm\":\"2024-01-02T03:04:05.000Z\","
        "\"tsu\":\"2024-01-02T03:04:05.000000Z\",\"u\":\"123e4567-e89b-12d3-a456-426614174000\","
        "\"opt\":{\"x\":1,\"y\":\"\"},\"next\":null}"},
    {1, "{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[],\"tags\":{}},{\"v\":-3,\"kids\":[],"
        "\"tags\":{\"x\":null}}],\"tags\":{\"a\":null,\"b\":{\"v\":3,\"kids\":[],\"tags\":{}}}}"},
    {2, "null"},
    {2, "{\"boolean\":true}"},
    {2, "{\"double\":2.5}"},
    {2, "{\"double\":123456789012345678}"},
    {2, "{\"bytes\":\"\\u0001\\u00fe\"}"},
    {2, "{\"array\":[null,null,null]}"},
    {2, "{\"map\":{\"x\":[1.5,2.0,-0.25],\"y\":[]}}"},
};

/* jansson's compact text of the tree path's value, or NULL when it does not decode. */
static char *tree_text(const sk_avro_schema *s, const uint8_t *b, size_t len)
{
    char err[256];
    json_t *v = sk_avro_to_json(s, b, len, err, sizeof(err));
    if (!v)
        return NULL;
    char *text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(v);
    return text;
}

/* Both paths agree on b: same success, same text. Returns whether it decoded. */
static int agree(const sk_avro_schema *s, const uint8_t *b, size_t len)
{
    sk_jtext t = {0};
    sk_jtext_lit(&t, "prefix:");
    char *want = tree_text(s, b, len);
    int rc = sk_avro_text_direct(s, b, len, &t);
    assert_false(t.failed);
    if (!want) {
        if (rc == 0)
            fail_msg("direct writer accepted what the tree path refuses: %.*s", (int)t.len, t.buf);
        assert_int_equal(t.len, 7); /* declined: the text as it was */
    } else {
        if (rc != 0)
            fail_msg("direct writer declined a valid body (tree: %s)", want);
        if (t.len - 7 != strlen(want) || memcmp(t.buf + 7, want, t.len - 7) != 0)
            fail_msg("direct %.*s\n   tree %s", (int)(t.len - 7), t.buf + 7, want);
    }
    free(want);
    sk_jtext_free(&t);
    return want != NULL;
}

static uint8_t *encode(const sk_avro_schema *s, const char *json, size_t *len)
{
    json_error_t jerr;
    char err[256] = "";
    json_t *v = json_loads(json, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    if (!v)
        fail_msg("bad test JSON %s: %s", json, jerr.text);
    uint8_t *b = sk_avro_from_json(s, v, len, err, sizeof(err));
    if (!b)
        fail_msg("encode %s: %s", json, err);
    json_decref(v);
    return b;
}

static void test_same_text_for_every_type(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const sk_avro_schema *s = fuzz_avro_schema((uint8_t)values[i].schema);
        size_t len;
        uint8_t *b = encode(s, values[i].json, &len);
        assert_true(agree(s, b, len));
        free(b);
    }
}

/* NaN and the infinities cannot come from JSON: written by hand (schema 2, branch double). */
static void test_non_finite(void **state)
{
    (void)state;
    static const uint8_t bodies[][9] = {
        {4, 0, 0, 0, 0, 0, 0, 0xf8, 0x7f},
        {4, 0, 0, 0, 0, 0, 0, 0xf0, 0x7f},
        {4, 0, 0, 0, 0, 0, 0, 0xf0, 0xff},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        assert_true(agree(fuzz_avro_schema(2), bodies[i], sizeof bodies[i]));
}

static void test_mutations_agree(void **state)
{
    (void)state;
    static const uint8_t bytes[] = {0x00, 0x01, 0x02, 0x7f, 0x80, 0xff};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        const sk_avro_schema *s = fuzz_avro_schema((uint8_t)values[i].schema);
        size_t len;
        uint8_t *b = encode(s, values[i].json, &len);
        for (size_t cut = 0; cut < len; cut++)
            agree(s, b, cut);
        for (size_t at = 0; at < len; at++) {
            uint8_t was = b[at];
            for (size_t k = 0; k < sizeof bytes; k++) {
                b[at] = bytes[k];
                agree(s, b, len);
            }
            b[at] = was;
        }
        free(b);
    }
}

/* A map longer than the direct writer's key scan, and a duplicate key: sk_avro_to_jtext
 * falls back to the tree path, which gives the same text, or the same refusal. */
static void test_fallback(void **state)
{
    (void)state;
    const sk_avro_schema *s = fuzz_avro_schema(2);
    uint8_t b[1024];
    size_t n = 0;
    b[n++] = 10;                                             /* union branch 5: the map */
    b[n++] = 0x80 | (2 * (SK_AVRO_TEXT_MAX_MAP + 1) & 0x7f); /* zigzag varint of the count */
    b[n++] = 2 * (SK_AVRO_TEXT_MAX_MAP + 1) >> 7;
    for (int i = 0; i <= SK_AVRO_TEXT_MAX_MAP; i++) {
        b[n++] = 4; /* a key of 2 bytes */
        b[n++] = (uint8_t)('A' + i / 26);
        b[n++] = (uint8_t)('a' + i % 26);
        b[n++] = 0; /* an empty array */
    }
    b[n++] = 0;
    sk_jtext t = {0};
    assert_int_equal(sk_avro_text_direct(s, b, n, &t), -1);
    char err[256] = "";
    assert_int_equal(sk_avro_to_jtext(s, b, n, &t, err, sizeof(err)), 0);
    char *want = tree_text(s, b, n);
    assert_non_null(want);
    assert_int_equal(t.len, strlen(want));
    assert_memory_equal(t.buf, want, t.len);
    free(want);

    const uint8_t dup[] = {10, 4, 2, 'k', 0, 2, 'k', 0, 0};
    sk_jtext_reset(&t);
    assert_int_equal(sk_avro_to_jtext(s, dup, sizeof dup, &t, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "duplicate map key"));
    assert_int_equal(t.len, 0);
    sk_jtext_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_text_for_every_type),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_mutations_agree),
        cmocka_unit_test(test_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
