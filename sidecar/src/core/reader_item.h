/* One kafka.reader_schemas item, the schema a topic's handlers expect:
 *
 *   <topic>=file:<path>                   an Avro schema file, read at start
 *   <topic>=subject:<subject>:<version>   a version of a Schema Registry subject
 *
 * The version is a number (1 to 2147483647) after the last colon, so a subject may contain
 * colons. "latest" (or -1) is refused: a reader schema is the handlers' contract, pinned to the
 * version they are written for; "latest" would hand them a producer's newer shape at the next
 * restart of any pod (ADR 0017). Pure parsing, no I/O; any thread. */
#ifndef SK_READER_ITEM_H
#define SK_READER_ITEM_H

#include <stddef.h>
#include <stdint.h>

#define SK_READER_MAX_SUBJECT 1024 /* bytes of a subject name, as the registry client takes */

typedef enum { SK_READER_FILE, SK_READER_SUBJECT } sk_reader_kind;

/* The parts point into the item (not NUL-terminated except path, which ends the item). */
typedef struct sk_reader_item {
    sk_reader_kind kind;
    const char *topic;
    size_t topic_len;
    const char *path; /* SK_READER_FILE */
    const char *subject;
    size_t subject_len; /* SK_READER_SUBJECT */
    int32_t version;    /* SK_READER_SUBJECT */
} sk_reader_item;

/* 0 with *out filled, or -1 with err saying what is expected (the item is not repeated). */
int sk_reader_item_parse(const char *item, sk_reader_item *out, char *err, size_t errlen);

#endif
