//! One session with skiff: the write half of the socket and the protocol state.

use super::*;

pub(crate) type ReplyTx = mpsc::Sender<Result<Value, CallError>>;

/// One session: the write half of the socket and the protocol state.
pub(crate) struct Conn {
    pub(crate) name: String,
    /// Written only by the thread that flushes `queue` (see `batch`).
    pub(crate) writer: Mutex<UnixStream>,
    pub(crate) queue: Mutex<batch::WriteQueue>,
    /// A write of the queue ended.
    pub(crate) wrote: Condvar,
    pub(crate) closer: UnixStream,
    pub(crate) state: Mutex<ConnState>,
    pub(crate) cond: Condvar,
}

pub(crate) struct ConnState {
    pub(crate) max_frame: usize,
    pub(crate) features: Vec<String>,
    pub(crate) methods: Vec<String>,
    pub(crate) open: HashMap<String, Arc<TaskState>>,
    /// ref -> (the task an extend is for, where its reply goes)
    pub(crate) pending: HashMap<String, (Option<String>, ReplyTx)>,
    pub(crate) next_ref: u64,
    pub(crate) draining: bool,
    pub(crate) closed: bool,
    /// Results taken out of `open` and not yet written: a drain closes only after them.
    pub(crate) writing: usize,
}

pub(crate) fn names(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Conn {
    pub(crate) fn new(stream: &UnixStream, name: String) -> io::Result<Self> {
        Ok(Conn {
            name,
            writer: Mutex::new(stream.try_clone()?),
            queue: Mutex::new(batch::WriteQueue::default()),
            wrote: Condvar::new(),
            closer: stream.try_clone()?,
            state: Mutex::new(ConnState {
                max_frame: DEFAULT_MAX_FRAME,
                features: Vec::new(),
                methods: Vec::new(),
                open: HashMap::new(),
                pending: HashMap::new(),
                next_ref: 0,
                draining: false,
                closed: false,
                writing: 0,
            }),
            cond: Condvar::new(),
        })
    }

    pub(crate) fn welcome(&self, w: &Value) {
        let mut st = self.state.lock().unwrap();
        if let Some(m) = w["max_frame"].as_u64().filter(|m| *m > 0) {
            st.max_frame = m as usize;
        }
        st.features = names(&w["features"]);
        st.methods = names(&w["methods"]);
        log(
            &self.name,
            "info",
            &format!(
                "connected to skiff, session {}",
                w["session"].as_str().unwrap_or("")
            ),
        );
    }

    pub(crate) fn has_feature(&self, f: &str) -> bool {
        self.state.lock().unwrap().features.iter().any(|x| x == f)
    }

    pub(crate) fn send(&self, frame: &Value) -> Result<(), CallError> {
        let max = self.state.lock().unwrap().max_frame;
        let data = encode_frame(frame, max)
            .map_err(|e| CallError::new("invalid_params", e.to_string()))?;
        self.send_bytes(&data)
    }

    pub(crate) fn send_bytes(&self, data: &[u8]) -> Result<(), CallError> {
        self.enqueue(data.to_vec(), false)
            .map_err(|e| CallError::new("closed", format!("connection to skiff lost: {e}")))
    }

    pub(crate) fn open(&self, id: &str, state: Arc<TaskState>) {
        self.state
            .lock()
            .unwrap()
            .open
            .insert(id.to_string(), state);
    }

    /// Sends a task's result unless skiff cancelled it; a too large one becomes a fail / nack.
    pub(crate) fn send_result(&self, task: &Task, result: Value) {
        let (owed, max) = {
            let mut st = self.state.lock().unwrap();
            let owed = st.open.remove(&task.id).is_some();
            st.writing += usize::from(owed);
            (owed, st.max_frame)
        };
        if owed {
            let data = match encode_frame(&result, max) {
                Ok(d) => d,
                Err(e) => {
                    let kind = if task.source == Source::Kafka {
                        "nack"
                    } else {
                        "fail"
                    };
                    let alt = json!({"type": kind, "id": task.id, "message": e.to_string()});
                    encode_frame(&alt, max).unwrap_or_default()
                }
            };
            if let Err(e) = self.enqueue(data, true) {
                log(
                    &self.name,
                    "warn",
                    &format!("could not send the result of task {}: {e}", task.id),
                );
            }
        }
        let mut st = self.state.lock().unwrap();
        st.writing -= usize::from(owed);
        if owed && st.draining && st.open.is_empty() && st.writing == 0 {
            self.shutdown();
        }
    }

    pub(crate) fn call(&self, method: &str, params: Value) -> Result<Value, CallError> {
        if !self
            .state
            .lock()
            .unwrap()
            .methods
            .iter()
            .any(|m| m == method)
        {
            return Err(CallError::new(
                "unsupported",
                format!("skiff does not offer the method {method}"),
            ));
        }
        self.request("call", json!({"method": method, "params": params}), None)
    }

    /// Sends a frame with a fresh ref and waits for its reply.
    pub(crate) fn request(
        &self,
        kind: &str,
        members: Value,
        task: Option<&Task>,
    ) -> Result<Value, CallError> {
        let (tx, rx) = mpsc::channel();
        let data = {
            let mut st = self.state.lock().unwrap();
            if st.closed {
                return Err(CallError::new("closed", "not connected to skiff"));
            }
            if let Some(t) = task {
                if t.is_cancelled() {
                    let reason = t.cancel_reason().unwrap_or_default();
                    return Err(CallError::new(
                        "cancelled",
                        format!("task {} was cancelled ({reason})", t.id),
                    ));
                }
                if !st.open.contains_key(&t.id) {
                    return Err(CallError::new(
                        "closed",
                        format!("task {} is no longer open", t.id),
                    ));
                }
            }
            st.next_ref += 1;
            let r = st.next_ref.to_string();
            let mut f = json!({"type": kind, "ref": r});
            if let (Some(obj), Value::Object(m)) = (f.as_object_mut(), members) {
                obj.extend(m);
            }
            let data = encode_frame(&f, st.max_frame)
                .map_err(|e| CallError::new("invalid_params", e.to_string()))?;
            st.pending.insert(r, (task.map(|t| t.id.clone()), tx));
            data
        };
        self.send_bytes(&data)?;
        rx.recv().unwrap_or_else(|_| {
            Err(CallError::new(
                "closed",
                "connection to skiff lost before the reply",
            ))
        })
    }

    pub(crate) fn resolve(&self, r: &str, result: Result<Value, CallError>) {
        if let Some((_, tx)) = self.state.lock().unwrap().pending.remove(r) {
            let _ = tx.send(result);
        }
    }

    pub(crate) fn cancel(&self, id: &str, reason: &str) {
        let mut st = self.state.lock().unwrap();
        let Some(task) = st.open.remove(id) else {
            return;
        };
        let reason = if reason == "deadline" || reason == "revoked" {
            reason
        } else {
            "job_gone"
        };
        *task.reason.lock().unwrap() = Some(reason.to_string());
        task.cancelled.store(true, Ordering::SeqCst);
        let refs: Vec<String> = st
            .pending
            .iter()
            .filter(|(_, p)| p.0.as_deref() == Some(id))
            .map(|(r, _)| r.clone())
            .collect();
        for r in refs {
            if let Some((_, tx)) = st.pending.remove(&r) {
                let _ = tx.send(Err(CallError::new(
                    "cancelled",
                    format!("task {id} was cancelled ({reason})"),
                )));
            }
        }
        if st.draining && st.open.is_empty() && st.writing == 0 {
            self.shutdown();
        }
        self.cond.notify_all();
    }

    pub(crate) fn drain(&self) {
        let mut st = self.state.lock().unwrap();
        st.draining = true;
        log(
            &self.name,
            "info",
            &format!(
                "skiff asks to drain; finishing {} tasks in flight",
                st.open.len()
            ),
        );
        if st.open.is_empty() && st.writing == 0 {
            self.shutdown();
        }
    }

    pub(crate) fn shutdown(&self) {
        let _ = self.closer.shutdown(std::net::Shutdown::Both);
    }

    /// The session ended: pending requests fail with `closed`.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock().unwrap();
        st.closed = true;
        for (_, (_, tx)) in st.pending.drain() {
            let _ = tx.send(Err(CallError::new(
                "closed",
                "connection to skiff lost before the reply",
            )));
        }
        self.cond.notify_all();
    }
}
