/* Small text helpers shared by the parsers and encoders. */
#ifndef SK_TEXT_H
#define SK_TEXT_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 when it is not one (overlong
 * forms, surrogates and code points above U+10FFFF are not well-formed). n >= 1. */
size_t sk_utf8_len(const unsigned char *s, size_t n);
/* A malloc'ed NUL-terminated copy of the len bytes at s in which each NUL byte is U+FFFD (for
 * text that goes on as a C string). NULL when out of memory. */
char *sk_text_replace_nul(const char *s, size_t len);
/* The number of ASCII bytes (below 0x80) s[0..n) starts with, read 8 at a time. */
size_t sk_ascii_prefix(const void *s, size_t n);
/* The number of bytes s[0..n) starts with that a JSON string takes as they are (not '"', '\\'
 * nor a control character below 0x20), read 8 at a time. */
size_t sk_json_plain_prefix(const void *s, size_t n);
/* Whether the n bytes at s are well-formed UTF-8 (NUL bytes included); s may be NULL when n
 * is 0. */
int sk_utf8_valid(const void *s, size_t n);
/* Value of a hexadecimal digit, -1 when c is not one. */
int sk_hexval(char c);

#endif
