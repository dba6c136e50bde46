//! skiff handler SDK for Rust (handler protocol v1.4, `handler-protocol/SPEC.md`).
//!
//! ```no_run
//! use skiff_handler::{Handler, HandlerError};
//! use serde_json::json;
//!
//! let mut app = Handler::new("risk-scorer", 4);
//! app.job("risk-score", |task| {
//!     if task.variables["amount"].as_f64().unwrap_or(0.0) > 1e6 {
//!         return Err(HandlerError::bpmn("RISK_TOO_HIGH", "amount too large"));
//!     }
//!     Ok(Some(json!({"riskScore": 42})))
//! });
//! app.run().unwrap();
//! ```
//!
//! A job function returns `Ok(Some(variables))` / `Ok(None)` to complete the job, or an error:
//! [`HandlerError::bpmn`] throws a BPMN error, [`HandlerError::failed`] fails with explicit
//! retries/backoff, and any other error (`?` on any `std::error::Error`) fails the job with its
//! message and a structured `error` (type, message, the `?`'s file and line). A topic function
//! (Kafka records) returns `Ok(())` to ack, [`HandlerError::retry`] / [`HandlerError::dead_letter`]
//! or any other error to nack. Up to `capacity` tasks run at once on a pool of worker threads;
//! pings are answered while they run. `run()` connects to `$SKIFF_SOCKET` (default
//! `/run/skiff/handler.sock`), reconnects with a backoff, and returns after skiff's `drain` once
//! the tasks in flight are answered.

use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::panic::Location;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[cfg(feature = "tokio")]
mod asynchronous;
mod batch;
mod calls;
mod conn;
mod frame;
mod pool;
mod session;
use calls::string_call;
pub use calls::{Message, Produce};
use conn::Conn;
pub use frame::{decode_frame, encode_frame, FrameError};
use pool::{Pool, Routes};
use session::Session;

pub const PROTOCOL_VERSION: i64 = 1;
pub const DEFAULT_SOCKET: &str = "/run/skiff/handler.sock";
pub const DEFAULT_MAX_FRAME: usize = 4 * 1024 * 1024;

/// An extend or call failed: `code` is skiff's (`not_found`, `invalid_value`, ... or one this
/// SDK does not know) or the SDK's own: `unsupported` (welcome did not offer it, or a Kafka
/// extend; nothing was sent), `cancelled`, `closed`, `invalid_params`, `invalid_argument`,
/// `invalid_reply` (a `secret` or `token` reply without its string member).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    pub code: String,
    pub message: String,
}

impl CallError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        CallError {
            code: code.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for CallError {}

/// One frame of a structured stack (innermost first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    pub file: String,
    pub line: u32,
    pub function: String,
}

/// How a job or topic function failed. Not a `std::error::Error` itself, so that `?` turns any
/// error into one (recording where).
#[derive(Debug)]
pub enum HandlerError {
    /// A BPMN error (Zeebe), caught by an error boundary event with `code`.
    Bpmn {
        code: String,
        message: String,
        variables: Option<Value>,
    },
    /// An explicit failure: Zeebe `fail` with retries/backoff; Kafka `nack` (with
    /// `dead_letter` when `retries == Some(0)` was asked through [`HandlerError::dead_letter`]).
    Failed {
        message: String,
        retries: Option<u32>,
        retry_backoff_ms: Option<u64>,
        variables: Option<Value>,
        dead_letter: bool,
    },
    /// Any other error: its type name, message and where it was raised.
    Other {
        type_name: String,
        message: String,
        stack: Vec<StackFrame>,
    },
}

impl HandlerError {
    pub fn bpmn(code: &str, message: &str) -> Self {
        HandlerError::Bpmn {
            code: code.into(),
            message: message.into(),
            variables: None,
        }
    }
    /// A BPMN error with variables.
    pub fn bpmn_with(code: &str, message: &str, variables: Value) -> Self {
        HandlerError::Bpmn {
            code: code.into(),
            message: message.into(),
            variables: Some(variables),
        }
    }
    /// Fails the job; `retries(None)` lets skiff use the job's retries - 1.
    pub fn failed(message: &str, retries: Option<u32>, retry_backoff_ms: Option<u64>) -> Self {
        HandlerError::Failed {
            message: message.into(),
            retries,
            retry_backoff_ms,
            variables: None,
            dead_letter: false,
        }
    }
    /// Kafka: nack so that skiff retries after `backoff_ms` (None: skiff's own backoff).
    pub fn retry(message: &str, backoff_ms: Option<u64>) -> Self {
        HandlerError::failed(message, None, backoff_ms)
    }
    /// Kafka: nack to the dead-letter topic at once. In a job function: fail with retries 0.
    pub fn dead_letter(message: &str) -> Self {
        HandlerError::Failed {
            message: message.into(),
            retries: Some(0),
            retry_backoff_ms: None,
            variables: None,
            dead_letter: true,
        }
    }
    /// Adds variables to a BPMN error or a failure.
    pub fn with_variables(mut self, vars: Value) -> Self {
        match &mut self {
            HandlerError::Bpmn { variables, .. } | HandlerError::Failed { variables, .. } => {
                *variables = Some(vars)
            }
            HandlerError::Other { .. } => {}
        }
        self
    }
    /// An ordinary error from a message, located at the caller.
    #[track_caller]
    pub fn msg(message: impl Into<String>) -> Self {
        HandlerError::Other {
            type_name: "error".into(),
            message: message.into(),
            stack: here(),
        }
    }
    pub fn message(&self) -> &str {
        match self {
            HandlerError::Bpmn { message, .. }
            | HandlerError::Failed { message, .. }
            | HandlerError::Other { message, .. } => message,
        }
    }
}

#[track_caller]
fn here() -> Vec<StackFrame> {
    let loc = Location::caller();
    vec![StackFrame {
        file: loc.file().into(),
        line: loc.line(),
        function: String::new(),
    }]
}

impl<E: std::error::Error> From<E> for HandlerError {
    #[track_caller]
    fn from(e: E) -> Self {
        HandlerError::Other {
            type_name: std::any::type_name::<E>().to_string(),
            message: e.to_string(),
            stack: here(),
        }
    }
}

/// Where a task comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Zeebe,
    Kafka,
}

/// One task from skiff. Zeebe: `job_type`, `variables`, `headers`, `zeebe` (job metadata,
/// keys as decimal strings). Kafka: `topic`, `value`, `kafka` (record metadata).
pub struct Task {
    pub id: String,
    pub source: Source,
    pub job_type: String,
    pub topic: String,
    pub attempt: i64,
    pub traceparent: Option<String>,
    /// The W3C `tracestate` that goes with `traceparent`.
    pub tracestate: Option<String>,
    pub variables: Value,
    pub headers: Value,
    pub zeebe: Value,
    pub value: Value,
    pub kafka: Value,
    /// The whole task frame as received.
    pub frame: Value,
    deadline: AtomicI64,
    state: Arc<TaskState>,
    conn: Arc<Conn>,
}

#[derive(Default)]
struct TaskState {
    cancelled: AtomicBool,
    reason: Mutex<Option<String>>,
}

impl Task {
    #[cfg(all(test, feature = "tokio"))]
    fn for_test(conn: Arc<Conn>) -> Self {
        Task {
            id: "z-1".into(),
            source: Source::Zeebe,
            job_type: "a".into(),
            topic: String::new(),
            attempt: 1,
            traceparent: None,
            tracestate: None,
            variables: json!({}),
            headers: json!({}),
            zeebe: Value::Null,
            value: Value::Null,
            kafka: Value::Null,
            frame: Value::Null,
            deadline: AtomicI64::new(0),
            state: Arc::default(),
            conn,
        }
    }
    /// The deadline (epoch ms), updated by a successful [`Task::extend`].
    pub fn deadline(&self) -> i64 {
        self.deadline.load(Ordering::SeqCst)
    }
    /// True once skiff cancelled the task (its result is then never sent).
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::SeqCst)
    }
    /// `deadline`, `job_gone` or `revoked` (an unknown reason reads `job_gone`).
    pub fn cancel_reason(&self) -> Option<String> {
        self.state.reason.lock().unwrap().clone()
    }
    /// Waits up to `timeout` for a cancel; true when it came.
    pub fn wait_cancelled(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let mut st = self.conn.state.lock().unwrap();
        while !self.is_cancelled() {
            let now = Instant::now();
            if now >= until {
                break;
            }
            st = self.conn.cond.wait_timeout(st, until - now).unwrap().0;
        }
        self.is_cancelled()
    }
    /// Sets the job's deadline to now + `timeout_ms`; returns the new deadline (epoch ms).
    pub fn extend(&self, timeout_ms: u64) -> Result<i64, CallError> {
        if timeout_ms < 1 {
            return Err(CallError::new(
                "invalid_argument",
                "timeout_ms must be >= 1",
            ));
        }
        if self.source == Source::Kafka {
            return Err(CallError::new(
                "unsupported",
                "a Kafka task cannot be extended",
            ));
        }
        if !self.conn.has_feature("extend") {
            return Err(CallError::new(
                "unsupported",
                "skiff does not support extend",
            ));
        }
        let members = json!({"id": self.id, "timeout_ms": timeout_ms});
        let result = self.conn.request("extend", members, Some(self))?;
        if let Some(d) = result.get("deadline").and_then(Value::as_i64) {
            self.deadline.store(d, Ordering::SeqCst);
        }
        Ok(self.deadline())
    }
    /// Publishes a Zeebe message; returns `{"key", "tenant_id"}`.
    pub fn publish_message(&self, msg: &Message) -> Result<Value, CallError> {
        self.conn.call("publish_message", msg.params())
    }
    /// Writes a Kafka record (value Avro-encoded by skiff); returns `{"topic", "partition",
    /// "offset", "schema_id"}` once the broker confirmed it.
    pub fn produce(&self, record: &Produce) -> Result<Value, CallError> {
        self.conn.call("produce", record.params())
    }
    /// Reads a secret the pod may read (`handler.secrets`), e.g.
    /// `"vault:secret/app/db#password"`; returns its value (protocol 1.3). Errors: `forbidden`,
    /// `not_found`, `unavailable`, `invalid_params` (also an empty reference, refused here),
    /// `unsupported` (skiff does not offer the call).
    pub fn secret(&self, reference: &str) -> Result<String, CallError> {
        string_call(&self.conn, "secret", "reference", reference, "value")
    }
    /// An OAuth2 access token for an audience the pod may use (`handler.token_audiences`);
    /// skiff caches and refreshes it (protocol 1.3). Errors: `forbidden`, `unavailable`,
    /// `invalid_params`, `unsupported`.
    pub fn token(&self, audience: &str) -> Result<String, CallError> {
        string_call(&self.conn, "token", "audience", audience, "access_token")
    }
}

/// Why `run` returned an error.
#[derive(Debug)]
pub enum RunError {
    /// skiff answered hello with an error frame (misconfigured: reconnecting will not help).
    Refused(CallError),
    /// Nothing registered, or a connection error without `reconnect`.
    Config(String),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Refused(e) => write!(f, "skiff refused hello: {e}"),
            RunError::Config(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for RunError {}

type JobFn = Arc<dyn Fn(&Arc<Task>) -> Result<Option<Value>, HandlerError> + Send + Sync>;
type TopicFn = Arc<dyn Fn(&Arc<Task>) -> Result<(), HandlerError> + Send + Sync>;

/// A handler process: job and topic functions, served on one connection at a time.
pub struct Handler {
    name: String,
    capacity: usize,
    socket_path: String,
    /// Reconnect backoff: first delay and cap.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    batch: bool,
    jobs: Vec<(String, JobFn)>,
    topics: Vec<(String, TopicFn)>,
    current: Arc<Mutex<Option<Arc<Conn>>>>,
}

/// Calls outside a task, on the handler's current connection (cloneable, `Send`).
#[derive(Clone)]
pub struct Client {
    current: Arc<Mutex<Option<Arc<Conn>>>>,
}

impl Client {
    fn conn(&self) -> Result<Arc<Conn>, CallError> {
        self.current
            .lock()
            .unwrap()
            .clone()
            .ok_or_else(|| CallError::new("closed", "not connected to skiff"))
    }
    pub fn publish_message(&self, msg: &Message) -> Result<Value, CallError> {
        self.conn()?.call("publish_message", msg.params())
    }
    pub fn produce(&self, record: &Produce) -> Result<Value, CallError> {
        self.conn()?.call("produce", record.params())
    }
    /// [`Task::secret`] outside a task.
    pub fn secret(&self, reference: &str) -> Result<String, CallError> {
        string_call(&*self.conn()?, "secret", "reference", reference, "value")
    }
    /// [`Task::token`] outside a task.
    pub fn token(&self, audience: &str) -> Result<String, CallError> {
        string_call(
            &*self.conn()?,
            "token",
            "audience",
            audience,
            "access_token",
        )
    }
}

impl Handler {
    /// `capacity`: most tasks in flight at once (at least 1).
    pub fn new(name: &str, capacity: usize) -> Self {
        let socket_path = std::env::var("SKIFF_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        Handler {
            name: name.into(),
            capacity: capacity.max(1),
            socket_path,
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            batch: true,
            jobs: Vec::new(),
            topics: Vec::new(),
            current: Arc::new(Mutex::new(None)),
        }
    }
    pub fn socket_path(&mut self, path: &str) -> &mut Self {
        self.socket_path = path.into();
        self
    }
    /// Batches (protocol 1.4, on by default): the hello lists feature `batch`, so skiff may
    /// send several tasks in one `tasks` frame; when skiff's welcome lists it too, results
    /// that are ready together leave in one `results` frame. `batch(false)` leaves it out.
    pub fn batch(&mut self, on: bool) -> &mut Self {
        self.batch = on;
        self
    }
    /// Registers `f` for a Zeebe job type.
    pub fn job<F>(&mut self, job_type: &str, f: F) -> &mut Self
    where
        F: Fn(&Task) -> Result<Option<Value>, HandlerError> + Send + Sync + 'static,
    {
        self.jobs
            .push((job_type.into(), Arc::new(move |t: &Arc<Task>| f(t))));
        self
    }
    /// Registers `f` for the records of a Kafka topic.
    pub fn topic<F>(&mut self, topic: &str, f: F) -> &mut Self
    where
        F: Fn(&Task) -> Result<(), HandlerError> + Send + Sync + 'static,
    {
        self.topics
            .push((topic.into(), Arc::new(move |t: &Arc<Task>| f(t))));
        self
    }
    /// A handle for calls outside a task.
    pub fn client(&self) -> Client {
        Client {
            current: self.current.clone(),
        }
    }

    /// Serves until skiff drains this handler; reconnects with a backoff meanwhile.
    pub fn run(&self) -> Result<(), RunError> {
        if self.jobs.is_empty() && self.topics.is_empty() {
            return Err(RunError::Config(
                "register at least one job type or topic".into(),
            ));
        }
        let routes = Arc::new(Routes {
            jobs: self.jobs.iter().cloned().collect(),
            topics: self.topics.iter().cloned().collect(),
        });
        let pool = Pool::new(routes);
        let mut delay = self.backoff_initial;
        loop {
            match UnixStream::connect(&self.socket_path) {
                Err(e) => log(
                    &self.name,
                    "info",
                    &format!("cannot connect to skiff at {}: {e}", self.socket_path),
                ),
                Ok(stream) => match self.serve(stream, &pool) {
                    Session::Drained => return Ok(()),
                    Session::Refused(e) => {
                        log(&self.name, "error", &format!("skiff refused hello: {e}"));
                        return Err(RunError::Refused(e));
                    }
                    Session::Lost(welcomed, why) => {
                        if welcomed {
                            delay = self.backoff_initial;
                        }
                        log(
                            &self.name,
                            "warn",
                            &format!("connection to skiff lost ({why})"),
                        );
                    }
                },
            }
            thread::sleep(delay);
            delay = (delay * 2).min(self.backoff_max);
        }
    }
}

/// One JSON log line on stderr.
pub(crate) fn log(service: &str, level: &str, message: &str) {
    let line = json!({"timestamp": timestamp(SystemTime::now()), "level": level,
                      "service_name": service, "message": message});
    eprintln!("{line}");
}

/// ISO 8601 UTC with milliseconds (civil date from days since the epoch, Hinnant's method).
pub(crate) fn timestamp(t: SystemTime) -> String {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s, milli) = (
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000,
    );
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_batch;
