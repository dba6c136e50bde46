#include "core/text.h"

#include <stdlib.h>
#include <stdint.h>
#include <string.h>

size_t sk_utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    if (len == 0 || s[0] > 0xf4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (len == 3 && ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0)))
        return 0;
    if (len == 4 && ((s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] >= 0x90)))
        return 0;
    return len;
}

int sk_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *sk_text_replace_nul(const char *s, size_t len)
{
    size_t nuls = 0, o = 0;
    for (size_t i = 0; i < len; i++)
        nuls += s[i] == '\0';
    char *out = malloc(len + 2 * nuls + 1);
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i++) {
        if (s[i]) {
            out[o++] = s[i];
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
        }
    }
    out[o] = '\0';
    return out;
}

size_t sk_ascii_prefix(const void *s, size_t n)
{
    const unsigned char *p = s;
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        if (w & 0x8080808080808080u)
            break;
    }
    while (i < n && p[i] < 0x80)
        i++;
    return i;
}

/* A word is plain when none of its bytes is below 0x20, '"' or '\\': the classic tests for a
 * zero byte ((v - 0x01..) & ~v & 0x80..) on w - 0x20.., w ^ '"'.. and w ^ '\\'..; exact as a
 * yes/no per word, which is all that is asked (a word that is not plain goes byte by byte). */
size_t sk_json_plain_prefix(const void *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    const unsigned char *p = s;
    size_t i = 0;
    for (uint64_t w; i + 8 <= n; i += 8) {
        memcpy(&w, p + i, 8);
        uint64_t q = w ^ (ones * '"'), b = w ^ (ones * '\\');
        if ((((w - ones * 0x20) & ~w) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs)
            break;
    }
    while (i < n && p[i] >= 0x20 && p[i] != '"' && p[i] != '\\')
        i++;
    return i;
}

/* Runs of ASCII are skipped 8 bytes at a time: most text is ASCII, and a call per byte was
 * most of a Kafka record's UTF-8 checks. */
int sk_utf8_valid(const void *s, size_t n)
{
    const unsigned char *p = s;
    size_t i = n ? sk_ascii_prefix(p, n) : 0;
    while (i < n) {
        size_t k = sk_utf8_len(p + i, n - i);
        if (!k)
            return 0;
        i += k;
        i += sk_ascii_prefix(p + i, n - i);
    }
    return 1;
}
