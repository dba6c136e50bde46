/* Downward API annotations parser: quoting, escapes, blank and malformed lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "core/annotations.h"

typedef struct {
    int n;
    char keys[8][128];
    char values[8][256];
    int lines[8];
    int nerr;
    int err_lines[8];
    char errs[8][128];
} seen;

static void on_pair(void *ud, int line, const char *key, const char *value)
{
    seen *s = ud;
    if (s->n < 8) {
        snprintf(s->keys[s->n], sizeof s->keys[0], "%s", key);
        snprintf(s->values[s->n], sizeof s->values[0], "%s", value);
        s->lines[s->n] = line;
    }
    s->n++;
}

static void on_error(void *ud, int line, const char *why)
{
    seen *s = ud;
    if (s->nerr < 8) {
        s->err_lines[s->nerr] = line;
        snprintf(s->errs[s->nerr], sizeof s->errs[0], "%s", why);
    }
    s->nerr++;
}

static int parse(const char *text, seen *s)
{
    memset(s, 0, sizeof *s);
    return sk_annotations_parse_lines(text, strlen(text), on_pair, on_error, s);
}

/* Parses one line expected to be malformed with a reason containing `why`. */
static void expect_malformed(const char *text, const char *why)
{
    seen s;
    assert_int_equal(parse(text, &s), 1);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.nerr, 1);
    assert_int_equal(s.err_lines[0], 1);
    if (!strstr(s.errs[0], why))
        fail_msg("%s: reason \"%s\" does not mention \"%s\"", text, s.errs[0], why);
}

static void expect_decoded(const char *text, const char *value)
{
    seen s;
    if (parse(text, &s) != 0)
        fail_msg("%s: %s", text, s.errs[0]);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.values[0], value);
}

/* A file as the kubelet writes it: sorted keys, one per line, no final newline. */
static void test_kubelet_file(void **state)
{
    (void)state;
    seen s;
    const char *text = "kubernetes.io/config.seen=\"2024-10-27T10:00:00.000Z\"\n"
                       "kubernetes.io/config.source=\"api\"\n"
                       "skiff.io/zeebe.job_types=\"score,price\"";
    assert_int_equal(parse(text, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.keys[0], "kubernetes.io/config.seen");
    assert_string_equal(s.values[1], "api");
    assert_string_equal(s.keys[2], "skiff.io/zeebe.job_types");
    assert_string_equal(s.values[2], "score,price");
    assert_int_equal(s.lines[2], 3);
}

static void test_escapes(void **state)
{
    (void)state;
    expect_decoded("k=\"\"", "");
    expect_decoded("k=\"a\\\"b\"", "a\"b");
    expect_decoded("k=\"back\\\\slash\"", "back\\slash");
    expect_decoded("k=\"line1\\nline2\\n\"", "line1\nline2\n");
    expect_decoded("k=\"\\a\\b\\f\\r\\t\\v\"", "\a\b\f\r\t\v");
    expect_decoded("k=\"\\x41\\101\"", "AA");
    expect_decoded("k=\"caf\\u00e9 \\U0001F600\"", "caf\xc3\xa9 \xf0\x9f\x98\x80");
    expect_decoded("k=\"caf\xc3\xa9\"", "caf\xc3\xa9");
    expect_decoded("k=\"a=b\"", "a=b");
    expect_decoded("k=\"tab\there\"", "tab\there");
}

/* A multi-line value, as a JSON document in an annotation, arrives on one line. */
static void test_multiline_value(void **state)
{
    (void)state;
    seen s;
    const char *text =
        "a=\"1\"\n"
        "config=\"{\\n  \\\"zeebe\\\": {\\\"address\\\": \\\"gw:26500\\\"}\\n}\\n\"\n"
        "b=\"2\"\n";
    assert_int_equal(parse(text, &s), 0);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.values[1], "{\n  \"zeebe\": {\"address\": \"gw:26500\"}\n}\n");
    assert_int_equal(s.lines[2], 3);
}

static void test_blank_lines_and_crlf(void **state)
{
    (void)state;
    seen s;
    assert_int_equal(parse("\n\na=\"1\"\r\n  \n\tb=\"2\"\n\n", &s), 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.values[0], "1");
    assert_int_equal(s.lines[0], 3);
    assert_int_equal(s.err_lines[0], 5);
    assert_int_equal(parse("", &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(parse("a=\"1\"   ", &s), 0);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_malformed("no-equals-sign", "missing '='");
    expect_malformed("=\"v\"", "empty key");
    expect_malformed("a b=\"v\"", "invalid character in key");
    expect_malformed("k=v", "not a quoted string");
    expect_malformed("k=", "not a quoted string");
    expect_malformed("k= \"v\"", "not a quoted string");
    expect_malformed("k=\"unterminated", "unterminated");
    expect_malformed("k=\"ends with backslash\\", "unterminated");
    expect_malformed("k=\"v\" extra", "after the closing quote");
    expect_malformed("k=\"\\q\"", "bad escape");
    expect_malformed("k=\"\\'\"", "bad escape");
    expect_malformed("k=\"\\x4\"", "\\x");
    expect_malformed("k=\"\\xzz\"", "\\x");
    expect_malformed("k=\"\\u12\"", "\\u");
    expect_malformed("k=\"\\U0011000\"", "\\U");
    expect_malformed("k=\"\\U00110000\"", "code point");
    expect_malformed("k=\"\\ud800\"", "code point");
    expect_malformed("k=\"\\400\"", "octal");
    expect_malformed("k=\"\\18\"", "octal");
    expect_malformed("k=\"\\x00\"", "NUL");
    expect_malformed("k=\"\\u0000\"", "NUL");
    expect_malformed("k=\"\\000\"", "NUL");
}

/* Every malformed line is reported with its number; good lines around it still count. */
static void test_line_numbers(void **state)
{
    (void)state;
    seen s;
    const char *text = "a=\"1\"\n"
                       "broken\n"
                       "b=\"2\"\n"
                       "\n"
                       "c=unquoted\n"
                       "d=\"\\z\"\n";
    assert_int_equal(parse(text, &s), 3);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.nerr, 3);
    assert_int_equal(s.err_lines[0], 2);
    assert_int_equal(s.err_lines[1], 5);
    assert_int_equal(s.err_lines[2], 6);
    assert_int_equal(s.lines[1], 3);
}

/* Raw NUL bytes in the input are a problem of their line, not the end of the input. */
static void test_embedded_nul(void **state)
{
    (void)state;
    seen s;
    memset(&s, 0, sizeof s);
    const char text[] = "a=\"x\0y\"\nb=\"2\"";
    assert_int_equal(sk_annotations_parse_lines(text, sizeof text - 1, on_pair, on_error, &s), 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], "b");
    assert_int_equal(s.err_lines[0], 1);
}

static void plain_pair(void *ud, const char *key, const char *value)
{
    on_pair(ud, 0, key, value);
}

static void test_plain_interface(void **state)
{
    (void)state;
    seen s;
    memset(&s, 0, sizeof s);
    const char *text = "a=\"1\"\nbad\n";
    assert_int_equal(sk_annotations_parse(text, strlen(text), plain_pair, on_error, &s), 1);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.keys[0], "a");
    assert_int_equal(s.err_lines[0], 2);
    assert_int_equal(sk_annotations_parse(text, strlen(text), NULL, NULL, NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kubelet_file),    cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_multiline_value), cmocka_unit_test(test_blank_lines_and_crlf),
        cmocka_unit_test(test_malformed),       cmocka_unit_test(test_line_numbers),
        cmocka_unit_test(test_embedded_nul),    cmocka_unit_test(test_plain_interface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
