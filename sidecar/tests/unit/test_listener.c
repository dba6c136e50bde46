/* Handler socket listener: file mode, stale socket replaced, live socket and other files
 * refused, connections accepted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/log.h"
#include "handler/listener.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    struct event_base *base;
    sk_metrics *metrics;
    sk_dispatcher *d;
} fixture;

static const sk_session_opts opts = {.max_frame = 1024, .hello_timeout_ms = 1000};

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    sk_log_init("test", SK_LOG_ERROR, stderr);
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/skiff-listener-XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->path, sizeof(fx->path), "%s/handler.sock", fx->dir);
    fx->base = event_base_new();
    fx->metrics = sk_metrics_new();
    fx->d = sk_dispatcher_new(fx->metrics, 1024);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    unlink(fx->path);
    rmdir(fx->dir);
    sk_dispatcher_free(fx->d);
    sk_metrics_free(fx->metrics);
    event_base_free(fx->base);
    free(fx);
    return 0;
}

/* The fixture's paths are short; one that does not fit sun_path fails the test rather than
 * binding a truncated name. */
static struct sockaddr_un unix_address(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    size_t n = strlen(path);
    assert_true(n < sizeof(sun.sun_path));
    memcpy(sun.sun_path, path, n + 1);
    return sun;
}

static int bound_socket(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = unix_address(path);
    assert_int_equal(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
    return fd;
}

static int connect_to(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = unix_address(path);
    int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void test_mode_and_accept(void **state)
{
    fixture *fx = *state;
    char err[256] = "";
    sk_listener *l =
        sk_listener_new(fx->base, fx->path, fx->d, &opts, fx->metrics, err, sizeof(err));
    assert_non_null(l);
    struct stat st;
    assert_int_equal(lstat(fx->path, &st), 0);
    assert_true(S_ISSOCK(st.st_mode));
    assert_int_equal(st.st_mode & 0777, 0660);
    int c = connect_to(fx->path);
    assert_true(c >= 0);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    close(c);
    event_base_loop(fx->base, EVLOOP_NONBLOCK);
    sk_listener_free(l);
    assert_int_equal(access(fx->path, F_OK), -1); /* removed on exit */
}

static void test_stale_socket_replaced(void **state)
{
    fixture *fx = *state;
    close(bound_socket(fx->path)); /* a socket file nobody listens on */
    char err[256] = "";
    sk_listener *l =
        sk_listener_new(fx->base, fx->path, fx->d, &opts, fx->metrics, err, sizeof(err));
    assert_non_null(l);
    int c = connect_to(fx->path);
    assert_true(c >= 0);
    close(c);
    sk_listener_free(l);
}

static void test_live_socket_refused(void **state)
{
    fixture *fx = *state;
    int live = bound_socket(fx->path);
    assert_int_equal(listen(live, 1), 0);
    char err[256] = "";
    assert_null(sk_listener_new(fx->base, fx->path, fx->d, &opts, fx->metrics, err, sizeof(err)));
    assert_non_null(strstr(err, "in use"));
    int c = connect_to(fx->path); /* the other process still owns it */
    assert_true(c >= 0);
    close(c);
    close(live);
}

static void test_regular_file_refused(void **state)
{
    fixture *fx = *state;
    FILE *f = fopen(fx->path, "w");
    fputs("precious", f);
    fclose(f);
    char err[256] = "";
    assert_null(sk_listener_new(fx->base, fx->path, fx->d, &opts, fx->metrics, err, sizeof(err)));
    assert_non_null(strstr(err, "not a socket"));
    struct stat st;
    assert_int_equal(stat(fx->path, &st), 0);
    assert_true(S_ISREG(st.st_mode));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_mode_and_accept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_socket_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_live_socket_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_regular_file_refused, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
