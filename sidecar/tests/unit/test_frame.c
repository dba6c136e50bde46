/* Frame codec: length prefix, decoding of every handler->skiff frame, encoding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "handler/frame.h"

static int decode(const char *json, sk_msg *m, const char **perr, char *err, size_t errlen)
{
    return sk_msg_decode((const uint8_t *)json, strlen(json), m, perr, err, errlen);
}

static void expect_error(const char *json, const char *code, const char *needle)
{
    sk_msg m;
    const char *perr = NULL;
    char err[256] = "";
    assert_int_equal(decode(json, &m, &perr, err, sizeof(err)), -1);
    assert_string_equal(perr, code);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    assert_null(m.root);
}

static void test_length_prefix(void **state)
{
    (void)state;
    const uint8_t hdr[] = {0x00, 0x00, 0x01, 0x02};
    size_t n = 0;
    const char *perr = NULL;
    char err[128];
    assert_int_equal(sk_frame_length(hdr, 3, 1024, &n, &perr, err, sizeof(err)), 0);
    assert_int_equal(sk_frame_length(hdr, 4, 1024, &n, &perr, err, sizeof(err)), 1);
    assert_int_equal(n, 258);
    assert_int_equal(sk_frame_length(hdr, 4, 257, &n, &perr, err, sizeof(err)), -1);
    assert_string_equal(perr, SK_PERR_TOO_LARGE);
    const uint8_t zero[] = {0, 0, 0, 0};
    assert_int_equal(sk_frame_length(zero, 4, 1024, &n, &perr, err, sizeof(err)), -1);
    assert_string_equal(perr, SK_PERR_MALFORMED);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(sk_frame_length(huge, 4, 4u << 20, &n, &perr, err, sizeof(err)), -1);
    assert_string_equal(perr, SK_PERR_TOO_LARGE);
}

static void test_hello(void **state)
{
    (void)state;
    sk_msg m;
    const char *perr;
    char err[256];
    assert_int_equal(decode("{\"type\":\"hello\",\"version\":1,\"name\":\"risk\",\"capacity\":4,"
                            "\"job_types\":[\"a\",\"b\"],\"extra\":true}",
                            &m, &perr, err, sizeof(err)),
                     0);
    assert_int_equal(m.type, SK_MSG_HELLO);
    assert_int_equal(m.version, 1);
    assert_string_equal(m.name, "risk");
    assert_int_equal(m.capacity, 4);
    assert_int_equal(json_array_size(m.job_types), 2);
    sk_msg_clear(&m);
    expect_error("{\"type\":\"hello\",\"version\":1,\"name\":\"x\",\"capacity\":0}",
                 SK_PERR_MALFORMED, "capacity");
    expect_error("{\"type\":\"hello\",\"version\":\"1\",\"name\":\"x\",\"capacity\":1}",
                 SK_PERR_MALFORMED, "version");
    expect_error("{\"type\":\"hello\",\"version\":1,\"capacity\":1}", SK_PERR_MALFORMED, "name");
    expect_error(
        "{\"type\":\"hello\",\"version\":1,\"name\":\"x\",\"capacity\":1,\"job_types\":[1]}",
        SK_PERR_MALFORMED, "job_types[0]");
    expect_error(
        "{\"type\":\"hello\",\"version\":1,\"name\":\"x\",\"capacity\":1,\"job_types\":\"a\"}",
        SK_PERR_MALFORMED, "job_types");
}

static void test_results(void **state)
{
    (void)state;
    sk_msg m;
    const char *perr;
    char err[256];
    assert_int_equal(decode("{\"type\":\"complete\",\"id\":\"z-1\",\"variables\":{\"a\":1}}", &m,
                            &perr, err, sizeof(err)),
                     0);
    assert_int_equal(m.type, SK_MSG_COMPLETE);
    assert_string_equal(m.id, "z-1");
    assert_int_equal(json_integer_value(json_object_get(m.variables, "a")), 1);
    sk_msg_clear(&m);

    assert_int_equal(decode("{\"type\":\"fail\",\"id\":\"z-2\",\"message\":\"boom\",\"retries\":0,"
                            "\"retry_backoff_ms\":500}",
                            &m, &perr, err, sizeof(err)),
                     0);
    assert_int_equal(m.type, SK_MSG_FAIL);
    assert_true(m.has_retries);
    assert_int_equal(m.retries, 0);
    assert_int_equal(m.retry_backoff_ms, 500);
    assert_string_equal(m.message, "boom");
    sk_msg_clear(&m);

    assert_int_equal(decode("{\"type\":\"fail\",\"id\":\"z-3\"}", &m, &perr, err, sizeof(err)), 0);
    assert_false(m.has_retries);
    assert_null(m.message);
    sk_msg_clear(&m);

    assert_int_equal(decode("{\"type\":\"bpmn_error\",\"id\":\"z-4\",\"code\":\"REJECTED\"}", &m,
                            &perr, err, sizeof(err)),
                     0);
    assert_string_equal(m.code, "REJECTED");
    sk_msg_clear(&m);

    expect_error("{\"type\":\"complete\"}", SK_PERR_MALFORMED, "\"id\"");
    expect_error("{\"type\":\"complete\",\"id\":7}", SK_PERR_MALFORMED, "\"id\"");
    expect_error("{\"type\":\"complete\",\"id\":\"x\",\"variables\":[1]}", SK_PERR_MALFORMED,
                 "variables");
    expect_error("{\"type\":\"fail\",\"id\":\"x\",\"retries\":-1}", SK_PERR_MALFORMED, "negative");
    expect_error("{\"type\":\"fail\",\"id\":\"x\",\"retries\":1.5}", SK_PERR_MALFORMED, "retries");
    expect_error("{\"type\":\"bpmn_error\",\"id\":\"x\"}", SK_PERR_MALFORMED, "code");
    expect_error("{\"type\":\"bpmn_error\",\"id\":\"x\",\"code\":\"\"}", SK_PERR_MALFORMED,
                 "empty");
}

static void test_kafka_frames(void **state)
{
    (void)state;
    sk_msg m;
    const char *perr;
    char err[256];
    assert_int_equal(decode("{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":1,"
                            "\"topics\":[\"orders\"]}",
                            &m, &perr, err, sizeof(err)),
                     0);
    assert_null(m.job_types);
    assert_string_equal(json_string_value(json_array_get(m.topics, 0)), "orders");
    sk_msg_clear(&m);
    expect_error("{\"type\":\"hello\",\"version\":1,\"name\":\"k\",\"capacity\":1,"
                 "\"topics\":[\"\"]}",
                 SK_PERR_MALFORMED, "topics[0]");

    assert_int_equal(decode("{\"type\":\"ack\",\"id\":\"k-1\"}", &m, &perr, err, sizeof(err)), 0);
    assert_int_equal(m.type, SK_MSG_ACK);
    sk_msg_clear(&m);
    assert_int_equal(decode("{\"type\":\"nack\",\"id\":\"k-1\",\"message\":\"down\"}", &m, &perr,
                            err, sizeof(err)),
                     0);
    assert_false(m.has_retry_backoff);
    assert_false(m.dead_letter);
    sk_msg_clear(&m);
    assert_int_equal(decode("{\"type\":\"nack\",\"id\":\"k-1\",\"message\":\"bad\","
                            "\"retry_backoff_ms\":0,\"dead_letter\":true}",
                            &m, &perr, err, sizeof(err)),
                     0);
    assert_true(m.has_retry_backoff);
    assert_int_equal(m.retry_backoff_ms, 0);
    assert_true(m.dead_letter);
    sk_msg_clear(&m);
    expect_error("{\"type\":\"nack\",\"id\":\"k-1\"}", SK_PERR_MALFORMED, "message");
    expect_error("{\"type\":\"nack\",\"id\":\"k-1\",\"message\":\"x\",\"dead_letter\":1}",
                 SK_PERR_MALFORMED, "dead_letter");
    expect_error("{\"type\":\"nack\",\"id\":\"k-1\",\"message\":\"x\",\"retry_backoff_ms\":-5}",
                 SK_PERR_MALFORMED, "negative");
}

/* NUL bytes are fine inside values (Avro strings and bytes may hold them), never in the
 * members skiff reads as C strings. */
static void test_nul_bytes(void **state)
{
    (void)state;
    sk_msg m;
    const char *perr;
    char err[256];
    assert_int_equal(decode("{\"type\":\"call\",\"ref\":\"1\",\"method\":\"produce\","
                            "\"params\":{\"value\":{\"s\":\"a\\u0000b\"}}}",
                            &m, &perr, err, sizeof(err)),
                     0);
    json_t *sv = json_object_get(json_object_get(m.params, "value"), "s");
    assert_int_equal(json_string_length(sv), 3);
    sk_msg_clear(&m);
    expect_error("{\"type\":\"ack\",\"id\":\"k-1\\u0000x\"}", SK_PERR_MALFORMED, "NUL");
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error("{\"type\":\"complete\",", SK_PERR_MALFORMED, "invalid JSON");
    expect_error("[1,2]", SK_PERR_MALFORMED, "object");
    expect_error("\"hello\"", SK_PERR_MALFORMED, "invalid JSON");
    expect_error("{\"id\":\"x\"}", SK_PERR_MALFORMED, "type");
    expect_error("{\"type\":5}", SK_PERR_MALFORMED, "type");
    expect_error("{\"type\":\"teleport\"}", SK_PERR_UNKNOWN_TYPE, "teleport");
    expect_error("{\"type\":\"task\",\"id\":\"x\"}", SK_PERR_PROTOCOL, "sent by skiff");
    expect_error("{\"type\":\"welcome\"}", SK_PERR_PROTOCOL, "sent by skiff");
    expect_error("{\"type\":\"complete\",\"id\":\"a\",\"id\":\"b\"}", SK_PERR_MALFORMED,
                 "invalid JSON");
    expect_error("{\"type\":\"call\",\"ref\":\"1\"}", SK_PERR_MALFORMED, "method");
    /* invalid UTF-8 inside a string */
    expect_error("{\"type\":\"complete\",\"id\":\"\xff\xfe\"}", SK_PERR_MALFORMED, "invalid JSON");
}

static void test_encode_roundtrip(void **state)
{
    (void)state;
    json_t *o =
        json_pack("{s:s, s:s, s:{s:i}}", "type", "complete", "id", "z-9", "variables", "n", 3);
    size_t len = 0;
    uint8_t *buf = sk_frame_encode(o, &len);
    assert_non_null(buf);
    size_t plen;
    const char *perr;
    char err[128];
    assert_int_equal(sk_frame_length(buf, len, 1 << 20, &plen, &perr, err, sizeof(err)), 1);
    assert_int_equal(plen + SK_FRAME_HEADER, len);
    sk_msg m;
    assert_int_equal(sk_msg_decode(buf + SK_FRAME_HEADER, plen, &m, &perr, err, sizeof(err)), 0);
    assert_string_equal(m.id, "z-9");
    assert_int_equal(json_integer_value(json_object_get(m.variables, "n")), 3);
    sk_msg_clear(&m);
    free(buf);
    json_decref(o);
}

/* Decodes item i of a results frame's text; returns sk_msg_decode_item's answer. */
static int decode_item(const char *frame, size_t i, sk_msg *item, const char **perr, char *err,
                       size_t errlen)
{
    sk_msg m;
    const char *p;
    char e[256];
    assert_int_equal(decode(frame, &m, &p, e, sizeof(e)), 0);
    assert_int_equal(m.type, SK_MSG_RESULTS);
    int r = sk_msg_decode_item(json_array_get(m.items, i), i, item, perr, err, errlen);
    sk_msg_clear(&m); /* the item keeps its own reference */
    return r;
}

static void expect_item_error(const char *frame, size_t i, const char *code, const char *id,
                              const char *needle)
{
    sk_msg item;
    const char *perr = NULL;
    char err[256] = "";
    assert_int_equal(decode_item(frame, i, &item, &perr, err, sizeof(err)), -1);
    assert_string_equal(perr, code);
    if (!strstr(err, needle))
        fail_msg("error \"%s\" does not mention \"%s\"", err, needle);
    if (id)
        assert_string_equal(item.id, id);
    else
        assert_null(item.id);
    sk_msg_clear(&item);
}

/* 1.4: `results` carries several results; each item decodes as a frame alone would, and a bad
 * item is refused on its own, naming its index (and its id when it has one). */
static void test_results_batch(void **state)
{
    (void)state;
    const char *f = "{\"type\":\"results\",\"results\":[{\"type\":\"ack\",\"id\":\"k-1\"},"
                    "{\"type\":\"nack\",\"id\":\"k-2\",\"message\":\"m\",\"dead_letter\":true},"
                    "{\"type\":\"complete\",\"id\":\"z-1\",\"variables\":{\"a\":1}},"
                    "{\"type\":\"complete\"},{\"type\":\"ack\",\"id\":\"k-3\",\"variables\":[1]},"
                    "7,{\"type\":\"extend\",\"id\":\"z-2\",\"timeout_ms\":5},{\"type\":\"zap\"}]}";
    sk_msg item;
    const char *perr;
    char err[256];
    assert_int_equal(decode_item(f, 0, &item, &perr, err, sizeof(err)), 0);
    assert_int_equal(item.type, SK_MSG_ACK);
    assert_string_equal(item.id, "k-1");
    sk_msg_clear(&item);
    assert_int_equal(decode_item(f, 1, &item, &perr, err, sizeof(err)), 0);
    assert_int_equal(item.type, SK_MSG_NACK);
    assert_true(item.dead_letter);
    assert_int_equal(item.message_len, 1);
    sk_msg_clear(&item);
    assert_int_equal(decode_item(f, 2, &item, &perr, err, sizeof(err)), 0);
    assert_int_equal(json_integer_value(json_object_get(item.variables, "a")), 1);
    sk_msg_clear(&item);
    expect_item_error(f, 3, SK_PERR_MALFORMED, NULL, "results[3]: member \"id\"");
    expect_item_error(f, 4, SK_PERR_MALFORMED, "k-3", "results[4]: member \"variables\"");
    expect_item_error(f, 5, SK_PERR_MALFORMED, NULL, "results[5]: frame must hold a JSON object");
    expect_item_error(f, 6, SK_PERR_PROTOCOL, "z-2", "only complete, fail");
    expect_item_error(f, 7, SK_PERR_UNKNOWN_TYPE, NULL, "results[7]: unknown frame type");

    expect_error("{\"type\":\"results\"}", SK_PERR_MALFORMED, "non-empty array");
    expect_error("{\"type\":\"results\",\"results\":[]}", SK_PERR_MALFORMED, "non-empty array");
    expect_error("{\"type\":\"results\",\"results\":{\"a\":1}}", SK_PERR_MALFORMED,
                 "non-empty array");
    expect_error("{\"type\":\"tasks\",\"tasks\":[]}", SK_PERR_PROTOCOL, "sent by skiff");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_length_prefix),    cmocka_unit_test(test_hello),
        cmocka_unit_test(test_results),          cmocka_unit_test(test_kafka_frames),
        cmocka_unit_test(test_nul_bytes),        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_encode_roundtrip), cmocka_unit_test(test_results_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
