package skiff

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Task is one task from skiff: a Zeebe job (Source "zeebe": JobType, Variables, Headers,
// Job) or a Kafka record (Source "kafka": Topic, Value, Record). Variables and Value are the
// raw JSON as received (Decode them); Deadline is epoch ms and moves with Extend.
type Task struct {
	ID          string
	Source      string
	JobType     string
	Topic       string
	Attempt     int64
	Traceparent string
	Tracestate  string
	Variables   json.RawMessage
	Headers     map[string]string
	Job         *Job
	Value       json.RawMessage
	Record      *Record

	s         *session
	mu        sync.Mutex
	deadline  int64
	timer     *time.Timer
	stop      context.CancelFunc
	cancelled chan struct{}
	reason    string
}

// Deadline is the task's deadline (epoch ms), as last extended.
func (t *Task) Deadline() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.deadline
}

// Cancelled is closed when skiff cancels the task; its result is then not sent.
func (t *Task) Cancelled() <-chan struct{} { return t.cancelled }

// CancelReason is skiff's reason (deadline, job_gone, revoked, ...) once cancelled, else "".
func (t *Task) CancelReason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.reason
}

func (t *Task) isCancelled() bool {
	select {
	case <-t.cancelled:
		return true
	default:
		return false
	}
}

// cancel marks the task cancelled by skiff and stops its context; false if it already was.
func (t *Task) cancel(reason string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isCancelled() {
		return false
	}
	t.reason = reason
	close(t.cancelled)
	t.stop()
	return true
}

// setDeadline moves the deadline and the timer that stops the task's context at it.
func (t *Task) setDeadline(ms int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deadline = ms
	if ms <= 0 { // no deadline given: only a cancel stops the context
		return
	}
	wait := time.Until(time.UnixMilli(ms))
	if t.timer == nil {
		t.timer = time.AfterFunc(wait, t.stop)
	} else {
		t.timer.Reset(wait)
	}
}

func (t *Task) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.timer != nil {
		t.timer.Stop()
	}
	t.stop()
}

// Extend asks skiff to set the job's deadline to now + timeout; returns the new deadline
// (epoch ms), which Deadline then reports. Kafka tasks cannot be extended.
func (t *Task) Extend(ctx context.Context, timeout time.Duration) (int64, error) {
	ms := timeout.Milliseconds()
	if ms < 1 {
		return 0, &CallError{"invalid_params", "extend needs a timeout of at least 1 ms"}
	}
	if t.Source == "kafka" {
		return 0, &CallError{"unsupported", "a Kafka task cannot be extended"}
	}
	if !t.s.features["extend"] {
		return 0, &CallError{"unsupported", "skiff does not support extend"}
	}
	var out struct {
		Deadline int64 `json:"deadline"`
	}
	members := map[string]any{"id": t.ID, "timeout_ms": ms}
	if err := t.s.request(ctx, t, "extend", members, &out); err != nil {
		return 0, err
	}
	t.setDeadline(out.Deadline)
	return out.Deadline, nil
}

// PublishMessage publishes a Zeebe message through skiff (also after a cancel: a call
// belongs to the connection, not to the task).
func (t *Task) PublishMessage(ctx context.Context, m Message) (Published, error) {
	var out Published
	return out, t.s.call(ctx, "publish_message", m, &out)
}

// Secret reads a secret the pod may read through skiff (see Handler.Secret).
func (t *Task) Secret(ctx context.Context, reference string) (string, error) {
	return t.s.secret(ctx, reference)
}

// Token returns an OAuth2 access token for an allowed audience (see Handler.Token).
func (t *Task) Token(ctx context.Context, audience string) (string, error) {
	return t.s.token(ctx, audience)
}

// Produce writes a Kafka record through skiff; the reply comes once the broker confirmed it.
func (t *Task) Produce(ctx context.Context, p Produce) (Produced, error) {
	var out Produced
	return out, t.s.call(ctx, "produce", p, &out)
}
