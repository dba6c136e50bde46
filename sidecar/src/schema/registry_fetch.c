/* One HTTP request to the Schema Registry and the verdict on its answer (see registry.h). */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "schema/registry_internal.h"

static const char *const request_headers[] = {
    "Accept: application/vnd.schemaregistry.v1+json, application/vnd.schemaregistry+json; "
    "qs=0.9, application/json; qs=0.5",
    NULL};

void reg_record(sk_registry *r, const fetch *f, const answer *a)
{
    sk_series_add(r->m_result[a->st], 1);
    sk_series_observe(r->m_seconds, sk_mono_s() - f->started);
    if (a->st != SK_REG_OK)
        SK_WARN(REG_COMPONENT, "%s", a->err);
}

/* Transport errors, HTTP errors with a Confluent error body. Any 404 other than nf1/nf2 (a wrong
 * base URL, a proxy) is retriable: it must not be cached for ever. */
void reg_classify(const sk_http_result *res, const char *what, long nf1, long nf2, answer *a)
{
    a->st = SK_REG_UNAVAILABLE;
    a->json = NULL;
    if (res->error) {
        snprintf(a->err, sizeof a->err, "%s: schema registry unreachable: %s", what, res->error);
        return;
    }
    json_t *j = json_loadb(res->body, res->body_len, 0, NULL);
    if (res->status == 200 && json_is_object(j)) {
        a->st = SK_REG_OK;
        a->json = j;
        return;
    }
    long code = (long)json_integer_value(json_object_get(j, "error_code"));
    const char *msg = json_string_value(json_object_get(j, "message"));
    char detail[300] = "";
    if (code || msg)
        snprintf(detail, sizeof detail, " (error_code %ld: %.200s)", code, msg ? msg : "");
    if (res->status == 200)
        snprintf(a->err, sizeof a->err, "%s: unparseable response from the schema registry", what);
    else if (res->status == 404 && code && (code == nf1 || code == nf2))
        a->st = SK_REG_NOT_FOUND;
    if (a->st == SK_REG_NOT_FOUND)
        snprintf(a->err, sizeof a->err, "%s: not found in the schema registry%s", what, detail);
    else if (res->status == 401 || res->status == 403)
        snprintf(a->err, sizeof a->err,
                 "%s: schema registry answered HTTP %ld%s: check the registry credentials", what,
                 res->status, detail);
    else if (res->status != 200)
        snprintf(a->err, sizeof a->err, "%s: schema registry answered HTTP %ld%s%s", what,
                 res->status, detail, res->status == 404 ? ": check the registry URL" : "");
    json_decref(j);
}

sk_reg_status reg_parse_schema(const json_t *j, const char *what, sk_avro_schema **out, char *err,
                               size_t errlen)
{
    const json_t *type = json_object_get(j, "schemaType");
    const json_t *text = json_object_get(j, "schema");
    *out = NULL;
    if (type && !json_is_null(type) &&
        (!json_is_string(type) || strcmp(json_string_value(type), "AVRO") != 0)) {
        snprintf(err, errlen, "%s: schema type %.40s is not supported (only AVRO)", what,
                 json_is_string(type) ? json_string_value(type) : "(not a string)");
        return SK_REG_INVALID;
    }
    if (!json_is_string(text)) {
        snprintf(err, errlen, "%s: unparseable response from the schema registry (no schema)",
                 what);
        return SK_REG_UNAVAILABLE;
    }
    char perr[256] = "";
    *out =
        sk_avro_schema_parse(json_string_value(text), json_string_length(text), perr, sizeof perr);
    if (!*out) {
        snprintf(err, errlen, "%s: unusable Avro schema (%s)", what, perr);
        return SK_REG_INVALID;
    }
    return SK_REG_OK;
}

void reg_fetch_free(fetch *f)
{
    sk_registry_lookup *l;
    while ((l = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, l, link);
        free(l);
    }
    free(f->what);
    free(f);
}

static void on_response(void *ud, const sk_http_result *res)
{
    fetch *f = ud;
    f->req = NULL;
    f->done(f, res);
}

fetch *reg_fetch_start(sk_registry *r, const char *path, fetch_done_fn done)
{
    size_t len = strlen(r->base_url) + strlen(path) + 1;
    fetch *f = calloc(1, sizeof *f);
    char *url = malloc(len);
    if (!f || !url) {
        free(f);
        free(url);
        return NULL;
    }
    snprintf(url, len, "%s%s", r->base_url, path);
    *f = (fetch){.reg = r, .done = done, .started = sk_mono_s()};
    TAILQ_INIT(&f->waiters);
    /* Built per request: a rotated password file is used from the next request on. */
    size_t pwlen = 0;
    const char *pw = r->password ? sk_secret_value(r->password, &pwlen) : "";
    size_t uplen = r->username ? strlen(r->username) + pwlen + 2 : 0;
    char *userpwd = uplen ? malloc(uplen) : NULL;
    if (userpwd)
        snprintf(userpwd, uplen, "%s:%s", r->username, pw);
    if (!uplen || userpwd)
        f->req = sk_http_request(r->http, "GET", url, request_headers, NULL, 0, userpwd,
                                 r->timeout_ms, on_response, f);
    if (userpwd) {
        explicit_bzero(userpwd, uplen);
        free(userpwd);
    }
    free(url);
    if (!f->req) {
        free(f);
        return NULL;
    }
    return f;
}

void reg_subject_path(const char *name, const char *tail, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = (size_t)snprintf(out, size, "/subjects/");
    for (const unsigned char *p = (const unsigned char *)name; *p && n + 4 < size; p++) {
        if ((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
            strchr("-._~", *p)) {
            out[n++] = (char)*p;
        } else {
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    snprintf(out + n, size - n, "%s", tail);
}
