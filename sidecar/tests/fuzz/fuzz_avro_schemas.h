/* The schemas both Avro fuzz targets work against: every type and logical type, recursion,
 * general unions. */
#ifndef SK_FUZZ_AVRO_SCHEMAS_H
#define SK_FUZZ_AVRO_SCHEMAS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema/avro_json.h"

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

#define FUZZ_NSCHEMAS (sizeof schemas / sizeof schemas[0])

/* The schema the input's first byte picks, parsed once. */
static const sk_avro_schema *fuzz_avro_schema(uint8_t pick)
{
    static sk_avro_schema *parsed[FUZZ_NSCHEMAS];
    char err[256];
    if (!parsed[0])
        for (size_t i = 0; i < FUZZ_NSCHEMAS; i++)
            if (!(parsed[i] =
                      sk_avro_schema_parse(schemas[i], strlen(schemas[i]), err, sizeof(err))))
                abort();
    return parsed[pick % FUZZ_NSCHEMAS];
}

#endif
