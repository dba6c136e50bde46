/* libFuzzer target: arbitrary bytes decoded as Avro against fixed schemas that cover every type
 * and logical type (first byte picks the schema). A decoded value that re-encodes must decode
 * back to an equal value. The tree-less text writer (avro_text.c) must agree with the tree:
 * it writes only what the tree path accepts, byte for byte jansson's compact text of it. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_avro_schemas.h"
#include "schema/avro_text.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The direct writer agrees with the tree path's value v (NULL: refused). */
static void check_text(const sk_avro_schema *sch, const uint8_t *b, size_t len, const json_t *v)
{
    sk_jtext t = {0};
    int direct = sk_avro_text_direct(sch, b, len, &t) == 0;
    if (direct && !v) /* wrote what the tree refuses */
        abort();
    if (v && !direct) { /* declined (a long map): the fallback gives the tree's text */
        char err[256];
        if (sk_avro_to_jtext(sch, b, len, &t, err, sizeof(err)) != 0)
            abort();
    }
    if (v) {
        char *want = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!want || t.failed || t.len != strlen(want) || memcmp(t.buf, want, t.len) != 0)
            abort();
        free(want);
    }
    sk_jtext_free(&t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (size < 1)
        return 0;
    const sk_avro_schema *sch = fuzz_avro_schema(data[0]);
    json_t *v = sk_avro_to_json(sch, data + 1, size - 1, err, sizeof(err));
    check_text(sch, data + 1, size - 1, v);
    if (!v)
        return 0;
    size_t len;
    uint8_t *b = sk_avro_from_json(sch, v, &len, err, sizeof(err));
    if (b) {
        json_t *back = sk_avro_to_json(sch, b, len, err, sizeof(err));
        if (!back || !json_equal(back, v))
            abort();
        json_decref(back);
        free(b);
    }
    json_decref(v);
    return 0;
}
