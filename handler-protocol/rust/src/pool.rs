//! The worker pool and the mapping of a function's outcome to a result frame.

use super::*;

pub(crate) struct Routes {
    pub(crate) jobs: HashMap<String, JobFn>,
    pub(crate) topics: HashMap<String, TopicFn>,
}

impl Routes {
    /// Runs the task's function and builds its result frame.
    pub(crate) fn execute(&self, task: &Arc<Task>) -> Value {
        let id = task.id.as_str();
        if task.source == Source::Kafka {
            let r = match self.topics.get(&task.topic) {
                None => Err(HandlerError::failed(
                    &format!("no handler for topic '{}'", task.topic),
                    None,
                    None,
                )),
                Some(f) => f(task),
            };
            return match r {
                Ok(()) => json!({"type": "ack", "id": id}),
                Err(HandlerError::Failed {
                    message,
                    retry_backoff_ms,
                    dead_letter,
                    ..
                }) => {
                    let mut n = json!({"type": "nack", "id": id, "message": message});
                    if let Some(ms) = retry_backoff_ms {
                        n["retry_backoff_ms"] = ms.into();
                    }
                    if dead_letter {
                        n["dead_letter"] = true.into();
                    }
                    n
                }
                Err(e) => json!({"type": "nack", "id": id, "message": e.message()}),
            };
        }
        let r = match self.jobs.get(&task.job_type) {
            None => Err(HandlerError::failed(
                &format!("no handler for job type '{}'", task.job_type),
                None,
                None,
            )),
            Some(f) => f(task),
        };
        job_result(id, r)
    }
}

pub(crate) fn job_result(id: &str, r: Result<Option<Value>, HandlerError>) -> Value {
    let with_vars = |mut f: Value, v: Option<Value>| {
        if let Some(v) = v {
            f["variables"] = v;
        }
        f
    };
    match r {
        Ok(v) => with_vars(json!({"type": "complete", "id": id}), v),
        Err(HandlerError::Bpmn {
            code,
            message,
            variables,
        }) => {
            let mut f = json!({"type": "bpmn_error", "id": id, "code": code});
            if !message.is_empty() {
                f["message"] = message.into();
            }
            with_vars(f, variables)
        }
        Err(HandlerError::Failed {
            message,
            retries,
            retry_backoff_ms,
            variables,
            ..
        }) => {
            let mut f = json!({"type": "fail", "id": id, "message": message});
            if let Some(r) = retries {
                f["retries"] = r.into();
            }
            if let Some(ms) = retry_backoff_ms {
                f["retry_backoff_ms"] = ms.into();
            }
            with_vars(f, variables)
        }
        Err(HandlerError::Other {
            type_name,
            message,
            stack,
        }) => {
            let frames: Vec<Value> = stack
                .iter()
                .map(|s| json!({"file": s.file, "line": s.line, "function": s.function}))
                .collect();
            json!({"type": "fail", "id": id, "message": message,
                   "error": {"type": type_name, "message": message, "stack": frames}})
        }
    }
}

/// Worker threads, started on demand and kept for reuse. A cancelled task's function may still
/// run while a new task takes its credit, so there may be more threads than capacity.
pub(crate) struct Pool {
    pub(crate) tx: mpsc::Sender<Arc<Task>>,
    pub(crate) rx: Arc<Mutex<mpsc::Receiver<Arc<Task>>>>,
    pub(crate) shared: Arc<(Mutex<PoolState>, Condvar)>,
    pub(crate) routes: Arc<Routes>,
}

#[derive(Default)]
pub(crate) struct PoolState {
    pub(crate) idle: usize,
    pub(crate) queued: usize,
    pub(crate) running: usize,
}

impl Pool {
    pub(crate) fn new(routes: Arc<Routes>) -> Self {
        let (tx, rx) = mpsc::channel();
        Pool {
            tx,
            rx: Arc::new(Mutex::new(rx)),
            shared: Arc::default(),
            routes,
        }
    }

    pub(crate) fn submit(&self, task: Arc<Task>) {
        let (lock, _) = &*self.shared;
        let mut st = lock.lock().unwrap();
        st.queued += 1;
        st.running += 1;
        let spawn = st.queued > st.idle;
        drop(st);
        let _ = self.tx.send(task);
        if spawn {
            let (rx, shared, routes) = (self.rx.clone(), self.shared.clone(), self.routes.clone());
            thread::spawn(move || worker(rx, shared, routes));
        }
    }

    /// Waits until no function runs (after a session ended).
    pub(crate) fn wait_idle(&self) {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        while st.running > 0 {
            st = cv.wait(st).unwrap();
        }
    }
}

pub(crate) fn worker(
    rx: Arc<Mutex<mpsc::Receiver<Arc<Task>>>>,
    shared: Arc<(Mutex<PoolState>, Condvar)>,
    routes: Arc<Routes>,
) {
    let (lock, cv) = &*shared;
    loop {
        lock.lock().unwrap().idle += 1;
        let next = rx.lock().unwrap().recv();
        {
            let mut st = lock.lock().unwrap();
            st.idle -= 1;
            if next.is_ok() {
                st.queued -= 1;
            }
        }
        let Ok(task) = next else { return };
        let result = routes.execute(&task);
        task.conn.send_result(&task, result);
        drop(task);
        lock.lock().unwrap().running -= 1;
        cv.notify_all();
    }
}
