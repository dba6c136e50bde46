#include "handler/frame.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sk_frame_length(const uint8_t *buf, size_t len, size_t max_frame, size_t *payload_len,
                    const char **perr, char *err, size_t errlen)
{
    if (len < SK_FRAME_HEADER)
        return 0;
    uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (n == 0) {
        *perr = SK_PERR_MALFORMED;
        snprintf(err, errlen, "frame length is 0");
        return -1;
    }
    if (n > max_frame) {
        *perr = SK_PERR_TOO_LARGE;
        snprintf(err, errlen, "frame of %u bytes exceeds max_frame %zu", n, max_frame);
        return -1;
    }
    *payload_len = n;
    return 1;
}

static const struct {
    const char *name;
    sk_msg_type type;
} msg_types[] = {
    {"hello", SK_MSG_HELLO},     {"complete", SK_MSG_COMPLETE},
    {"fail", SK_MSG_FAIL},       {"bpmn_error", SK_MSG_BPMN_ERROR},
    {"ack", SK_MSG_ACK},         {"nack", SK_MSG_NACK},
    {"extend", SK_MSG_EXTEND},   {"call", SK_MSG_CALL},
    {"ping", SK_MSG_PING},       {"pong", SK_MSG_PONG},
    {"results", SK_MSG_RESULTS},
};

static int skiff_only(const char *type)
{
    static const char *const names[] = {"welcome", "task",  "tasks", "drain",
                                        "reply",   "error", "cancel"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        if (strcmp(type, names[i]) == 0)
            return 1;
    return 0;
}

/* Member accessors: 0 when present with the right type (or absent and optional), -1 with a
 * message otherwise. */
static int get_string(json_t *o, const char *key, int required, const char **out, char *err,
                      size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v && !required)
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        snprintf(err, errlen, "member \"%s\" must be a string without NUL bytes", key);
        return -1;
    }
    *out = json_string_value(v);
    return 0;
}

/* A text member (a result's message): any JSON string, NUL included. */
static int get_text(json_t *o, const char *key, int required, const char **out, size_t *len,
                    char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    *len = 0;
    if (!v && !required)
        return 0;
    if (!json_is_string(v)) {
        snprintf(err, errlen, "member \"%s\" must be a string", key);
        return -1;
    }
    *out = json_string_value(v);
    *len = json_string_length(v);
    return 0;
}

static int get_int(json_t *o, const char *key, int required, int *has, int64_t *out, char *err,
                   size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (has)
        *has = v != NULL;
    if (!v && !required)
        return 0;
    if (!json_is_integer(v)) {
        snprintf(err, errlen, "member \"%s\" must be an integer", key);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int get_object(json_t *o, const char *key, json_t **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "member \"%s\" must be an object", key);
        return -1;
    }
    *out = v;
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = 0;
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        snprintf(err, errlen, "member \"%s\" must be a boolean", key);
        return -1;
    }
    *out = json_is_true(v);
    return 0;
}

/* An optional array of non-empty strings. */
static int get_names(json_t *o, const char *key, json_t **out, char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = v;
    if (!v)
        return 0;
    if (!json_is_array(v)) {
        snprintf(err, errlen, "member \"%s\" must be an array of strings", key);
        return -1;
    }
    size_t i;
    json_t *t;
    json_array_foreach(v, i, t)
    {
        if (!json_is_string(t) || json_string_length(t) == 0) {
            snprintf(err, errlen, "%s[%zu] must be a non-empty string", key, i);
            return -1;
        }
    }
    return 0;
}

static int decode_hello(sk_msg *m, char *err, size_t errlen)
{
    json_t *o = m->root;
    if (get_int(o, "version", 1, NULL, &m->version, err, errlen) ||
        get_string(o, "name", 1, &m->name, err, errlen) ||
        get_int(o, "capacity", 1, NULL, &m->capacity, err, errlen))
        return -1;
    if (m->capacity < 1 || m->capacity > 1000000) {
        snprintf(err, errlen, "member \"capacity\" must be in 1..1000000");
        return -1;
    }
    return get_names(o, "job_types", &m->job_types, err, errlen) ||
                   get_names(o, "topics", &m->topics, err, errlen) ||
                   get_names(o, "features", &m->features, err, errlen)
               ? -1
               : 0;
}

static int decode_result(sk_msg *m, char *err, size_t errlen)
{
    json_t *o = m->root;
    if (get_string(o, "id", 1, &m->id, err, errlen) ||
        get_object(o, "variables", &m->variables, err, errlen) ||
        get_text(o, "message", 0, &m->message, &m->message_len, err, errlen))
        return -1;
    switch (m->type) {
    case SK_MSG_FAIL:
        if (get_int(o, "retries", 0, &m->has_retries, &m->retries, err, errlen) ||
            get_int(o, "retry_backoff_ms", 0, NULL, &m->retry_backoff_ms, err, errlen))
            return -1;
        if ((m->has_retries && (m->retries < 0 || m->retries > INT32_MAX)) ||
            m->retry_backoff_ms < 0) {
            snprintf(err, errlen, "\"retries\" and \"retry_backoff_ms\" must not be negative");
            return -1;
        }
        return 0;
    case SK_MSG_NACK:
        if (get_text(o, "message", 1, &m->message, &m->message_len, err, errlen) ||
            get_int(o, "retry_backoff_ms", 0, &m->has_retry_backoff, &m->retry_backoff_ms, err,
                    errlen) ||
            get_bool(o, "dead_letter", &m->dead_letter, err, errlen))
            return -1;
        if (m->retry_backoff_ms < 0) {
            snprintf(err, errlen, "member \"retry_backoff_ms\" must not be negative");
            return -1;
        }
        return 0;
    case SK_MSG_BPMN_ERROR:
        if (get_string(o, "code", 1, &m->code, err, errlen))
            return -1;
        if (!*m->code) {
            snprintf(err, errlen, "member \"code\" must not be empty");
            return -1;
        }
        return 0;
    case SK_MSG_EXTEND:
        if (get_int(o, "timeout_ms", 1, NULL, &m->timeout_ms, err, errlen) ||
            get_string(o, "ref", 0, &m->ref, err, errlen))
            return -1;
        if (m->timeout_ms < 1) {
            snprintf(err, errlen, "member \"timeout_ms\" must be at least 1");
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

static int decode_members(sk_msg *m, char *err, size_t errlen)
{
    switch (m->type) {
    case SK_MSG_HELLO:
        return decode_hello(m, err, errlen);
    case SK_MSG_CALL:
        return get_string(m->root, "ref", 1, &m->ref, err, errlen) ||
                       get_string(m->root, "method", 1, &m->method, err, errlen) ||
                       get_object(m->root, "params", &m->params, err, errlen)
                   ? -1
                   : 0;
    case SK_MSG_PING:
    case SK_MSG_PONG:
        return get_string(m->root, "ref", 0, &m->ref, err, errlen);
    case SK_MSG_RESULTS:
        m->items = json_object_get(m->root, "results");
        if (json_array_size(m->items) == 0) {
            snprintf(err, errlen, "member \"results\" must be a non-empty array");
            return -1;
        }
        return 0;
    default:
        return decode_result(m, err, errlen);
    }
}

/* The type of a frame object: 0, or -1 with *perr and a message. */
static int frame_type(json_t *root, sk_msg_type *type, const char **perr, char *err, size_t errlen)
{
    const char *name;
    *perr = SK_PERR_MALFORMED;
    if (!json_is_object(root)) {
        snprintf(err, errlen, "frame must hold a JSON object");
        return -1;
    }
    if (get_string(root, "type", 1, &name, err, errlen))
        return -1;
    for (size_t i = 0; i < sizeof(msg_types) / sizeof(msg_types[0]); i++) {
        if (strcmp(name, msg_types[i].name) == 0) {
            *type = msg_types[i].type;
            return 0;
        }
    }
    int ours = skiff_only(name);
    *perr = ours ? SK_PERR_PROTOCOL : SK_PERR_UNKNOWN_TYPE;
    snprintf(err, errlen,
             ours ? "\"%.64s\" frames are sent by skiff, not by handlers"
                  : "unknown frame type \"%.64s\"",
             name);
    return -1;
}

int sk_msg_decode(const uint8_t *payload, size_t len, sk_msg *m, const char **perr, char *err,
                  size_t errlen)
{
    json_error_t jerr;
    memset(m, 0, sizeof(*m));
    *perr = SK_PERR_MALFORMED;
    /* NUL is allowed inside strings: an Avro string or bytes value may hold one (appendix). */
    m->root =
        json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!m->root) {
        snprintf(err, errlen, "invalid JSON at byte %d: %s", jerr.position, jerr.text);
        return -1;
    }
    if (frame_type(m->root, &m->type, perr, err, errlen) == 0 &&
        decode_members(m, err, errlen) == 0)
        return 0;
    sk_msg_clear(m);
    return -1;
}

static int is_result(sk_msg_type type)
{
    return type == SK_MSG_COMPLETE || type == SK_MSG_FAIL || type == SK_MSG_BPMN_ERROR ||
           type == SK_MSG_ACK || type == SK_MSG_NACK;
}

int sk_msg_decode_item(json_t *item, size_t index, sk_msg *m, const char **perr, char *err,
                       size_t errlen)
{
    char why[200];
    memset(m, 0, sizeof(*m));
    m->root = json_incref(item);
    int r = frame_type(item, &m->type, perr, why, sizeof(why));
    if (r == 0 && !is_result(m->type)) {
        *perr = SK_PERR_PROTOCOL;
        snprintf(why, sizeof(why), "only complete, fail, bpmn_error, ack and nack go in results");
        r = -1;
    }
    *perr = r == 0 ? SK_PERR_MALFORMED : *perr;
    if (r == 0 && decode_members(m, why, sizeof(why)) == 0)
        return 0;
    snprintf(err, errlen, "results[%zu]: %s", index, why);
    json_t *id = json_object_get(item, "id");
    m->id = json_is_string(id) && strlen(json_string_value(id)) == json_string_length(id)
                ? json_string_value(id)
                : NULL;
    return -1;
}

void sk_msg_clear(sk_msg *m)
{
    json_decref(m->root);
    memset(m, 0, sizeof(*m));
}

uint8_t *sk_frame_encode(const json_t *obj, size_t *out_len)
{
    size_t n = json_dumpb(obj, NULL, 0, JSON_COMPACT);
    if (n == 0 || n > UINT32_MAX)
        return NULL;
    uint8_t *buf = malloc(SK_FRAME_HEADER + n);
    if (!buf)
        return NULL;
    if (json_dumpb(obj, (char *)buf + SK_FRAME_HEADER, n, JSON_COMPACT) != n) {
        free(buf);
        return NULL;
    }
    buf[0] = (uint8_t)(n >> 24);
    buf[1] = (uint8_t)(n >> 16);
    buf[2] = (uint8_t)(n >> 8);
    buf[3] = (uint8_t)n;
    *out_len = SK_FRAME_HEADER + n;
    return buf;
}
