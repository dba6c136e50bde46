/* The Zeebe source's activation and job commands against the fake gateway of zeebe_fixture.c:
 * credit-bound activation, job results, abandon, command retries up to the job deadline,
 * activation backoff, shutdown, the refill threshold, each job type's own
 * settings, and job streams (jobs pushed, paused while no credit is free, yielded jobs,
 * reopened after errors, recycled, closed at stop). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>

#include "zeebe_fixture.h"

/* ---- 1. activation waits for a handler ---- */

static void test_no_handler_no_activation(void **state)
{
    zf_fixture *fx = *state;
    zf_start(fx);
    for (int waited = 0; !sk_zeebe_connected(fx->z) && waited < 2000; waited += 10)
        zf_run_for(fx->base, 10);
    assert_true(sk_zeebe_connected(fx->z));
    zf_run_for(fx->base, 300);
    assert_int_equal(zf_count(fx, M_ACTIVATE), 0);

    zf_join(fx, 3);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    GatewayProtocol__ActivateJobsRequest *q = zf_activate_req(fx, 0);
    assert_string_equal(q->type, "work");
    assert_string_equal(q->worker, "skiff-test-worker");
    assert_int_equal(q->maxjobstoactivate, 3);
    assert_int_equal(q->timeout, 30000);
    assert_int_equal(q->requesttimeout, 20000);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    zf_run_for(fx->base, 100);
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1); /* one long poll at a time */
}

/* ---- 2. credits bound activation ---- */

static void test_max_jobs_active_bounds_activation(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 201, .retries = 3}};
    fx->job.max_jobs_active = 1;
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    fx->dflt[M_COMPLETE] = HOLD;
    zf_start(fx);
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_int_equal(zf_max_jobs(fx, 0), 1);
    zf_expect_task(fx, "z-201");
    zf_run_for(fx->base, 200); /* the session has a free credit, skiff holds its maximum */
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1);

    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-201\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    zf_run_for(fx->base, 100); /* still held until the gateway acknowledges */
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1);
    zf_answer_later(fx, zf_nth(fx, M_COMPLETE, 0), SK_GRPC_OK);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(zf_max_jobs(fx, 1), 1);
}

static void test_open_jobs_use_up_credits(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 211, .retries = 3}, {.key = 212, .retries = 3}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 2);
    fx->dflt[M_COMPLETE] = HOLD;
    zf_start(fx);
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_int_equal(zf_max_jobs(fx, 0), 2);
    zf_expect_task(fx, "z-211");
    zf_expect_task(fx, "z-212");
    zf_run_for(fx->base, 200);
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1);

    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-211\"}");
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(zf_max_jobs(fx, 1), 1);
}

/* ---- 3. jobs to tasks, results to commands ---- */

#define BIG 9007199254740993LL /* 2^53 + 1: not representable as a double */

static void check_task_frame(zf_fixture *fx)
{
    json_t *t = zf_expect_frame(fx, "task");
    assert_string_equal(json_string_value(json_object_get(t, "id")), "z-9007199254740993");
    assert_string_equal(json_string_value(json_object_get(t, "job_type")), "work");
    assert_string_equal(json_string_value(json_object_get(t, "source")), "zeebe");
    assert_int_equal(json_integer_value(json_object_get(t, "deadline")), fx->last_deadline);
    json_t *vars = json_object_get(t, "variables"), *z = json_object_get(t, "zeebe");
    assert_int_equal(json_integer_value(json_object_get(vars, "amount")), 12);
    assert_string_equal(json_string_value(json_object_get(vars, "sku")), "A-1");
    assert_string_equal(json_string_value(json_object_get(json_object_get(t, "headers"), "queue")),
                        "fast");
    assert_string_equal(json_string_value(json_object_get(z, "key")), "9007199254740993");
    assert_string_equal(json_string_value(json_object_get(z, "process_instance_key")),
                        "9007199254740994");
    assert_string_equal(json_string_value(json_object_get(z, "element_instance_key")),
                        "9007199254740996");
    assert_string_equal(json_string_value(json_object_get(z, "bpmn_process_id")), "order");
    assert_int_equal(json_integer_value(json_object_get(z, "retries")), 3);
    json_decref(t);
}

static void check_fail(zf_fixture *fx, int64_t key, int32_t retries, const char *message,
                       int64_t backoff)
{
    GatewayProtocol__FailJobRequest *q = zf_fail_req(fx, key);
    assert_int_equal(q->retries, retries);
    assert_string_equal(q->errormessage, message);
    assert_int_equal(q->retrybackoff, backoff);
    gateway_protocol__fail_job_request__free_unpacked(q, NULL);
}

static void check_commands(zf_fixture *fx)
{
    GatewayProtocol__CompleteJobRequest *c = zf_complete_req(fx, 0);
    assert_int_equal(c->jobkey, BIG);
    zf_assert_json(c->variables, "{\"out\":42}");
    gateway_protocol__complete_job_request__free_unpacked(c, NULL);
    check_fail(fx, BIG + 2, 2, "boom", 1500);
    check_fail(fx, BIG + 4, 0, "give up", 0);
    GatewayProtocol__ThrowErrorRequest *e = zf_throw_req(fx, 0);
    assert_int_equal(e->jobkey, BIG + 6);
    assert_string_equal(e->errorcode, "NO_STOCK");
    assert_string_equal(e->errormessage, "out of stock");
    zf_assert_json(e->variables, "{\"sku\":\"A-1\"}");
    gateway_protocol__throw_error_request__free_unpacked(e, NULL);
}

static void test_results_become_commands(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {
        {.key = BIG,
         .retries = 3,
         .variables = "{\"amount\":12,\"sku\":\"A-1\"}",
         .headers = "{\"queue\":\"fast\"}"},
        {.key = BIG + 2, .retries = 3},
        {.key = BIG + 4, .retries = 3},
        {.key = BIG + 6, .retries = 3},
    };
    zf_then_jobs(fx, M_ACTIVATE, jobs, 4);
    zf_start(fx);
    zf_join(fx, 4);
    check_task_frame(fx);
    zf_expect_task(fx, "z-9007199254740995");
    zf_expect_task(fx, "z-9007199254740997");
    zf_expect_task(fx, "z-9007199254740999");
    zf_send_json(
        fx, "{\"type\":\"complete\",\"id\":\"z-9007199254740993\",\"variables\":{\"out\":42}}");
    zf_send_json(fx, "{\"type\":\"fail\",\"id\":\"z-9007199254740995\",\"message\":\"boom\","
                     "\"retry_backoff_ms\":1500}");
    zf_send_json(
        fx,
        "{\"type\":\"fail\",\"id\":\"z-9007199254740997\",\"message\":\"give up\",\"retries\":0}");
    zf_send_json(fx, "{\"type\":\"bpmn_error\",\"id\":\"z-9007199254740999\",\"code\":\"NO_STOCK\","
                     "\"message\":\"out of stock\",\"variables\":{\"sku\":\"A-1\"}}");
    assert_true(zf_wait_reqs(fx, M_THROW, 1, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    assert_int_equal(zf_count(fx, M_COMPLETE), 1);
    assert_int_equal(zf_count(fx, M_FAIL), 2);
    check_commands(fx);
    assert_true(zf_jobs_total(fx, "completed") == 1);
    assert_true(zf_jobs_total(fx, "failed") == 2);
    assert_true(zf_jobs_total(fx, "bpmn_error") == 1);
}

/* ---- 4. a handler gone gives its jobs back ---- */

static void test_handler_gone_abandons(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 401, .retries = 3}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    fx->cfg.zeebe_backoff_initial_ms = 1000; /* "at once" is well below any backoff */
    fx->cfg.zeebe_backoff_max_ms = 1000;
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-401");
    close(fx->fd);
    fx->fd = -1;
    double closed_at = zf_now_ms();
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    assert_true(fx->closed);
    assert_true(zf_nth(fx, M_FAIL, 0)->at_ms - closed_at < 200);
    check_fail(fx, 401, 3, "handler connection closed", 0);
    assert_true(zf_wait_idle(fx, 2000));
}

/* ---- 5. commands retried on transient errors, up to the job deadline ---- */

static void test_command_retried_until_ok(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 501, .retries = 3}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    zf_then(fx, M_COMPLETE, SK_GRPC_UNAVAILABLE);
    zf_then(fx, M_COMPLETE, SK_GRPC_UNAVAILABLE);
    zf_then(fx, M_COMPLETE, SK_GRPC_OK);
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-501");
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-501\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 3, 3000));
    assert_true(zf_wait_idle(fx, 2000));
    zf_run_for(fx->base, 200);
    assert_int_equal(zf_count(fx, M_COMPLETE), 3);
    for (int i = 0; i < 3; i++) {
        GatewayProtocol__CompleteJobRequest *c = zf_complete_req(fx, i);
        assert_int_equal(c->jobkey, 501);
        gateway_protocol__complete_job_request__free_unpacked(c, NULL);
    }
    assert_true(zf_jobs_total(fx, "completed") == 1);
    assert_true(zf_jobs_total(fx, "deadline_passed") == 0);
}

static void test_command_gives_up_at_deadline(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 502, .retries = 3, .deadline_in_ms = 300}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    fx->dflt[M_COMPLETE] = SK_GRPC_UNAVAILABLE;
    fx->cfg.zeebe_backoff_initial_ms = 20; /* dense retries: a late one would show */
    fx->cfg.zeebe_backoff_max_ms = 40;
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-502");
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-502\"}");
    assert_true(zf_wait_idle(fx, 3000));
    int sent = zf_count(fx, M_COMPLETE);
    assert_true(sent >= 2); /* it did retry */
    /* Timer latency aside, the last attempt went out before the deadline. */
    assert_true(zf_nth(fx, M_COMPLETE, sent - 1)->at_ms <= (double)fx->last_deadline + 30);
    assert_true(zf_now_ms() >= (double)fx->last_deadline - 100); /* and not much before */
    zf_run_for(fx->base, 300);
    assert_int_equal(zf_count(fx, M_COMPLETE), sent);
    assert_true(zf_jobs_total(fx, "deadline_passed") == 1);
    assert_true(zf_jobs_total(fx, "completed") == 0);
}

/* ---- 6. a job gone from the engine is not retried ---- */

static void test_not_found_not_retried(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 601, .retries = 3}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    fx->dflt[M_COMPLETE] = SK_GRPC_NOT_FOUND;
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-601");
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-601\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    zf_run_for(fx->base, 300);
    assert_int_equal(zf_count(fx, M_COMPLETE), 1);
    assert_true(zf_jobs_total(fx, "not_found") == 1);
    assert_true(zf_jobs_total(fx, "completed") == 0);
}

/* ---- 7. activation backs off on errors, resets on success, pauses after empty answers ---- */

static void test_activation_backoff(void **state)
{
    zf_fixture *fx = *state;
    fx->cfg.zeebe_backoff_initial_ms = 100;
    fx->cfg.zeebe_backoff_max_ms = 1000;
    for (int i = 0; i < 3; i++)
        zf_then(fx, M_ACTIVATE, SK_GRPC_RESOURCE_EXHAUSTED);
    zf_then_jobs(fx, M_ACTIVATE, NULL, 0);
    zf_then(fx, M_ACTIVATE, SK_GRPC_RESOURCE_EXHAUSTED);
    zf_start(fx);
    zf_join(fx, 1);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 6, 5000));
    double t[6];
    for (int i = 0; i < 6; i++)
        t[i] = zf_nth(fx, M_ACTIVATE, i)->at_ms;
    /* Equal jitter: attempt n waits within [d/2, d], d = 100 ms * 2^n. */
    assert_true(t[1] - t[0] >= 50 - SLACK);
    assert_true(t[2] - t[1] >= 100 - SLACK);
    assert_true(t[3] - t[2] >= 200 - SLACK);
    /* An empty success: a pause of backoff_initial, never a tight loop of empty polls. */
    assert_true(t[4] - t[3] >= 100 - SLACK);
    assert_true(t[4] - t[3] < 200);
    /* Reset: back to [50, 100] ms; without it the fourth delay would be >= 400 ms. */
    assert_true(t[5] - t[4] >= 50 - SLACK);
    assert_true(t[5] - t[4] < 300);
}

/* ---- 8. stop cancels the long poll, commands carry on ---- */

static void test_stop(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec jobs[] = {{.key = 801, .retries = 3}};
    zf_then_jobs(fx, M_ACTIVATE, jobs, 1);
    fx->dflt[M_COMPLETE] = HOLD;
    zf_start(fx);
    zf_join(fx, 2);
    zf_expect_task(fx, "z-801");
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000)); /* the second long poll, pending */
    zf_send_json(fx, "{\"type\":\"complete\",\"id\":\"z-801\"}");
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 1, 2000));
    assert_int_equal(sk_zeebe_pending(fx->z), 1);

    sk_zeebe_stop(fx->z);
    fstream *poll = zf_nth(fx, M_ACTIVATE, 1)->st;
    for (int waited = 0; !poll->closed && waited < 2000; waited += 5)
        zf_run_for(fx->base, 5);
    assert_true(poll->closed);
    assert_int_equal(poll->close_code, NGHTTP2_CANCEL);
    assert_true(fx->srv->rst_received[NGHTTP2_CANCEL] >= 1);
    assert_int_equal(sk_zeebe_pending(fx->z), 1);

    zf_answer_later(fx, zf_nth(fx, M_COMPLETE, 0), SK_GRPC_OK);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "completed") == 1);
    zf_run_for(fx->base, 300); /* credits are free again, yet no activation */
    assert_int_equal(zf_count(fx, M_ACTIVATE), 2);
}

/* ---- 10. activation asks again once 30 % of what the worker can hold is free ---- */

static void complete_job(zf_fixture *fx, int64_t key)
{
    char buf[80];
    snprintf(buf, sizeof buf, "{\"type\":\"complete\",\"id\":\"z-%lld\"}", (long long)key);
    zf_send_json(fx, buf);
}

/* Ten jobs into a worker that can hold ten, the lower of max_jobs_active and the handler's
 * capacity: two completed free too little (no ActivateJobs), the third frees 3 = ceil(30 %). */
static void refill(zf_fixture *fx, int64_t max_jobs_active, int capacity)
{
    job_spec jobs[10];
    for (int i = 0; i < 10; i++)
        jobs[i] = (job_spec){.key = 1001 + i, .retries = 3};
    fx->job.max_jobs_active = max_jobs_active;
    zf_then_jobs(fx, M_ACTIVATE, jobs, 10);
    zf_start(fx);
    zf_join(fx, capacity);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_int_equal(zf_max_jobs(fx, 0), 10);
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "z-%d", 1001 + i);
        zf_expect_task(fx, id);
    }
    complete_job(fx, 1001);
    complete_job(fx, 1002);
    assert_true(zf_wait_reqs(fx, M_COMPLETE, 2, 2000));
    assert_true(zf_wait_idle(fx, 2000));
    zf_run_for(fx->base, 200);
    assert_int_equal(zf_count(fx, M_ACTIVATE), 1);
    complete_job(fx, 1003);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 2, 2000));
    assert_int_equal(zf_max_jobs(fx, 1), 3);
}

static void test_refill_threshold(void **state)
{
    refill(*state, 10, 10);
}

static void test_refill_threshold_capacity_bound(void **state)
{
    refill(*state, 20, 10); /* on max_jobs_active 20, the threshold would be 6 */
}

static void test_refill_threshold_max_jobs_bound(void **state)
{
    refill(*state, 10, 20); /* on the capacity 20, the threshold would be 6 */
}

/* ---- 11. each job type's own settings reach the gateway ---- */

static char *fetch_vars[] = {"amount", "sku", NULL};
static char *tenants[] = {"tenant-a", "tenant-b", NULL};
static char *global_fetch[] = {"everything", NULL};

static void typed_config(zf_fixture *fx)
{
    fx->cfg.zeebe_worker_name = "global-worker";
    fx->cfg.zeebe_job_timeout_ms = 1111;
    fx->cfg.zeebe_max_jobs_active = 1;
    fx->cfg.zeebe_request_timeout_ms = 2222;
    fx->cfg.zeebe_fetch_variables = global_fetch;
    fx->cfg.zeebe_fetch_variables_len = 1;
    fx->job = (sk_job_type_config){.type = "work",
                                   .worker_name = "typed-worker",
                                   .job_timeout_ms = 45000,
                                   .max_jobs_active = 7,
                                   .request_timeout_ms = 15000,
                                   .fetch_variables = fetch_vars,
                                   .fetch_variables_len = 2,
                                   .tenant_ids = tenants,
                                   .tenant_ids_len = 2,
                                   .streaming = 1};
}

static void test_job_type_config_in_requests(void **state)
{
    zf_fixture *fx = *state;
    static const char *const want_vars[] = {"amount", "sku"};
    static const char *const want_tenants[] = {"tenant-a", "tenant-b"};
    typed_config(fx);
    zf_start(fx);
    zf_join(fx, 10);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    GatewayProtocol__ActivateJobsRequest *a = zf_activate_req(fx, 0);
    assert_string_equal(a->type, "work");
    assert_string_equal(a->worker, "typed-worker");
    assert_int_equal(a->timeout, 45000);
    assert_int_equal(a->maxjobstoactivate, 7);
    assert_int_equal(a->requesttimeout, 15000);
    zf_assert_strings(a->fetchvariable, a->n_fetchvariable, want_vars, 2);
    zf_assert_strings(a->tenantids, a->n_tenantids, want_tenants, 2);
    protobuf_c_message_free_unpacked(&a->base, NULL);
    /* The long poll's own deadline leaves the gateway 10 s to answer after requestTimeout (the
     * header says what is left when the request leaves). */
    int64_t left = sk_grpc_timeout_parse(zf_header(zf_nth(fx, M_ACTIVATE, 0), "grpc-timeout"));
    assert_true(left > 24000 && left <= 25000);

    GatewayProtocol__StreamActivatedJobsRequest *q =
        zf_request(fx, M_STREAM, 0, &gateway_protocol__stream_activated_jobs_request__descriptor);
    assert_string_equal(q->type, "work");
    assert_string_equal(q->worker, "typed-worker");
    assert_int_equal(q->timeout, 45000);
    zf_assert_strings(q->fetchvariable, q->n_fetchvariable, want_vars, 2);
    zf_assert_strings(q->tenantids, q->n_tenantids, want_tenants, 2);
    protobuf_c_message_free_unpacked(&q->base, NULL);
    assert_string_equal(zf_header(zf_nth(fx, M_STREAM, 0), "grpc-timeout"), "");
}

/* ---- 12. job streams ---- */

static double streams_open(zf_fixture *fx)
{
    return zf_sample(fx, "skiff_zeebe_job_streams_open{job_type=\"work\"}");
}

static void expect_cancelled(zf_fixture *fx, int stream)
{
    assert_true(zf_wait_closed(fx, M_STREAM, stream, 2000));
    assert_int_equal(zf_nth(fx, M_STREAM, stream)->st->close_code, NGHTTP2_CANCEL);
}

static void test_stream_jobs_become_tasks(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec a = {.key = 1101, .retries = 3}, b = {.key = 1102, .retries = 3},
                          c = {.key = 1103, .retries = 3};
    fx->job.streaming = 1;
    zf_start(fx);
    for (int waited = 0; !sk_zeebe_connected(fx->z) && waited < 2000; waited += 10)
        zf_run_for(fx->base, 10);
    zf_run_for(fx->base, 100);
    assert_int_equal(zf_count(fx, M_STREAM), 0); /* no handler, no credits, no stream */
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    assert_true(streams_open(fx) == 1);
    zf_push(fx, 0, &a, 1);
    zf_expect_task(fx, "z-1101");
    zf_push(fx, 0, &b, 1);
    zf_expect_task(fx, "z-1102");
    assert_true(zf_sample(fx, "skiff_zeebe_streamed_jobs_total{job_type=\"work\"}") == 2);
    complete_job(fx, 1101);
    zf_push(fx, 0, &c, 1);
    zf_expect_task(fx, "z-1103");
    zf_run_for(fx->base, 100);
    assert_int_equal(zf_count(fx, M_STREAM), 1); /* one stream all along */
    assert_false(zf_nth(fx, M_STREAM, 0)->st->closed);
    assert_int_equal(zf_count(fx, M_FAIL), 0);
}

/* A job that arrives while every credit is in use is failed back with its retries unchanged. */
static void expect_yielded(zf_fixture *fx, int64_t key, int32_t retries)
{
    GatewayProtocol__FailJobRequest *q = zf_fail_req(fx, key);
    assert_int_equal(q->retries, retries);
    assert_int_equal(q->retrybackoff, 0);
    protobuf_c_message_free_unpacked(&q->base, NULL);
}

/* Variables of about 30 KB: two such jobs fill most of a paused stream's 64 KiB window. */
static const char *big_variables(void)
{
    static char v[30016];
    if (!v[0]) {
        memset(v, 'x', sizeof v - 1);
        memcpy(v, "{\"pad\":\"", 8);
        memcpy(v + sizeof v - 3, "\"}", 2);
    }
    return v;
}

/* Out of credits, the stream is paused, not closed: what the gateway had already sent arrives
 * and is yielded; the rest waits in flow control until a credit frees, then becomes a task. */
static void test_stream_paused_without_credits(void **state)
{
    zf_fixture *fx = *state;
    job_spec a = {.key = 1151, .retries = 3}, b = {.key = 1152, .retries = 5},
             c = {.key = 1153, .retries = 6}, d = {.key = 1154, .retries = 3};
    b.variables = c.variables = d.variables = big_variables();
    fx->job.streaming = 1;
    zf_start(fx);
    zf_join(fx, 1);
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    zf_push(fx, 0, &a, 1);
    zf_expect_task(fx, "z-1151"); /* the only credit */
    zf_push(fx, 0, &b, 1);
    zf_push(fx, 0, &c, 1);
    assert_true(zf_wait_reqs(fx, M_FAIL, 2, 2000));
    expect_yielded(fx, 1152, 5);
    expect_yielded(fx, 1153, 6);
    zf_push(fx, 0, &d, 1); /* beyond the window: held by flow control */
    assert_null(zf_next_frame(fx, 300));
    assert_int_equal(zf_count(fx, M_FAIL), 2);
    assert_false(zf_nth(fx, M_STREAM, 0)->st->closed);
    assert_true(streams_open(fx) == 1);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "yielded") == 2);

    complete_job(fx, 1151);
    zf_expect_task(fx, "z-1154"); /* resumed: the held job arrives with a credit for it */
    assert_int_equal(zf_count(fx, M_STREAM), 1);
    assert_int_equal(zf_count(fx, M_FAIL), 2);
}

static void test_streamed_job_without_credit_yielded(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec polled = {.key = 1201, .retries = 3},
                          pushed = {.key = 1202, .retries = 5}, later = {.key = 1203, .retries = 3};
    fx->job.streaming = 1;
    zf_then_jobs(fx, M_ACTIVATE, &polled, 1);
    zf_start(fx);
    zf_join(fx, 1);
    zf_expect_task(fx, "z-1201"); /* the long poll took the only credit */
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    zf_push(fx, 0, &pushed, 1);
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    expect_yielded(fx, 1202, 5);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "yielded") == 1);
    assert_null(zf_next_frame(fx, 200)); /* never a task */
    complete_job(fx, 1201);
    zf_push(fx, 0, &later, 1);
    zf_expect_task(fx, "z-1203");
    assert_int_equal(zf_count(fx, M_STREAM), 1);
}

static void test_polled_job_without_credit_yielded(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec pushed = {.key = 1301, .retries = 3},
                          polled = {.key = 1302, .retries = 4};
    fx->job.streaming = 1;
    zf_start(fx);
    zf_join(fx, 1);
    assert_true(zf_wait_reqs(fx, M_ACTIVATE, 1, 2000));
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    zf_push(fx, 0, &pushed, 1);
    zf_expect_task(fx, "z-1301");
    zf_answer_jobs_later(fx, zf_nth(fx, M_ACTIVATE, 0), &polled, 1);
    assert_true(zf_wait_reqs(fx, M_FAIL, 1, 2000));
    expect_yielded(fx, 1302, 4);
    assert_true(zf_wait_idle(fx, 2000));
    assert_true(zf_jobs_total(fx, "yielded") == 1);
    assert_null(zf_next_frame(fx, 200)); /* never a task */
}

static void test_stream_reopened_after_error(void **state)
{
    zf_fixture *fx = *state;
    fx->job.streaming = 1;
    fx->cfg.zeebe_backoff_initial_ms = 100;
    fx->cfg.zeebe_backoff_max_ms = 1000;
    zf_then(fx, M_STREAM, SK_GRPC_UNAVAILABLE);
    zf_start(fx);
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_STREAM, 2, 2000));
    double gap = zf_nth(fx, M_STREAM, 1)->at_ms - zf_nth(fx, M_STREAM, 0)->at_ms;
    assert_true(gap >= 50 - SLACK); /* backoff: [50, 100] ms */
    zf_run_for(fx->base, 50);
    assert_false(zf_nth(fx, M_STREAM, 1)->st->closed);

    /* An open stream ended by the gateway: reopened too, the backoff grown to [100, 200]. */
    double ended = zf_now_ms();
    zf_end_stream(fx, 1, SK_GRPC_UNAVAILABLE);
    assert_true(zf_wait_reqs(fx, M_STREAM, 3, 2000));
    assert_true(zf_nth(fx, M_STREAM, 2)->at_ms - ended >= 100 - SLACK);
    assert_true(zf_sample(fx, "skiff_zeebe_gateway_requests_total{method=\"StreamActivatedJobs\","
                              "code=\"UNAVAILABLE\"}") == 2);
    assert_true(streams_open(fx) == 1);
}

static void test_stream_recycled(void **state)
{
    zf_fixture *fx = *state;
    static const job_spec job = {.key = 1401, .retries = 3};
    fx->job.streaming = 1;
    fx->cfg.zeebe_stream_recycle_ms = 200;
    zf_start(fx);
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_STREAM, 2, 2000));
    double gap = zf_nth(fx, M_STREAM, 1)->at_ms - zf_nth(fx, M_STREAM, 0)->at_ms;
    assert_true(gap >= 200 - SLACK && gap < 600);
    expect_cancelled(fx, 0);
    assert_false(zf_nth(fx, M_STREAM, 1)->st->closed);
    zf_push(fx, 1, &job, 1);
    zf_expect_task(fx, "z-1401");
    assert_true(streams_open(fx) == 1);
}

static void test_stop_closes_stream(void **state)
{
    zf_fixture *fx = *state;
    fx->job.streaming = 1;
    zf_start(fx);
    zf_join(fx, 2);
    assert_true(zf_wait_reqs(fx, M_STREAM, 1, 2000));
    sk_zeebe_stop(fx->z);
    expect_cancelled(fx, 0);
    assert_true(streams_open(fx) == 0);
    zf_run_for(fx->base, 300);
    assert_int_equal(zf_count(fx, M_STREAM), 1);
}

#define T(f) cmocka_unit_test_setup_teardown(f, zf_setup, zf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_no_handler_no_activation),
        T(test_max_jobs_active_bounds_activation),
        T(test_open_jobs_use_up_credits),
        T(test_results_become_commands),
        T(test_handler_gone_abandons),
        T(test_command_retried_until_ok),
        T(test_command_gives_up_at_deadline),
        T(test_not_found_not_retried),
        T(test_activation_backoff),
        T(test_stop),
        T(test_refill_threshold),
        T(test_refill_threshold_capacity_bound),
        T(test_refill_threshold_max_jobs_bound),
        T(test_job_type_config_in_requests),
        T(test_stream_jobs_become_tasks),
        T(test_stream_paused_without_credits),
        T(test_streamed_job_without_credit_yielded),
        T(test_polled_job_without_credit_yielded),
        T(test_stream_reopened_after_error),
        T(test_stream_recycled),
        T(test_stop_closes_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
