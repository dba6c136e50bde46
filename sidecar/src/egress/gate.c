/* Concurrency gate: see gate.h. */
#include "egress/gate.h"

#include <stdlib.h>

struct sk_gate {
    int max_active, max_queued;
    int active, queued;
    sk_gate_waiter *head, *tail;
    int granting; /* inside grant(): a nested leave only frees the slot */
    sk_gate_stats stats;
};

sk_gate *sk_gate_new(int max_active, int max_queued)
{
    if (max_active < 0 || max_queued < 0)
        return NULL;
    sk_gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    g->max_active = max_active;
    g->max_queued = max_queued;
    return g;
}

void sk_gate_free(sk_gate *g)
{
    if (!g)
        return;
    for (sk_gate_waiter *w = g->head; w; w = w->next)
        w->queued = 0;
    free(g);
}

static int slot_free(const sk_gate *g)
{
    return g->max_active == 0 || g->active < g->max_active;
}

static void unlink_waiter(sk_gate *g, sk_gate_waiter *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        g->head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        g->tail = w->prev;
    w->prev = w->next = NULL;
    w->queued = 0;
    g->queued--;
}

/* Hands free slots to waiters in FIFO order. A callback that leaves or sets limits lands here
 * again: the outer loop picks up the freed slot instead of nesting. */
static void grant(sk_gate *g)
{
    if (g->granting)
        return;
    g->granting = 1;
    while (g->head && slot_free(g)) {
        sk_gate_waiter *w = g->head;
        unlink_waiter(g, w);
        g->active++;
        g->stats.granted++;
        w->cb(w);
    }
    g->granting = 0;
}

int sk_gate_enter(sk_gate *g, sk_gate_waiter *w, sk_gate_cb cb)
{
    if (w->queued)
        return -1;
    if (slot_free(g) && !g->head) {
        g->active++;
        g->stats.entered++;
        return 1;
    }
    if (g->queued >= g->max_queued || !cb) {
        g->stats.refused++;
        return -1;
    }
    w->cb = cb;
    w->next = NULL;
    w->prev = g->tail;
    if (g->tail)
        g->tail->next = w;
    else
        g->head = w;
    g->tail = w;
    w->queued = 1;
    g->queued++;
    g->stats.queued++;
    return 0;
}

int sk_gate_cancel(sk_gate *g, sk_gate_waiter *w)
{
    if (!w->queued)
        return 0;
    unlink_waiter(g, w);
    g->stats.cancelled++;
    return 1;
}

void sk_gate_leave(sk_gate *g)
{
    if (g->active == 0)
        return;
    g->active--;
    grant(g);
}

int sk_gate_set_limits(sk_gate *g, int max_active, int max_queued)
{
    if (max_active < 0 || max_queued < 0)
        return -1;
    g->max_active = max_active;
    g->max_queued = max_queued;
    grant(g);
    return 0;
}

int sk_gate_active(const sk_gate *g)
{
    return g->active;
}

int sk_gate_queued(const sk_gate *g)
{
    return g->queued;
}

void sk_gate_stats_get(const sk_gate *g, sk_gate_stats *out)
{
    *out = g->stats;
}
