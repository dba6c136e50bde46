/* libFuzzer target: the downward API annotations parser. Line numbers must grow, every
 * malformed line must be reported with a reason, and the count returned must match. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/annotations.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t pairs, errors, last_line;
} counts;

static void on_pair(void *ud, int line, const char *key, const char *value)
{
    counts *c = ud;
    /* Key and value are NUL-terminated strings valid for the call. */
    c->pairs += strlen(key) + strlen(value) > 0;
    if (line <= 0 || (size_t)line < c->last_line)
        __builtin_trap();
    c->last_line = (size_t)line;
}

static void on_error(void *ud, int line, const char *why)
{
    counts *c = ud;
    if (line <= 0 || !why || !*why)
        __builtin_trap();
    c->errors++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    counts c = {0};
    int bad = sk_annotations_parse_lines((const char *)data, size, on_pair, on_error, &c);
    if (bad < 0 || (size_t)bad != c.errors)
        __builtin_trap();
    return 0;
}
