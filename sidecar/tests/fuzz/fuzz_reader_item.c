/* libFuzzer target: the kafka.reader_schemas item parser. Spans must lie inside the input, a
 * subject item must have a topic, a subject of at most SK_READER_MAX_SUBJECT bytes and a version
 * from 1 up, a file item a non-empty path ending the input, and a refusal must say why. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/reader_item.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const char *text, size_t n, const char *p, size_t len)
{
    if (p && (p < text || p + len > text + n))
        __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    size_t n = strlen(text);
    sk_reader_item ri;
    char err[400] = "";
    if (sk_reader_item_parse(text, &ri, err, sizeof err) == 0) {
        inside(text, n, ri.topic, ri.topic_len);
        inside(text, n, ri.subject, ri.subject_len);
        if (!ri.topic_len || ri.topic[ri.topic_len] != '=')
            __builtin_trap();
        if (ri.kind == SK_READER_SUBJECT &&
            (!ri.subject_len || ri.subject_len > SK_READER_MAX_SUBJECT || ri.version < 1 ||
             ri.subject[ri.subject_len] != ':'))
            __builtin_trap();
        if (ri.kind == SK_READER_FILE &&
            (!ri.path || !*ri.path || ri.path + strlen(ri.path) != text + n))
            __builtin_trap();
    } else if (!err[0]) {
        __builtin_trap();
    }
    free(text);
    return 0;
}
