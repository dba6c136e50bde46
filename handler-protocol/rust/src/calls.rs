//! The params of the calls (SPEC §4.4): `publish_message`, `produce`, `secret`, `token`.

use super::*;

/// `secret` and `token`: the call with `{name: arg}`, its result's string `member`.
pub(crate) fn string_call(
    conn: &Conn,
    method: &str,
    name: &str,
    arg: &str,
    member: &str,
) -> Result<String, CallError> {
    if arg.is_empty() {
        return Err(CallError::new(
            "invalid_params",
            format!("{method} needs a non-empty {name}"),
        ));
    }
    let mut params = Map::new();
    params.insert(name.to_string(), Value::String(arg.to_string()));
    let result = conn.call(method, Value::Object(params))?;
    result
        .get(member)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| {
            CallError::new(
                "invalid_reply",
                format!("{method} reply without a string {member}"),
            )
        })
}

/// The params of `publish_message` (SPEC §4.4).
#[derive(Debug, Clone, Default)]
pub struct Message {
    pub name: String,
    pub correlation_key: String,
    pub variables: Option<Value>,
    pub time_to_live_ms: u64,
    pub message_id: Option<String>,
    pub tenant_id: Option<String>,
    /// W3C trace context of the span the message comes from (pass the task's `traceparent`):
    /// the jobs the message leads to continue that trace (protocol 1.3).
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that goes with `traceparent`.
    pub tracestate: Option<String>,
}

impl Message {
    pub fn new(name: &str) -> Self {
        Message {
            name: name.into(),
            ..Default::default()
        }
    }
    pub(crate) fn params(&self) -> Value {
        let mut p = json!({"name": self.name, "correlation_key": self.correlation_key,
                           "time_to_live_ms": self.time_to_live_ms});
        let m = p.as_object_mut().unwrap();
        if let Some(v) = &self.variables {
            m.insert("variables".into(), v.clone());
        }
        let optional = [
            ("message_id", &self.message_id),
            ("tenant_id", &self.tenant_id),
            ("traceparent", &self.traceparent),
            ("tracestate", &self.tracestate),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                m.insert(k.into(), v.clone().into());
            }
        }
        p
    }
}

/// The params of `produce` (SPEC §4.4).
#[derive(Debug, Clone, Default)]
pub struct Produce {
    pub topic: String,
    pub value: Value,
    pub key: Option<String>,
    pub headers: Option<Map<String, Value>>,
}

impl Produce {
    pub fn new(topic: &str, value: Value) -> Self {
        Produce {
            topic: topic.into(),
            value,
            ..Default::default()
        }
    }
    pub(crate) fn params(&self) -> Value {
        let mut p = json!({"topic": self.topic, "value": self.value});
        let m = p.as_object_mut().unwrap();
        if let Some(k) = &self.key {
            m.insert("key".into(), k.clone().into());
        }
        if let Some(h) = &self.headers {
            m.insert("headers".into(), Value::Object(h.clone()));
        }
        p
    }
}
