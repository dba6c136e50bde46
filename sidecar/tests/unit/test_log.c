/* JSON-lines logging: every line parses as JSON with the required fields, escaping, level
 * filtering. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <regex.h>
#include <cmocka.h>
#include <jansson.h>

#include "core/log.h"

static char *buf;
static size_t len;
static FILE *out;

static int setup(void **state)
{
    (void)state;
    out = open_memstream(&buf, &len);
    sk_log_init("skiff-test", SK_LOG_DEBUG, out);
    return out ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    sk_log_init("skiff", SK_LOG_INFO, NULL);
    fclose(out);
    free(buf);
    buf = NULL;
    return 0;
}

/* The single line written since setup (or the last call), parsed. */
static json_t *last_line(void)
{
    assert_true(len > 0);
    assert_int_equal(buf[len - 1], '\n');
    assert_ptr_equal(strchr(buf, '\n'), buf + len - 1);
    json_error_t e;
    json_t *j = json_loadb(buf, len, 0, &e);
    if (!j)
        fail_msg("not JSON (%s): %s", e.text, buf);
    assert_true(json_is_object(j));
    rewind(out);
    len = 0;
    return j;
}

static const char *str(json_t *j, const char *key)
{
    json_t *v = json_object_get(j, key);
    if (!json_is_string(v))
        fail_msg("field %s missing or not a string", key);
    return json_string_value(v);
}

static void test_required_fields(void **state)
{
    (void)state;
    SK_INFO("zeebe", "activated %d jobs", 3);
    json_t *j = last_line();
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                             "\\.[0-9]{3}Z$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    if (regexec(&re, str(j, "timestamp"), 0, NULL, 0) != 0)
        fail_msg("timestamp %s", str(j, "timestamp"));
    regfree(&re);
    assert_string_equal(str(j, "level"), "info");
    assert_string_equal(str(j, "service_name"), "skiff-test");
    assert_string_equal(str(j, "component"), "zeebe");
    assert_string_equal(str(j, "message"), "activated 3 jobs");
    assert_string_equal(str(j, "trace_id"), "");
    assert_string_equal(str(j, "span_id"), "");
    assert_int_equal(json_object_size(j), 7);
    json_decref(j);
}

static void test_trace_and_kv(void **state)
{
    (void)state;
    sk_log_trace t = {.trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
                      .span_id = "00f067aa0ba902b7"};
    SK_LOG(SK_LOG_ERROR, "handler", &t,
           SK_KV("job_type", "score", "message", "collides", "quote", "a\"b"), "failed");
    json_t *j = last_line();
    assert_string_equal(str(j, "level"), "error");
    assert_string_equal(str(j, "trace_id"), t.trace_id);
    assert_string_equal(str(j, "span_id"), t.span_id);
    assert_string_equal(str(j, "job_type"), "score");
    assert_string_equal(str(j, "message"), "failed");
    assert_string_equal(str(j, "kv_message"), "collides");
    assert_string_equal(str(j, "quote"), "a\"b");
    json_decref(j);

    sk_log_trace none = {NULL, NULL};
    sk_log_write(SK_LOG_WARN, NULL, &none, SK_KV("k", NULL), "x");
    j = last_line();
    assert_string_equal(str(j, "component"), "");
    assert_string_equal(str(j, "trace_id"), "");
    assert_string_equal(str(j, "k"), "");
    assert_string_equal(str(j, "level"), "warn");
    json_decref(j);
}

/* "#<key>": a number value is written as a JSON number; anything else stays a string, so a
 * value can never inject JSON. */
static void test_number_fields(void **state)
{
    (void)state;
    SK_LOG(SK_LOG_INFO, "egress", NULL,
           SK_KV("#status", "200", "#ms", "12.345", "#neg", "-3", "#bad", "1,\"x\":2", "#dot", "1.",
                 "#message", "7"),
           "call");
    json_t *j = last_line();
    assert_int_equal(json_integer_value(json_object_get(j, "status")), 200);
    assert_true(json_is_real(json_object_get(j, "ms")));
    assert_int_equal(json_integer_value(json_object_get(j, "neg")), -3);
    assert_string_equal(str(j, "bad"), "1,\"x\":2");
    assert_string_equal(str(j, "dot"), "1.");
    assert_string_equal(str(j, "kv_message"), "7");
    assert_string_equal(str(j, "message"), "call");
    json_decref(j);
}

static void test_escaping(void **state)
{
    (void)state;
    SK_INFO("c", "q\" b\\ n\n t\t r\r c\x01 d\x7f e\xc3\xa9 s\xf0\x9f\x98\x80");
    json_t *j = last_line();
    assert_string_equal(str(j, "message"),
                        "q\" b\\ n\n t\t r\r c\x01 d\x7f e\xc3\xa9 s\xf0\x9f\x98\x80");
    json_decref(j);

    /* Ill-formed UTF-8 (stray byte, overlong, surrogate, cut sequence) becomes U+FFFD. */
    SK_LOG(SK_LOG_INFO, "c", NULL, SK_KV("bytes", "\xff|\xc0\xaf|\xed\xa0\x80|\xe2\x82"), "%s",
           "bad\xfe");
    j = last_line();
    assert_string_equal(str(j, "message"), "bad\xef\xbf\xbd");
    assert_string_equal(str(j, "bytes"), "\xef\xbf\xbd|\xef\xbf\xbd\xef\xbf\xbd|"
                                         "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd|"
                                         "\xef\xbf\xbd\xef\xbf\xbd");
    json_decref(j);
}

static void test_long_message(void **state)
{
    (void)state;
    size_t n = 20000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i += 2)
        memcpy(big + i, "\xc3\xa9", 2);
    big[n] = '\0';
    SK_INFO("c", "%s", big);
    json_t *j = last_line();
    const char *m = str(j, "message");
    assert_true(strlen(m) <= 8192 + 3);
    assert_true(strlen(m) > 8000);
    assert_string_equal(m + strlen(m) - 3, "...");
    json_decref(j);
    SK_LOG(SK_LOG_INFO, "c", NULL, SK_KV("big", big), "kv");
    j = last_line();
    assert_true(strlen(str(j, "big")) <= 4096 + 3);
    json_decref(j);
    free(big);
}

static int calls;

static int counted(void)
{
    return ++calls;
}

static void test_level_filtering(void **state)
{
    (void)state;
    sk_log_init("skiff-test", SK_LOG_WARN, out);
    assert_false(sk_log_enabled(SK_LOG_DEBUG));
    assert_false(sk_log_enabled(SK_LOG_INFO));
    assert_true(sk_log_enabled(SK_LOG_WARN));
    assert_true(sk_log_enabled(SK_LOG_ERROR));
    calls = 0;
    SK_DEBUG("c", "%d", counted());
    SK_INFO("c", "%d", counted());
    fflush(out);
    assert_int_equal(len, 0);
    assert_int_equal(calls, 0);
    SK_WARN("c", "%d", counted());
    json_t *j = last_line();
    assert_string_equal(str(j, "message"), "1");
    json_decref(j);
    sk_log_write(SK_LOG_INFO, "c", NULL, NULL, "direct call below the level");
    fflush(out);
    assert_int_equal(len, 0);
}

static void test_level_parse(void **state)
{
    (void)state;
    assert_int_equal(sk_log_level_parse("debug"), SK_LOG_DEBUG);
    assert_int_equal(sk_log_level_parse("info"), SK_LOG_INFO);
    assert_int_equal(sk_log_level_parse("WARN"), SK_LOG_WARN);
    assert_int_equal(sk_log_level_parse("warning"), SK_LOG_WARN);
    assert_int_equal(sk_log_level_parse("error"), SK_LOG_ERROR);
    assert_int_equal(sk_log_level_parse("trace"), -1);
    assert_int_equal(sk_log_level_parse(NULL), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_required_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trace_and_kv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_number_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_message, setup, teardown),
        cmocka_unit_test_setup_teardown(test_level_filtering, setup, teardown),
        cmocka_unit_test(test_level_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
