/* Kubernetes downward API annotations file: one `key="value"` per line, the value quoted the
 * way Go's %q quotes it (escapes \a \b \f \n \r \t \v \\ \" \xHH \ooo \uHHHH \UHHHHHHHH).
 * Pure parsing, no state; any thread. */
#ifndef SK_ANNOTATIONS_H
#define SK_ANNOTATIONS_H

#include <stddef.h>

typedef void (*sk_annotation_cb)(void *ud, const char *key, const char *value);
typedef void (*sk_annotation_line_cb)(void *ud, int line, const char *key, const char *value);
typedef void (*sk_annotation_err_cb)(void *ud, int line, const char *why);

/* Calls cb for each well-formed line (key and value are only valid during the call) and
 * on_error (may be NULL) for each malformed one with its line number (1-based) and a short
 * reason. Blank lines are skipped. Returns the number of malformed lines. */
int sk_annotations_parse(const char *text, size_t len, sk_annotation_cb cb,
                         sk_annotation_err_cb on_error, void *ud);
/* Same, the callback also receiving the line number. */
int sk_annotations_parse_lines(const char *text, size_t len, sk_annotation_line_cb cb,
                               sk_annotation_err_cb on_error, void *ud);

#endif
