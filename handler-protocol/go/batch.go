package skiff

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
)

// Batches (protocol 1.4, SPEC §4.7): skiff may send several tasks in one tasks frame, and
// when its welcome lists "batch" the results that are ready together leave in one results
// frame. Frames to write queue in the session; one goroutine at a time (the flusher) writes
// all that is queued in one system call, so the results that finish while a write is under
// way leave together in the next one.

// queued is one encoded frame waiting to be written.
type queued struct {
	data   []byte
	result bool // a result frame, which may join a results frame
}

var resultsOpen = []byte(`{"type":"results","results":[`)

// startTasks starts every task of a tasks frame as if each had come alone, in order.
func (s *session) startTasks(body []byte) {
	var f struct {
		Tasks []json.RawMessage `json:"tasks"`
	}
	if err := json.Unmarshal(body, &f); err != nil || len(f.Tasks) == 0 {
		s.h.logger.Printf("skiff sent a tasks frame without a non-empty tasks array; ignoring it")
		return
	}
	for i, item := range f.Tasks {
		kind, ok := frameType(item)
		if !ok || kind != "task" {
			s.h.logger.Printf("skiff sent a tasks frame whose item %d is not a task; skipping it", i)
			continue
		}
		s.startTask(item)
	}
}

// enqueue queues one encoded frame and returns once it is written: it writes the queue
// itself unless another goroutine is at it, else it waits for that one to write it (so a
// drained session closes only after its results are out). The error is that of the write
// that carried the frame (or of an earlier one: the connection is broken from then on).
func (s *session) enqueue(data []byte, result bool) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wq = append(s.wq, queued{data, result})
	s.queuedN++
	mine := s.queuedN
	for s.flushing && s.writtenN < mine {
		s.wrote.Wait()
	}
	if s.writtenN < mine {
		s.flushing = true
		for len(s.wq) > 0 {
			q, first, last := s.wq, s.writtenN+1, s.queuedN
			s.wq = nil
			s.wmu.Unlock()
			_, err := s.conn.Write(s.pack(q))
			s.wmu.Lock()
			if err != nil && s.failedAt == 0 {
				s.failedAt, s.werr = first, err
			}
			s.writtenN = last
			s.wrote.Broadcast()
		}
		s.flushing = false
		s.wrote.Broadcast()
	}
	if s.failedAt != 0 && mine >= s.failedAt {
		return s.werr
	}
	return nil
}

// pack joins the queued frames for one write; when skiff takes batches, every run of
// consecutive results becomes one results frame (a new one whenever max_frame would be
// passed; a run of one stays a single frame).
func (s *session) pack(q []queued) []byte {
	var out bytes.Buffer
	if !s.features["batch"] {
		for _, f := range q {
			out.Write(f.data)
		}
		return out.Bytes()
	}
	var run [][]byte
	size := len(resultsOpen) + 2
	closeRun := func() {
		if len(run) == 1 {
			out.Write(run[0])
		} else if len(run) > 1 {
			var head [4]byte
			binary.BigEndian.PutUint32(head[:], uint32(size-1)) // no comma after the last
			out.Write(head[:])
			out.Write(resultsOpen)
			for i, r := range run {
				if i > 0 {
					out.WriteByte(',')
				}
				out.Write(r[4:])
			}
			out.WriteString("]}")
		}
		run, size = run[:0], len(resultsOpen)+2
	}
	for _, f := range q {
		if !f.result || (len(run) > 0 && size+len(f.data)-4 > s.maxFrame) {
			closeRun()
		}
		if f.result {
			run = append(run, f.data)
			size += len(f.data) - 3 // the body and a comma
		} else {
			out.Write(f.data)
		}
	}
	closeRun()
	return out.Bytes()
}
