/* TLS material, its watcher and the client SSLs of every peer (see tls.h). */
#include "net/tls.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <curl/curl.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "core/log.h"
#include "core/metrics.h"

enum { F_CA, F_CERT, F_KEY, NFILES };

/* What stat says of a file: a change of any field means "load again". */
typedef struct file_sig {
    int ok;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_sig;

/* One loaded set. */
typedef struct material {
    SSL_CTX *ctx;
    int64_t cert_not_after; /* 0 without a client certificate */
    int64_t ca_not_after;   /* earliest notAfter in the CA file, 0 with the system store */
} material;

struct sk_tls {
    char *peer;
    char *files[NFILES];
    char *server_name;
    unsigned char alpn[32]; /* wire form: length byte + name */
    size_t alpn_len;
    material cur;
    file_sig sig[NFILES];   /* of the set in force */
    file_sig tried[NFILES]; /* of the last set refused: not tried again until it changes */
    struct event *poll_ev;
    sk_series *m_cert_expiry, *m_ca_expiry, *m_reload_ok, *m_reload_refused;
    sk_tls_change_cb on_change;
    void *ud;
};

static char *dup_opt(const char *s)
{
    return s && s[0] ? strdup(s) : NULL;
}

static void sig_of(const char *path, file_sig *s)
{
    struct stat st;
    memset(s, 0, sizeof *s);
    if (path == NULL || stat(path, &st) != 0)
        return;
    *s = (file_sig){
        .ok = 1, .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size, .mtime = st.st_mtim};
}

static int sig_equal(const file_sig *a, const file_sig *b)
{
    return a->ok == b->ok && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec;
}

/* The reason of OpenSSL's last error (the queue is cleared). */
static const char *ssl_reason(void)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    ERR_clear_error();
    return r ? r : "unknown OpenSSL error";
}

static int64_t not_after(const X509 *x)
{
    struct tm tm;
    if (x == NULL || ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) != 1)
        return 0;
    return (int64_t)timegm(&tm);
}

/* A file must be readable before OpenSSL gets it, so that the message says why it is not. */
static int readable(const char *peer, const char *what, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s %s: cannot read: %s", peer, what, path, strerror(errno));
        return -1;
    }
    fclose(f);
    return 0;
}

static int load_ca(SSL_CTX *ctx, const char *peer, const char *path, material *m, char *err,
                   size_t errlen)
{
    if (path == NULL) {
        if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
            snprintf(err, errlen, "%s: cannot load the system CA store: %s", peer, ssl_reason());
            return -1;
        }
        return 0;
    }
    if (readable(peer, "CA file", path, err, errlen) != 0)
        return -1;
    if (SSL_CTX_load_verify_file(ctx, path) != 1) {
        snprintf(err, errlen, "%s: CA file %s: no usable PEM certificate (%s)", peer, path,
                 ssl_reason());
        return -1;
    }
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx));
    for (int i = 0; i < sk_X509_OBJECT_num(objs); i++) {
        int64_t t = not_after(X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, i)));
        if (t > 0 && (m->ca_not_after == 0 || t < m->ca_not_after))
            m->ca_not_after = t;
    }
    return 0;
}

static int load_cert(SSL_CTX *ctx, const char *peer, const char *cert, const char *key, material *m,
                     char *err, size_t errlen)
{
    if (cert == NULL && key == NULL)
        return 0;
    if (cert == NULL || key == NULL) {
        snprintf(err, errlen, "%s: a client %s without its %s", peer, cert ? "certificate" : "key",
                 cert ? "key" : "certificate");
        return -1;
    }
    if (readable(peer, "client certificate", cert, err, errlen) != 0 ||
        readable(peer, "client key", key, err, errlen) != 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errlen, "%s: client certificate %s: not a PEM certificate (%s)", peer, cert,
                 ssl_reason());
        return -1;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errlen, "%s: client key %s: not a PEM key of certificate %s (%s)", peer, key,
                 cert, ssl_reason());
        return -1;
    }
    m->cert_not_after = not_after(SSL_CTX_get0_certificate(ctx));
    return 0;
}

/* Loads a whole set from the files into m; -1 with err set (nothing allocated then). */
static int load(const char *peer, char *const files[NFILES], const unsigned char *alpn,
                size_t alpn_len, material *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        snprintf(err, errlen, "%s: cannot create a TLS context: %s", peer, ssl_reason());
        return -1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        (alpn_len > 0 && SSL_CTX_set_alpn_protos(ctx, alpn, (unsigned)alpn_len) != 0)) {
        snprintf(err, errlen, "%s: cannot configure TLS: %s", peer, ssl_reason());
        goto fail;
    }
    if (load_ca(ctx, peer, files[F_CA], m, err, errlen) != 0 ||
        load_cert(ctx, peer, files[F_CERT], files[F_KEY], m, err, errlen) != 0)
        goto fail;
    m->ctx = ctx;
    return 0;
fail:
    SSL_CTX_free(ctx);
    memset(m, 0, sizeof *m);
    return -1;
}

static int set_alpn(sk_tls *t, const char *alpn)
{
    size_t n = alpn ? strlen(alpn) : 0;
    if (n == 0)
        return 0;
    if (n >= sizeof t->alpn - 1)
        return -1;
    t->alpn[0] = (unsigned char)n;
    memcpy(t->alpn + 1, alpn, n);
    t->alpn_len = n + 1;
    return 0;
}

int sk_tls_check(const sk_tls_opts *o, char *err, size_t errlen)
{
    sk_tls_opts copy = *o;
    copy.server_name = NULL;
    sk_tls *t = sk_tls_new(&copy, NULL, 0, NULL, err, errlen);
    sk_tls_free(t);
    return t ? 0 : -1;
}

static void update_expiry(sk_tls *t)
{
    int64_t now = (int64_t)time(NULL);
    if (t->m_cert_expiry && t->cur.cert_not_after > 0)
        sk_series_set(t->m_cert_expiry, (double)(t->cur.cert_not_after - now));
    if (t->m_ca_expiry && t->cur.ca_not_after > 0)
        sk_series_set(t->m_ca_expiry, (double)(t->cur.ca_not_after - now));
}

int sk_tls_reload(sk_tls *t, char *err, size_t errlen)
{
    file_sig now[NFILES];
    int same = 1, tried = 1;
    for (int i = 0; i < NFILES; i++) {
        sig_of(t->files[i], &now[i]);
        same = same && sig_equal(&now[i], &t->sig[i]);
        tried = tried && sig_equal(&now[i], &t->tried[i]);
    }
    if (same || tried)
        return 0;
    material m;
    if (load(t->peer, t->files, t->alpn, t->alpn_len, &m, err, errlen) != 0) {
        memcpy(t->tried, now, sizeof now);
        return -1;
    }
    int cert_changed =
        !sig_equal(&now[F_CERT], &t->sig[F_CERT]) || !sig_equal(&now[F_KEY], &t->sig[F_KEY]);
    SSL_CTX_free(t->cur.ctx);
    t->cur = m;
    memcpy(t->sig, now, sizeof now);
    memset(t->tried, 0, sizeof t->tried);
    update_expiry(t);
    if (t->on_change)
        t->on_change(t->ud, cert_changed);
    return 1;
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    sk_tls *t = arg;
    char err[512];
    (void)fd;
    (void)what;
    int rc = sk_tls_reload(t, err, sizeof err);
    if (rc > 0) {
        SK_INFO("tls", "%s: new TLS material in force (files changed)", t->peer);
        if (t->m_reload_ok)
            sk_series_add(t->m_reload_ok, 1);
    } else if (rc < 0) {
        SK_ERROR("tls", "new TLS material refused, the old one stays in use: %s", err);
        if (t->m_reload_refused)
            sk_series_add(t->m_reload_refused, 1);
    }
    update_expiry(t);
}

static int watch(sk_tls *t, struct event_base *base, int64_t reload_ms, sk_metrics *metrics)
{
    static const char *const lbl_exp[] = {"peer", "certificate", NULL};
    static const char *const lbl_rel[] = {"peer", "result", NULL};
    if (metrics) {
        sk_metric *e = sk_metrics_gauge(
            metrics, "skiff_tls_certificate_expiry_seconds",
            "Seconds until the certificate expires (client: the client certificate, ca: the "
            "earliest of the CA file)",
            lbl_exp);
        sk_metric *r = sk_metrics_counter(metrics, "skiff_tls_reloads_total",
                                          "TLS material loaded again after a file changed "
                                          "(ok) or refused with the old kept (refused)",
                                          lbl_rel);
        if (!e || !r)
            return -1;
        if (t->cur.cert_not_after > 0)
            t->m_cert_expiry = sk_metric_series(e, (const char *[]){t->peer, "client"});
        if (t->cur.ca_not_after > 0)
            t->m_ca_expiry = sk_metric_series(e, (const char *[]){t->peer, "ca"});
        t->m_reload_ok = sk_metric_series(r, (const char *[]){t->peer, "ok"});
        t->m_reload_refused = sk_metric_series(r, (const char *[]){t->peer, "refused"});
        update_expiry(t);
    }
    if (base == NULL || reload_ms <= 0)
        return 0;
    struct timeval tv = {.tv_sec = reload_ms / 1000, .tv_usec = (reload_ms % 1000) * 1000};
    return (t->poll_ev = event_new(base, -1, EV_PERSIST, poll_cb, t)) && !event_add(t->poll_ev, &tv)
               ? 0
               : -1;
}

sk_tls *sk_tls_new(const sk_tls_opts *o, struct event_base *base, int64_t reload_ms,
                   sk_metrics *metrics, char *err, size_t errlen)
{
    const char *peer = o->peer ? o->peer : "tls";
    sk_tls *t = calloc(1, sizeof *t);
    if (t == NULL || !(t->peer = strdup(peer)) || set_alpn(t, o->alpn) != 0)
        goto oom;
    const char *in[NFILES] = {o->ca_file, o->cert_file, o->key_file};
    for (int i = 0; i < NFILES; i++)
        if (in[i] && in[i][0] && !(t->files[i] = strdup(in[i])))
            goto oom;
    if (o->server_name && o->server_name[0] && !(t->server_name = dup_opt(o->server_name)))
        goto oom;
    for (int i = 0; i < NFILES; i++)
        sig_of(t->files[i], &t->sig[i]);
    if (load(t->peer, t->files, t->alpn, t->alpn_len, &t->cur, err, errlen) != 0)
        goto fail;
    if (watch(t, base, reload_ms, metrics) != 0)
        goto oom;
    return t;
oom:
    snprintf(err, errlen, "%s: out of memory", peer);
fail:
    sk_tls_free(t);
    return NULL;
}

void sk_tls_free(sk_tls *t)
{
    if (t == NULL)
        return;
    if (t->poll_ev)
        event_free(t->poll_ev);
    SSL_CTX_free(t->cur.ctx);
    for (int i = 0; i < NFILES; i++)
        free(t->files[i]);
    free(t->server_name);
    free(t->peer);
    free(t);
}

void sk_tls_on_change(sk_tls *t, sk_tls_change_cb cb, void *ud)
{
    t->on_change = cb;
    t->ud = ud;
}

const char *sk_tls_peer(const sk_tls *t)
{
    return t->peer;
}

int64_t sk_tls_cert_not_after(const sk_tls *t)
{
    return t->cur.cert_not_after;
}

/* The last alert the server sent on an SSL, kept by the info callback: with TLS 1.3 the server
 * judges the client certificate after our side of the handshake is done, so its verdict arrives
 * as an alert on the first read, which libevent reports without an OpenSSL error. */
static int alert_index = -1;
static pthread_once_t alert_once = PTHREAD_ONCE_INIT;

static void alert_index_init(void)
{
    alert_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static void info_cb(const SSL *ssl, int where, int ret)
{
    if ((where & SSL_CB_READ_ALERT) == SSL_CB_READ_ALERT && alert_index >= 0)
        SSL_set_ex_data((SSL *)ssl, alert_index, (void *)(intptr_t)((ret & 0xff) + 1));
}

SSL *sk_tls_new_ssl(sk_tls *t, const char *host)
{
    const char *name = t->server_name ? t->server_name : host;
    SSL *ssl = SSL_new(t->cur.ctx);
    if (ssl == NULL)
        return NULL;
    pthread_once(&alert_once, alert_index_init);
    SSL_set_info_callback(ssl, info_cb);
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(name);
    int ok;
    if (ip != NULL) {
        ok = X509_VERIFY_PARAM_set1_ip(SSL_get0_param(ssl), ASN1_STRING_get0_data(ip),
                                       (size_t)ASN1_STRING_length(ip));
        ASN1_OCTET_STRING_free(ip);
    } else {
        ok = SSL_set_tlsext_host_name(ssl, name) == 1 && SSL_set1_host(ssl, name) == 1;
    }
    ERR_clear_error();
    if (!ok) {
        SSL_free(ssl);
        return NULL;
    }
    return ssl;
}

struct bufferevent *sk_tls_new_bev(sk_tls *t, struct event_base *base, const char *host)
{
    SSL *ssl = sk_tls_new_ssl(t, host);
    if (ssl == NULL)
        return NULL;
    /* On failure libevent does not take the SSL (BEV_OPT_CLOSE_ON_FREE covers it otherwise). */
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL)
        SSL_free(ssl);
    return bev;
}

static void describe_verify(long vr, char *out, size_t outlen)
{
    switch (vr) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
        snprintf(out, outlen, "server certificate signed by an unknown CA (%s)",
                 X509_verify_cert_error_string(vr));
        break;
    case X509_V_ERR_CERT_HAS_EXPIRED:
        snprintf(out, outlen, "server certificate expired");
        break;
    case X509_V_ERR_CERT_NOT_YET_VALID:
        snprintf(out, outlen, "server certificate not yet valid");
        break;
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH:
        snprintf(out, outlen,
                 "server certificate does not match the host name (hostname "
                 "mismatch; a server-name override sets the name checked)");
        break;
    default:
        snprintf(out, outlen, "server certificate rejected: %s", X509_verify_cert_error_string(vr));
    }
}

static void describe_alert(int alert, char *out, size_t outlen)
{
    const char *name = SSL_alert_desc_string_long(alert);
    switch (alert) {
    case TLS13_AD_CERTIFICATE_REQUIRED:
        snprintf(out, outlen,
                 "the server requires a client certificate (alert "
                 "certificate_required)");
        break;
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
        snprintf(out, outlen, "the server refused the client certificate (alert %s)", name);
        break;
    case SSL_AD_HANDSHAKE_FAILURE:
        snprintf(out, outlen,
                 "handshake refused by the server (alert %s; a client certificate required?)",
                 name);
        break;
    default:
        snprintf(out, outlen, "the server ended TLS with alert %s", name);
    }
}

static void describe_error(unsigned long e, char *out, size_t outlen)
{
    int r = ERR_GET_REASON(e);
    char text[200];
    ERR_error_string_n(e, text, sizeof text);
    if (r == SSL_R_WRONG_VERSION_NUMBER || r == SSL_R_PACKET_LENGTH_TOO_LONG)
        snprintf(out, outlen, "the server does not speak TLS (%s; a plaintext port?)", text);
    else
        snprintf(out, outlen, "TLS handshake failed: %s", text);
}

int sk_tls_describe(struct bufferevent *bev, int early, char *out, size_t outlen)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl == NULL)
        return 0;
    /* libevent's list holds SSL_get_error codes (no library set) and OpenSSL errors. */
    unsigned long e, last = 0;
    while ((e = bufferevent_get_openssl_error(bev)) != 0)
        if (ERR_GET_LIB(e) != 0)
            last = e;
    long vr = SSL_get_verify_result(ssl);
    intptr_t alert = alert_index >= 0 ? (intptr_t)SSL_get_ex_data(ssl, alert_index) : 0;
    if (vr != X509_V_OK) {
        describe_verify(vr, out, outlen);
        return 1;
    }
    if (alert > 0) {
        describe_alert((int)(alert - 1), out, outlen);
        return 1;
    }
    if (last != 0) {
        describe_error(last, out, outlen);
        return 1;
    }
    int se = EVUTIL_SOCKET_ERROR();
    /* TCP never connected: the socket error says it best. */
    if (SSL_in_before(ssl) || se == ECONNREFUSED || se == EHOSTUNREACH || se == ENETUNREACH ||
        se == ETIMEDOUT)
        return 0;
    if (!SSL_is_init_finished(ssl)) {
        snprintf(out, outlen,
                 "connection closed during the TLS handshake (handshake refused by the server?)");
        return 1;
    }
    if (early) {
        snprintf(out, outlen,
                 "connection closed right after the TLS handshake, before any "
                 "answer (the server refused the client certificate?)");
        return 1;
    }
    return 0;
}

void sk_tls_alpn(struct bufferevent *bev, char *out, size_t outlen)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    const unsigned char *p = NULL;
    unsigned n = 0;
    if (ssl)
        SSL_get0_alpn_selected(ssl, &p, &n);
    snprintf(out, outlen, "%.*s", (int)n, p ? (const char *)p : "");
}

/* CURLOPT_SSL_CTX_FUNCTION: runs before each new TLS connection of the handle; installs the
 * material in force now into curl's context. */
static CURLcode curl_ctx_cb(CURL *curl, void *sslctx, void *userptr)
{
    (void)curl;
    sk_tls *t = userptr;
    SSL_CTX *c = sslctx, *ours = t->cur.ctx;
    SSL_CTX_set1_cert_store(c, SSL_CTX_get_cert_store(ours));
    if (SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION) != 1)
        return CURLE_SSL_CERTPROBLEM;
    X509 *x = SSL_CTX_get0_certificate(ours);
    EVP_PKEY *k = SSL_CTX_get0_privatekey(ours);
    STACK_OF(X509) *chain = NULL;
    if (x && k &&
        (SSL_CTX_get0_chain_certs(ours, &chain) != 1 ||
         SSL_CTX_use_cert_and_key(c, x, k, chain, 1) != 1)) {
        ERR_clear_error();
        return CURLE_SSL_CERTPROBLEM;
    }
    return CURLE_OK;
}

int sk_tls_curl_setup(sk_tls *t, void *curl_easy)
{
    CURL *e = curl_easy;
    return curl_easy_setopt(e, CURLOPT_SSL_CTX_FUNCTION, curl_ctx_cb) ||
                   curl_easy_setopt(e, CURLOPT_SSL_CTX_DATA, t) ||
                   curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) ||
                   curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) ||
                   curl_easy_setopt(e, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2)
               ? -1
               : 0;
}
