/* Concurrency gate: at most max_active callers hold a slot at once, at most max_queued wait for
 * one, first come first served (Envoy's max_requests / max_pending_requests per cluster). Pure:
 * no clock, no loop; the caller arms its own queue timeout and cancels on expiry. Loop thread
 * only; not thread-safe.
 *
 * Waiters are embedded in the caller's struct (an intrusive list: no allocation per request);
 * the caller finds its request from the waiter with offsetof, or through `ud`.
 *
 * A waiter's callback runs from inside sk_gate_leave or sk_gate_set_limits and may call
 * sk_gate_enter, sk_gate_leave and sk_gate_cancel on the same gate (on any waiter, itself
 * included: its slot is already granted, so leaving gives it back); the hand-over continues in
 * FIFO order once the callback returns. Callbacks never nest: the gate grants slots in a loop,
 * not by recursion. The gate must not be freed from inside a callback. */
#ifndef SK_EGRESS_GATE_H
#define SK_EGRESS_GATE_H

#include <stddef.h>
#include <stdint.h>

typedef struct sk_gate sk_gate;
typedef struct sk_gate_waiter sk_gate_waiter;
/* A slot is now the waiter's: it is out of the queue and counted active; it calls
 * sk_gate_leave when done. */
typedef void (*sk_gate_cb)(sk_gate_waiter *w);

/* Embed in the caller's struct; the fields other than ud are the gate's. Zero it (or let
 * sk_gate_enter set it up) before first use. */
struct sk_gate_waiter {
    sk_gate_waiter *prev, *next;
    sk_gate_cb cb;
    int queued; /* 1 while in the queue */
    void *ud;   /* the caller's, never touched by the gate */
};

/* max_active 0: no limit (never queues); max_queued 0: no waiting (full means refused). NULL
 * when either is negative or out of memory. */
sk_gate *sk_gate_new(int max_active, int max_queued);
/* Accepts NULL. Waiters still queued are dropped from the queue without their callbacks (the
 * caller frees its requests first, or knows they are gone). */
void sk_gate_free(sk_gate *g);

/* 1: a slot is taken now (cb is not called). 0: queued at the back; cb will be called when a
 * slot is handed over. -1: refused, the queue is full or cb is NULL (w is untouched). A slot is
 * taken at once only if one is free and nobody is queued (FIFO). A w already queued is refused
 * (-1) and stays queued. */
int sk_gate_enter(sk_gate *g, sk_gate_waiter *w, sk_gate_cb cb);
/* Takes w out of the queue (queue timeout, client gone). Returns 1 if it was queued, 0 if not
 * (already granted or never queued: nothing happens). */
int sk_gate_cancel(sk_gate *g, sk_gate_waiter *w);
/* Gives a slot back and hands free slots to the first waiters (calling their callbacks). A
 * leave with no slot active is ignored. */
void sk_gate_leave(sk_gate *g);
/* New limits (configuration reload): queued waiters stay queued even beyond max_queued; more
 * slots are handed to waiters at once; fewer take effect as slots are given back. -1 (nothing
 * changes) when either is negative. */
int sk_gate_set_limits(sk_gate *g, int max_active, int max_queued);

/* Slots held now, waiters queued now (the in_flight and queued gauges). */
int sk_gate_active(const sk_gate *g);
int sk_gate_queued(const sk_gate *g);
/* Totals since creation: entered at once, queued, granted from the queue, refused (queue
 * full), cancelled. */
typedef struct sk_gate_stats {
    uint64_t entered, queued, granted, refused, cancelled;
} sk_gate_stats;
void sk_gate_stats_get(const sk_gate *g, sk_gate_stats *out);

#endif
