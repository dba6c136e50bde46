#include "handler/acks.h"

#include <string.h>

#define ACK_OPEN "{\"type\":\"ack\",\"id\":\""
#define RESULTS_OPEN "{\"type\":\"results\",\"results\":["

typedef struct {
    const uint8_t *p, *end;
} cursor;

static int take(cursor *c, const char *lit, size_t n)
{
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, lit, n) != 0)
        return 0;
    c->p += n;
    return 1;
}

#define TAKE(c, lit) take((c), (lit), sizeof(lit) - 1)

/* An ack object from just after its opening quote of the id: the id (at least one byte of
 * printable ASCII other than '"' and '\\': the same string for jansson, no escape to undo),
 * then `"}`. Sets *close to the id's closing quote. */
static int ack_rest(cursor *c, const uint8_t **close)
{
    const uint8_t *start = c->p;
    while (c->p < c->end && *c->p >= 0x20 && *c->p < 0x7f && *c->p != '"' && *c->p != '\\')
        c->p++;
    if (c->p == start || c->p == c->end || *c->p != '"')
        return 0;
    *close = c->p;
    c->p++;
    return TAKE(c, "}");
}

/* The whole payload in one of the shapes; n counts the acks. */
static int valid(const uint8_t *payload, size_t len, size_t *n, int *lone)
{
    cursor c = {payload, payload + len};
    const uint8_t *close;
    *n = 0;
    *lone = TAKE(&c, ACK_OPEN);
    if (*lone) {
        *n = 1;
        return ack_rest(&c, &close) && c.p == c.end;
    }
    if (!TAKE(&c, RESULTS_OPEN))
        return 0;
    do {
        if (!TAKE(&c, ACK_OPEN) || !ack_rest(&c, &close))
            return 0;
        (*n)++;
    } while (TAKE(&c, ","));
    return TAKE(&c, "]}") && c.p == c.end;
}

int sk_acks_scan(uint8_t *payload, size_t len, sk_ack_fn fn, void *ud)
{
    size_t n;
    int lone;
    if (!payload || !valid(payload, len, &n, &lone))
        return 0;
    /* Known good from here: each id starts after ACK_OPEN and ends at the next quote. */
    uint8_t *p = payload + (lone ? 0 : sizeof(RESULTS_OPEN) - 1);
    for (size_t i = 0; i < n; i++) {
        char *id = (char *)p + sizeof(ACK_OPEN) - 1;
        char *q = strchr(id, '"');
        *q = '\0';
        fn(ud, id, lone ? -1 : (long)i);
        p = (uint8_t *)q + 3; /* past `"}` and the comma (or the closing `]`) */
    }
    return 1;
}
