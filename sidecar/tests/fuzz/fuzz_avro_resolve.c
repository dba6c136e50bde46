/* libFuzzer target: schema resolution. Input: writer schema JSON, NUL, reader schema JSON, NUL,
 * an Avro body. The plan builder runs on every pair of schemas that parse, the resolving decoder
 * on the body. A schema resolved against itself must decode exactly as the plain decoder does
 * (same value, or both refuse). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "schema/avro_resolve.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__lsan_default_suppressions(void);

/* avro-c 1.11.1 leaks parts of some schemas it refuses (a fixed or record named twice...):
 * its leaks are not ours. Allocations made by our compiler and resolver are still checked. */
const char *__lsan_default_suppressions(void)
{
    return "leak:libavro.so\n";
}

/* The next NUL-terminated piece of data (length in *n), or NULL when there is none. */
static const char *piece(const uint8_t **data, size_t *size, size_t *n)
{
    const uint8_t *end = memchr(*data, 0, *size);
    if (!end)
        return NULL;
    const char *p = (const char *)*data;
    *n = (size_t)(end - *data);
    *size -= *n + 1;
    *data = end + 1;
    return p;
}

static void identity(const sk_avro_schema *s, const uint8_t *body, size_t len)
{
    char err[256];
    sk_avro_plan *p = sk_avro_plan_new(s, s, err, sizeof err);
    if (!p)
        abort(); /* a schema always resolves against itself */
    int incompat;
    json_t *a = sk_avro_resolve(p, body, len, &incompat, err, sizeof err);
    json_t *b = sk_avro_to_json(s, body, len, err, sizeof err);
    if (!a != !b || (a && !json_equal(a, b)) || (!a && incompat))
        abort();
    json_decref(a);
    json_decref(b);
    sk_avro_plan_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t wn, rn;
    const char *wt = piece(&data, &size, &wn);
    const char *rt = wt ? piece(&data, &size, &rn) : NULL;
    if (!rt)
        return 0;
    char err[256];
    sk_avro_schema *w = sk_avro_schema_parse(wt, wn, err, sizeof err);
    sk_avro_schema *r = w ? sk_avro_schema_parse(rt, rn, err, sizeof err) : NULL;
    if (w && r) {
        sk_avro_plan *p = sk_avro_plan_new(w, r, err, sizeof err);
        int incompat;
        json_t *v = p ? sk_avro_resolve(p, data, size, &incompat, err, sizeof err) : NULL;
        json_decref(v);
        sk_avro_plan_free(p);
        identity(w, data, size);
    }
    sk_avro_schema_free(w);
    sk_avro_schema_free(r);
    return 0;
}
