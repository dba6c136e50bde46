//! Async job and topic functions on tokio (feature `tokio`).
//!
//! ```ignore
//! app.job_async("risk-score", |task| async move {
//!     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//!     Ok(Some(serde_json::json!({"riskScore": task.variables["amount"]})))
//! });
//! ```
//!
//! Each task's future is driven to completion on its worker thread (`block_on` on one shared
//! multi-threaded tokio runtime, created on first use), so tokio timers, I/O and `spawn` work
//! inside it, and the SDK's own socket handling stays the sync one. The blocking calls of
//! [`Task`] (`extend`, `publish_message`, `produce`) may be used inside the future: they block
//! only that task's worker thread.

use super::*;
use std::future::Future;
use std::sync::OnceLock;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .thread_name("skiff-handler-tokio")
            .build()
            .expect("cannot start the tokio runtime")
    })
}

impl Handler {
    /// Registers an async function for a Zeebe job type.
    pub fn job_async<F, Fut>(&mut self, job_type: &str, f: F) -> &mut Self
    where
        F: Fn(Arc<Task>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<Value>, HandlerError>> + Send + 'static,
    {
        let f: JobFn = Arc::new(move |t: &Arc<Task>| runtime().block_on(f(t.clone())));
        self.jobs.push((job_type.into(), f));
        self
    }

    /// Registers an async function for the records of a Kafka topic.
    pub fn topic_async<F, Fut>(&mut self, topic: &str, f: F) -> &mut Self
    where
        F: Fn(Arc<Task>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let f: TopicFn = Arc::new(move |t: &Arc<Task>| runtime().block_on(f(t.clone())));
        self.topics.push((topic.into(), f));
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn async_functions_run_to_completion() {
        let mut h = Handler::new("n", 1);
        h.job_async("a", |_t| async {
            tokio::time::sleep(Duration::from_millis(1)).await;
            Ok(Some(json!({"async": true})))
        });
        let f = h.jobs[0].1.clone();
        let (a, _b) = UnixStream::pair().unwrap();
        let conn = Arc::new(Conn::new(&a, "n".into()).unwrap());
        let task = Arc::new(Task::for_test(conn));
        assert_eq!(f(&task).unwrap(), Some(json!({"async": true})));
    }
}
