//! Batches (protocol 1.4, SPEC §4.7) on the writing side. Frames to write queue in the
//! connection; one thread at a time (the flusher) writes everything queued in one system
//! call, so results that finish while a write is under way leave together in the next one.
//! When the welcome lists `batch`, each run of consecutive results becomes one `results`
//! frame, never above `max_frame`.

use super::*;

const RESULTS_OPEN: &[u8] = br#"{"type":"results","results":["#;

/// Encoded frames waiting to be written, and whether a thread is writing them.
#[derive(Default)]
pub(crate) struct WriteQueue {
    frames: Vec<(Vec<u8>, bool)>,
    pub(crate) flushing: bool,
    /// Frames queued so far, and written (or failed) so far.
    pub(crate) queued: u64,
    written: u64,
    /// The first frame whose write failed (the connection is broken from then on), and why.
    failed: Option<(u64, String)>,
}

impl Conn {
    /// Queues one encoded frame (`result`: a result frame, which may join a `results` frame)
    /// and returns once it is written: this thread writes the queue unless another one is at
    /// it, else it waits for that one to write the frame (so a drained session closes only
    /// after its results are out). The error is that of the write that carried the frame (or
    /// of an earlier one: the connection is broken from then on).
    pub(crate) fn enqueue(&self, data: Vec<u8>, result: bool) -> Result<(), String> {
        let mut q = self.queue.lock().unwrap();
        q.frames.push((data, result));
        q.queued += 1;
        let mine = q.queued;
        while q.flushing && q.written < mine {
            q = self.wrote.wait(q).unwrap();
        }
        if q.written < mine {
            q.flushing = true;
            while !q.frames.is_empty() {
                let (frames, first, last) =
                    (std::mem::take(&mut q.frames), q.written + 1, q.queued);
                drop(q);
                let (batch, max) = {
                    let st = self.state.lock().unwrap();
                    (st.features.iter().any(|f| f == "batch"), st.max_frame)
                };
                let data = pack(&frames, batch, max);
                let outcome = self.writer.lock().unwrap().write_all(&data);
                q = self.queue.lock().unwrap();
                q.written = last;
                if let (Err(e), None) = (outcome, &q.failed) {
                    q.failed = Some((first, e.to_string()));
                }
                self.wrote.notify_all();
            }
            q.flushing = false;
            self.wrote.notify_all();
        }
        match &q.failed {
            Some((from, e)) if mine >= *from => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

/// The queued frames as bytes for one write: as they are without `batch`, else every run of
/// consecutive results as one `results` frame (a new one whenever `max` would be passed; a
/// run of one stays a single frame), in the queued order.
pub(crate) fn pack(frames: &[(Vec<u8>, bool)], batch: bool, max: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(frames.iter().map(|f| f.0.len()).sum());
    if !batch {
        for (data, _) in frames {
            out.extend_from_slice(data);
        }
        return out;
    }
    let mut run: Vec<&[u8]> = Vec::new();
    // the length of the results frame's body if the run closed now: the opening, the items
    // and their commas, and "]}"
    let mut size = RESULTS_OPEN.len() + 2;
    for (data, result) in frames {
        if !result || (!run.is_empty() && size + data.len() - 4 + 1 > max) {
            close_run(&mut out, &mut run, size);
            size = RESULTS_OPEN.len() + 2;
        }
        if *result {
            size += data.len() - 4 + usize::from(!run.is_empty());
            run.push(data);
        } else {
            out.extend_from_slice(data);
        }
    }
    close_run(&mut out, &mut run, size);
    out
}

fn close_run(out: &mut Vec<u8>, run: &mut Vec<&[u8]>, size: usize) {
    match run.len() {
        0 => {}
        1 => out.extend_from_slice(run[0]),
        _ => {
            out.extend_from_slice(&(size as u32).to_be_bytes());
            out.extend_from_slice(RESULTS_OPEN);
            for (i, r) in run.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend_from_slice(&r[4..]);
            }
            out.extend_from_slice(b"]}");
        }
    }
    run.clear();
}
