/* Secret values and secret references.
 *
 * A setting that holds a secret (a password, an OAuth client secret, a key) takes a reference
 * to it:
 *
 *   file:<path>                   the whole file (a Kubernetes Secret volume); one trailing
 *                                 "\n" or "\r\n" is dropped; re-read when the file changes
 *   vault:<mount>/<path>#<field>  a field of a Vault KV v2 secret, resolved by the resolver
 *                                 installed with sk_secret_set_resolver (secrets/vault.c):
 *                                 empty until the Vault client has read it
 *   anything else                 the value itself (a literal, e.g. from the environment);
 *                                 the production security profile refuses it
 *
 * An sk_secret never prints: it has no formatting function, its value is reachable only
 * through sk_secret_value (for the one place that sends it to its peer), and sk_secret_origin
 * says where it comes from without the value ("file:/etc/x", "vault:secret/x#f", "literal").
 * The memory holding a value is wiped before it is freed. Loop thread only. */
#ifndef SK_SECRET_H
#define SK_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "core/metrics.h"

struct event_base;

#define SK_SECRET_MAX_BYTES (64 * 1024) /* largest secret file */

typedef enum { SK_SECRET_LITERAL, SK_SECRET_FILE, SK_SECRET_VAULT } sk_secret_kind;

/* A parsed reference: spans of the text that was parsed (not NUL-terminated). */
typedef struct sk_secret_ref {
    sk_secret_kind kind;
    const char *path; /* file: the path; vault: the secret's path under the mount */
    size_t path_len;
    const char *mount; /* vault: the KV v2 mount */
    size_t mount_len;
    const char *field; /* vault: the field of the secret's data */
    size_t field_len;
} sk_secret_ref;

/* Parses a setting's text. 0 with *ref filled, or -1 with err set (a malformed file: or vault:
 * reference). A literal always parses; err never contains the text. */
int sk_secret_ref_parse(const char *text, sk_secret_ref *ref, char *err, size_t errlen);

typedef struct sk_secret sk_secret;

/* A secret named `name` (the setting's key, for logs and metrics) from the setting's text:
 * a file is read at once. NULL with err set (malformed reference, unreadable file, vault:
 * reference, out of memory); err names the key and the file, never the value. */
sk_secret *sk_secret_new(const char *name, const char *text, char *err, size_t errlen);
/* Wipes the value and frees. Accepts NULL. Not from inside the secret's own change callback. */
void sk_secret_free(sk_secret *s);

/* The value (NUL-terminated; len may be NULL). Valid until the next change or sk_secret_free:
 * copy it into the request that needs it, never into a log line or an error message. */
const char *sk_secret_value(const sk_secret *s, size_t *len);
const char *sk_secret_name(const sk_secret *s);
/* Where the value comes from, safe to print: "file:<path>", the vault: reference or "literal". */
const char *sk_secret_origin(const sk_secret *s);
sk_secret_kind sk_secret_get_kind(const sk_secret *s);
/* Incremented at each change of the value (starts at 1). */
uint64_t sk_secret_version(const sk_secret *s);

/* A file secret is checked every interval_ms (<= 0: 2 s) on base: when the file changed
 * (device, inode, size or modification time, so a Kubernetes volume's symlink swap counts), it
 * is read again; a new value replaces the old and the subscribers are told. An unreadable or
 * oversized file keeps the old value and is logged once per failure streak. m (may be NULL)
 * counts skiff_secret_reloads_total{secret, result}. Other kinds: nothing to watch, 0. */
int sk_secret_watch(sk_secret *s, struct event_base *base, sk_metrics *m, int64_t interval_ms);
/* Reads a file secret again now: 1 the value changed (subscribers told), 0 unchanged (or not
 * a file), -1 the file cannot be read (old value kept). */
int sk_secret_reload(sk_secret *s);

/* Called after the value changed; the callback may read the new value and (un)subscribe. */
typedef void (*sk_secret_cb)(void *ud, const sk_secret *s);
int sk_secret_subscribe(sk_secret *s, sk_secret_cb cb, void *ud);
void sk_secret_unsubscribe(sk_secret *s, sk_secret_cb cb, void *ud);

/* Replaces every occurrence of the value in text (NUL-terminated, edited in place) with '*'
 * characters: for messages that carry text from a peer (which could echo a secret back).
 * Values shorter than 4 bytes are left alone (they would mask ordinary text). */
void sk_secret_scrub(const sk_secret *s, char *text);

/* The values of every live secret of `kind` that has one (at most max): pointers valid until
 * the next change of a value or the loop turns; for the egress output scan, which must know
 * every value a response must not carry. Never for logs. Returns how many. */
size_t sk_secret_values(sk_secret_kind kind, const char **vals, size_t *lens, size_t max);

/* Resolver of vault: references (the Vault client). attach is called by sk_secret_new for each
 * vault: secret (0, or -1 with err set: the secret is not created); detach by sk_secret_free.
 * NULL uninstalls; without a resolver a vault: reference is an error. Loop thread only. */
typedef struct sk_secret_resolver {
    int (*attach)(void *ud, sk_secret *s, const sk_secret_ref *ref, char *err, size_t errlen);
    void (*detach)(void *ud, sk_secret *s);
    void *ud;
} sk_secret_resolver;
void sk_secret_set_resolver(const sk_secret_resolver *r);
/* For the resolver: a new value (copied; the old one wiped). 1 changed (version incremented,
 * subscribers told), 0 the same value, -1 out of memory (old value kept). */
int sk_secret_set_value(sk_secret *s, const char *value, size_t len);
/* 1 while a vault: secret waits for its first value (users hold their requests). */
int sk_secret_pending(const sk_secret *s);
/* For the resolver going away first: sk_secret_free will not call it for s. */
void sk_secret_forget_resolver(sk_secret *s);

#endif
