#include "net/http.h"
#include "core/metrics.h"
#include "net/http_obs.h"
#include "net/tls.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#ifndef SKIFF_VERSION
#define SKIFF_VERSION "dev"
#endif

#define DEFAULT_TIMEOUT_MS 30000
#define MIN_BODY_ALLOC 4096

/* A request is RUNNING inside curl, DONE when curl finished it and the callback waits for the
 * deliver event, DELIVERING while its callback runs. */
enum req_state { REQ_RUNNING, REQ_DONE, REQ_DELIVERING };

struct sk_http_req {
    sk_http *h;
    CURL *easy;
    struct curl_slist *headers;
    char *buf; /* response body, NUL-terminated */
    size_t len, cap, max;
    int too_big;
    enum req_state state;
    CURLcode code;
    char errbuf[CURL_ERROR_SIZE];
    sk_http_cb cb;
    void *ud;
    const sk_http_stream_cbs *scb; /* streaming request: its callbacks, else NULL */
    char **head;                   /* streaming: header lines of the response being read */
    size_t nhead, head_cap;
    int head_done; /* streaming: on_head was called */
    int stopped;   /* streaming: a callback returned -1 */
    sk_span *span; /* CLIENT span, NULL when untraced */
    TAILQ_ENTRY(sk_http_req) link;
};

/* One socket curl asked us to watch. */
typedef struct sock {
    struct event *ev;
    LIST_ENTRY(sock) link;
} sock;

TAILQ_HEAD(req_list, sk_http_req);

struct sk_http {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;   /* curl's single timeout */
    struct event *deliver; /* runs the callbacks of finished requests */
    struct req_list running, done;
    LIST_HEAD(, sock) socks;
    size_t max_body;
    sk_tls *tls;                    /* TLS material of https requests, NULL: libcurl's defaults */
    int delivering;                 /* inside on_deliver */
    int closed;                     /* sk_http_free was called */
    int untraced;                   /* no spans, no traceparent (the OTLP exporter's client) */
    sk_series *m_duration, *m_ttfb; /* NULL: no metrics */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static int global_rc = -1;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

int sk_http_global_init(void)
{
    pthread_once(&global_once, global_init);
    return global_rc;
}

/* ---- curl <-> libevent ---- */

static void sock_free(sock *s)
{
    LIST_REMOVE(s, link);
    if (s->ev)
        event_free(s->ev);
    free(s);
}

/* Moves every transfer curl finished to the done list; on_deliver runs their callbacks, so no
 * user code ever runs inside curl_multi_socket_action. */
static void collect_done(sk_http *h)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(h->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        void *p = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &p);
        sk_http_req *r = p;
        r->code = msg->data.result; /* msg dies with curl_multi_remove_handle */
        curl_multi_remove_handle(h->multi, r->easy);
        TAILQ_REMOVE(&h->running, r, link);
        r->state = REQ_DONE;
        TAILQ_INSERT_TAIL(&h->done, r, link);
    }
    if (!TAILQ_EMPTY(&h->done))
        event_active(h->deliver, EV_TIMEOUT, 1);
}

/* The argument is the client, not the sock: curl may drop the socket (and we its event) inside
 * curl_multi_socket_action. libevent copies what it needs before calling us. */
static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
    sk_http *h = arg;
    int running = 0;
    int action =
        ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    curl_multi_socket_action(h->multi, fd, action, &running);
    collect_done(h);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_http *h = arg;
    int running = 0;
    curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    collect_done(h);
}

/* CURLMOPT_SOCKETFUNCTION: (re)arm one persistent event per socket with the interest curl asks
 * for, or drop it. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    (void)easy;
    sk_http *h = userp;
    sock *s = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (s) {
            curl_multi_assign(h->multi, fd, NULL);
            sock_free(s);
        }
        return 0;
    }
    if (!s) {
        if (!(s = calloc(1, sizeof *s)))
            return -1;
        LIST_INSERT_HEAD(&h->socks, s, link);
        curl_multi_assign(h->multi, fd, s);
    }
    if (s->ev)
        event_free(s->ev);
    short kind = EV_PERSIST | ((what & CURL_POLL_IN) ? EV_READ : 0) |
                 ((what & CURL_POLL_OUT) ? EV_WRITE : 0);
    s->ev = event_new(h->base, fd, kind, on_sock_event, h);
    if (!s->ev || event_add(s->ev, NULL) < 0)
        return -1;
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's one timeout; 0 means "as soon as possible", from the loop. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    sk_http *h = userp;
    if (timeout_ms < 0) {
        evtimer_del(h->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    return evtimer_add(h->timer, &tv) < 0 ? -1 : 0;
}

/* ---- requests ---- */

static void head_clear(sk_http_req *r)
{
    for (size_t i = 0; i < r->nhead; i++)
        free(r->head[i]);
    r->nhead = 0;
}

static void req_free(sk_http_req *r)
{
    if (r->easy)
        curl_easy_cleanup(r->easy);
    head_clear(r);
    free(r->head);
    curl_slist_free_all(r->headers);
    free(r->buf);
    sk_span_free(r->span); /* a cancelled request: its span is not exported */
    free(r);
}

/* CURLOPT_WRITEFUNCTION: appends to the body; a body over the bound fails the transfer. */
static size_t on_write(char *data, size_t size, size_t n, void *ud)
{
    sk_http_req *r = ud;
    size_t len = size * n;
    if (len > r->max - r->len) {
        r->too_big = 1;
        return 0;
    }
    if (r->len + len + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : MIN_BODY_ALLOC;
        while (cap < r->len + len + 1)
            cap *= 2;
        if (r->max < SIZE_MAX && cap > r->max + 1)
            cap = r->max + 1;
        char *buf = realloc(r->buf, cap);
        if (!buf)
            return 0;
        r->buf = buf;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, data, len);
    r->len += len;
    r->buf[r->len] = '\0';
    return len;
}

static int valid_method(const char *m)
{
    if (!m || !*m)
        return 0;
    for (; *m; m++)
        if (*m < 'A' || *m > 'Z')
            return 0;
    return 1;
}

/* Copies the caller's headers, refusing CR and LF (no header injection), adds the request
 * span's traceparent and turns off "Expect: 100-continue", which would cost a round trip on
 * every large POST. */
static int set_headers(sk_http_req *r, const char *const *headers)
{
    if (r->span) {
        char line[sizeof "traceparent: " + SK_TRACEPARENT_LEN];
        memcpy(line, "traceparent: ", sizeof "traceparent: " - 1);
        sk_span_traceparent(r->span, line + sizeof "traceparent: " - 1);
        struct curl_slist *l = curl_slist_append(r->headers, line);
        if (!l)
            return -1;
        r->headers = l;
    }
    for (size_t i = 0; headers && headers[i]; i++) {
        if (strpbrk(headers[i], "\r\n"))
            return -1;
        struct curl_slist *l = curl_slist_append(r->headers, headers[i]);
        if (!l)
            return -1;
        r->headers = l;
    }
    struct curl_slist *l = curl_slist_append(r->headers, "Expect:");
    if (!l)
        return -1;
    r->headers = l;
    return curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers) == CURLE_OK ? 0 : -1;
}

/* A body always goes through COPYPOSTFIELDS (even an empty POST), so that curl never falls
 * back to reading stdin. */
static int set_method(CURL *e, const char *method, const char *body, size_t len)
{
    int post = !strcmp(method, "POST");
    if (!strcmp(method, "HEAD"))
        return curl_easy_setopt(e, CURLOPT_NOBODY, 1L) == CURLE_OK ? 0 : -1;
    if (body || post) {
        if (curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len) ||
            curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, body ? body : ""))
            return -1;
    } else if (curl_easy_setopt(e, CURLOPT_HTTPGET, 1L)) {
        return -1;
    }
    if (post || (!body && !strcmp(method, "GET")))
        return 0;
    return curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method) == CURLE_OK ? 0 : -1;
}

static int set_options(sk_http_req *r, const char *url, const char *userpwd, int64_t timeout_ms,
                       sk_tls *tls)
{
    CURL *e = r->easy;
    if (tls && sk_tls_curl_setup(tls, e) != 0)
        return -1;
    if (timeout_ms <= 0)
        timeout_ms = DEFAULT_TIMEOUT_MS;
    if (curl_easy_setopt(e, CURLOPT_URL, url) || curl_easy_setopt(e, CURLOPT_PRIVATE, r) ||
        curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) ||
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) ||
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") ||
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)timeout_ms) ||
        curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf) ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) ||
        curl_easy_setopt(e, CURLOPT_WRITEDATA, r) ||
        curl_easy_setopt(e, CURLOPT_USERAGENT, "skiff/" SKIFF_VERSION))
        return -1;
    /* curl reads 0 as "no limit"; on_write still enforces a bound of 0. */
    if (r->max > 0 && curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)r->max))
        return -1;
    if (userpwd && (curl_easy_setopt(e, CURLOPT_USERPWD, userpwd) ||
                    curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC)))
        return -1;
    return 0;
}

sk_http_req *sk_http_request(sk_http *h, const char *method, const char *url,
                             const char *const *headers, const char *body, size_t body_len,
                             const char *userpwd, int64_t timeout_ms, sk_http_cb cb, void *ud)
{
    if (!h || h->closed || !valid_method(method) || !url || !cb || (!body && body_len))
        return NULL;
    sk_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (sk_http_req){.h = h, .cb = cb, .ud = ud, .max = h->max_body};
    if (!h->untraced && !(r->span = sk_http_span_begin(method, url)))
        goto fail;
    if (!(r->easy = curl_easy_init()) || set_options(r, url, userpwd, timeout_ms, h->tls) < 0 ||
        set_method(r->easy, method, body, body_len) < 0 || set_headers(r, headers) < 0)
        goto fail;
    /* Adding arms curl's timer at 0 ms: the transfer starts from the loop. */
    if (curl_multi_add_handle(h->multi, r->easy) != CURLM_OK)
        goto fail;
    r->state = REQ_RUNNING;
    TAILQ_INSERT_TAIL(&h->running, r, link);
    return r;
fail:
    req_free(r);
    return NULL;
}

void sk_http_cancel(sk_http_req *r)
{
    if (!r || r->state == REQ_DELIVERING)
        return;
    sk_http *h = r->h;
    if (r->state == REQ_RUNNING) {
        curl_multi_remove_handle(h->multi, r->easy);
        TAILQ_REMOVE(&h->running, r, link);
    } else {
        TAILQ_REMOVE(&h->done, r, link);
    }
    req_free(r);
}

/* ---- delivery ---- */

static double info_seconds(CURL *e, CURLINFO what)
{
    curl_off_t us = 0;
    if (curl_easy_getinfo(e, what, &us) != CURLE_OK)
        return 0;
    return (double)us / 1e6;
}

static void deliver(sk_http_req *r)
{
    char msg[CURL_ERROR_SIZE + 128];
    sk_http_result res = {
        .body = r->buf ? r->buf : "",
        .body_len = r->len,
        .ttfb_s = info_seconds(r->easy, CURLINFO_STARTTRANSFER_TIME_T),
        .total_s = info_seconds(r->easy, CURLINFO_TOTAL_TIME_T),
    };
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &res.status);
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(r->easy, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK)
        res.retry_after_s = (int64_t)retry_after;
    if (r->code != CURLE_OK) {
        if (r->stopped)
            snprintf(msg, sizeof msg, "stopped by the receiver");
        else if (r->too_big || r->code == CURLE_FILESIZE_EXCEEDED)
            snprintf(msg, sizeof msg, "response body over the limit of %zu bytes", r->max);
        else if (r->errbuf[0])
            snprintf(msg, sizeof msg, "%s: %s", curl_easy_strerror(r->code), r->errbuf);
        else
            snprintf(msg, sizeof msg, "%s", curl_easy_strerror(r->code));
        res.error = msg;
    }
    if (r->h->m_duration) {
        sk_series_observe(r->h->m_duration, res.total_s);
        if (res.status > 0)
            sk_series_observe(r->h->m_ttfb, res.ttfb_s);
    }
    sk_http_span_end(r->span, res.status, r->code, r->too_big, res.error);
    r->span = NULL;
    if (r->scb) {
        res.body = NULL;
        r->scb->on_end(r->ud, &res);
        return;
    }
    r->cb(r->ud, &res);
}

static void destroy(sk_http *h)
{
    if (h->deliver)
        event_free(h->deliver);
    free(h);
}

/* Runs the callbacks of finished requests. A callback may free the client: stop_all has then
 * emptied the lists, and the memory goes once the loop below is left. */
static void on_deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sk_http *h = arg;
    sk_http_req *r;
    h->delivering = 1;
    while (!h->closed && (r = TAILQ_FIRST(&h->done)) != NULL) {
        TAILQ_REMOVE(&h->done, r, link);
        r->state = REQ_DELIVERING;
        deliver(r);
        req_free(r);
    }
    h->delivering = 0;
    if (h->closed)
        destroy(h);
}

/* ---- client ---- */

sk_http *sk_http_new(struct event_base *base, char *err, size_t errlen)
{
    if (sk_http_global_init() < 0) {
        snprintf(err, errlen, "http: curl_global_init failed");
        return NULL;
    }
    sk_http *h = calloc(1, sizeof *h);
    if (!h) {
        snprintf(err, errlen, "http: out of memory");
        return NULL;
    }
    h->base = base;
    h->max_body = SK_HTTP_MAX_BODY;
    TAILQ_INIT(&h->running);
    TAILQ_INIT(&h->done);
    LIST_INIT(&h->socks);
    if (!(h->timer = evtimer_new(base, on_timer, h)) ||
        !(h->deliver = event_new(base, -1, 0, on_deliver, h)) || !(h->multi = curl_multi_init())) {
        snprintf(err, errlen, "http: out of memory");
        goto fail;
    }
    if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket) ||
        curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer) ||
        curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h)) {
        snprintf(err, errlen, "http: cannot set up the curl multi handle");
        goto fail;
    }
    return h;
fail:
    sk_http_free(h);
    return NULL;
}

void sk_http_set_tls(sk_http *h, sk_tls *t)
{
    h->tls = t;
}

void sk_http_set_observe(sk_http *h, sk_metrics *m, const char *peer, int traced)
{
    h->untraced = !traced;
    const char *const labels[] = {peer, NULL};
    sk_metric *d = m ? sk_metrics_histogram(m, "skiff_http_client_request_duration_seconds",
                                            "HTTP requests skiff made, start to end (or failure), "
                                            "by peer.",
                                            (const char *const[]){"peer", NULL},
                                            sk_metrics_latency_buckets, sk_metrics_latency_nbuckets)
                     : NULL;
    sk_metric *t = m ? sk_metrics_histogram(m, "skiff_http_client_ttfb_seconds",
                                            "HTTP requests skiff made, start to the first byte "
                                            "of the response, by peer.",
                                            (const char *const[]){"peer", NULL},
                                            sk_metrics_latency_buckets, sk_metrics_latency_nbuckets)
                     : NULL;
    h->m_duration = d ? sk_metric_series(d, labels) : NULL;
    h->m_ttfb = t ? sk_metric_series(t, labels) : NULL;
    if (!h->m_ttfb)
        h->m_duration = NULL;
}

void sk_http_set_max_body(sk_http *h, size_t max)
{
    if (h)
        h->max_body = max;
}

/* Cancels everything and releases curl and its events; the deliver event and the struct stay
 * for on_deliver when it is on the stack. */
static void stop_all(sk_http *h)
{
    sk_http_req *r;
    sock *s;
    while ((r = TAILQ_FIRST(&h->running)) != NULL)
        sk_http_cancel(r);
    while ((r = TAILQ_FIRST(&h->done)) != NULL)
        sk_http_cancel(r);
    if (h->multi)
        curl_multi_cleanup(h->multi);
    h->multi = NULL;
    while ((s = LIST_FIRST(&h->socks)) != NULL)
        sock_free(s);
    if (h->timer)
        event_free(h->timer);
    h->timer = NULL;
}

void sk_http_free(sk_http *h)
{
    if (!h || h->closed)
        return;
    h->closed = 1;
    stop_all(h);
    if (!h->delivering)
        destroy(h);
}

/* ---- streaming ---- */

/* Keeps one header line (CR LF cut); a status line starts a new response (a 1xx came
 * before). */
static int head_add(sk_http_req *r, const char *line, size_t len)
{
    while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
        len--;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        head_clear(r);
        return 0;
    }
    if (r->nhead == r->head_cap) {
        size_t cap = r->head_cap ? r->head_cap * 2 : 16;
        char **grown = realloc(r->head, cap * sizeof *grown);
        if (!grown)
            return -1;
        r->head = grown;
        r->head_cap = cap;
    }
    if (!(r->head[r->nhead] = strndup(line, len)))
        return -1;
    r->nhead++;
    return 0;
}

/* Hands the final response's head over once. */
static int head_deliver(sk_http_req *r)
{
    long status = 0;
    r->head_done = 1;
    curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
    if (r->scb->on_head(r->ud, status, (const char *const *)r->head, r->nhead) < 0) {
        r->stopped = 1;
        return -1;
    }
    return 0;
}

/* CURLOPT_HEADERFUNCTION of a streaming request: collects lines; the empty line that ends the
 * head of a final (non-1xx) response delivers it. Trailers after the body are ignored. */
static size_t on_stream_header(char *data, size_t size, size_t n, void *ud)
{
    sk_http_req *r = ud;
    size_t len = size * n;
    if (r->head_done)
        return len;
    if (len <= 2 && (len == 0 || data[0] == '\r' || data[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && head_deliver(r) < 0)
            return 0;
        return len;
    }
    return head_add(r, data, len) < 0 ? 0 : len;
}

static size_t on_stream_write(char *data, size_t size, size_t n, void *ud)
{
    sk_http_req *r = ud;
    size_t len = size * n;
    if (!r->head_done && head_deliver(r) < 0)
        return 0;
    int rc = r->scb->on_data(r->ud, data, len);
    if (rc == 1)
        return CURL_WRITEFUNC_PAUSE;
    if (rc < 0) {
        r->stopped = 1;
        return 0;
    }
    return len;
}

static int stream_options(sk_http_req *r, const sk_http_stream_opts *o)
{
    CURL *e = r->easy;
    if (curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_stream_header) ||
        curl_easy_setopt(e, CURLOPT_HEADERDATA, r) ||
        curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_stream_write) ||
        curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1))
        return -1;
    if (o->connect_timeout_ms > 0 &&
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)o->connect_timeout_ms))
        return -1;
    return 0;
}

sk_http_req *sk_http_stream(sk_http *h, const sk_http_stream_opts *o, const sk_http_stream_cbs *cbs,
                            void *ud)
{
    if (!h || h->closed || !o || !cbs || !cbs->on_head || !cbs->on_data || !cbs->on_end ||
        !valid_method(o->method) || !o->url || (!o->body && o->body_len))
        return NULL;
    sk_http_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (sk_http_req){.h = h, .scb = cbs, .ud = ud, .max = 0};
    if (!(r->easy = curl_easy_init()) ||
        set_options(r, o->url, NULL, o->timeout_ms, o->tls ? o->tls : h->tls) < 0 ||
        stream_options(r, o) < 0 || set_method(r->easy, o->method, o->body, o->body_len) < 0 ||
        set_headers(r, o->headers) < 0 || curl_multi_add_handle(h->multi, r->easy) != CURLM_OK) {
        req_free(r);
        return NULL;
    }
    r->state = REQ_RUNNING;
    TAILQ_INSERT_TAIL(&h->running, r, link);
    return r;
}

void sk_http_resume(sk_http_req *r)
{
    if (!r || r->state != REQ_RUNNING)
        return;
    curl_easy_pause(r->easy, CURLPAUSE_CONT);
    collect_done(r->h);
}
