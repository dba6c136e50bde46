/* The handlers' `publish_message` call: params checked member by member, then PublishMessage
 * to the gateway; the reply carries the message key once the gateway has answered.
 *
 * The call's CLIENT span is a child of params.traceparent (the handler's span, usually its
 * task's) and its traceparent goes into the message's variables as trace.zeebe_variable, so the
 * jobs of the process the message reaches continue the trace. */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/clock.h"
#include "trace/trace.h"
#include "zeebe/internal.h"

/* How long a publish_message call may take, retries on transient errors included. */
#define PUBLISH_TIMEOUT_MS 15000

/* A string member as the request's C string: a U+0000 inside it (valid JSON) would cut it
 * short, a correlation key to another instance's, so it is refused. */
static int c_string(const json_t *v, const char *key, char **out, sk_reply *reply)
{
    if (strlen(json_string_value(v)) != json_string_length(v)) {
        sk_reply_error(reply, "invalid_params", "params.%s must not contain U+0000", key);
        return -1;
    }
    *out = (char *)json_string_value(v);
    return 0;
}

/* An optional string member; 0 when absent or a string, -1 (reply sent) otherwise. */
static int opt_string(const json_t *params, const char *key, char **out, sk_reply *reply)
{
    json_t *v = json_object_get(params, key);
    if (!v)
        return 0;
    if (!json_is_string(v)) {
        sk_reply_error(reply, "invalid_params", "params.%s must be a string", key);
        return -1;
    }
    return c_string(v, key, out, reply);
}

/* The call's context from params.traceparent / params.tracestate: 1 when valid, 0 when absent
 * or not a valid W3C value (a new trace, as the recommendation says), -1 when not a string
 * (reply sent). */
static int call_context(const json_t *params, sk_trace_ctx *ctx, sk_reply *reply)
{
    char *tp = NULL, *ts = NULL;
    if (opt_string(params, "traceparent", &tp, reply) ||
        opt_string(params, "tracestate", &ts, reply))
        return -1;
    if (!tp || sk_traceparent_parse(tp, strlen(tp), ctx))
        return 0;
    ctx->tracestate[0] = '\0';
    if (ts && strlen(ts) < sizeof ctx->tracestate && sk_tracestate_valid(ts, strlen(ts)) == 0)
        memcpy(ctx->tracestate, ts, strlen(ts) + 1);
    return 1;
}

/* The message's variables as JSON text: the handler's (vars, NULL when none) plus the span's
 * traceparent as variable name, unless the handler set that variable itself. NULL when out of
 * memory. */
static char *variables_text(const json_t *vars, const char *name, const sk_span *span)
{
    json_t *v = vars ? json_copy((json_t *)vars) : json_object();
    if (v && span && !json_object_get(v, name)) {
        char tp[SK_TRACEPARENT_LEN + 1];
        sk_span_traceparent(span, tp);
        json_object_set_new(v, name, json_string(tp));
    }
    char *text = v ? json_dumps(v, JSON_COMPACT) : NULL;
    json_decref(v);
    return text;
}

void sk_zeebe_publish_call(void *ud, const json_t *params, sk_reply *reply)
{
    sk_zeebe *z = ud;
    GatewayProtocol__PublishMessageRequest r = GATEWAY_PROTOCOL__PUBLISH_MESSAGE_REQUEST__INIT;
    json_t *name = json_object_get(params, "name"),
           *ttl = json_object_get(params, "time_to_live_ms"),
           *vars = json_object_get(params, "variables");
    if (!json_is_string(name) || json_string_length(name) == 0) {
        sk_reply_error(reply, "invalid_params", "params.name must be a non-empty string");
        return;
    }
    if (c_string(name, "name", &r.name, reply) ||
        opt_string(params, "correlation_key", &r.correlationkey, reply) ||
        opt_string(params, "message_id", &r.messageid, reply) ||
        opt_string(params, "tenant_id", &r.tenantid, reply))
        return;
    if (ttl && (!json_is_integer(ttl) || json_integer_value(ttl) < 0)) {
        sk_reply_error(reply, "invalid_params",
                       "params.time_to_live_ms must be an integer >= 0 (milliseconds)");
        return;
    }
    r.timetolive = ttl ? json_integer_value(ttl) : 0;
    if (vars && !json_is_object(vars)) {
        sk_reply_error(reply, "invalid_params", "params.variables must be an object");
        return;
    }
    sk_trace_ctx parent;
    int has_parent = call_context(params, &parent, reply);
    if (has_parent < 0)
        return;
    sk_span *span = sk_zeebe_cmd_span(z, SK_ZEEBE_PUBLISH_METHOD, has_parent ? &parent : NULL);
    const char *var = z->cfg->trace_zeebe_variable && *z->cfg->trace_zeebe_variable
                          ? z->cfg->trace_zeebe_variable
                          : "traceparent";
    char *text = variables_text(vars, var, span);
    if (!text) {
        sk_span_free(span);
        sk_reply_error(reply, "rejected",
                       "skiff could not encode params.variables (out of memory)");
        return;
    }
    r.variables = text;
    size_t len = protobuf_c_message_get_packed_size(&r.base);
    uint8_t *req = malloc(len ? len : 1);
    if (req)
        protobuf_c_message_pack(&r.base, req);
    free(text);
    sk_zeebe_publish_send(z, req, len, sk_wall_ms() + PUBLISH_TIMEOUT_MS, reply, span);
}
