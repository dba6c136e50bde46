/* libFuzzer target of the C SDK's frame reader: any bytes, split as a session would read them,
 * never crash it, and every frame it accepts is an object with a string type. */
#include "skiff_handler.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        json_t *f = NULL;
        size_t used = 0;
        skh_error err;
        int rc = skh_frame_parse(data + off, size - off, 4096, &f, &used, &err);
        if (rc == 1 && !json_is_string(json_object_get(f, "type")))
            abort();
        json_decref(f);
        if (rc <= 0 && rc != -2)
            break;
        off += used;
    }
    return 0;
}
