//! The Rust SDK's conformance handler (handler-protocol/conformance/CONTRACT.md, level 2).
//! Environment: SKIFF_SOCKET, CONF_NAME, CONF_CAPACITY, CONF_MODE (all, zeebe, kafka).

use serde_json::{json, Map, Value};
use skiff_handler::{CallError, Handler, HandlerError, Message, Produce, Task};
use std::io;
use std::sync::Mutex;
use std::thread::sleep;
use std::time::Duration;

static ACTIVE: Mutex<(i64, i64)> = Mutex::new((0, 0));

type JobResult = Result<Option<Value>, HandlerError>;

fn error_vars(e: CallError) -> JobResult {
    Ok(Some(
        json!({"error": {"code": e.code, "message": e.message}}),
    ))
}

fn call_vars(r: Result<Value, CallError>) -> JobResult {
    match r {
        Ok(v) => Ok(Some(json!({"result": v}))),
        Err(e) => error_vars(e),
    }
}

fn complete(t: &Task) -> JobResult {
    Ok(Some(json!({
        "doubled": t.variables["n"].as_i64().unwrap_or(0) * 2,
        "seen": {"id": t.id, "job_type": t.job_type, "headers": t.headers, "key": t.zeebe["key"],
                 "retries": t.zeebe["retries"], "traceparent": t.traceparent,
                 "deadline": t.deadline(), "attempt": t.attempt},
    })))
}

fn raise(t: &Task) -> JobResult {
    let msg = t.variables["msg"].as_str().unwrap_or("");
    Err(io::Error::other(format!("boom {msg}")))?
}

fn sleepy(t: &Task) -> JobResult {
    let seen = {
        let mut a = ACTIVE.lock().unwrap();
        a.0 += 1;
        a.1 = a.1.max(a.0);
        a.0
    };
    sleep(Duration::from_millis(
        t.variables["ms"].as_u64().unwrap_or(100),
    ));
    let mut a = ACTIVE.lock().unwrap();
    a.0 -= 1;
    Ok(Some(json!({"active_at_start": seen, "max_active": a.1})))
}

fn extend(t: &Task) -> JobResult {
    match t.extend(t.variables["ms"].as_u64().unwrap_or(0)) {
        Ok(d) => Ok(Some(json!({"deadline": d, "task_deadline": t.deadline()}))),
        Err(e) if e.code == "invalid_argument" => Err(HandlerError::msg(e.message)),
        Err(e) => error_vars(e),
    }
}

fn wait_cancel(t: &Task, ms: u64) -> (bool, Option<String>) {
    let cancelled = t.wait_cancelled(Duration::from_millis(ms));
    (cancelled, t.cancel_reason())
}

fn job_wait_cancel(t: &Task) -> JobResult {
    let (cancelled, reason) = wait_cancel(t, t.variables["ms"].as_u64().unwrap_or(5000));
    let extend_error = t.extend(1000).err().map(|e| e.code);
    let mut m = Message::new("cancelled");
    m.correlation_key = t.id.clone();
    m.variables =
        Some(json!({"cancelled": cancelled, "reason": reason, "extend_error": extend_error}));
    let _ = t.publish_message(&m);
    Ok(Some(json!({"late": true})))
}

fn message_of(p: &Value) -> Message {
    let s = |k: &str| p[k].as_str().map(String::from);
    Message {
        name: s("name").unwrap_or_default(),
        correlation_key: s("correlation_key").unwrap_or_default(),
        variables: p.get("variables").cloned(),
        time_to_live_ms: p["time_to_live_ms"].as_u64().unwrap_or(0),
        message_id: s("message_id"),
        tenant_id: s("tenant_id"),
        traceparent: s("traceparent"),
        tracestate: s("tracestate"),
    }
}

fn produce_of(p: &Value) -> Produce {
    Produce {
        topic: p["topic"].as_str().unwrap_or("").into(),
        value: p["value"].clone(),
        key: p["key"].as_str().map(String::from),
        headers: p["headers"].as_object().cloned(),
    }
}

fn topic_seen(t: &Task) -> Result<(), HandlerError> {
    let k = &t.kafka;
    let or = |key: &str, d: Value| k.get(key).cloned().unwrap_or(d);
    let value = json!({
        "id": t.id, "source": "kafka", "topic": t.topic, "value": t.value, "attempt": t.attempt,
        "deadline": t.deadline(), "traceparent": t.traceparent,
        "record": {"topic": k["topic"], "partition": k["partition"], "offset": k["offset"],
                   "key": or("key", Value::Null), "key_base64": or("key_base64", Value::Null),
                   "headers": k["headers"], "headers_base64": or("headers_base64", json!({})),
                   "timestamp": or("timestamp", Value::Null), "schema_id": k["schema_id"]},
    });
    let mut headers = Map::new();
    headers.insert("seen-by".into(), "conformance".into());
    let record = Produce {
        topic: "conf.seen.out".into(),
        value,
        key: k["key"].as_str().map(String::from),
        headers: Some(headers),
    };
    t.produce(&record)?;
    Ok(())
}

fn topic_wait_cancel(t: &Task) -> Result<(), HandlerError> {
    let (cancelled, reason) = wait_cancel(t, t.value["ms"].as_u64().unwrap_or(5000));
    let _ = t.produce(&Produce::new(
        "conf.cancelled",
        json!({"cancelled": cancelled, "reason": reason}),
    ));
    Ok(())
}

fn register_jobs(app: &mut Handler) {
    let client = app.client();
    let client2 = app.client();
    let client3 = app.client();
    let client4 = app.client();
    app.job("conf-complete", complete)
        .job("conf-none", |_| Ok(None))
        .job("conf-raise", raise)
        .job("conf-bpmn", |_| {
            Err(HandlerError::bpmn_with(
                "RISK_TOO_HIGH",
                "too risky",
                json!({"reason": "amount"}),
            ))
        })
        .job("conf-jobfailed", |_| {
            Err(HandlerError::failed("try later", Some(2), Some(5000))
                .with_variables(json!({"attempted": true})))
        })
        .job("conf-sleep", sleepy)
        .job("conf-big", |t| {
            Ok(Some(
                json!({"blob": "x".repeat(t.variables["size"].as_u64().unwrap_or(0) as usize)}),
            ))
        })
        .job("conf-extend", extend)
        .job("conf-wait-cancel", job_wait_cancel)
        .job("conf-publish", move |t| {
            let m = message_of(&t.variables["params"]);
            call_vars(if t.variables["via"] == "handler" {
                client.publish_message(&m)
            } else {
                t.publish_message(&m)
            })
        })
        .job("conf-produce", move |t| {
            let p = produce_of(&t.variables["params"]);
            call_vars(if t.variables["via"] == "handler" {
                client2.produce(&p)
            } else {
                t.produce(&p)
            })
        })
        .job("conf-secret", move |t| {
            let reference = t.variables["reference"].as_str().unwrap_or("");
            call_vars(
                if t.variables["via"] == "handler" {
                    client3.secret(reference)
                } else {
                    t.secret(reference)
                }
                .map(Value::String),
            )
        })
        .job("conf-token", move |t| {
            let audience = t.variables["audience"].as_str().unwrap_or("");
            call_vars(
                if t.variables["via"] == "handler" {
                    client4.token(audience)
                } else {
                    t.token(audience)
                }
                .map(Value::String),
            )
        })
        .job("conf-echo", |t| {
            Ok(Some(json!({"echo": t.variables, "key": t.zeebe["key"],
                           "process_instance_key": t.zeebe["process_instance_key"]})))
        });
}

/// conf-async / conf.async: async functions on tokio (the crate's `tokio` feature).
fn register_async(app: &mut Handler, jobs: bool, topics: bool) {
    if jobs {
        app.job_async("conf-async", |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(Some(json!({"async": true})))
        });
    }
    if topics {
        app.topic_async("conf.async", |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(())
        });
    }
}

fn register_topics(app: &mut Handler) {
    app.topic("conf.seen", topic_seen)
        .topic("conf.ok", |_| Ok(()))
        .topic("conf.raise", |t| {
            Err(io::Error::other(format!(
                "bad record {}",
                t.value["msg"].as_str().unwrap_or("")
            )))?
        })
        .topic("conf.retry", |t| {
            Err(HandlerError::retry("try later", t.value["ms"].as_u64()))
        })
        .topic("conf.retry-default", |_| {
            Err(HandlerError::retry("try later", None))
        })
        .topic("conf.dlq", |_| {
            Err(HandlerError::dead_letter("poison record"))
        })
        .topic("conf.extend", |t| {
            t.extend(1000)?;
            Ok(())
        })
        .topic("conf.wait-cancel", topic_wait_cancel);
}

fn main() {
    let name = std::env::var("CONF_NAME").unwrap_or_else(|_| "conformance-rust".into());
    let capacity = std::env::var("CONF_CAPACITY")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2);
    let mode = std::env::var("CONF_MODE").unwrap_or_else(|_| "all".into());
    let mut app = Handler::new(&name, capacity);
    app.backoff_initial = Duration::from_millis(50);
    app.backoff_max = Duration::from_millis(200);
    if mode != "kafka" {
        register_jobs(&mut app);
    }
    if mode != "zeebe" {
        register_topics(&mut app);
    }
    register_async(&mut app, mode != "kafka", mode != "zeebe");
    if let Err(e) = app.run() {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
