/* kafka.reader_schemas items (see reader_item.h). */
#include "core/reader_item.h"

#include <stdio.h>
#include <string.h>

#define EXPECTED "expected <topic>=file:<path> or <topic>=subject:<subject>:<version>"

/* A version number: decimal digits only, 1 to INT32_MAX. */
static int parse_version(const char *s, int32_t *out)
{
    int64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || (v = v * 10 + (*s - '0')) > INT32_MAX)
            return -1;
    }
    if (v < 1)
        return -1;
    *out = (int32_t)v;
    return 0;
}

static int parse_subject(const char *rest, sk_reader_item *out, char *err, size_t errlen)
{
    const char *colon = strrchr(rest, ':');
    if (!colon || colon == rest) {
        snprintf(err, errlen, "no subject or no version: %s", EXPECTED);
        return -1;
    }
    const char *v = colon + 1;
    if (strcmp(v, "latest") == 0 || strcmp(v, "-1") == 0) {
        snprintf(err, errlen,
                 "version \"%s\" is refused: a reader schema names the version its handlers are "
                 "written for (a number), so that a newly registered version never changes what "
                 "they get",
                 v);
        return -1;
    }
    if (parse_version(v, &out->version) != 0) {
        snprintf(err, errlen, "version \"%.20s\" is not a number from 1 to 2147483647: %s", v,
                 EXPECTED);
        return -1;
    }
    out->subject = rest;
    out->subject_len = (size_t)(colon - rest);
    if (out->subject_len > SK_READER_MAX_SUBJECT) {
        snprintf(err, errlen, "subject longer than %d bytes", SK_READER_MAX_SUBJECT);
        return -1;
    }
    out->kind = SK_READER_SUBJECT;
    return 0;
}

int sk_reader_item_parse(const char *item, sk_reader_item *out, char *err, size_t errlen)
{
    const char *eq = strchr(item, '=');
    memset(out, 0, sizeof *out);
    if (!eq || eq == item) {
        snprintf(err, errlen, "no topic: %s", EXPECTED);
        return -1;
    }
    out->topic = item;
    out->topic_len = (size_t)(eq - item);
    if (strncmp(eq + 1, "file:", 5) == 0) {
        out->kind = SK_READER_FILE;
        out->path = eq + 6;
        if (*out->path)
            return 0;
        snprintf(err, errlen, "no path: %s", EXPECTED);
        return -1;
    }
    if (strncmp(eq + 1, "subject:", 8) == 0)
        return parse_subject(eq + 9, out, err, errlen);
    snprintf(err, errlen, "%s", EXPECTED);
    return -1;
}
