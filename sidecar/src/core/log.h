/* JSON-lines logging: one object per line with timestamp (ISO 8601 UTC, ms), level,
 * service_name, component, message, trace_id, span_id and event-specific fields.
 * Loop thread only (no locking); the macros check the level before formatting. */
#ifndef SK_LOG_H
#define SK_LOG_H

#include <stdio.h>

typedef enum { SK_LOG_DEBUG, SK_LOG_INFO, SK_LOG_WARN, SK_LOG_ERROR } sk_log_level;

/* Trace ids of the work a line belongs to (lowercase hex, "" or NULL when none). */
typedef struct sk_log_trace {
    const char *trace_id;
    const char *span_id;
} sk_log_trace;

/* Sets the service name, the minimum level and the output stream (stderr when NULL). */
void sk_log_init(const char *service_name, sk_log_level level, FILE *out);
int sk_log_enabled(sk_log_level level);
/* Parses "debug" / "info" / "warn" / "error"; -1 when unknown. */
int sk_log_level_parse(const char *name);

/* kv: NULL or a NULL-terminated array of key, value string pairs (values are escaped; a key
 * that names a field of the logger, such as "message", is written as "kv_<key>"; a key
 * "#<name>" writes <name> with a number value unquoted, as a JSON number). */
void sk_log_write(sk_log_level level, const char *component, const sk_log_trace *trace,
                  const char *const *kv, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The ids of the work being done now: a line written with trace NULL carries them. Set around
 * a task's callbacks; returns the previous value (to restore). NULL: none. */
const sk_log_trace *sk_log_set_current(const sk_log_trace *trace);

#define SK_KV(...) ((const char *const[]){__VA_ARGS__, NULL})
#define SK_LOG(lvl, comp, trace, kv, ...)                                                          \
    do {                                                                                           \
        if (sk_log_enabled(lvl))                                                                   \
            sk_log_write(lvl, comp, trace, kv, __VA_ARGS__);                                       \
    } while (0)
#define SK_DEBUG(comp, ...) SK_LOG(SK_LOG_DEBUG, comp, NULL, NULL, __VA_ARGS__)
#define SK_INFO(comp, ...) SK_LOG(SK_LOG_INFO, comp, NULL, NULL, __VA_ARGS__)
#define SK_WARN(comp, ...) SK_LOG(SK_LOG_WARN, comp, NULL, NULL, __VA_ARGS__)
#define SK_ERROR(comp, ...) SK_LOG(SK_LOG_ERROR, comp, NULL, NULL, __VA_ARGS__)

#endif
