/* Helpers shared by the configuration tests (test_config*.c): load from
 * given sources through temporary files and check the problems reported. Include after
 * cmocka.h and the configuration header. */
#ifndef SK_CONFIG_TEST_HELPERS_H
#define SK_CONFIG_TEST_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *file;        /* JSON text of the config file, or NULL */
    const char *annotations; /* text of the annotations file, or NULL */
    const char *const *env;  /* NULL-terminated NAME=value list, or NULL */
    const char *const *argv; /* NULL-terminated options, or NULL */
} srcs;

#define LIST(...) ((const char *const[]){__VA_ARGS__, NULL})

static inline char *write_temp(const char *text)
{
    char path[] = "/tmp/skiff-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t n = strlen(text);
    assert_int_equal(write(fd, text, n), (ssize_t)n);
    close(fd);
    return strdup(path);
}

/* Loads from the given sources; *problems receives the report (free it). */
static inline int load(sk_config *cfg, const srcs *s, char **problems)
{
    char *file = s->file ? write_temp(s->file) : NULL;
    char *ann = s->annotations ? write_temp(s->annotations) : NULL;
    int argc = 0;
    while (s->argv && s->argv[argc])
        argc++;
    sk_config_sources src = {.file_path = file,
                             .annotations_path = ann,
                             .environ = (char *const *)s->env,
                             .argc = argc,
                             .argv = (char *const *)s->argv};
    size_t len;
    char *buf = NULL;
    FILE *out = open_memstream(&buf, &len);
    int n = sk_config_load(cfg, &src, out);
    fclose(out);
    if (file)
        unlink(file);
    if (ann)
        unlink(ann);
    free(file);
    free(ann);
    *problems = buf;
    return n;
}

static inline int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static inline void expect_in(const char *hay, const char *needle)
{
    if (!strstr(hay, needle))
        fail_msg("\"%s\" does not contain \"%s\"", hay, needle);
}

/* Loads expecting no problem. */
static inline void load_ok(sk_config *cfg, const srcs *s)
{
    char *p;
    int n = load(cfg, s, &p);
    if (n != 0)
        fail_msg("unexpected problems:\n%s", p);
    free(p);
}

/* Loads expecting exactly one problem that contains every needle. */
static inline void load_one_problem(const srcs *s, const char *const *needles)
{
    sk_config cfg;
    char *p;
    int n = load(&cfg, s, &p);
    if (n != 1 || count_lines(p) != 1)
        fail_msg("expected one problem, got %d:\n%s", n, p);
    for (size_t i = 0; needles[i]; i++)
        expect_in(p, needles[i]);
    free(p);
    sk_config_clear(&cfg);
}

#endif
