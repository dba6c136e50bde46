#include "trace/context.h"

#include <string.h>
#include <time.h>

#include <openssl/rand.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1; /* upper case is invalid in traceparent */
}

/* n bytes from 2n lowercase hex digits; -1 on any other character. */
static int unhex(const char *s, uint8_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}

int sk_trace_id_zero(const uint8_t *id, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (id[i])
            return 0;
    return 1;
}

int sk_traceparent_parse(const char *s, size_t len, sk_trace_ctx *ctx)
{
    uint8_t version, trace_id[16], span_id[8], flags;
    if (!s || len < SK_TRACEPARENT_LEN || unhex(s, &version, 1) || version == 0xff)
        return -1;
    if (len != SK_TRACEPARENT_LEN && (version == 0 || s[SK_TRACEPARENT_LEN] != '-'))
        return -1;
    if (s[2] != '-' || s[35] != '-' || s[52] != '-')
        return -1;
    if (unhex(s + 3, trace_id, 16) || unhex(s + 36, span_id, 8) || unhex(s + 53, &flags, 1))
        return -1;
    if (sk_trace_id_zero(trace_id, 16) || sk_trace_id_zero(span_id, 8))
        return -1;
    memcpy(ctx->trace_id, trace_id, 16);
    memcpy(ctx->span_id, span_id, 8);
    ctx->flags = flags;
    return 0;
}

void sk_trace_hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sk_traceparent_format(const uint8_t trace_id[16], const uint8_t span_id[8], uint8_t flags,
                           char out[SK_TRACEPARENT_LEN + 1])
{
    memcpy(out, "00-", 3);
    sk_trace_hex(trace_id, 16, out + 3);
    out[35] = '-';
    sk_trace_hex(span_id, 8, out + 36);
    out[52] = '-';
    sk_trace_hex(&flags, 1, out + 53);
}

static int is_lcalpha(char c)
{
    return c >= 'a' && c <= 'z';
}
static int is_digit(char c)
{
    return c >= '0' && c <= '9';
}
static int key_char(char c)
{
    return is_lcalpha(c) || is_digit(c) || c == '_' || c == '-' || c == '*' || c == '/';
}

/* key = simple-key / tenant-id "@" system-id; simple-key: lcalpha 0*255 key chars;
 * tenant-id: (lcalpha / digit) 0*240 key chars; system-id: lcalpha 0*13 key chars. */
static int key_valid(const char *k, size_t n)
{
    const char *at = memchr(k, '@', n);
    size_t first = at ? (size_t)(at - k) : n;
    if (first == 0 || !(is_lcalpha(k[0]) || (at && is_digit(k[0]))))
        return 0;
    if (first > (at ? 241u : 256u))
        return 0;
    for (size_t i = 1; i < first; i++)
        if (!key_char(k[i]))
            return 0;
    if (!at)
        return 1;
    size_t sys = n - first - 1;
    if (sys == 0 || sys > 14 || !is_lcalpha(at[1]))
        return 0;
    for (size_t i = 2; i <= sys; i++)
        if (!key_char(at[i]))
            return 0;
    return 1;
}

/* value: 0*255 chr nblk-chr; chr = %x20 / nblk-chr; nblk-chr = %x21-2B / %x2D-3C / %x3E-7E */
static int value_valid(const char *v, size_t n)
{
    if (n == 0 || n > 256 || v[n - 1] == ' ')
        return 0;
    for (size_t i = 0; i < n; i++)
        if (v[i] < 0x20 || v[i] > 0x7e || v[i] == ',' || v[i] == '=')
            return 0;
    return 1;
}

static int member_valid(const char *m, size_t n, const char **keys, size_t *klen, size_t *nkeys)
{
    while (n && (*m == ' ' || *m == '\t'))
        m++, n--;
    while (n && (m[n - 1] == ' ' || m[n - 1] == '\t'))
        n--;
    if (n == 0)
        return 1;
    const char *eq = memchr(m, '=', n);
    if (!eq || !key_valid(m, (size_t)(eq - m)) || !value_valid(eq + 1, n - (size_t)(eq - m) - 1))
        return 0;
    size_t kl = (size_t)(eq - m);
    for (size_t i = 0; i < *nkeys; i++)
        if (klen[i] == kl && memcmp(keys[i], m, kl) == 0)
            return 0;
    if (*nkeys == 32)
        return 0;
    keys[*nkeys] = m;
    klen[(*nkeys)++] = kl;
    return 1;
}

int sk_tracestate_valid(const char *s, size_t len)
{
    const char *keys[32];
    size_t klen[32], nkeys = 0;
    if (!s || len > SK_TRACESTATE_MAX)
        return -1;
    for (;;) {
        const char *comma = memchr(s, ',', len);
        size_t n = comma ? (size_t)(comma - s) : len;
        if (!member_valid(s, n, keys, klen, &nkeys))
            return -1;
        if (!comma)
            break;
        s = comma + 1;
        len -= n + 1;
    }
    return 0;
}

/* splitmix64 over a counter and the clock: used only if OpenSSL's generator fails. */
static uint64_t fallback_random(void)
{
    static uint64_t state;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t z = (state += 0x9e3779b97f4a7c15ull) ^ (uint64_t)ts.tv_nsec;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* Ids come from xoshiro256++, seeded once per thread from OpenSSL's generator: W3C trace
 * context asks for random, unique ids, not secret ones, and one RAND_bytes call per id was
 * 14 % of skiff's CPU per Kafka record (two ids per task). skiff never forks, so no two
 * processes share a seeded state. */
static _Thread_local uint64_t rng[4];
static _Thread_local int rng_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t next_random(void)
{
    if (!rng_seeded) {
        if (RAND_bytes((unsigned char *)rng, (int)sizeof(rng)) != 1 ||
            sk_trace_id_zero((const uint8_t *)rng, sizeof(rng)))
            for (size_t i = 0; i < 4; i++)
                rng[i] = fallback_random();
        rng_seeded = 1;
    }
    uint64_t out = rotl(rng[0] + rng[3], 23) + rng[0], t = rng[1] << 17;
    rng[2] ^= rng[0];
    rng[3] ^= rng[1];
    rng[1] ^= rng[2];
    rng[0] ^= rng[3];
    rng[2] ^= t;
    rng[3] = rotl(rng[3], 45);
    return out;
}

static void random_bytes(uint8_t *id, size_t n)
{
    do {
        for (size_t i = 0; i < n; i += 8) {
            uint64_t r = next_random();
            memcpy(id + i, &r, n - i < 8 ? n - i : 8);
        }
    } while (sk_trace_id_zero(id, n));
}

void sk_trace_new_trace_id(uint8_t id[16])
{
    random_bytes(id, 16);
}
void sk_trace_new_span_id(uint8_t id[8])
{
    random_bytes(id, 8);
}
