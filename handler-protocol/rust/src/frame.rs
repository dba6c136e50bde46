//! The frame codec: a 4-byte big-endian length N (1..=max_frame), then N bytes of UTF-8 JSON
//! holding one object with a string `type`.

use serde_json::Value;
use std::fmt;
use std::io::{self, Read};

/// A frame that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

/// Encodes a frame (length header + compact JSON); refuses one above `max_frame`.
pub fn encode_frame(frame: &Value, max_frame: usize) -> Result<Vec<u8>, FrameError> {
    let mut data = vec![0u8; 4];
    serde_json::to_writer(&mut data, frame).map_err(|e| FrameError(e.to_string()))?;
    let n = data.len() - 4;
    if n > max_frame {
        return Err(FrameError(format!(
            "frame of {n} bytes exceeds max_frame {max_frame}"
        )));
    }
    data[..4].copy_from_slice(&(n as u32).to_be_bytes());
    Ok(data)
}

/// Decodes a frame body: an object with a string `type`.
pub fn decode_frame(body: &[u8]) -> Result<Value, FrameError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| FrameError(format!("invalid JSON: {e}")))?;
    if !v.is_object() || !v["type"].is_string() {
        return Err(FrameError("not an object with a string type".into()));
    }
    Ok(v)
}

/// Reads one frame. The outer error ends the session (EOF, I/O, or a length outside
/// 1..=max_frame: `InvalidData`, the framing is lost); the inner one is a bad body (skip it).
pub fn read_frame(r: &mut impl Read, max_frame: usize) -> io::Result<Result<Value, FrameError>> {
    let mut head = [0u8; 4];
    r.read_exact(&mut head)?;
    let n = u32::from_be_bytes(head) as usize;
    if n == 0 || n > max_frame {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("frame length {n} outside 1..{max_frame}"),
        ));
    }
    let mut body = vec![0u8; n];
    r.read_exact(&mut body)?;
    Ok(decode_frame(&body))
}

/// The first member of a task frame with the wrong type, if any.
pub(crate) fn task_problem(f: &Value) -> Option<&'static str> {
    const TASK: &[(&str, char)] = &[
        ("variables", 'o'),
        ("headers", 'o'),
        ("zeebe", 'o'),
        ("kafka", 'o'),
        ("source", 's'),
        ("job_type", 's'),
        ("topic", 's'),
        ("traceparent", 's'),
        ("deadline", 'i'),
        ("attempt", 'i'),
    ];
    const ZEEBE: &[(&str, char)] = &[
        ("key", 's'),
        ("process_instance_key", 's'),
        ("retries", 'i'),
        ("process_definition_version", 'i'),
    ];
    const KAFKA: &[(&str, char)] = &[
        ("topic", 's'),
        ("partition", 'i'),
        ("offset", 'i'),
        ("schema_id", 'i'),
        ("timestamp", 'i'),
        ("key", 'n'),
        ("headers", 'o'),
    ];
    wrong(f, TASK)
        .or_else(|| wrong(&f["zeebe"], ZEEBE))
        .or_else(|| wrong(&f["kafka"], KAFKA))
}

fn wrong(o: &Value, keys: &[(&'static str, char)]) -> Option<&'static str> {
    keys.iter().find_map(|(k, kind)| {
        let v = o.get(k)?;
        let ok = match kind {
            'o' => v.is_object(),
            's' => v.is_string(),
            'i' => v.is_i64() || v.is_u64(),
            _ => v.is_string() || v.is_null(),
        };
        (!ok).then_some(*k)
    })
}
