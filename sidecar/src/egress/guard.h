/* Guard rules for egress: checks on a request body before it goes upstream, and the output scan
 * that keeps secret values out of the responses passed back to the handler. Pure: no I/O, no
 * loop; a guard is immutable once built, so one guard may serve every request of a route. Loop
 * thread only (the scan keeps state per response).
 *
 * Request rules, in this order (the first that fails refuses the request):
 *  1. max_request_bytes: the body is longer than the limit.
 *  2. invalid_json: the content type claims JSON (application/json, application/<x>+json) and
 *     the body is not one JSON text (UTF-8, no duplicate object keys: a smuggled second
 *     `max_tokens` could be read differently upstream). A body of another or no content type
 *     whose first non-blank byte is '{' or '[' and that parses is treated as JSON too (so the
 *     rules below cannot be skipped by leaving out the content type; a text/ body is looked at
 *     after its control bytes are stripped, so one in front hides nothing); one that does not
 *     parse is text for rule 5.
 *  3. control characters (strip_control_chars): C0 controls other than TAB, LF, CR, and DEL are
 *     removed in place. JSON: from string values only (raw DEL bytes and the escapes \b, \f,
 *     \u0000-\u001f other than \u0009 \u000a \u000d, and \u007f), everything else byte for
 *     byte as sent (numbers, key order, spacing, object keys); text/ bodies (UTF-8 or US-ASCII
 *     charset): the raw bytes; other bodies are left alone (they may be binary). Only ASCII
 *     bytes are removed, so valid UTF-8 stays valid and valid JSON stays valid; *len shrinks.
 *  4. max_tokens: a JSON object's top-level max_tokens, max_completion_tokens or
 *     max_output_tokens is a number above the cap.
 *  5. deny_pattern: a pattern occurs in the text content, compared ASCII-case-insensitively with
 *     every run of whitespace taken as one space. Text content: every string value of a JSON
 *     body (which covers messages[].content and its parts' text, prompt, input, instructions,
 *     system of the usual LLM APIs, after JSON unescaping so "\u0069gnore" does not hide
 *     "ignore"); the whole body otherwise.
 * The refusal message names the rule and what matched (the limit, the size, the pattern, the
 * JSON error position), never the prompt. */
#ifndef SK_EGRESS_GUARD_H
#define SK_EGRESS_GUARD_H

#include <stddef.h>
#include <stdint.h>

#define SK_GUARD_MAX_PATTERN 1024

typedef struct sk_guard sk_guard;

typedef struct sk_guard_opts {
    size_t max_request_bytes;         /* 0: no limit */
    int64_t max_tokens;               /* <= 0: no cap */
    const char *const *deny_patterns; /* copied; NULL with n 0: none */
    size_t n_deny_patterns;
    int strip_control_chars;
} sk_guard_opts;

/* The shipped baseline list of well-known prompt-injection phrases (the default of the route
 * setting deny_patterns): *n is set to its length. A baseline, not a guarantee: see
 * docs/egress-guard.md. */
const char *const *sk_guard_baseline(size_t *n);

/* NULL with a message in err when a pattern is NULL, empty (or only whitespace) or longer than
 * SK_GUARD_MAX_PATTERN bytes, or out of memory. */
sk_guard *sk_guard_new(const sk_guard_opts *o, char *err, size_t errlen);
/* Accepts NULL. */
void sk_guard_free(sk_guard *g);

/* Checks body[0..*len) (body may be NULL when *len is 0; it need not be NUL-terminated), with
 * content_type the request's Content-Type header value (NULL: none). Returns 0 when the request
 * may go (the body may have been rewritten in place: control characters stripped, *len
 * updated), or -1 with *rule set to a static string ("max_request_bytes", "invalid_json",
 * "max_tokens", "deny_pattern", or "out_of_memory" when the body could not be checked) and msg
 * (NUL-terminated, truncated to msglen) saying why. On -1 the body is unspecified (it may already
 * be stripped). */
int sk_guard_request(const sk_guard *g, const char *content_type, char *body, size_t *len,
                     const char **rule, char *msg, size_t msglen);

/* Output scan: finds secret values (needles) in a response stream fed chunk by chunk, also
 * when a needle is split across chunks. Needles shorter than 4 bytes are ignored (as in
 * sk_secret_scrub: too short to mean anything). Cost: O(chunk length) per needle per chunk
 * (memmem on large chunks, a KMP automaton on small ones), O(total needle length) memory.
 *
 * How the proxy uses it: feed each chunk as it arrives; if feed returns 1, cut the response (do
 * not send anything more, the bytes still withheld included). Otherwise send all the stream fed
 * so far except its last sk_scan_hold() bytes: they are the beginning of a needle that the next
 * chunk may complete. The hold only covers bytes not yet sent (it never exceeds the previous
 * hold plus the new chunk), so "sent = fed - hold" is always safe. At the end of the stream,
 * flush the withheld bytes. The hold is usually 0 (no partial needle at the end), so streams
 * are not delayed. */
typedef struct sk_scan sk_scan;

/* Copies the needles. n 0 (or only short needles): a scanner that never finds anything. NULL
 * when out of memory. */
sk_scan *sk_scan_new(const char *const *needles, const size_t *lens, size_t n);
/* Returns 1 once a needle has appeared in the stream fed so far (and from then on), else 0. */
int sk_scan_feed(sk_scan *s, const char *chunk, size_t len);
/* Trailing bytes of the stream fed so far to withhold (<= longest needle - 1). */
size_t sk_scan_hold(const sk_scan *s);
/* Accepts NULL. */
void sk_scan_free(sk_scan *s);

#endif
