/* kafka.reader_schemas items: "<topic>=file:<path>" and "<topic>=subject:<subject>:<version>". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/reader_item.h"

static void expect_refused(const char *item, const char *part)
{
    sk_reader_item ri;
    char err[400] = "";
    if (sk_reader_item_parse(item, &ri, err, sizeof err) == 0)
        fail_msg("accepted: %s", item);
    if (!strstr(err, part))
        fail_msg("%s: expected \"%s\" in: %s", item, part, err);
}

static void test_file(void **state)
{
    (void)state;
    sk_reader_item ri;
    char err[300];
    assert_int_equal(sk_reader_item_parse("orders=file:schemas/o.avsc", &ri, err, sizeof err), 0);
    assert_int_equal(ri.kind, SK_READER_FILE);
    assert_int_equal(ri.topic_len, 6);
    assert_memory_equal(ri.topic, "orders", 6);
    assert_string_equal(ri.path, "schemas/o.avsc");
    expect_refused("orders=file:", "no path");
}

static void test_subject(void **state)
{
    (void)state;
    sk_reader_item ri;
    char err[300];
    assert_int_equal(sk_reader_item_parse("orders=subject:orders-value:2", &ri, err, sizeof err),
                     0);
    assert_int_equal(ri.kind, SK_READER_SUBJECT);
    assert_memory_equal(ri.topic, "orders", ri.topic_len);
    assert_int_equal(ri.subject_len, strlen("orders-value"));
    assert_memory_equal(ri.subject, "orders-value", ri.subject_len);
    assert_int_equal(ri.version, 2);
    /* The version follows the last colon: a subject may hold colons (and '='). */
    assert_int_equal(sk_reader_item_parse("t=subject:ctx:a=b:c:2147483647", &ri, err, sizeof err),
                     0);
    assert_int_equal(ri.subject_len, strlen("ctx:a=b:c"));
    assert_memory_equal(ri.subject, "ctx:a=b:c", ri.subject_len);
    assert_int_equal(ri.version, 2147483647);
}

static void test_subject_refused(void **state)
{
    (void)state;
    expect_refused("t=subject:orders-value:latest", "version \"latest\" is refused");
    expect_refused("t=subject:orders-value:-1", "version \"-1\" is refused");
    expect_refused("t=subject:orders-value:0", "not a number from 1 to 2147483647");
    expect_refused("t=subject:orders-value:2147483648", "not a number from 1");
    expect_refused("t=subject:orders-value:+2", "not a number from 1");
    expect_refused("t=subject:orders-value:2x", "not a number from 1");
    expect_refused("t=subject:orders-value:", "not a number from 1");
    expect_refused("t=subject:orders-value", "no subject or no version");
    expect_refused("t=subject::2", "no subject or no version");
    expect_refused("t=subject:", "no subject or no version");
    char big[1100];
    memcpy(big, "t=subject:", 10);
    memset(big + 10, 's', 1025);
    strcpy(big + 1035, ":1");
    expect_refused(big, "subject longer than 1024 bytes");
    big[1034] = ':';
    big[1035] = '1';
    big[1036] = '\0';
    sk_reader_item ri;
    char err[300];
    assert_int_equal(sk_reader_item_parse(big, &ri, err, sizeof err), 0); /* 1024 bytes */
    assert_int_equal(ri.subject_len, 1024);
}

static void test_form_refused(void **state)
{
    (void)state;
    expect_refused("orders=orders-value:2", "expected <topic>=file:<path> or "
                                            "<topic>=subject:<subject>:<version>");
    expect_refused("=file:x.avsc", "no topic");
    expect_refused("orders", "no topic");
    expect_refused("orders=registry:orders-value:2", "expected <topic>=file:<path>");
    expect_refused("orders=Subject:orders-value:2", "expected <topic>=file:<path>");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_subject),
        cmocka_unit_test(test_subject_refused),
        cmocka_unit_test(test_form_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
