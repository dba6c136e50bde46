/* One version of a subject: GET /subjects/<subject>/versions/<version>. A registered version
 * never changes its schema, so the answer settles the by-id cache like a "latest" answer, and
 * the schema stays until sk_registry_free; the (subject, version) -> id mapping itself is not
 * kept, each lookup asks (see registry.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema/registry_internal.h"

static void version_done(fetch *f, const sk_http_result *res)
{
    sk_registry *r = f->reg;
    answer a;
    id_entry *e = NULL;
    TAILQ_REMOVE(&r->version_fetches, f, link);
    reg_classify(res, f->what, 40401, 40402, &a);
    if (a.st == SK_REG_OK) {
        a.st = reg_answer_id(r, a.json, f->what, &e, a.err, sizeof a.err);
        json_decref(a.json);
    }
    reg_record(r, f, &a);
    sk_registry_lookup *l;
    while ((l = TAILQ_FIRST(&f->waiters)) != NULL) {
        TAILQ_REMOVE(&f->waiters, l, link);
        if (e)
            reg_answer_entry(l, e);
        else
            reg_finish(l, a.st, 0, NULL, a.err);
    }
    reg_fetch_free(f);
}

sk_registry_lookup *sk_registry_version(sk_registry *r, const char *name, int32_t version,
                                        sk_registry_cb cb, void *ud)
{
    size_t len = name ? strlen(name) : 0;
    if (!r || r->closed || !cb || len == 0 || len > REG_MAX_SUBJECT_LEN || version < 1)
        return NULL;
    char path[REG_MAX_SUBJECT_LEN * 3 + 64], tail[32], what[REG_MAX_SUBJECT_LEN + 64];
    snprintf(tail, sizeof tail, "/versions/%d", (int)version);
    reg_subject_path(name, tail, path, sizeof path);
    snprintf(what, sizeof what, "version %d of subject \"%s\"", (int)version, name);
    char *w = strdup(what);
    sk_registry_lookup *l = w ? reg_lookup_new(r, cb, ud) : NULL;
    fetch *f = l ? reg_fetch_start(r, path, version_done) : NULL;
    if (!f) {
        free(w);
        free(l);
        return NULL;
    }
    f->what = w;
    TAILQ_INSERT_TAIL(&r->version_fetches, f, link);
    reg_attach(l, f);
    return l;
}

void reg_versions_release(sk_registry *r)
{
    fetch *f;
    while ((f = TAILQ_FIRST(&r->version_fetches)) != NULL) {
        TAILQ_REMOVE(&r->version_fetches, f, link);
        reg_fetch_free(f);
    }
}
