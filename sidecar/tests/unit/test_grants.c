/* The allow-lists of the handlers' secret and token calls: which patterns are well formed, which
 * references a handler may ask for, and which pattern allows which reference. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <event2/event.h>

#include "secrets/grants.h"

static void test_pattern_check(void **state)
{
    (void)state;
    char err[160];
    const char *good[] = {"vault:secret/app/db#password", "vault:secret/app/*#token",
                          "vault:secret/*#*", "vault:kv/a#*", NULL};
    for (size_t i = 0; good[i]; i++)
        assert_int_equal(sk_grant_pattern_check(good[i], err, sizeof err), 0);
    const char *bad[] = {"secret/app#x",
                         "file:/etc/passwd",
                         "vault:secret/a*#x",
                         "vault:secret/*/b#x",
                         "vault:sec*/a#x",
                         "vault:secret/a#pass*",
                         "vault:secret/../x#y",
                         "vault:secret/a/./b#y",
                         "vault:secret/a#",
                         "vault:secret#x",
                         "vault:secret/a//b#x",
                         "",
                         NULL};
    for (size_t i = 0; bad[i]; i++) {
        err[0] = '\0';
        assert_int_equal(sk_grant_pattern_check(bad[i], err, sizeof err), -1);
        assert_true(err[0] != '\0');
    }
}

static void test_reference_check(void **state)
{
    (void)state;
    char err[160];
    assert_int_equal(sk_grant_reference_check("vault:secret/app/db#password", err, sizeof err), 0);
    const char *bad[] = {"vault:secret/app/*#x",  "vault:secret/app#*",
                         "vault:secret/../app#x", "vault:secret/app/..#x",
                         "literal-value",         "file:/etc/shadow",
                         "vault:secret/a#b#c",    NULL};
    for (size_t i = 0; bad[i]; i++)
        assert_int_equal(sk_grant_reference_check(bad[i], err, sizeof err), -1);
}

static void test_match(void **state)
{
    (void)state;
    struct {
        const char *pattern, *reference;
        int match;
    } cases[] = {
        {"vault:secret/app/db#password", "vault:secret/app/db#password", 1},
        {"vault:secret/app/db#password", "vault:secret/app/db#user", 0},
        {"vault:secret/app/db#password", "vault:secret/app/db2#password", 0},
        {"vault:secret/app/db#password", "vault:secret/app#password", 0},
        {"vault:secret/app/db#password", "vault:other/app/db#password", 0},
        {"vault:secret/app/db#*", "vault:secret/app/db#user", 1},
        {"vault:secret/app/*#token", "vault:secret/app/x#token", 1},
        {"vault:secret/app/*#token", "vault:secret/app/x/y#token", 1},
        {"vault:secret/app/*#token", "vault:secret/app#token", 0},
        {"vault:secret/app/*#token", "vault:secret/apple/x#token", 0},
        {"vault:secret/app/*#token", "vault:secret/app/x#other", 0},
        {"vault:secret/app/*#token", "vault:secret/app/../root#token", 0},
        {"vault:secret/*#*", "vault:secret/anything/at/all#f", 1},
        {"vault:secret/*#*", "vault:secrets/a#f", 0},
        {"vault:secret/a*#x", "vault:secret/ab#x", 0}, /* a malformed pattern allows nothing */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (sk_grant_match(cases[i].pattern, cases[i].reference) != cases[i].match)
            fail_msg("%s vs %s: expected %d", cases[i].pattern, cases[i].reference, cases[i].match);
    }
}

static void test_new_refuses_bad_pattern(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    char *secrets[] = {"vault:secret/ok#f", "vault:secret/x*#f"};
    sk_grants_opts o = {.secrets = secrets, .nsecrets = 2};
    char err[256];
    assert_null(sk_grants_new(base, NULL, &o, err, sizeof err));
    assert_non_null(strstr(err, "vault:secret/x*#f"));
    o.nsecrets = 1;
    sk_grants *g = sk_grants_new(base, NULL, &o, err, sizeof err);
    assert_non_null(g);
    sk_grants_free(g);
    sk_grants_free(NULL);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pattern_check),
        cmocka_unit_test(test_reference_check),
        cmocka_unit_test(test_match),
        cmocka_unit_test(test_new_refuses_bad_pattern),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
