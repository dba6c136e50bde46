/* libFuzzer target: arbitrary JSON text encoded as Avro against fixed schemas covering every
 * type (first byte picks the schema). Whatever encodes must decode, and the decoded value
 * (defaults filled in, unions presented plainly) must re-encode to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_avro_schemas.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    if (size < 1)
        return 0;
    const sk_avro_schema *sch = fuzz_avro_schema(data[0]);
    json_t *v =
        json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (!v)
        return 0;
    size_t len, len2;
    uint8_t *b = sk_avro_from_json(sch, v, &len, err, sizeof(err));
    if (b) {
        json_t *back = sk_avro_to_json(sch, b, len, err, sizeof(err));
        if (!back)
            abort();
        uint8_t *b2 = sk_avro_from_json(sch, back, &len2, err, sizeof(err));
        if (!b2 || len2 != len || memcmp(b, b2, len) != 0)
            abort();
        free(b2);
        json_decref(back);
        free(b);
    }
    json_decref(v);
    return 0;
}
