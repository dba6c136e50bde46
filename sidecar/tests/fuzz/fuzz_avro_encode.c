/* libFuzzer target: arbitrary JSON text encoded as Avro against fixed schemas covering every
 * type (first byte picks the schema). Whatever encodes must decode, and the decoded value
 * (defaults filled in, unions presented plainly) must re-encode to the same bytes. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kafka/avro_json.h"

static const char *const schemas[] = {
    ("{\"type\":\"record\",\"name\":\"All\",\"namespace\":\"f\",\"fields\":["
     "{\"name\":\"n\",\"type\":\"null\"},{\"name\":\"b\",\"type\":\"boolean\"},"
     "{\"name\":\"i\",\"type\":\"int\"},{\"name\":\"l\",\"type\":\"long\"},"
     "{\"name\":\"f\",\"type\":\"float\"},{\"name\":\"d\",\"type\":\"double\"},"
     "{\"name\":\"s\",\"type\":\"string\"},{\"name\":\"by\",\"type\":\"bytes\"},"
     "{\"name\":\"fx\",\"type\":{\"type\":\"fixed\",\"name\":\"F4\",\"size\":4}},"
     "{\"name\":\"e\",\"type\":{\"type\":\"enum\",\"name\":\"E\",\"symbols\":[\"A\",\"B\",\"C\"]}},"
     "{\"name\":\"a\",\"type\":{\"type\":\"array\",\"items\":\"int\"}},"
     "{\"name\":\"m\",\"type\":{\"type\":\"map\",\"values\":\"string\"}},"
     "{\"name\":\"ou\",\"type\":[\"null\",\"string\"]},{\"name\":\"uo\",\"type\":[\"long\","
     "\"null\"]"
     "},"
     "{\"name\":\"gu\",\"type\":[\"null\",\"int\",\"string\",\"F4\",\"E\"],\"default\":null},"
     "{\"name\":\"dec\",\"type\":{\"type\":\"bytes\",\"logicalType\":\"decimal\",\"precision\":20,"
     "\"scale\":3}},"
     "{\"name\":\"decf\",\"type\":{\"type\":\"fixed\",\"name\":\"D8\",\"size\":8,"
     "\"logicalType\":\"decimal\",\"precision\":18,\"scale\":4}},"
     "{\"name\":\"dt\",\"type\":{\"type\":\"int\",\"logicalType\":\"date\"}},"
     "{\"name\":\"tsm\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-millis\"}},"
     "{\"name\":\"tsu\",\"type\":{\"type\":\"long\",\"logicalType\":\"timestamp-micros\"}},"
     "{\"name\":\"u\",\"type\":{\"type\":\"string\",\"logicalType\":\"uuid\"}},"
     "{\"name\":\"opt\",\"type\":{\"type\":\"record\",\"name\":\"O\",\"fields\":["
     "{\"name\":\"x\",\"type\":\"int\",\"default\":7},"
     "{\"name\":\"y\",\"type\":[\"string\",\"null\"],\"default\":\"z\"}]},\"default\":{}},"
     "{\"name\":\"next\",\"type\":[\"null\",\"All\"],\"default\":null}]}"),
    ("{\"type\":\"record\",\"name\":\"T\",\"fields\":[{\"name\":\"v\",\"type\":\"int\"},"
     "{\"name\":\"kids\",\"type\":{\"type\":\"array\",\"items\":\"T\"}},"
     "{\"name\":\"tags\",\"type\":{\"type\":\"map\",\"values\":[\"null\",\"T\"]}}]}"),
    ("[\"null\",\"boolean\",\"double\",\"bytes\",{\"type\":\"array\",\"items\":\"null\"},"
     "{\"type\":\"map\",\"values\":{\"type\":\"array\",\"items\":\"float\"}}]"),
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static sk_avro_schema *s[3];
    char err[256];
    if (!s[0])
        for (int i = 0; i < 3; i++)
            if (!(s[i] = sk_avro_schema_parse(schemas[i], strlen(schemas[i]), err, sizeof(err))))
                abort();
    if (size < 1)
        return 0;
    const sk_avro_schema *sch = s[data[0] % 3];
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
