/* Concurrency gate: slots, FIFO queue, refusal when full, cancel, hand-over on leave, callbacks
 * that call back into the gate, limits changed at run time, the counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "egress/gate.h"

typedef struct req {
    sk_gate_waiter w;
    int id;
    int granted;
    int action; /* what the callback does */
    struct req *other;
} req;

enum { NOTHING, LEAVE, ENTER_OTHER, CANCEL_OTHER, LEAVE_TWICE };

static sk_gate *the_gate;
static int order[64];
static int norder;

static void on_grant(sk_gate_waiter *w)
{
    req *r = (req *)((char *)w - offsetof(req, w));
    r->granted++;
    order[norder++] = r->id;
    switch (r->action) {
    case LEAVE:
        sk_gate_leave(the_gate);
        break;
    case ENTER_OTHER:
        r->other->id = sk_gate_enter(the_gate, &r->other->w, on_grant) + 100;
        break;
    case CANCEL_OTHER:
        assert_int_equal(sk_gate_cancel(the_gate, &r->other->w), 1);
        break;
    case LEAVE_TWICE:
        sk_gate_leave(the_gate);
        sk_gate_leave(the_gate);
        break;
    }
}

static void reset(req *r, int n)
{
    memset(r, 0, sizeof *r * (size_t)n);
    for (int i = 0; i < n; i++)
        r[i].id = i;
    norder = 0;
}

static void test_fifo_and_full(void **state)
{
    (void)state;
    req r[6];
    reset(r, 6);
    sk_gate *g = the_gate = sk_gate_new(2, 3);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), 1);
    assert_int_equal(sk_gate_enter(g, &r[2].w, on_grant), 0);
    assert_int_equal(sk_gate_enter(g, &r[3].w, on_grant), 0);
    assert_int_equal(sk_gate_enter(g, &r[4].w, on_grant), 0);
    assert_int_equal(sk_gate_enter(g, &r[5].w, on_grant), -1);
    assert_int_equal(r[5].w.queued, 0);
    /* entering a queued waiter again is refused and leaves it queued */
    assert_int_equal(sk_gate_enter(g, &r[3].w, on_grant), -1);
    assert_int_equal(r[3].w.queued, 1);
    assert_int_equal(sk_gate_active(g), 2);
    assert_int_equal(sk_gate_queued(g), 3);
    assert_int_equal(r[0].granted + r[1].granted, 0); /* no callback when entered at once */
    sk_gate_leave(g);
    assert_int_equal(r[2].granted, 1);
    assert_int_equal(sk_gate_active(g), 2);
    assert_int_equal(sk_gate_queued(g), 2);
    sk_gate_leave(g);
    sk_gate_leave(g);
    assert_int_equal(norder, 3);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 3);
    assert_int_equal(order[2], 4);
    sk_gate_leave(g);
    sk_gate_leave(g);
    assert_int_equal(sk_gate_active(g), 0);
    /* a leave with nothing active is ignored */
    sk_gate_leave(g);
    assert_int_equal(sk_gate_active(g), 0);
    sk_gate_stats st;
    sk_gate_stats_get(g, &st);
    assert_int_equal(st.entered, 2);
    assert_int_equal(st.queued, 3);
    assert_int_equal(st.granted, 3);
    assert_int_equal(st.refused, 1); /* the re-entry is a caller error, not a refusal */
    assert_int_equal(st.cancelled, 0);
    sk_gate_free(g);
}

/* A slot is taken at once only when nobody waits, so a newcomer never jumps the queue. */
static void test_no_queue_jumping(void **state)
{
    (void)state;
    req r[3];
    reset(r, 3);
    sk_gate *g = the_gate = sk_gate_new(1, 5);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), 0);
    assert_int_equal(sk_gate_set_limits(g, 1, 5), 0);
    assert_int_equal(sk_gate_enter(g, &r[2].w, on_grant), 0);
    sk_gate_leave(g);
    assert_int_equal(order[0], 1);
    sk_gate_free(g);
}

static void test_cancel(void **state)
{
    (void)state;
    req r[5];
    reset(r, 5);
    sk_gate *g = the_gate = sk_gate_new(1, 4);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    for (int i = 1; i < 5; i++)
        assert_int_equal(sk_gate_enter(g, &r[i].w, on_grant), 0);
    assert_int_equal(sk_gate_cancel(g, &r[1].w), 1); /* head */
    assert_int_equal(sk_gate_cancel(g, &r[3].w), 1); /* middle */
    assert_int_equal(sk_gate_cancel(g, &r[4].w), 1); /* tail */
    assert_int_equal(sk_gate_cancel(g, &r[4].w), 0); /* twice */
    assert_int_equal(sk_gate_cancel(g, &r[0].w), 0); /* holds a slot: not queued */
    assert_int_equal(sk_gate_queued(g), 1);
    /* the freed places are usable again */
    assert_int_equal(sk_gate_enter(g, &r[4].w, on_grant), 0);
    sk_gate_leave(g);
    sk_gate_leave(g);
    assert_int_equal(norder, 2);
    assert_int_equal(order[0], 2);
    assert_int_equal(order[1], 4);
    assert_int_equal(r[1].granted + r[3].granted, 0);
    sk_gate_stats st;
    sk_gate_stats_get(g, &st);
    assert_int_equal(st.cancelled, 3);
    /* cancelling the last one empties the queue completely */
    reset(r, 2);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 0);
    assert_int_equal(sk_gate_cancel(g, &r[0].w), 1);
    assert_int_equal(sk_gate_queued(g), 0);
    sk_gate_leave(g);
    assert_int_equal(sk_gate_active(g), 0);
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), 1);
    sk_gate_free(g);
}

/* Callbacks that leave at once: the slot goes on down the queue, in order, without nesting. */
static void test_callback_leaves(void **state)
{
    (void)state;
    req r[5];
    reset(r, 5);
    sk_gate *g = the_gate = sk_gate_new(1, 4);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    for (int i = 1; i < 5; i++) {
        r[i].action = i < 4 ? LEAVE : NOTHING;
        assert_int_equal(sk_gate_enter(g, &r[i].w, on_grant), 0);
    }
    sk_gate_leave(g);
    assert_int_equal(norder, 4);
    for (int i = 0; i < 4; i++)
        assert_int_equal(order[i], i + 1);
    assert_int_equal(sk_gate_active(g), 1);
    assert_int_equal(sk_gate_queued(g), 0);
    sk_gate_leave(g);
    assert_int_equal(sk_gate_active(g), 0);
    sk_gate_free(g);
}

/* A callback enters a new waiter: it queues behind the ones already waiting. */
static void test_callback_enters(void **state)
{
    (void)state;
    req r[4];
    reset(r, 4);
    sk_gate *g = the_gate = sk_gate_new(1, 2);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    r[1].action = ENTER_OTHER;
    r[1].other = &r[3];
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), 0);
    assert_int_equal(sk_gate_enter(g, &r[2].w, on_grant), 0);
    sk_gate_leave(g);
    assert_int_equal(r[3].id, 100); /* queued (0), not entered */
    assert_int_equal(sk_gate_queued(g), 2);
    sk_gate_leave(g);
    sk_gate_leave(g);
    assert_int_equal(norder, 3);
    assert_int_equal(order[1], 2);
    assert_int_equal(order[2], 100);
    sk_gate_leave(g);
    assert_int_equal(sk_gate_active(g), 0);
    sk_gate_free(g);
}

/* A callback cancels the next waiter, or leaves more than it holds. */
static void test_callback_cancels_and_overleaves(void **state)
{
    (void)state;
    req r[4];
    reset(r, 4);
    sk_gate *g = the_gate = sk_gate_new(1, 3);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    r[1].action = CANCEL_OTHER;
    r[1].other = &r[2];
    for (int i = 1; i < 4; i++)
        assert_int_equal(sk_gate_enter(g, &r[i].w, on_grant), 0);
    sk_gate_leave(g);
    assert_int_equal(sk_gate_queued(g), 1);
    r[3].action = LEAVE_TWICE;
    sk_gate_leave(g); /* r[1] leaves; r[3] gets the slot, leaves twice: the extra is ignored */
    assert_int_equal(norder, 2);
    assert_int_equal(order[1], 3);
    assert_int_equal(r[2].granted, 0);
    assert_int_equal(sk_gate_active(g), 0);
    assert_int_equal(sk_gate_queued(g), 0);
    sk_gate_free(g);
}

static void test_unlimited_and_zero_queue(void **state)
{
    (void)state;
    req r[3];
    reset(r, 3);
    sk_gate *g = the_gate = sk_gate_new(0, 0);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    assert_int_equal(sk_gate_active(g), 1000);
    sk_gate_free(g);
    g = the_gate = sk_gate_new(1, 0);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), -1);
    sk_gate_free(g);
    /* NULL callback: never queued */
    g = the_gate = sk_gate_new(1, 5);
    assert_int_equal(sk_gate_enter(g, &r[0].w, NULL), 1);
    assert_int_equal(sk_gate_enter(g, &r[1].w, NULL), -1);
    assert_int_equal(sk_gate_queued(g), 0);
    sk_gate_free(g);
    assert_null(sk_gate_new(-1, 0));
    assert_null(sk_gate_new(0, -1));
    sk_gate_free(NULL);
}

static void test_set_limits(void **state)
{
    (void)state;
    req r[5];
    reset(r, 5);
    sk_gate *g = the_gate = sk_gate_new(1, 3);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    for (int i = 1; i < 4; i++)
        assert_int_equal(sk_gate_enter(g, &r[i].w, on_grant), 0);
    /* fewer queue places: those queued stay, newcomers are refused */
    assert_int_equal(sk_gate_set_limits(g, 1, 1), 0);
    assert_int_equal(sk_gate_queued(g), 3);
    assert_int_equal(sk_gate_enter(g, &r[4].w, on_grant), -1);
    /* more slots: handed over at once */
    assert_int_equal(sk_gate_set_limits(g, 3, 1), 0);
    assert_int_equal(norder, 2);
    assert_int_equal(sk_gate_active(g), 3);
    /* fewer slots: effective as slots come back */
    assert_int_equal(sk_gate_set_limits(g, 1, 1), 0);
    sk_gate_leave(g);
    sk_gate_leave(g);
    assert_int_equal(norder, 2);
    sk_gate_leave(g);
    assert_int_equal(norder, 3);
    assert_int_equal(sk_gate_set_limits(g, -1, 0), -1);
    assert_int_equal(sk_gate_set_limits(g, 0, 0), 0); /* unlimited */
    assert_int_equal(sk_gate_enter(g, &r[4].w, on_grant), 1);
    sk_gate_free(g);
}

/* Freeing with waiters: they are marked out of the queue, no callback. */
static void test_free_with_waiters(void **state)
{
    (void)state;
    req r[3];
    reset(r, 3);
    sk_gate *g = the_gate = sk_gate_new(1, 3);
    assert_int_equal(sk_gate_enter(g, &r[0].w, on_grant), 1);
    assert_int_equal(sk_gate_enter(g, &r[1].w, on_grant), 0);
    assert_int_equal(sk_gate_enter(g, &r[2].w, on_grant), 0);
    sk_gate_free(g);
    assert_int_equal(r[1].w.queued + r[2].w.queued, 0);
    assert_int_equal(norder, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifo_and_full),
        cmocka_unit_test(test_no_queue_jumping),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_callback_leaves),
        cmocka_unit_test(test_callback_enters),
        cmocka_unit_test(test_callback_cancels_and_overleaves),
        cmocka_unit_test(test_unlimited_and_zero_queue),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_free_with_waiters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
