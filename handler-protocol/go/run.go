package skiff

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime"
	"strings"
)

// taskWire is a task frame as sent by skiff.
type taskWire struct {
	ID          *string           `json:"id"`
	Source      string            `json:"source"`
	JobType     string            `json:"job_type"`
	Topic       string            `json:"topic"`
	Deadline    int64             `json:"deadline"`
	Attempt     *int64            `json:"attempt"`
	Traceparent string            `json:"traceparent"`
	Tracestate  string            `json:"tracestate"`
	Variables   json.RawMessage   `json:"variables"`
	Headers     map[string]string `json:"headers"`
	Zeebe       *Job              `json:"zeebe"`
	Value       json.RawMessage   `json:"value"`
	Kafka       *Record           `json:"kafka"`
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) == 0 || raw[0] == '{' || string(raw) == "null"
}

// startTask decodes a task and runs its function in a goroutine; a malformed task with an
// id is answered fail (nack) at once.
func (s *session) startTask(body []byte) {
	var w taskWire
	err := json.Unmarshal(body, &w)
	if err == nil && (w.ID == nil || *w.ID == "") {
		err = errors.New("id must be a non-empty string")
	}
	if err == nil && !isObject(w.Variables) {
		err = errors.New("variables must be an object")
	}
	if err != nil {
		var id struct {
			ID     any    `json:"id"`
			Source string `json:"source"`
		}
		_ = json.Unmarshal(body, &id)
		s.h.logger.Printf("skiff sent a malformed task %v: %v", id.ID, err)
		if sid, ok := id.ID.(string); ok && sid != "" {
			kind := "fail"
			if id.Source == "kafka" {
				kind = "nack"
			}
			_ = s.send(map[string]string{"type": kind, "id": sid,
				"message": "malformed task frame: " + err.Error()})
		}
		return
	}
	t := newTask(s, &w)
	ctx, stop := context.WithCancel(context.Background())
	t.stop = stop
	t.setDeadline(w.Deadline)
	s.mu.Lock()
	s.open[t.ID] = t
	s.inFlight++
	s.running.Add(1)
	s.mu.Unlock()
	go s.runTask(ctx, t)
}

func newTask(s *session, w *taskWire) *Task {
	t := &Task{ID: *w.ID, Source: w.Source, JobType: w.JobType, Topic: w.Topic, Attempt: 1,
		Traceparent: w.Traceparent, Tracestate: w.Tracestate, Variables: w.Variables, Headers: w.Headers, Job: w.Zeebe,
		Value: w.Value, Record: w.Kafka, s: s, cancelled: make(chan struct{})}
	if t.Source == "" {
		t.Source = "zeebe"
	}
	if w.Attempt != nil {
		t.Attempt = *w.Attempt
	}
	if t.Headers == nil {
		t.Headers = map[string]string{}
	}
	if t.Record != nil && t.Record.Headers == nil {
		t.Record.Headers = map[string]string{}
	}
	return t
}

func (s *session) runTask(ctx context.Context, t *Task) {
	defer s.running.Done()
	defer t.release()
	result := s.execute(ctx, t)
	s.mu.Lock()
	owed := s.open[t.ID] == t
	delete(s.open, t.ID)
	s.mu.Unlock()
	if !owed { // skiff cancelled it: it wants no result
		return
	}
	data, err := encode(result)
	if err != nil || len(data)-4 > s.maxFrame {
		why := fmt.Sprintf("result frame of %d bytes exceeds max_frame %d", len(data)-4, s.maxFrame)
		if err != nil {
			why = "result is not JSON-encodable: " + err.Error()
		}
		data, _ = encode(failedResult(t, why))
	}
	if err := s.enqueue(data, true); err != nil {
		s.h.logger.Printf("could not send the result of task %s: %v", t.ID, err)
	}
	s.resultDone()
}

func failedResult(t *Task, message string) map[string]any {
	if t.Source == "kafka" {
		return map[string]any{"type": "nack", "id": t.ID, "message": message}
	}
	return map[string]any{"type": "fail", "id": t.ID, "message": message}
}

// execute runs the task's function (a panic counts as an error) and builds its result.
func (s *session) execute(ctx context.Context, t *Task) (result map[string]any) {
	var fn any
	if t.Source == "kafka" {
		if f, ok := s.h.topics[t.Topic]; ok {
			fn = f
		}
	} else if f, ok := s.h.jobs[t.JobType]; ok {
		fn = f
	}
	defer func() {
		if p := recover(); p != nil {
			err := fmt.Errorf("panic: %v", p)
			s.h.logger.Printf("task %s: %v", t.ID, err)
			result = errorResult(t, err, &Error{Type: "panic", Message: err.Error(),
				Stack: callers(2)})
		}
	}()
	switch f := fn.(type) {
	case JobFunc:
		vars, err := f(ctx, t)
		if err != nil {
			return errorResult(t, err, errorInfo(err, f))
		}
		out := map[string]any{"type": "complete", "id": t.ID}
		if vars != nil {
			out["variables"] = vars
		}
		return out
	case TopicFunc:
		if err := f(ctx, t); err != nil {
			return errorResult(t, err, errorInfo(err, f))
		}
		return map[string]any{"type": "ack", "id": t.ID}
	}
	what, route := "job type", t.JobType
	if t.Source == "kafka" {
		what, route = "topic", t.Topic
	}
	return failedResult(t, fmt.Sprintf("no handler for %s %q", what, route))
}

// errorResult maps a function's error to fail / bpmn_error (Zeebe) or nack (Kafka).
func errorResult(t *Task, err error, info *Error) map[string]any {
	var bpmn *BpmnErr
	var failed *FailedErr
	out := failedResult(t, err.Error())
	switch {
	case errors.As(err, &bpmn) && t.Source != "kafka":
		out = map[string]any{"type": "bpmn_error", "id": t.ID, "code": bpmn.Code}
		if bpmn.Message != "" {
			out["message"] = bpmn.Message
		}
		if bpmn.Variables != nil {
			out["variables"] = bpmn.Variables
		}
	case errors.As(err, &failed):
		out["message"] = failed.Message
		if t.Source == "kafka" && failed.DeadLetter {
			out["dead_letter"] = true
		}
		if failed.RetryBackoff != nil && !(t.Source == "kafka" && failed.DeadLetter) {
			out["retry_backoff_ms"] = failed.RetryBackoff.Milliseconds()
		}
		if t.Source != "kafka" && failed.Retries != nil {
			out["retries"] = *failed.Retries
		}
		if t.Source != "kafka" && failed.Variables != nil {
			out["variables"] = failed.Variables
		}
	default:
		out["error"] = info
	}
	return out
}

// StackTracer is an error that knows where it was made (see Errorf).
type StackTracer interface {
	StackFrames() []Frame
}

type stackError struct {
	err   error
	stack []Frame
}

func (e *stackError) Error() string        { return e.err.Error() }
func (e *stackError) Unwrap() error        { return e.err }
func (e *stackError) StackFrames() []Frame { return e.stack }

// Errorf is fmt.Errorf that records the caller's stack, sent in the fail frame's error.
func Errorf(format string, args ...any) error {
	return &stackError{err: fmt.Errorf(format, args...), stack: callers(2)}
}

// errorInfo is the structured error: the error's own stack if it has one (StackTracer),
// else the function that returned it.
func errorInfo(err error, fn any) *Error {
	info := &Error{Type: fmt.Sprintf("%T", err), Message: err.Error()}
	var st StackTracer
	if errors.As(err, &st) {
		info.Stack = st.StackFrames()
	}
	if len(info.Stack) == 0 {
		f := runtime.FuncForPC(reflect.ValueOf(fn).Pointer())
		if f != nil {
			file, line := f.FileLine(f.Entry())
			info.Stack = []Frame{{File: file, Line: line, Function: f.Name()}}
		}
	}
	if len(info.Stack) == 0 {
		info.Stack = []Frame{{File: "", Line: 0, Function: ""}}
	}
	return info
}

// callers is the stack above skip frames, innermost first, without the runtime's frames.
func callers(skip int) []Frame {
	pcs := make([]uintptr, 64)
	n := runtime.Callers(skip+1, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	var out []Frame
	for {
		f, more := frames.Next()
		if !strings.HasPrefix(f.Function, "runtime.") {
			out = append(out, Frame{File: f.File, Line: f.Line, Function: f.Function})
		}
		if !more {
			return out
		}
	}
}
