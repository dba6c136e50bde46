/* Circuit breaker: see breaker.h. */
#include "egress/breaker.h"

#include <stdlib.h>

struct sk_breaker {
    sk_breaker_opts o;
    sk_breaker_state state;
    unsigned char *ring; /* 1 = failure; the last o.window outcomes */
    int head, count, failures;
    int streak; /* consecutive failures */
    int64_t opened_ms;
    int probing; /* HALF_OPEN: the probe is out */
    uint64_t transitions[3];
};

sk_breaker *sk_breaker_new(const sk_breaker_opts *o)
{
    if (o->window > SK_BREAKER_MAX_WINDOW)
        return NULL;
    sk_breaker *b = calloc(1, sizeof *b);
    if (!b)
        return NULL;
    b->o = *o;
    if (!(b->o.failure_ratio > 0 && b->o.failure_ratio <= 1) || b->o.window <= 0)
        b->o.window = 0;
    if (b->o.min_calls < 1)
        b->o.min_calls = 1;
    if (b->o.window > 0 && b->o.min_calls > b->o.window)
        b->o.min_calls = b->o.window;
    if (b->o.open_ms < 0)
        b->o.open_ms = 0;
    if (b->o.window > 0 && !(b->ring = calloc((size_t)b->o.window, 1))) {
        free(b);
        return NULL;
    }
    return b;
}

void sk_breaker_free(sk_breaker *b)
{
    if (!b)
        return;
    free(b->ring);
    free(b);
}

static void clear_window(sk_breaker *b)
{
    b->head = b->count = b->failures = b->streak = 0;
}

static void move_to(sk_breaker *b, sk_breaker_state to, int64_t now_ms)
{
    sk_breaker_state from = b->state;
    b->state = to;
    b->probing = 0;
    if (to == SK_BREAKER_OPEN)
        b->opened_ms = now_ms;
    clear_window(b);
    b->transitions[to]++;
    if (b->o.on_transition)
        b->o.on_transition(b->o.ud, from, to);
}

/* ms since it opened, now_ms >= opened_ms; unsigned: the caller's times may be far apart */
static uint64_t elapsed(const sk_breaker *b, int64_t now_ms)
{
    return (uint64_t)now_ms - (uint64_t)b->opened_ms;
}

/* OPEN -> HALF_OPEN once open_ms has passed; an earlier time restarts the open period. */
static void tick(sk_breaker *b, int64_t now_ms)
{
    if (b->state != SK_BREAKER_OPEN)
        return;
    if (now_ms < b->opened_ms)
        b->opened_ms = now_ms;
    if (elapsed(b, now_ms) >= (uint64_t)b->o.open_ms)
        move_to(b, SK_BREAKER_HALF_OPEN, now_ms);
}

int sk_breaker_allow(sk_breaker *b, int64_t now_ms, int64_t *retry_in_ms)
{
    int64_t wait = 0;
    int permit = SK_BREAKER_REFUSED;
    tick(b, now_ms);
    if (b->state == SK_BREAKER_CLOSED) {
        permit = SK_BREAKER_GO;
    } else if (b->state == SK_BREAKER_OPEN) {
        wait = (int64_t)((uint64_t)b->o.open_ms - elapsed(b, now_ms));
    } else if (!b->probing) {
        b->probing = 1;
        permit = SK_BREAKER_PROBE;
    } else {
        wait = b->o.open_ms < SK_BREAKER_PROBE_RETRY_MS ? b->o.open_ms : SK_BREAKER_PROBE_RETRY_MS;
    }
    if (retry_in_ms)
        *retry_in_ms = wait;
    return permit;
}

/* CLOSED: slides the window and checks both rules. */
static void record_closed(sk_breaker *b, int ok, int64_t now_ms)
{
    int failed = !ok;
    b->streak = failed ? b->streak + 1 : 0;
    if (b->o.window > 0) {
        if (b->count == b->o.window)
            b->failures -= b->ring[b->head];
        else
            b->count++;
        b->ring[b->head] = (unsigned char)failed;
        b->failures += failed;
        b->head = (b->head + 1) % b->o.window;
    }
    int by_streak = b->o.consecutive > 0 && b->streak >= b->o.consecutive;
    int by_ratio = b->o.window > 0 && b->count >= b->o.min_calls &&
                   (double)b->failures >= b->o.failure_ratio * (double)b->count;
    if (by_streak || by_ratio)
        move_to(b, SK_BREAKER_OPEN, now_ms);
}

void sk_breaker_record(sk_breaker *b, int permit, int ok, int64_t now_ms)
{
    tick(b, now_ms);
    if (permit == SK_BREAKER_GO && b->state == SK_BREAKER_CLOSED)
        record_closed(b, ok, now_ms);
    else if (permit == SK_BREAKER_PROBE && b->state == SK_BREAKER_HALF_OPEN && b->probing)
        move_to(b, ok ? SK_BREAKER_CLOSED : SK_BREAKER_OPEN, now_ms);
}

void sk_breaker_release(sk_breaker *b, int permit)
{
    if (permit == SK_BREAKER_PROBE && b->state == SK_BREAKER_HALF_OPEN)
        b->probing = 0;
}

sk_breaker_state sk_breaker_state_at(sk_breaker *b, int64_t now_ms)
{
    tick(b, now_ms);
    return b->state;
}

const char *sk_breaker_state_name(sk_breaker_state s)
{
    switch (s) {
    case SK_BREAKER_CLOSED:
        return "closed";
    case SK_BREAKER_OPEN:
        return "open";
    case SK_BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

uint64_t sk_breaker_transitions(const sk_breaker *b, sk_breaker_state to)
{
    return (unsigned)to < 3 ? b->transitions[to] : 0;
}

void sk_breaker_window(const sk_breaker *b, int *calls, int *failures)
{
    *calls = b->count;
    *failures = b->failures;
}
