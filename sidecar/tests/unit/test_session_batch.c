/* Batching (protocol 1.4), sessions and dispatcher together over a socketpair: a handler with
 * feature "batch" gets the tasks ready in one loop turn as one `tasks` frame (bounded by credits
 * and max_frame), and its `results` frames are applied item by item, a bad item refused on its
 * own. The fixture is session_fixture.h, shared with test_handler.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "session_fixture.h"

static void submit_quiet(fixture *fx, const char *id, json_t *payload)
{
    sk_dispatcher_submit(fx->d, &fake_ops, &fx->src, NULL, "work", id, 123, payload, 0);
}

static const char *task_id(json_t *tasks, size_t i)
{
    json_t *t = json_array_get(json_object_get(tasks, "tasks"), i);
    assert_string_equal(json_string_value(json_object_get(t, "type")), "task");
    return json_string_value(json_object_get(t, "id"));
}

static void test_welcome_lists_batch(void **state)
{
    fixture *fx = *state;
    json_t *w = hello_features(fx, 1, NULL);
    json_t *features = json_object_get(w, "features");
    int found = 0;
    for (size_t i = 0; i < json_array_size(features); i++)
        found |= strcmp(json_string_value(json_array_get(features, i)), "batch") == 0;
    assert_true(found);
    json_decref(w);
}

/* The tasks of one turn, at most the credits, leave as one `tasks` frame. */
static void test_tasks_in_one_frame(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 3, "[\"batch\"]"));
    submit_quiet(fx, "a", json_pack("{s:{s:i}}", "variables", "x", 1));
    submit_quiet(fx, "b", json_pack("{s:{s:i}}", "variables", "x", 2));
    submit_quiet(fx, "c", json_pack("{s:{s:i}}", "variables", "x", 3));
    submit_quiet(fx, "d", json_pack("{s:{s:i}}", "variables", "x", 4)); /* no credit left */
    json_t *f;
    expect_type(fx, "tasks", &f);
    assert_int_equal(json_array_size(json_object_get(f, "tasks")), 3);
    assert_string_equal(task_id(f, 0), "a");
    assert_string_equal(task_id(f, 1), "b");
    assert_string_equal(task_id(f, 2), "c");
    json_decref(f);
    expect_nothing(fx);
    /* One result frees one credit: d goes alone, as a plain task frame. */
    send_json(fx, "{\"type\":\"results\",\"results\":[{\"type\":\"complete\",\"id\":\"b\"}]}");
    assert_int_equal(fx->src.completed, 1);
    expect_type(fx, "task", &f);
    assert_string_equal(json_string_value(json_object_get(f, "id")), "d");
    json_decref(f);
}

/* A large turn does not wait for its end: its first tasks (8, fewer when max_frame cuts the
 * frame first) are written at once, before the loop runs again (the handler starts on them
 * while skiff encodes the rest); the others follow, every task once, in order. */
static void test_first_tasks_leave_at_once(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 12, "[\"batch\"]"));
    char id[16];
    for (int i = 0; i < 12; i++) {
        snprintf(id, sizeof id, "t%02d", i);
        submit_quiet(fx, id, json_object());
    }
    struct pollfd p = {.fd = fx->fd, .events = POLLIN}; /* the loop has not run yet */
    assert_int_equal(poll(&p, 1, 0), 1);
    json_t *f;
    expect_type(fx, "tasks", &f);
    size_t first = json_array_size(json_object_get(f, "tasks")); /* 8, or fewer by max_frame */
    assert_in_range(first, 2, 8);
    assert_string_equal(task_id(f, 0), "t00");
    json_decref(f);
    int next = (int)first;
    while (next < 12) {
        json_t *g = recv_frame(fx);
        assert_non_null(g);
        const char *type = json_string_value(json_object_get(g, "type"));
        size_t k = strcmp(type, "tasks") == 0 ? json_array_size(json_object_get(g, "tasks")) : 1;
        for (size_t i = 0; i < k; i++) {
            snprintf(id, sizeof id, "t%02d", next++);
            assert_string_equal(k > 1 ? task_id(g, i) : json_string_value(json_object_get(g, "id")),
                                id);
        }
        json_decref(g);
    }
    assert_int_equal(next, 12);
    expect_nothing(fx);
}

/* Without the feature every task has its own frame, as before 1.4. */
static void test_no_batch_without_feature(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 3, "[\"cancel\"]"));
    submit_quiet(fx, "a", json_object());
    submit_quiet(fx, "b", json_object());
    expect_type(fx, "task", NULL);
    expect_type(fx, "task", NULL);
    expect_nothing(fx);
}

/* No frame exceeds max_frame (1024 here): a task that would not fit starts the next frame. */
static void test_batch_bounded_by_max_frame(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 8, "[\"batch\"]"));
    char big[300];
    memset(big, 'v', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    const char *ids[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        submit_quiet(fx, ids[i], json_pack("{s:{s:s}}", "variables", "v", big));
    size_t seen = 0, frames = 0;
    while (seen < 5) {
        uint8_t hdr[4];
        assert_int_equal(read_full(fx, hdr, 4), 0);
        size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
        assert_true(n <= 1024);
        char *buf = malloc(n);
        assert_int_equal(read_full(fx, (uint8_t *)buf, n), 0);
        json_t *f = json_loadb(buf, n, 0, NULL);
        free(buf);
        assert_non_null(f);
        const char *type = json_string_value(json_object_get(f, "type"));
        size_t k = strcmp(type, "tasks") == 0 ? json_array_size(json_object_get(f, "tasks")) : 1;
        assert_true(k == 1 || k == 2);
        seen += k;
        frames++;
        json_decref(f);
    }
    assert_int_equal(seen, 5);
    assert_int_equal(frames, 3);
    expect_nothing(fx);
}

/* A cancel for a gathered task follows the task, never precedes it. */
static void test_cancel_follows_gathered_task(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 2, "[\"batch\",\"cancel\"]"));
    submit_quiet(fx, "a", json_object());
    submit_quiet(fx, "b", json_object());
    assert_int_equal(sk_dispatcher_cancel(fx->d, "a", "deadline"), 1);
    json_t *f;
    expect_type(fx, "tasks", &f);
    assert_string_equal(task_id(f, 0), "a");
    json_decref(f);
    expect_type(fx, "cancel", NULL);
}

/* Every item is applied as if it came alone; each bad one is refused with an error naming its
 * index (and id), counted, and the connection and the good items go on. */
static void test_results_items_apart(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 4, "[\"batch\"]"));
    submit_quiet(fx, "a", json_object());
    submit_quiet(fx, "b", json_object());
    submit_quiet(fx, "c", json_object());
    submit_quiet(fx, "d", json_object());
    expect_type(fx, "tasks", NULL);
    send_json(fx, "{\"type\":\"results\",\"results\":["
                  "{\"type\":\"complete\",\"id\":\"a\"},"
                  "{\"type\":\"complete\",\"id\":\"b\",\"variables\":7},"
                  "{\"type\":\"complete\",\"id\":\"nope\"},"
                  "{\"type\":\"ack\",\"id\":\"c\"},"
                  "{\"type\":\"fail\",\"id\":\"d\",\"message\":\"m\"}]}");
    assert_int_equal(fx->src.completed, 1);
    assert_int_equal(fx->src.failed, 1);
    const char *codes[] = {"malformed_frame", "unknown_task", "unsupported"};
    const char *eids[] = {"b", "nope", "c"};
    const int idx[] = {1, 2, 3};
    for (int i = 0; i < 3; i++) {
        json_t *e;
        expect_type(fx, "error", &e);
        assert_string_equal(json_string_value(json_object_get(e, "code")), codes[i]);
        assert_string_equal(json_string_value(json_object_get(e, "id")), eids[i]);
        assert_int_equal(json_integer_value(json_object_get(e, "index")), idx[i]);
        json_decref(e);
    }
    expect_nothing(fx);
    assert_false(fx->closed);
    assert_int_equal(sample(fx, "skiff_handler_protocol_errors_total{code=\"unknown_task\"}"), 1);
    assert_int_equal(sample(fx, "skiff_handler_protocol_errors_total{code=\"malformed_frame\"}"),
                     1);
    /* b and c are still owed: a proper result for each is taken. */
    assert_int_equal(sk_dispatcher_open(fx->d), 2);
    send_json(fx, "{\"type\":\"results\",\"results\":[{\"type\":\"complete\",\"id\":\"b\"},"
                  "{\"type\":\"bpmn_error\",\"id\":\"c\",\"code\":\"X\"}]}");
    assert_int_equal(fx->src.completed, 2);
    assert_int_equal(fx->src.errors, 1);
    assert_int_equal(sk_dispatcher_open(fx->d), 0);
}

/* A results frame whose own member is wrong is a malformed frame: error, close, and the open
 * tasks are abandoned (given back), never lost. */
static void test_results_frame_malformed(void **state)
{
    fixture *fx = *state;
    json_decref(hello_features(fx, 2, "[\"batch\"]"));
    submit_quiet(fx, "a", json_object());
    expect_type(fx, "task", NULL);
    send_json(fx, "{\"type\":\"results\",\"results\":[]}");
    json_t *e;
    expect_type(fx, "error", &e);
    assert_string_equal(json_string_value(json_object_get(e, "code")), "malformed_frame");
    json_decref(e);
    uint8_t b;
    assert_int_equal(read_full(fx, &b, 1), -1);
    spin(fx);
    assert_true(fx->closed);
    assert_int_equal(fx->src.abandoned, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_welcome_lists_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tasks_in_one_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_first_tasks_leave_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_batch_without_feature, setup, teardown),
        cmocka_unit_test_setup_teardown(test_batch_bounded_by_max_frame, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_follows_gathered_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_items_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_results_frame_malformed, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
