/* A growable buffer of JSON text, written member by member: the hot paths build their frames
 * as text (no jansson tree, no allocation once the buffer has grown to the frames' size). */
#ifndef SK_JTEXT_H
#define SK_JTEXT_H

#include <stddef.h>
#include <stdint.h>
#include <jansson.h>

typedef struct sk_jtext {
    char *buf;
    size_t len, cap;
    int failed; /* out of memory (or a value jansson could not encode): the text is invalid */
} sk_jtext;

/* Empties the buffer (keeps its memory). */
void sk_jtext_reset(sk_jtext *t);
void sk_jtext_free(sk_jtext *t);
/* Appends n bytes as they are (JSON text the caller vouches for). */
void sk_jtext_raw(sk_jtext *t, const char *s, size_t n);
/* Appends a string literal (NUL-terminated, ASCII JSON text). */
void sk_jtext_lit(sk_jtext *t, const char *s);
/* Appends n bytes of UTF-8 as a quoted JSON string. Returns -1 (appending nothing) when they
 * are not well-formed UTF-8. */
int sk_jtext_str(sk_jtext *t, const void *s, size_t n);
/* Appends n bytes as a quoted base64 string (RFC 4648, padded). */
void sk_jtext_base64(sk_jtext *t, const void *s, size_t n);
void sk_jtext_int(sk_jtext *t, int64_t v);
/* Appends v in jansson's compact encoding. */
void sk_jtext_json(sk_jtext *t, const json_t *v);

#endif
