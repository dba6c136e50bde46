//! One session with skiff as the handler serves it: hello, welcome, the read loop and the
//! tasks it starts (single `task` frames and, protocol 1.4, `tasks` frames).

use super::*;

impl Handler {
    /// The hello frame's JSON, members in the protocol's order (serde_json's map sorts keys).
    pub(crate) fn hello(&self) -> String {
        let list = |names: Vec<&String>| serde_json::to_string(&names).unwrap_or_default();
        let mut h = format!(
            r#"{{"type":"hello","version":{PROTOCOL_VERSION},"name":{},"capacity":{}"#,
            Value::from(self.name.clone()),
            self.capacity
        );
        if !self.jobs.is_empty() {
            h += &format!(
                r#","job_types":{}"#,
                list(self.jobs.iter().map(|j| &j.0).collect())
            );
        }
        if !self.topics.is_empty() {
            h += &format!(
                r#","topics":{}"#,
                list(self.topics.iter().map(|t| &t.0).collect())
            );
        }
        if self.batch {
            h + r#","features":["cancel","batch"]}"#
        } else {
            h + r#","features":["cancel"]}"#
        }
    }

    pub(crate) fn serve(&self, stream: UnixStream, pool: &Pool) -> Session {
        let conn = match Conn::new(&stream, self.name.clone()) {
            Ok(c) => Arc::new(c),
            Err(e) => return Session::Lost(false, e.to_string()),
        };
        let mut reader = io::BufReader::with_capacity(65536, stream);
        let hello = self.hello();
        let mut data = (hello.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(hello.as_bytes());
        if conn.send_bytes(&data).is_err() {
            return Session::Lost(false, "cannot send hello".into());
        }
        let welcome = loop {
            match frame::read_frame(&mut reader, DEFAULT_MAX_FRAME) {
                Ok(Ok(f)) => break f,
                Ok(Err(e)) => log(
                    &self.name,
                    "error",
                    &format!("skiff sent a bad frame ({e}); ignored"),
                ),
                Err(e) => return Session::Lost(false, e.to_string()),
            }
        };
        match welcome["type"].as_str() {
            Some("welcome") => conn.welcome(&welcome),
            Some("error") => return Session::Refused(error_of(&welcome)),
            other => return Session::Lost(false, format!("expected welcome, got {other:?}")),
        }
        *self.current.lock().unwrap() = Some(conn.clone());
        let why = self.read_loop(&conn, &mut reader, pool);
        *self.current.lock().unwrap() = None;
        conn.close();
        pool.wait_idle();
        if conn.state.lock().unwrap().draining {
            Session::Drained
        } else {
            Session::Lost(true, why)
        }
    }

    fn read_loop(&self, conn: &Arc<Conn>, reader: &mut impl Read, pool: &Pool) -> String {
        loop {
            let max = conn.state.lock().unwrap().max_frame;
            let f = match frame::read_frame(reader, max) {
                Ok(Ok(f)) => f,
                Ok(Err(e)) => {
                    log(
                        &self.name,
                        "error",
                        &format!("skiff sent a bad frame ({e}); ignored"),
                    );
                    continue;
                }
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        log(
                            &self.name,
                            "error",
                            &format!("skiff sent a bad frame ({e}); closing"),
                        );
                    }
                    return e.to_string();
                }
            };
            match f["type"].as_str().unwrap_or("") {
                "task" => self.on_task(conn, f, pool),
                "tasks" => self.on_tasks(conn, f, pool),
                "reply" => conn.resolve(f["ref"].as_str().unwrap_or(""), reply_result(&f)),
                "cancel" => conn.cancel(
                    f["id"].as_str().unwrap_or(""),
                    f["reason"].as_str().unwrap_or(""),
                ),
                "ping" => {
                    let _ =
                        conn.send(&json!({"type": "pong", "ref": f["ref"].as_str().unwrap_or("")}));
                }
                "drain" => conn.drain(),
                "error" => {
                    let e = error_of(&f);
                    let mut id = f["id"]
                        .as_str()
                        .map(|i| format!(" (task {i})"))
                        .unwrap_or_default();
                    if let Some(i) = f["index"].as_u64() {
                        // a refused results item: skiff keeps the session (SPEC §4.7)
                        id += &format!(" (results item {i})");
                    }
                    log(
                        &self.name,
                        "error",
                        &format!("skiff error {}: {}{id}", e.code, e.message),
                    );
                }
                "pong" | "welcome" => {}
                other => log(
                    &self.name,
                    "warn",
                    &format!("ignoring a frame of unknown type {other}"),
                ),
            }
        }
    }

    /// A `tasks` frame (1.4): each item as if it had come alone, in order; an item that is
    /// not a task object is skipped (logged), the others go on.
    fn on_tasks(&self, conn: &Arc<Conn>, mut f: Value, pool: &Pool) {
        let items = match f.get_mut("tasks").map(Value::take) {
            Some(Value::Array(items)) if !items.is_empty() => items,
            _ => {
                log(
                    &self.name,
                    "error",
                    "skiff sent a tasks frame without a non-empty tasks array; ignored",
                );
                return;
            }
        };
        for (i, item) in items.into_iter().enumerate() {
            if item["type"].as_str() == Some("task") {
                self.on_task(conn, item, pool);
            } else {
                log(
                    &self.name,
                    "error",
                    &format!("skiff sent a tasks frame whose item {i} is not a task; skipped"),
                );
            }
        }
    }

    fn on_task(&self, conn: &Arc<Conn>, f: Value, pool: &Pool) {
        let Some(id) = f["id"].as_str().filter(|s| !s.is_empty()).map(String::from) else {
            log(
                &self.name,
                "error",
                "skiff sent a task without an id; ignored",
            );
            return;
        };
        let kafka = f["source"].as_str() == Some("kafka");
        if let Some(bad) = frame::task_problem(&f) {
            log(
                &self.name,
                "error",
                &format!("skiff sent a malformed task {id} (member {bad})"),
            );
            let kind = if kafka { "nack" } else { "fail" };
            let msg = format!("malformed task frame: wrong type of member {bad}");
            let _ = conn.send(&json!({"type": kind, "id": id, "message": msg}));
            return;
        }
        let state = Arc::new(TaskState::default());
        let str_of = |k: &str| f[k].as_str().unwrap_or("").to_string();
        let task = Task {
            id: id.clone(),
            source: if kafka { Source::Kafka } else { Source::Zeebe },
            job_type: str_of("job_type"),
            topic: str_of("topic"),
            attempt: f["attempt"].as_i64().unwrap_or(1),
            traceparent: f["traceparent"].as_str().map(String::from),
            tracestate: f["tracestate"].as_str().map(String::from),
            variables: f.get("variables").cloned().unwrap_or_else(|| json!({})),
            headers: f.get("headers").cloned().unwrap_or_else(|| json!({})),
            zeebe: f.get("zeebe").cloned().unwrap_or(Value::Null),
            value: f.get("value").cloned().unwrap_or(Value::Null),
            kafka: f.get("kafka").cloned().unwrap_or(Value::Null),
            deadline: AtomicI64::new(f["deadline"].as_i64().unwrap_or(0)),
            frame: f,
            state: state.clone(),
            conn: conn.clone(),
        };
        conn.open(&id, state);
        pool.submit(Arc::new(task));
    }
}

pub(crate) enum Session {
    Drained,
    Refused(CallError),
    Lost(bool, String),
}

pub(crate) fn error_of(f: &Value) -> CallError {
    CallError::new(
        f["code"].as_str().unwrap_or("rejected"),
        f["message"].as_str().unwrap_or(""),
    )
}

pub(crate) fn reply_result(f: &Value) -> Result<Value, CallError> {
    if f["ok"].as_bool() == Some(true) {
        Ok(match &f["result"] {
            Value::Object(_) => f["result"].clone(),
            _ => json!({}),
        })
    } else {
        Err(error_of(if f["error"].is_object() {
            &f["error"]
        } else {
            f
        }))
    }
}
