/* Value conversions for the Avro codec: UTF-8 checks, bytes <-> JSON strings, decimals, dates
 * and timestamps (proleptic Gregorian), uuid text. No reader or writer state. */
#include "schema/avro_internal.h"

#include <stdlib.h>
#include <string.h>

#include "core/text.h"

/* ---- text helpers ------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (code point in *cp), 0 when invalid. */
static size_t utf8_next(const uint8_t *s, size_t n, uint32_t *cp)
{
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    size_t len = s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc0 ? 2 : 0;
    if (len == 0 || len > n || s[0] > 0xf4)
        return 0;
    uint32_t c = s[0] & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = c << 6 | (s[i] & 0x3f);
    }
    static const uint32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return len;
}

int sk_avro_utf8_valid(const uint8_t *s, size_t n)
{
    uint32_t cp;
    size_t i = n ? sk_ascii_prefix(s, n) : 0; /* ASCII runs 8 bytes at a time */
    while (i < n) {
        size_t k = utf8_next(s + i, n - i, &cp);
        if (!k)
            return 0;
        i += k;
        i += sk_ascii_prefix(s + i, n - i);
    }
    return 1;
}

/* bytes -> JSON string of code points U+0000..U+00FF. */
json_t *sk_avro_bytes_to_json(const uint8_t *b, size_t n)
{
    char *s = malloc(2 * n + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (b[i] < 0x80) {
            s[o++] = (char)b[i];
        } else {
            s[o++] = (char)(0xc0 | b[i] >> 6);
            s[o++] = (char)(0x80 | (b[i] & 0x3f));
        }
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

/* JSON string of code points <= U+00FF -> bytes (malloc'ed, *n). NULL when a code point is
 * above U+00FF (*bad set) or on allocation failure. */
uint8_t *sk_avro_json_to_bytes(const json_t *j, size_t *n, int *bad)
{
    const uint8_t *s = (const uint8_t *)json_string_value(j);
    size_t len = json_string_length(j);
    uint8_t *b = malloc(len + 1);
    *bad = 0;
    *n = 0;
    if (!b)
        return NULL;
    uint32_t cp;
    for (size_t i = 0, k; i < len; i += k) {
        k = utf8_next(s + i, len - i, &cp);
        if (!k || cp > 0xff) {
            *bad = 1;
            free(b);
            return NULL;
        }
        b[(*n)++] = (uint8_t)cp;
    }
    return b;
}

int sk_avro_uuid_valid(const char *s, size_t n)
{
    if (n != 36)
        return 0;
    for (size_t i = 0; i < 36; i++) {
        int hyphen = i == 8 || i == 13 || i == 18 || i == 23;
        if (hyphen ? s[i] != '-' : !strchr("0123456789abcdefABCDEF", s[i]) || !s[i])
            return 0;
    }
    return 1;
}

/* ---- decimal: two's-complement big-endian unscaled integer <-> "123.45" ------------------ */

/* Decimal text of the unscaled value in b[0..n) with `scale` fraction digits. */
json_t *sk_avro_decimal_to_json(const uint8_t *b, size_t n, int scale)
{
    char out[SK_AVRO_DECIMAL_TEXT_MAX];
    size_t o = sk_avro_decimal_text(b, n, scale, out);
    return json_stringn(out, o);
}

size_t sk_avro_decimal_text(const uint8_t *b, size_t n, int scale,
                            char out[SK_AVRO_DECIMAL_TEXT_MAX])
{
    uint8_t mag[DEC_MAX_BYTES];
    char dig[DEC_MAX_BYTES * 3 + 8];
    int neg = n > 0 && (b[0] & 0x80);
    memcpy(mag, b, n);
    if (neg) { /* magnitude = ~x + 1 */
        unsigned carry = 1;
        for (size_t i = n; i-- > 0;) {
            unsigned v = (uint8_t)~mag[i] + carry;
            mag[i] = (uint8_t)v;
            carry = v >> 8;
        }
    }
    size_t nd = 0, start = 0;
    while (start < n && mag[start] == 0)
        start++;
    while (start < n) { /* repeated division by 10; digits come out least significant first */
        unsigned rem = 0;
        for (size_t i = start; i < n; i++) {
            unsigned v = rem << 8 | mag[i];
            mag[i] = (uint8_t)(v / 10);
            rem = v % 10;
        }
        dig[nd++] = (char)('0' + rem);
        while (start < n && mag[start] == 0)
            start++;
    }
    while (nd <= (size_t)scale)
        dig[nd++] = '0';
    size_t o = 0;
    if (neg)
        out[o++] = '-';
    for (size_t i = nd; i-- > 0;) {
        out[o++] = dig[i];
        if (i == (size_t)scale && scale > 0)
            out[o++] = '.';
    }
    return o;
}

/* Parses "[-]digits[.digits]" into unscaled digits (no leading zeros, "" for 0); -1 + msg. */
int sk_avro_decimal_digits(const char *s, int scale, int precision, char *dig, size_t cap, int *neg,
                           const char **msg)
{
    *neg = *s == '-';
    s += *s == '-' || *s == '+';
    size_t nd = 0, frac = 0;
    int seen_dot = 0, any = 0;
    for (; *s; s++) {
        if (*s == '.' && !seen_dot && any) {
            seen_dot = 1;
            continue;
        }
        if (*s < '0' || *s > '9' || nd + 1 >= cap)
            return *msg = "invalid decimal", -1;
        any = 1;
        frac += seen_dot;
        if (nd > 0 || *s != '0')
            dig[nd++] = *s;
    }
    if (!any || (seen_dot && s[-1] == '.'))
        return *msg = "invalid decimal", -1;
    if (frac > (size_t)scale)
        return *msg = "more fraction digits than the schema's scale", -1;
    for (; frac < (size_t)scale && nd > 0; frac++) {
        if (nd + 1 >= cap)
            return *msg = "invalid decimal", -1;
        dig[nd++] = '0';
    }
    if (nd > (size_t)precision)
        return *msg = "more digits than the schema's precision", -1;
    dig[nd] = '\0';
    return 0;
}

/* ---- dates and timestamps (proleptic Gregorian, years 0001..9999) ------------------------ */

#define DAY_MIN (-719162LL) /* 0001-01-01 */
#define DAY_MAX 2932896LL   /* 9999-12-31 */

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* n >= 0 as exactly w digits at p (w <= 9: a larger n keeps its low digits); returns the end. */
static char *put_digits(char *p, int64_t n, int w)
{
    for (int i = w; i-- > 0; n /= 10)
        p[i] = (char)('0' + n % 10);
    return p + w;
}

size_t sk_avro_date_text(int64_t days, char out[16])
{
    if (days < DAY_MIN || days > DAY_MAX)
        return 0;
    int y;
    unsigned m, d;
    civil_from_days(days, &y, &m, &d);
    char *p = put_digits(out, y, 4);
    *p++ = '-';
    p = put_digits(p, m, 2);
    *p++ = '-';
    p = put_digits(p, d, 2);
    return (size_t)(p - out);
}

json_t *sk_avro_date_to_json(int64_t days)
{
    char s[16];
    size_t n = sk_avro_date_text(days, s);
    return n ? json_stringn(s, n) : NULL;
}

/* Written without printf: a timestamp field is formatted for every record. */
size_t sk_avro_timestamp_text(int64_t v, int64_t unit, int digits, char out[40])
{
    int64_t secs = floor_div(v, unit), frac = v - secs * unit;
    int64_t days = floor_div(secs, 86400), sod = secs - days * 86400;
    if (days < DAY_MIN || days > DAY_MAX || digits < 0 || digits > 9)
        return 0;
    char *p = out + sk_avro_date_text(days, out);
    *p++ = 'T';
    p = put_digits(p, sod / 3600, 2);
    *p++ = ':';
    p = put_digits(p, sod / 60 % 60, 2);
    *p++ = ':';
    p = put_digits(p, sod % 60, 2);
    *p++ = '.';
    p = put_digits(p, frac, digits);
    *p++ = 'Z';
    return (size_t)(p - out);
}

json_t *sk_avro_timestamp_to_json(int64_t v, int64_t unit, int digits)
{
    char s[40];
    size_t n = sk_avro_timestamp_text(v, unit, digits, s);
    return n ? json_stringn(s, n) : NULL;
}

static int digits_at(const char *s, int n, int *out)
{
    *out = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        *out = *out * 10 + (s[i] - '0');
    }
    return 0;
}

/* "YYYY-MM-DD" -> days since the epoch; -1 when invalid. */
int sk_avro_parse_date(const char *s, int64_t *days)
{
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int y, m, d;
    if (digits_at(s, 4, &y) < 0 || s[4] != '-' || digits_at(s + 5, 2, &m) < 0 || s[7] != '-' ||
        digits_at(s + 8, 2, &d) < 0 || y < 1 || m < 1 || m > 12 || d < 1 ||
        (unsigned)d > mdays[m - 1])
        return -1;
    int leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (m == 2 && d == 29 && !leap)
        return -1;
    *days = days_from_civil(y, (unsigned)m, (unsigned)d);
    return 0;
}

/* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.f](Z|+hh:mm|-hh:mm)" -> units since the epoch (UTC). */
int sk_avro_parse_timestamp(const char *s, int64_t unit, int digits, int64_t *out)
{
    int64_t days;
    int hh, mi, ss;
    if (sk_avro_parse_date(s, &days) < 0 || (s[10] != 'T' && s[10] != 't') ||
        digits_at(s + 11, 2, &hh) < 0 || s[13] != ':' || digits_at(s + 14, 2, &mi) < 0 ||
        s[16] != ':' || digits_at(s + 17, 2, &ss) < 0 || hh > 23 || mi > 59 || ss > 59)
        return -1;
    s += 19;
    int64_t frac = 0;
    int nf = 0;
    if (*s == '.') {
        for (s++; *s >= '0' && *s <= '9'; s++, nf++)
            frac = nf < digits ? frac * 10 + (*s - '0') : frac;
        if (nf == 0 || nf > digits)
            return -1;
        for (int i = nf; i < digits; i++)
            frac *= 10;
    }
    int64_t off = 0;
    if (*s == '+' || *s == '-') {
        int oh, om;
        if (digits_at(s + 1, 2, &oh) < 0 || s[3] != ':' || digits_at(s + 4, 2, &om) < 0 ||
            oh > 23 || om > 59 || s[6])
            return -1;
        off = (*s == '-' ? -1 : 1) * (oh * 3600 + om * 60);
    } else if ((*s != 'Z' && *s != 'z') || s[1]) {
        return -1;
    }
    *out = ((days * 86400 + hh * 3600 + mi * 60 + ss) - off) * unit + frac;
    return 0;
}
