use super::*;
use crate::pool::job_result;

#[test]
fn frame_round_trip_and_limits() {
    let f = json!({"type": "ping", "ref": "7"});
    let data = encode_frame(&f, 100).unwrap();
    assert_eq!(&data[..4], &[0, 0, 0, 0x19]);
    assert_eq!(&data[4..], br#"{"ref":"7","type":"ping"}"#); // compact; keys sorted
    assert!(encode_frame(&f, 10).is_err());
    let mut r = &data[..];
    assert_eq!(frame::read_frame(&mut r, 100).unwrap().unwrap(), f);
    let mut zero: &[u8] = &[0, 0, 0, 0];
    assert_eq!(
        frame::read_frame(&mut zero, 100).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let mut big: &[u8] = &[0, 0, 1, 0];
    assert!(frame::read_frame(&mut big, 100).is_err());
    assert!(decode_frame(b"[1]").is_err());
    assert!(decode_frame(br#"{"type":7}"#).is_err());
    assert!(decode_frame(b"{not json").is_err());
    assert_eq!(
        decode_frame(br#"{"type":"x","s":"\u0000"}"#).unwrap()["s"],
        "\u{0}"
    );
}

#[test]
fn task_problems_name_the_member() {
    assert_eq!(
        frame::task_problem(&json!({"type": "task", "id": "z", "variables": [1]})),
        Some("variables")
    );
    assert_eq!(
        frame::task_problem(&json!({"kafka": {"partition": "three"}})),
        Some("partition")
    );
    assert_eq!(
        frame::task_problem(&json!({"kafka": {"key": null, "partition": 3}})),
        None
    );
}

#[test]
fn results_from_errors() {
    let r = job_result("z-1", Ok(None));
    assert_eq!(r, json!({"type": "complete", "id": "z-1"}));
    let r = job_result(
        "z-1",
        Err(HandlerError::failed("later", Some(2), Some(5000)).with_variables(json!({"a": 1}))),
    );
    assert_eq!(
        r,
        json!({"type": "fail", "id": "z-1", "message": "later", "retries": 2,
                         "retry_backoff_ms": 5000, "variables": {"a": 1}})
    );
    let r = job_result("z-1", Err(HandlerError::bpmn("CODE", "")));
    assert_eq!(
        r,
        json!({"type": "bpmn_error", "id": "z-1", "code": "CODE"})
    );
    fn failing() -> Result<Option<Value>, HandlerError> {
        Err(io::Error::other("boom"))?
    }
    let line = line!() - 2;
    let r = job_result("z-1", failing());
    assert_eq!(r["message"], "boom");
    assert_eq!(r["error"]["type"], "std::io::error::Error");
    assert_eq!(r["error"]["stack"][0]["line"], line);
    assert!(r["error"]["stack"][0]["file"]
        .as_str()
        .unwrap()
        .ends_with("tests.rs"));
}

#[test]
fn hello_member_order() {
    let mut h = Handler::new("n", 3);
    h.job("a", |_| Ok(None)).topic("t", |_| Ok(()));
    assert_eq!(
        h.hello(),
        r#"{"type":"hello","version":1,"name":"n","capacity":3,"job_types":["a"],"topics":["t"],"features":["cancel","batch"]}"#
    );
    h.batch(false);
    assert_eq!(
        h.hello(),
        r#"{"type":"hello","version":1,"name":"n","capacity":3,"job_types":["a"],"topics":["t"],"features":["cancel"]}"#
    );
}

#[test]
fn timestamps_are_iso() {
    let t = UNIX_EPOCH + Duration::from_millis(1_732_400_000_123);
    assert_eq!(timestamp(t), "2024-11-23T22:13:20.123Z");
}

/// The handler against a socket the test plays skiff on: a task with a call, then drain.
#[test]
fn serves_a_task_with_a_call_and_drains() {
    let dir = std::env::temp_dir().join(format!("skh-rs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut h = Handler::new("unit", 1);
    h.socket_path(path.to_str().unwrap());
    h.job("echo", |t| {
        Ok(Some(t.publish_message(&Message::new("paid"))?))
    });
    let runner = thread::spawn(move || h.run());
    let (mut s, _) = listener.accept().unwrap();
    let send =
        |s: &mut UnixStream, v: Value| s.write_all(&encode_frame(&v, 1 << 20).unwrap()).unwrap();
    let hello = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert_eq!(hello["name"], "unit");
    send(
        &mut s,
        json!({"type": "welcome", "version": 1, "session": "s", "max_frame": 4096,
                        "methods": ["publish_message"]}),
    );
    send(
        &mut s,
        json!({"type": "task", "id": "z-1", "job_type": "echo"}),
    );
    let call = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert_eq!(
        call["params"],
        json!({"name": "paid", "correlation_key": "", "time_to_live_ms": 0})
    );
    send(&mut s, json!({"type": "drain", "deadline": 1}));
    send(
        &mut s,
        json!({"type": "reply", "ref": call["ref"], "ok": true, "result": {"key": "1"}}),
    );
    let done = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert_eq!(
        done,
        json!({"type": "complete", "id": "z-1", "variables": {"key": "1"}})
    );
    runner.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// secret on the task (the value, NUL included), token through the client (a typed error), an
/// empty reference refused here, and a token reply without access_token: invalid_reply.
#[test]
fn secret_and_token_calls() {
    let dir = std::env::temp_dir().join(format!("skh-rs-calls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut h = Handler::new("unit", 1);
    h.socket_path(path.to_str().unwrap());
    let client = h.client();
    h.job("calls", move |t| {
        let code = |r: Result<String, CallError>| r.map_err(|e| e.code).unwrap_err();
        Ok(Some(json!({
            "secret": t.secret("vault:secret/app/db#password")?,
            "token": code(client.token("billing-api")),
            "empty": code(t.secret("")),
            "bad_reply": code(t.token("other-api")),
        })))
    });
    let runner = thread::spawn(move || h.run());
    let (mut s, _) = listener.accept().unwrap();
    let send =
        |s: &mut UnixStream, v: Value| s.write_all(&encode_frame(&v, 1 << 20).unwrap()).unwrap();
    frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    send(
        &mut s,
        json!({"type": "welcome", "version": 1, "session": "s", "max_frame": 4096,
               "methods": ["publish_message", "secret", "token"]}),
    );
    send(
        &mut s,
        json!({"type": "task", "id": "z-1", "job_type": "calls"}),
    );
    let replies = [
        (
            "secret",
            json!({"ok": true, "result": {"value": "s3\u{0}t", "version": 2}}),
        ),
        (
            "token",
            json!({"ok": false, "error": {"code": "forbidden", "message": "no"}}),
        ),
        ("token", json!({"ok": true, "result": {"expires_at": 1}})),
    ];
    for (method, mut reply) in replies {
        let call = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
        assert_eq!(call["method"], method);
        reply["type"] = json!("reply");
        reply["ref"] = call["ref"].clone();
        send(&mut s, reply);
    }
    let done = frame::read_frame(&mut s, 1 << 20).unwrap().unwrap();
    assert_eq!(
        done["variables"],
        json!({"secret": "s3\u{0}t", "token": "forbidden", "empty": "invalid_params",
               "bad_reply": "invalid_reply"})
    );
    send(&mut s, json!({"type": "drain", "deadline": 1}));
    runner.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Bad frames are skipped, a task with a wrong member is failed, a cancelled task's result is
/// never sent, and a zero length closes the session (the handler reconnects).
#[test]
fn survives_bad_frames_and_honours_cancel() {
    let dir = std::env::temp_dir().join(format!("skh-rs-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut h = Handler::new("unit", 1);
    h.socket_path(path.to_str().unwrap());
    h.backoff_initial = Duration::from_millis(1);
    h.job("wait", |t| {
        t.wait_cancelled(Duration::from_secs(10));
        Ok(Some(json!({"late": true})))
    });
    h.job("echo", |t| Ok(Some(t.variables.clone())));
    let runner = thread::spawn(move || h.run());
    let send_raw = |s: &mut UnixStream, b: &[u8]| {
        s.write_all(&(b.len() as u32).to_be_bytes()).unwrap();
        s.write_all(b).unwrap();
    };
    let send = |s: &mut UnixStream, v: Value| send_raw(s, v.to_string().as_bytes());
    let recv = |s: &mut UnixStream| frame::read_frame(s, 1 << 20).unwrap().unwrap();
    let welcome = json!({"type": "welcome", "version": 1, "session": "s", "max_frame": 4096});
    let (mut s, _) = listener.accept().unwrap();
    recv(&mut s);
    send(&mut s, welcome.clone());
    send_raw(&mut s, b"{not json");
    send_raw(&mut s, b"[1]");
    send(&mut s, json!({"type": "task", "variables": {}}));
    send(
        &mut s,
        json!({"type": "task", "id": "z-bad", "job_type": "echo", "variables": [1]}),
    );
    assert_eq!(recv(&mut s)["type"], "fail");
    send(
        &mut s,
        json!({"type": "task", "id": "z-w", "job_type": "wait"}),
    );
    send(
        &mut s,
        json!({"type": "cancel", "id": "z-w", "reason": "new-reason"}),
    );
    send(
        &mut s,
        json!({"type": "task", "id": "z-e", "job_type": "echo", "variables": {"a": 1}}),
    );
    let done = recv(&mut s);
    assert_eq!(
        done,
        json!({"type": "complete", "id": "z-e", "variables": {"a": 1}})
    );
    s.write_all(&[0, 0, 0, 0]).unwrap();
    let (mut s, _) = listener.accept().unwrap(); // reconnected
    recv(&mut s);
    send(&mut s, welcome);
    send(&mut s, json!({"type": "drain", "deadline": 1}));
    runner.join().unwrap().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
