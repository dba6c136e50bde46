// Package skiff writes skiff handlers in Go: Zeebe job workers and Kafka record consumers
// that talk to the skiff sidecar over its Unix socket (handler protocol v1.4, see
// handler-protocol/SPEC.md). Standard library only.
//
//	h := skiff.New("risk-scorer", skiff.Capacity(4))
//	h.Job("risk-score", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
//		var in struct{ Amount float64 }
//		if err := t.Decode(&in); err != nil {
//			return nil, err                        // fail, retries - 1
//		}
//		if in.Amount > 1e6 {
//			return nil, skiff.BpmnError("RISK_TOO_HIGH", "amount too large", nil)
//		}
//		return skiff.Vars{"riskScore": 42}, nil    // complete
//	})
//	log.Fatal(h.Run(context.Background()))
//
// Each task runs in its own goroutine; skiff never has more than the capacity open on the
// connection (its credits), so at most that many run, plus cancelled ones that have not
// returned yet. The task's context is cancelled when skiff cancels the task or its
// deadline (as extended) passes.
package skiff

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"sync"
	"time"
)

// ProtocolVersion is the handler protocol version spoken.
const ProtocolVersion = 1

// DefaultSocket is used when neither Socket nor $SKIFF_SOCKET is set.
const DefaultSocket = "/run/skiff/handler.sock"

// DefaultMaxFrame is the largest frame before skiff's welcome says otherwise.
const DefaultMaxFrame = 4 * 1024 * 1024

// Vars are process variables: the complete result of a job function.
type Vars map[string]any

// JobFunc serves a Zeebe job: nil error completes it with the variables (nil: none).
type JobFunc func(ctx context.Context, t *Task) (Vars, error)

// TopicFunc serves a Kafka record: nil acks it, an error nacks it.
type TopicFunc func(ctx context.Context, t *Task) error

// Handler registers functions and serves skiff's tasks; configure it with options.
type Handler struct {
	name           string
	capacity       int
	socket         string
	reconnect      bool
	batch          bool
	backoffInitial time.Duration
	backoffMax     time.Duration
	logger         *log.Logger
	jobs           map[string]JobFunc
	topics         map[string]TopicFunc
	jobOrder       []string
	topicOrder     []string
	mu             sync.Mutex
	current        *session // the welcomed session, if any
}

// Option configures a Handler.
type Option func(*Handler)

// Capacity is the most tasks in flight on the connection (default 1).
func Capacity(n int) Option { return func(h *Handler) { h.capacity = n } }

// Socket overrides $SKIFF_SOCKET.
func Socket(path string) Option { return func(h *Handler) { h.socket = path } }

// Backoff sets the reconnect backoff: initial delay, doubled up to max (default 100 ms, 5 s).
func Backoff(initial, max time.Duration) Option {
	return func(h *Handler) { h.backoffInitial, h.backoffMax = initial, max }
}

// NoReconnect makes Run return when the connection is lost or skiff is not there.
func NoReconnect() Option { return func(h *Handler) { h.reconnect = false } }

// NoBatch leaves "batch" out of the hello (protocol 1.4, on by default): skiff then sends
// only single task frames, and results always leave as single frames.
func NoBatch() Option { return func(h *Handler) { h.batch = false } }

// Logger replaces the default logger (stderr).
func Logger(l *log.Logger) Option { return func(h *Handler) { h.logger = l } }

// New creates a handler named name (used in skiff's logs and metrics).
func New(name string, opts ...Option) *Handler {
	h := &Handler{
		name: name, capacity: 1, socket: os.Getenv("SKIFF_SOCKET"), reconnect: true, batch: true,
		backoffInitial: 100 * time.Millisecond, backoffMax: 5 * time.Second,
		logger: log.New(os.Stderr, "skiff-handler: ", log.LstdFlags|log.Lmicroseconds),
		jobs:   map[string]JobFunc{}, topics: map[string]TopicFunc{},
	}
	if h.socket == "" {
		h.socket = DefaultSocket
	}
	for _, o := range opts {
		o(h)
	}
	return h
}

// Job registers fn for a Zeebe job type.
func (h *Handler) Job(jobType string, fn JobFunc) {
	if _, ok := h.jobs[jobType]; !ok {
		h.jobOrder = append(h.jobOrder, jobType)
	}
	h.jobs[jobType] = fn
}

// Topic registers fn for the records of a Kafka topic.
func (h *Handler) Topic(topic string, fn TopicFunc) {
	if _, ok := h.topics[topic]; !ok {
		h.topicOrder = append(h.topicOrder, topic)
	}
	h.topics[topic] = fn
}

// Job is a Zeebe task's metadata; keys are decimal strings (int64 values).
type Job struct {
	Key                      string `json:"key"`
	ProcessInstanceKey       string `json:"process_instance_key"`
	BpmnProcessID            string `json:"bpmn_process_id"`
	ProcessDefinitionVersion int64  `json:"process_definition_version"`
	ElementID                string `json:"element_id"`
	Retries                  int64  `json:"retries"`
	Worker                   string `json:"worker"`
	ProcessDefinitionKey     string `json:"process_definition_key,omitempty"`
	ElementInstanceKey       string `json:"element_instance_key,omitempty"`
	TenantID                 string `json:"tenant_id,omitempty"`
}

// Record is a Kafka task's metadata. Key is nil without a key or when it is not UTF-8
// (then KeyBase64 holds it); Timestamp is nil when the record has none.
type Record struct {
	Topic         string            `json:"topic"`
	Partition     int64             `json:"partition"`
	Offset        int64             `json:"offset"`
	Key           *string           `json:"key"`
	KeyBase64     *string           `json:"key_base64,omitempty"`
	Headers       map[string]string `json:"headers"`
	HeadersBase64 map[string]string `json:"headers_base64,omitempty"`
	Timestamp     *int64            `json:"timestamp,omitempty"`
	SchemaID      int64             `json:"schema_id"`
}

// Error is the structured error of a fail or nack frame (SPEC §4.2).
type Error struct {
	Type    string  `json:"type"`
	Message string  `json:"message"`
	Stack   []Frame `json:"stack"`
}

// Frame is one stack frame of an Error, innermost first.
type Frame struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Function string `json:"function"`
}

// BpmnErr is a business error, caught by an error boundary event with Code.
type BpmnErr struct {
	Code, Message string
	Variables     Vars
}

func (e *BpmnErr) Error() string { return "bpmn error " + e.Code + ": " + e.Message }

// BpmnError returns a BPMN error for a job function to return.
func BpmnError(code, message string, vars Vars) error {
	return &BpmnErr{Code: code, Message: message, Variables: vars}
}

// FailedErr controls how a job fails (Retries nil: the job's retries - 1; 0: an incident)
// or how a record is nacked (RetryBackoff nil: skiff's own backoff; DeadLetter).
type FailedErr struct {
	Message      string
	Retries      *int
	RetryBackoff *time.Duration
	Variables    Vars
	DeadLetter   bool
}

func (e *FailedErr) Error() string { return e.Message }

// Failed fails a job with explicit retries, backoff and variables.
func Failed(message string, retries int, backoff time.Duration, vars Vars) error {
	return &FailedErr{Message: message, Retries: &retries, RetryBackoff: &backoff, Variables: vars}
}

// Retry nacks a record (fails a job) to be retried after backoff; 0: skiff's own backoff.
func Retry(message string, backoff time.Duration) error {
	e := &FailedErr{Message: message}
	if backoff > 0 {
		e.RetryBackoff = &backoff
	}
	return e
}

// DeadLetter nacks a record to the dead-letter topic at once (a job: fails with retries 0).
func DeadLetter(message string) error {
	zero := 0
	return &FailedErr{Message: message, DeadLetter: true, Retries: &zero}
}

// CallError is a failed extend or call: Code is skiff's (not_found, already_exists,
// invalid_value, ... and codes this SDK does not know) or the SDK's own: unsupported (not
// offered by skiff or not possible: nothing was sent), cancelled (skiff cancelled the task),
// closed (not connected, or the connection was lost before the reply: outcome unknown),
// invalid_params (not encodable, or larger than max_frame), invalid_reply (a secret or token
// reply without its string member).
type CallError struct {
	Code, Message string
}

func (e *CallError) Error() string { return e.Code + ": " + e.Message }

// ProtocolError means skiff refused the hello: the handler is misconfigured.
type ProtocolError struct {
	Code, Message string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("skiff refused hello: %s: %s", e.Code, e.Message)
}

// Message is a Zeebe message to publish (TimeToLive 0: correlate only now).
type Message struct {
	Name           string `json:"name"`
	CorrelationKey string `json:"correlation_key"`
	Variables      Vars   `json:"variables,omitempty"`
	TimeToLiveMs   int64  `json:"time_to_live_ms"`
	MessageID      string `json:"message_id,omitempty"`
	TenantID       string `json:"tenant_id,omitempty"`
	// Traceparent (W3C, e.g. the task's Traceparent) names the span the message comes from:
	// the jobs it leads to continue that trace (protocol 1.3). Tracestate goes with it.
	Traceparent string `json:"traceparent,omitempty"`
	Tracestate  string `json:"tracestate,omitempty"`
}

// Published is publish_message's result.
type Published struct {
	Key      string `json:"key"`
	TenantID string `json:"tenant_id"`
}

// Produce is a Kafka record to write; Value is encoded to Avro by skiff (nil is JSON null).
type Produce struct {
	Topic   string            `json:"topic"`
	Value   any               `json:"value"`
	Key     *string           `json:"key,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
}

// Produced is produce's result.
type Produced struct {
	Topic     string `json:"topic"`
	Partition int64  `json:"partition"`
	Offset    int64  `json:"offset"`
	SchemaID  int64  `json:"schema_id"`
}

// PublishMessage publishes a Zeebe message on the current connection.
func (h *Handler) PublishMessage(ctx context.Context, m Message) (Published, error) {
	var out Published
	s := h.session()
	if s == nil {
		return out, &CallError{"closed", "not connected to skiff"}
	}
	return out, s.call(ctx, "publish_message", m, &out)
}

// Produce writes a Kafka record on the current connection; the reply comes once the broker
// confirmed it.
func (h *Handler) Produce(ctx context.Context, p Produce) (Produced, error) {
	var out Produced
	s := h.session()
	if s == nil {
		return out, &CallError{"closed", "not connected to skiff"}
	}
	return out, s.call(ctx, "produce", p, &out)
}

// Secret reads a secret the pod may read (handler.secrets), e.g.
// "vault:secret/app/db#password", and returns its value. Typed errors: forbidden, not_found,
// unavailable, invalid_params (also refused locally for an empty reference), unsupported when
// skiff does not offer the call (protocol 1.3).
func (h *Handler) Secret(ctx context.Context, reference string) (string, error) {
	s := h.session()
	if s == nil {
		return "", &CallError{"closed", "not connected to skiff"}
	}
	return s.secret(ctx, reference)
}

// Token returns an OAuth2 access token for an audience the pod may use
// (handler.token_audiences); skiff caches and refreshes it. Typed errors: forbidden,
// unavailable, invalid_params, unsupported.
func (h *Handler) Token(ctx context.Context, audience string) (string, error) {
	s := h.session()
	if s == nil {
		return "", &CallError{"closed", "not connected to skiff"}
	}
	return s.token(ctx, audience)
}

func (h *Handler) session() *session {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}

func (h *Handler) setSession(s *session) {
	h.mu.Lock()
	h.current = s
	h.mu.Unlock()
}

// Run serves until skiff drains the handler (nil), ctx ends (ctx.Err()), or skiff refuses
// the hello (*ProtocolError). It waits for skiff and reconnects with a backoff.
func (h *Handler) Run(ctx context.Context) error {
	if len(h.jobs) == 0 && len(h.topics) == 0 {
		return errors.New("skiff: register at least one job type or topic before Run")
	}
	if h.capacity < 1 {
		return errors.New("skiff: capacity must be >= 1")
	}
	delay := h.backoffInitial
	for {
		welcomed, drained, err := h.serveOnce(ctx)
		if err != nil || drained {
			return err
		}
		if welcomed {
			delay = h.backoffInitial
		}
		if !h.reconnect {
			return errors.New("skiff: connection lost")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		if delay *= 2; delay > h.backoffMax {
			delay = h.backoffMax
		}
	}
}

// Decode unmarshals the task's variables (Zeebe) or value (Kafka) into v.
func (t *Task) Decode(v any) error {
	raw := t.Variables
	if t.Source == "kafka" {
		raw = t.Value
	}
	if len(raw) == 0 {
		raw = json.RawMessage("null")
	}
	return json.Unmarshal(raw, v)
}
