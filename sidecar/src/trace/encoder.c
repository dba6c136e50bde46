/* The encoder thread: OTLP encoding (and gzip) of a batch away from the loop.
 *
 * One job slot and one result slot under a mutex held only to move pointers; the loop never
 * waits for the thread (a busy encoder leaves the spans in the tracer's ring). The thread wakes
 * the loop through an eventfd read by a libevent event; the loop then takes the body. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "trace/internal.h"

struct sk_otlp_encoder {
    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    sk_span **job; /* the batch to encode (owned), NULL when none */
    size_t job_n;
    int has_done; /* a result waits for the loop */
    uint8_t *done;
    size_t done_len, done_n;
    int efd;
    struct event *ev;
    const char *service_name, *resource; /* the tracer's, immutable while the thread runs */
    int gzip;
    sk_otlp_encoded_cb cb;
    void *ud;
};

/* Encodes, frees the spans and compresses; NULL when out of memory. */
static uint8_t *encode(sk_otlp_encoder *e, sk_span **spans, size_t n, size_t *len)
{
    uint8_t *body = sk_otlp_encode(spans, n, e->service_name, e->resource, len);
    for (size_t i = 0; i < n; i++)
        sk_span_free(spans[i]);
    free(spans);
    if (body && e->gzip) {
        uint8_t *z = sk_trace_gzip(body, *len, len);
        free(body);
        body = z;
    }
    return body;
}

static void *run(void *arg)
{
    sk_otlp_encoder *e = arg;
    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (!e->job && !e->stop)
            pthread_cond_wait(&e->cv, &e->mu);
        if (e->stop)
            break;
        sk_span **spans = e->job;
        size_t n = e->job_n, len = 0;
        e->job = NULL;
        pthread_mutex_unlock(&e->mu);
        uint8_t *body = encode(e, spans, n, &len);
        pthread_mutex_lock(&e->mu);
        e->done = body;
        e->done_len = body ? len : 0;
        e->done_n = n;
        e->has_done = 1;
        uint64_t one = 1;
        while (write(e->efd, &one, sizeof one) < 0 && errno == EINTR)
            ;
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* The eventfd fired: hands the result to the tracer (on the loop). */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    sk_otlp_encoder *e = arg;
    uint64_t v;
    while (read(fd, &v, sizeof v) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&e->mu);
    int has = e->has_done;
    uint8_t *body = e->done;
    size_t len = e->done_len, n = e->done_n;
    e->has_done = 0;
    e->done = NULL;
    pthread_mutex_unlock(&e->mu);
    if (has)
        e->cb(e->ud, body, len, n);
}

sk_otlp_encoder *sk_otlp_encoder_new(struct event_base *base, const char *service_name,
                                     const char *resource, int gzip, sk_otlp_encoded_cb cb,
                                     void *ud)
{
    sk_otlp_encoder *e = calloc(1, sizeof(*e));
    if (!e)
        return NULL;
    e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    e->service_name = service_name;
    e->resource = resource;
    e->gzip = gzip;
    e->cb = cb;
    e->ud = ud;
    if (e->efd < 0 || !(e->ev = event_new(base, e->efd, EV_READ | EV_PERSIST, wake_cb, e)) ||
        event_add(e->ev, NULL) || pthread_create(&e->thread, NULL, run, e) != 0) {
        sk_otlp_encoder_free(e);
        return NULL;
    }
    e->started = 1;
    return e;
}

int sk_otlp_encoder_submit(sk_otlp_encoder *e, sk_span **spans, size_t n)
{
    pthread_mutex_lock(&e->mu);
    int busy = e->job != NULL;
    if (!busy) {
        e->job = spans;
        e->job_n = n;
        pthread_cond_signal(&e->cv);
    }
    pthread_mutex_unlock(&e->mu);
    return busy ? -1 : 0;
}

void sk_otlp_encoder_free(sk_otlp_encoder *e)
{
    if (!e)
        return;
    if (e->started) {
        pthread_mutex_lock(&e->mu);
        e->stop = 1;
        pthread_cond_signal(&e->cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->thread, NULL);
    }
    for (size_t i = 0; e->job && i < e->job_n; i++)
        sk_span_free(e->job[i]);
    free(e->job);
    free(e->done);
    if (e->ev)
        event_free(e->ev);
    if (e->efd >= 0)
        close(e->efd);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}
