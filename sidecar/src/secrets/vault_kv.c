/* KV reads: the mount's version (looked up once per mount, as the Vault CLI does), then the
 * read of a v2 or v1 secret; and the reads made for others (sk_vault_read_*). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "secrets/vault_internal.h"

/* A mount whose version is known (1 or 2). */
struct vmount {
    char *name;
    int version;
    struct vmount *next;
};

struct vkv {
    sk_vault *v;
    sk_http_req *req;
    char *mount, *path, *field;
    int looking_up; /* the request is the mount lookup */
    int version;    /* of the read: 1 or 2 */
    vkv_cb cb;
    void *ud;
};

void vault_path_escape(char *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
            ch == '-' || ch == '.' || ch == '_' || ch == '~' || ch == '/') {
            out[k++] = (char)ch;
        } else {
            out[k++] = '%';
            out[k++] = hex[ch >> 4];
            out[k++] = hex[ch & 15];
        }
    }
    out[k] = '\0';
}

static int mount_version(const sk_vault *v, const char *mount)
{
    for (const struct vmount *m = v->mounts; m; m = m->next)
        if (strcmp(m->name, mount) == 0)
            return m->version;
    return 0;
}

static void remember(sk_vault *v, const char *mount, int version)
{
    struct vmount *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(mount))) {
        free(m);
        return; /* looked up again next time */
    }
    m->version = version;
    m->next = v->mounts;
    v->mounts = m;
}

void vkv_mounts_free(sk_vault *v)
{
    while (v->mounts) {
        struct vmount *m = v->mounts;
        v->mounts = m->next;
        free(m->name);
        free(m);
    }
}

/* <address>/v1/<a>/<b>/<c> with a, b and c escaped (b may be ""). */
static char *url_of(const sk_vault *v, const char *a, const char *b, const char *c)
{
    size_t cap = strlen(v->address) + 3 * (strlen(a) + strlen(b) + strlen(c)) + 16;
    char *url = malloc(cap), *ea = malloc(3 * strlen(a) + 1), *ec = malloc(3 * strlen(c) + 1);
    if (url && ea && ec) {
        vault_path_escape(ea, a, strlen(a));
        vault_path_escape(ec, c, strlen(c));
        snprintf(url, cap, "%s/v1/%s/%s%s%s", v->address, ea, b, *b ? "/" : "", ec);
    } else {
        free(url);
        url = NULL;
    }
    free(ea);
    free(ec);
    return url;
}

static void vkv_free(vkv *r)
{
    free(r->mount);
    free(r->path);
    free(r->field);
    free(r);
}

static void on_answer(void *ud, const sk_http_result *res);

static int start_read(vkv *r, int version)
{
    r->version = version;
    char *url = version == 2 ? url_of(r->v, r->mount, "data", r->path)
                             : url_of(r->v, r->mount, "", r->path);
    r->looking_up = 0;
    r->req = url ? vault_request(r->v, "GET", url, NULL, on_answer, r) : NULL;
    free(url);
    return r->req ? 0 : -1;
}

static int start_lookup(vkv *r)
{
    char *url = url_of(r->v, "sys/internal/ui/mounts", r->mount, r->path);
    r->looking_up = 1;
    r->req = url ? vault_request(r->v, "GET", url, NULL, on_answer, r) : NULL;
    free(url);
    return r->req ? 0 : -1;
}

/* The mount lookup answered: remember the version (2 when Vault would not say, as before this
 * lookup existed) and read. */
static void looked_up(vkv *r, const sk_http_result *res)
{
    char why[WHY_LEN] = "";
    int version = 2;
    sk_vault_verdict verdict = res->error
                                   ? SK_VAULT_ERROR
                                   : sk_vault_parse_mount(res->status, res->body, res->body_len,
                                                          &version, why, sizeof why);
    if (verdict != SK_VAULT_OK && !res->error && res->status != 0)
        SK_LOG(SK_LOG_INFO, "vault", NULL, NULL,
               "KV version of mount %s not known (%s): reading it as KV v2", r->mount, why);
    /* A transport or server error says nothing: this read as v2, the lookup again next time. */
    if (verdict == SK_VAULT_OK || verdict == SK_VAULT_REFUSED || verdict == SK_VAULT_NOT_FOUND)
        remember(r->v, r->mount, version);
    if (start_read(r, version) != 0) {
        r->cb(r->ud, SK_VAULT_ERROR, NULL, 0, 0, 0, "the read could not start");
        vkv_free(r);
    }
}

static void on_answer(void *ud, const sk_http_result *res)
{
    vkv *r = ud;
    r->req = NULL;
    if (r->looking_up) {
        looked_up(r, res);
        return;
    }
    char why[WHY_LEN] = "", *val = NULL;
    size_t len = 0;
    int64_t version = 0, lease = 0;
    sk_vault_verdict verdict = SK_VAULT_ERROR;
    if (res->error)
        snprintf(why, sizeof why, "%.200s", res->error);
    else if (r->version == 2)
        verdict = sk_vault_parse_kv(res->status, res->body, res->body_len, r->field, &val, &len,
                                    &version, why, sizeof why);
    else
        verdict = sk_vault_parse_kv1(res->status, res->body, res->body_len, r->field, &val, &len,
                                     &lease, why, sizeof why);
    sk_vault *v = r->v;
    r->cb(r->ud, verdict, val, len, version, lease, why);
    if (val) {
        explicit_bzero(val, len);
        free(val);
    }
    vkv_free(r);
    if (res->status == 403)
        vault_token_refused(v, "a secret read");
}

vkv *vkv_start(sk_vault *v, const char *mount, const char *path, const char *field, vkv_cb cb,
               void *ud)
{
    if (!vault_has_token(v))
        return NULL;
    vkv *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (vkv){.v = v, .cb = cb, .ud = ud};
    if (!(r->mount = strdup(mount)) || !(r->path = strdup(path)) || !(r->field = strdup(field)) ||
        (mount_version(v, mount) ? start_read(r, mount_version(v, mount)) : start_lookup(r)) != 0) {
        vkv_free(r);
        return NULL;
    }
    return r;
}

void vkv_cancel(vkv *r)
{
    if (!r)
        return;
    sk_http_cancel(r->req);
    vkv_free(r);
}

/* ---- reads for others ---- */

struct sk_vault_read {
    vkv *kv;
    sk_vault_read_cb cb;
    void *ud;
};

static void on_read(void *ud, sk_vault_verdict verdict, const char *value, size_t len,
                    int64_t version, int64_t lease_ms, const char *why)
{
    sk_vault_read *r = ud;
    r->cb(r->ud, verdict, value, len, version, lease_ms, why);
    free(r);
}

sk_vault_read *sk_vault_read_start(sk_vault *v, const sk_secret_ref *ref, sk_vault_read_cb cb,
                                   void *ud)
{
    sk_vault_read *r = calloc(1, sizeof *r);
    char *mount = r ? strndup(ref->mount, ref->mount_len) : NULL;
    char *path = mount ? strndup(ref->path, ref->path_len) : NULL;
    char *field = path ? strndup(ref->field, ref->field_len) : NULL;
    if (r && field) {
        *r = (sk_vault_read){.cb = cb, .ud = ud};
        r->kv = vkv_start(v, mount, path, field, on_read, r);
    }
    free(mount);
    free(path);
    free(field);
    if (r && !r->kv) {
        free(r);
        r = NULL;
    }
    return r;
}

void sk_vault_read_cancel(sk_vault_read *r)
{
    if (!r)
        return;
    vkv_cancel(r->kv);
    free(r);
}

void sk_vault_on_login(sk_vault *v, void (*cb)(void *ud), void *ud)
{
    v->on_login = cb;
    v->on_login_ud = ud;
}

int64_t sk_vault_refresh_ms(const sk_vault *v)
{
    return v->refresh_ms;
}
