#include "handler/listener.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "core/log.h"

typedef struct member {
    sk_session *s;
    struct member *next;
} member;

struct sk_listener {
    struct event_base *base;
    struct evconnlistener *ev;
    sk_dispatcher *d;
    sk_session_opts opts;
    sk_metrics *metrics;
    sk_series *m_accepted;
    member *sessions;
    char *path;
};

static void on_closed(void *ud, sk_session *s)
{
    sk_listener *l = ud;
    for (member **pp = &l->sessions; *pp; pp = &(*pp)->next) {
        if ((*pp)->s == s) {
            member *m = *pp;
            *pp = m->next;
            free(m);
            return;
        }
    }
}

static void accept_cb(struct evconnlistener *ev, evutil_socket_t fd, struct sockaddr *sa,
                      int socklen, void *arg)
{
    (void)ev;
    (void)sa;
    (void)socklen;
    sk_listener *l = arg;
    member *m = malloc(sizeof(*m));
    if (!m) {
        close(fd);
        return;
    }
    m->s = sk_session_new(l->base, fd, l->d, &l->opts, l->metrics, on_closed, l);
    if (!m->s) {
        free(m);
        return;
    }
    m->next = l->sessions;
    l->sessions = m;
    sk_series_add(l->m_accepted, 1);
}

/* Removes a socket file left by a previous run. Fails when the path is not a socket or when a
 * live process still accepts connections on it. */
static int clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return errno == ENOENT ? 0 : (snprintf(err, errlen, "%s: %s", path, strerror(errno)), -1);
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "%s exists and is not a socket; refusing to replace it", path);
        return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
    int live = fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0;
    if (fd >= 0)
        close(fd);
    if (live) {
        snprintf(err, errlen, "%s is in use by another process", path);
        return -1;
    }
    if (unlink(path) != 0) {
        snprintf(err, errlen, "cannot remove stale socket %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

static int bind_socket(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "socket path %s is longer than %zu bytes", path,
                 sizeof(sun.sun_path) - 1);
        return -1;
    }
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket: %s", strerror(errno));
        return -1;
    }
    /* umask makes the file 0660 from the moment it exists; skiff is single-threaded here. */
    mode_t old = umask(0117);
    int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
    umask(old);
    if (rc != 0 || listen(fd, 128) != 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

sk_listener *sk_listener_new(struct event_base *base, const char *path, sk_dispatcher *d,
                             const sk_session_opts *opts, sk_metrics *metrics, char *err,
                             size_t errlen)
{
    sk_listener *l = calloc(1, sizeof(*l));
    if (!l || !(l->path = strdup(path))) {
        snprintf(err, errlen, "out of memory");
        free(l);
        return NULL;
    }
    *l = (sk_listener){.base = base, .d = d, .opts = *opts, .metrics = metrics, .path = l->path};
    l->m_accepted = sk_metric_series(sk_metrics_counter(metrics, "skiff_handler_connections_total",
                                                        "Handler connections accepted.", NULL),
                                     NULL);
    int fd = -1;
    if (clear_stale(path, err, errlen) != 0 || (fd = bind_socket(path, err, errlen)) < 0)
        goto fail;
    l->ev = evconnlistener_new(base, accept_cb, l, LEV_OPT_CLOSE_ON_FREE, -1, fd);
    if (!l->ev) {
        close(fd);
        snprintf(err, errlen, "cannot watch %s", path);
        goto fail;
    }
    return l;
fail:
    free(l->path);
    free(l);
    return NULL;
}

void sk_listener_stop(sk_listener *l)
{
    if (l && l->ev)
        evconnlistener_disable(l->ev);
}

void sk_listener_free(sk_listener *l)
{
    if (!l)
        return;
    while (l->sessions) {
        member *m = l->sessions;
        l->sessions = m->next;
        sk_session_free(m->s);
        free(m);
    }
    if (l->ev) {
        evconnlistener_free(l->ev);
        unlink(l->path);
    }
    free(l->path);
    free(l);
}
