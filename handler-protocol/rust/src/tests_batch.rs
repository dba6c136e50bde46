//! Batches (protocol 1.4) and the trace context of publish_message.

use super::*;
use crate::batch::pack;

fn enc(v: Value) -> Vec<u8> {
    encode_frame(&v, 1 << 20).unwrap()
}

/// Splits bytes into frames; every frame at most `max`, a results frame of two items or more.
fn frames_of(mut data: &[u8], max: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let f = frame::read_frame(&mut data, max).unwrap().unwrap();
        if f["type"] == "results" {
            assert!(f["results"].as_array().unwrap().len() >= 2, "{f}");
        }
        out.push(f);
    }
    out
}

/// The ids in order, results frames unpacked.
fn ids(frames: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for f in frames {
        let items = match f["results"].as_array() {
            Some(items) => items.clone(),
            None => vec![f.clone()],
        };
        for i in items {
            out.push(i["id"].as_str().or(i["ref"].as_str()).unwrap().to_string());
        }
    }
    out
}

#[test]
fn pack_keeps_order_and_max_frame() {
    let mut q = Vec::new();
    for i in 0..9 {
        q.push((enc(json!({"type": "ack", "id": format!("k-{i}")})), true));
        if i == 4 {
            q.push((enc(json!({"type": "pong", "ref": "p"})), false));
        }
    }
    let want = ids(&frames_of(&pack(&q, false, 1 << 20), 1 << 20));
    assert_eq!(want.len(), 10);
    let one = q[0].0.len() - 4;
    for max in [one, one + 40, 2 * one + 30, 3 * one + 30, 4096] {
        let frames = frames_of(&pack(&q, true, max), max);
        assert_eq!(ids(&frames), want, "max {max}");
    }
    let all = frames_of(&pack(&q, true, 4096), 4096);
    assert_eq!(all.len(), 3, "two results frames around the pong: {all:?}");
    let plain: Vec<u8> = q.iter().flat_map(|f| f.0.clone()).collect();
    assert_eq!(pack(&q, false, 4096), plain);
}

fn listen(tag: &str) -> (std::path::PathBuf, std::os::unix::net::UnixListener) {
    let dir = std::env::temp_dir().join(format!("skh-rs-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let l = std::os::unix::net::UnixListener::bind(dir.join("s")).unwrap();
    (dir, l)
}

fn send(s: &mut UnixStream, v: Value) {
    s.write_all(&enc(v)).unwrap();
}

/// A tasks frame served item by item (an item without an id and one that is not a task
/// skipped, an unregistered job type failed), after an error frame with an index (a refused
/// results item: the session goes on); returns how many results frames came.
fn serve_tasks_frame(tag: &str, welcome_features: Value) -> usize {
    let (dir, listener) = listen(tag);
    let mut h = Handler::new("unit", 16);
    h.socket_path(dir.join("s").to_str().unwrap());
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let g = gate.clone();
    h.job("gate", move |_| {
        let (m, c) = &*g;
        let _open = c.wait_while(m.lock().unwrap(), |open| !*open).unwrap();
        Ok(Some(json!({"pad": "p".repeat(600)})))
    });
    h.topic("t.ok", |_| Ok(()));
    let runner = thread::spawn(move || h.run());
    let (mut s, _) = listener.accept().unwrap();
    let hello = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert_eq!(hello["features"], json!(["cancel", "batch"]));
    send(
        &mut s,
        json!({"type": "welcome", "version": 1, "session": "s", "max_frame": 4096,
               "features": welcome_features}),
    );
    send(
        &mut s,
        json!({"type": "error", "code": "unknown_task", "message": "no open task", "id": "z-0",
               "index": 1}),
    );
    let mut items: Vec<Value> = (0..12)
        .map(|i| json!({"type": "task", "id": format!("z-{i}"), "job_type": "gate"}))
        .collect();
    items.push(json!({"type": "task", "job_type": "gate"}));
    items.push(json!({"type": "cancel", "id": "x"}));
    items.push(json!({"type": "task", "id": "z-nope", "job_type": "nope"}));
    items.push(
        json!({"type": "task", "id": "k-1", "source": "kafka", "topic": "t.ok",
                      "attempt": 1, "value": null, "kafka": {"topic": "t.ok"}}),
    );
    send(&mut s, json!({"type": "tasks", "tasks": items}));
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    let mut got = HashMap::new();
    let mut batched = 0;
    while got.len() < 14 {
        let f = frame::read_frame(&mut s, 4096).unwrap().unwrap();
        batched += usize::from(f["type"] == "results");
        for item in f["results"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![f.clone()])
        {
            let id = item["id"].as_str().unwrap().to_string();
            assert!(
                got.insert(id, item["type"].clone()).is_none(),
                "two results"
            );
        }
    }
    for i in 0..12 {
        assert_eq!(got[&format!("z-{i}")], "complete");
    }
    assert_eq!(
        (&got["z-nope"], &got["k-1"]),
        (&json!("fail"), &json!("ack"))
    );
    send(&mut s, json!({"type": "ping", "ref": "after"}));
    let pong = frame::read_frame(&mut s, 4096).unwrap().unwrap();
    assert_eq!(pong, json!({"type": "pong", "ref": "after"}));
    send(&mut s, json!({"type": "drain", "deadline": 1}));
    runner.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    batched
}

#[test]
fn tasks_frame_with_batch_welcome() {
    serve_tasks_frame("batch", json!(["batch", "cancel"]));
}

#[test]
fn no_results_frame_without_batch_welcome() {
    assert_eq!(serve_tasks_frame("nobatch", json!(["cancel"])), 0);
}

#[test]
fn publish_message_trace_context() {
    let mut m = Message::new("paid");
    assert_eq!(
        m.params(),
        json!({"name": "paid", "correlation_key": "", "time_to_live_ms": 0})
    );
    m.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    m.tracestate = Some("congo=t61rcWkgMzE".into());
    assert_eq!(
        m.params(),
        json!({"name": "paid", "correlation_key": "", "time_to_live_ms": 0,
               "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
               "tracestate": "congo=t61rcWkgMzE"})
    );
}

/// enqueue returns once its frame is written, also when another thread wrote it: a frame
/// queued behind a write under way reports the outcome of the write that carried it (here a
/// failure: the peer is gone), so a drained session never closes before its results are out.
#[test]
fn enqueue_waits_for_the_write_that_carries_its_frame() {
    let (a, b) = UnixStream::pair().unwrap();
    let conn = Arc::new(Conn::new(&a, "unit".into()).unwrap());
    let c1 = conn.clone();
    // larger than the socket's buffer: the first write blocks until the peer reads or goes
    let first = thread::spawn(move || c1.enqueue(vec![0u8; 4 << 20], true));
    let wait_for = |what: &dyn Fn(&batch::WriteQueue) -> bool| {
        for _ in 0..10_000 {
            if what(&conn.queue.lock().unwrap()) {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
        panic!("state not reached within 10 s");
    };
    wait_for(&|q| q.flushing);
    let c2 = conn.clone();
    let second = thread::spawn(move || c2.enqueue(enc(json!({"type": "ack", "id": "k-2"})), true));
    wait_for(&|q| q.queued == 2);
    drop(b);
    drop(a);
    conn.shutdown();
    assert!(first.join().unwrap().is_err());
    assert!(
        second.join().unwrap().is_err(),
        "the frame was never written, yet enqueue reported success"
    );
}
