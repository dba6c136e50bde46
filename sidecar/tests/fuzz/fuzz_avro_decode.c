/* libFuzzer target: arbitrary bytes decoded as Avro against fixed schemas that cover every type
 * and logical type (first byte picks the schema). A decoded value that re-encodes must decode
 * back to an equal value. */
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
    json_t *v = sk_avro_to_json(sch, data + 1, size - 1, err, sizeof(err));
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
