package skiff

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"unicode/utf8"
)

// session is one connection to skiff and its state.
type session struct {
	h        *Handler
	conn     net.Conn
	wmu      sync.Mutex // the queue of frames to write (batch.go)
	wrote    *sync.Cond // a write ended (on wmu)
	wq       []queued
	flushing bool
	queuedN  uint64 // frames queued so far
	writtenN uint64 // frames written (or failed) so far
	failedAt uint64 // the first frame whose write failed, 0: none
	werr     error  // that write's error
	maxFrame int
	features map[string]bool
	methods  map[string]bool

	mu       sync.Mutex
	open     map[string]*Task // tasks owing a result (not cancelled)
	inFlight int              // results owed and not yet written (or the task cancelled)
	pending  map[string]*pending
	nextRef  uint64
	draining bool
	closed   bool
	running  sync.WaitGroup
}

type pending struct {
	task  *Task
	reply chan reply
}

type reply struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result"`
	Error  *CallError      `json:"error"`
}

func (e *CallError) UnmarshalJSON(b []byte) error {
	var w struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	err := json.Unmarshal(b, &w)
	e.Code, e.Message = w.Code, w.Message
	return err
}

// serveOnce runs one session: connect, handshake, serve until closed, wait for the tasks.
func (h *Handler) serveOnce(ctx context.Context) (welcomed, drained bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", h.socket)
	if err != nil {
		if ctx.Err() != nil {
			return false, false, ctx.Err()
		}
		h.logger.Printf("cannot connect to skiff at %s: %v", h.socket, err)
		return false, false, nil
	}
	s := &session{h: h, conn: conn, maxFrame: DefaultMaxFrame, open: map[string]*Task{},
		pending: map[string]*pending{}}
	s.wrote = sync.NewCond(&s.wmu)
	defer conn.Close()
	done := make(chan struct{})
	defer close(done)
	go func() { // ctx ends the session
		select {
		case <-ctx.Done():
			conn.Close()
		case <-done:
		}
	}()
	r := bufio.NewReaderSize(conn, 64*1024)
	if err := s.handshake(r); err != nil {
		var perr *ProtocolError
		if errors.As(err, &perr) {
			return false, false, err
		}
		h.logger.Printf("handshake with skiff failed: %v", err)
		return false, false, nil
	}
	h.setSession(s)
	drained = s.readLoop(r)
	h.setSession(nil)
	s.shutdown()
	s.running.Wait()
	if ctx.Err() != nil {
		return true, false, ctx.Err()
	}
	if !drained {
		h.logger.Printf("connection to skiff at %s lost", h.socket)
	}
	return true, drained, nil
}

func (s *session) handshake(r *bufio.Reader) error {
	h := s.h
	hello := orderedHello{Type: "hello", Version: ProtocolVersion, Name: h.name,
		Capacity: h.capacity, JobTypes: h.jobOrder, Topics: h.topicOrder,
		Features: []string{"cancel"}}
	if h.batch {
		hello.Features = append(hello.Features, "batch")
	}
	if err := s.send(hello); err != nil {
		return err
	}
	for {
		body, err := s.readFrame(r)
		if err != nil {
			return err
		}
		kind, ok := frameType(body)
		if !ok {
			h.logger.Printf("skiff sent a malformed frame; ignoring it")
			continue
		}
		var w struct {
			Code     string   `json:"code"`
			Message  string   `json:"message"`
			Session  string   `json:"session"`
			MaxFrame int      `json:"max_frame"`
			Features []string `json:"features"`
			Methods  []string `json:"methods"`
		}
		if err := json.Unmarshal(body, &w); err != nil {
			h.logger.Printf("skiff sent a malformed %s: %v; ignoring it", kind, err)
			continue
		}
		switch kind {
		case "error":
			return &ProtocolError{w.Code, w.Message}
		case "welcome":
			if w.MaxFrame > 0 {
				s.maxFrame = w.MaxFrame
			}
			s.features, s.methods = set(w.Features), set(w.Methods)
			return nil
		default:
			return fmt.Errorf("expected welcome, got %s", kind)
		}
	}
}

// orderedHello keeps the members in the order of SPEC §3 (absent ones left out).
type orderedHello struct {
	Type     string   `json:"type"`
	Version  int      `json:"version"`
	Name     string   `json:"name"`
	Capacity int      `json:"capacity"`
	JobTypes []string `json:"job_types,omitempty"`
	Topics   []string `json:"topics,omitempty"`
	Features []string `json:"features"`
}

func set(names []string) map[string]bool {
	out := map[string]bool{}
	for _, n := range names {
		out[n] = true
	}
	return out
}

var errFraming = errors.New("bad frame length")

// readFrame reads one frame body; errFraming when the length is 0 or above max_frame.
func (s *session) readFrame(r *bufio.Reader) ([]byte, error) {
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(head[:])
	if n == 0 || int64(n) > int64(s.maxFrame) {
		s.h.logger.Printf("skiff sent a frame of %d bytes (max %d); closing", n, s.maxFrame)
		return nil, errFraming
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return body, err
}

// frameType is the frame's type, or false if the body is not UTF-8 JSON with a string type.
func frameType(body []byte) (string, bool) {
	if !utf8.Valid(body) {
		return "", false
	}
	var head struct {
		Type *string `json:"type"`
	}
	if json.Unmarshal(body, &head) != nil || head.Type == nil {
		return "", false
	}
	return *head.Type, true
}

// readLoop dispatches frames until the connection ends; true if skiff drained it.
func (s *session) readLoop(r *bufio.Reader) bool {
	for {
		body, err := s.readFrame(r)
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return s.draining
		}
		kind, ok := frameType(body)
		if !ok {
			s.h.logger.Printf("skiff sent a malformed frame; ignoring it")
			continue
		}
		s.dispatch(kind, body)
	}
}

func (s *session) dispatch(kind string, body []byte) {
	var f struct {
		Ref     string `json:"ref"`
		ID      string `json:"id"`
		Reason  string `json:"reason"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Index   *int   `json:"index"`
	}
	if kind != "task" && kind != "tasks" && kind != "reply" && json.Unmarshal(body, &f) != nil {
		s.h.logger.Printf("skiff sent a malformed %s frame; ignoring it", kind)
		return
	}
	switch kind {
	case "task":
		s.startTask(body)
	case "tasks":
		s.startTasks(body)
	case "reply":
		s.resolve(body)
	case "cancel":
		s.cancel(f.ID, f.Reason)
	case "ping":
		_ = s.send(map[string]string{"type": "pong", "ref": f.Ref})
	case "drain":
		s.mu.Lock()
		s.draining = true
		idle := s.inFlight == 0
		s.mu.Unlock()
		if idle {
			s.shutdown()
		}
	case "error":
		if f.Index != nil { // a refused results item: the session goes on (SPEC §4.7)
			s.h.logger.Printf("skiff refused results item %d: %s: %s (task %q)", *f.Index,
				f.Code, f.Message, f.ID)
			return
		}
		s.h.logger.Printf("skiff error %s: %s (task %q)", f.Code, f.Message, f.ID)
	case "pong", "welcome":
	default:
		s.h.logger.Printf("ignoring unknown frame type %q", kind)
	}
}

func (s *session) resolve(body []byte) {
	var rep struct {
		reply
		Ref string `json:"ref"`
	}
	if err := json.Unmarshal(body, &rep); err != nil {
		s.h.logger.Printf("skiff sent a malformed reply: %v; ignoring it", err)
		return
	}
	s.mu.Lock()
	p := s.pending[rep.Ref]
	delete(s.pending, rep.Ref)
	s.mu.Unlock()
	if p != nil {
		p.reply <- rep.reply
	}
}

func (s *session) cancel(id, reason string) {
	s.mu.Lock()
	t := s.open[id]
	delete(s.open, id)
	s.mu.Unlock()
	if t == nil {
		return
	}
	t.cancel(reason)
	s.resultDone()
}

// resultDone: one owed result less (sent or cancelled); closes a drained idle session.
func (s *session) resultDone() {
	s.mu.Lock()
	s.inFlight--
	idle := s.draining && s.inFlight == 0
	s.mu.Unlock()
	if idle {
		s.shutdown()
	}
}

func (s *session) shutdown() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	pend := s.pending
	s.pending = map[string]*pending{}
	s.mu.Unlock()
	for _, p := range pend {
		p.reply <- reply{Error: &CallError{"closed", "connection to skiff lost before the reply"}}
	}
	s.conn.Close()
}

func encode(frame any) ([]byte, error) {
	body, err := json.Marshal(frame)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 4, 4+len(body))
	binary.BigEndian.PutUint32(out, uint32(len(body)))
	return append(out, body...), nil
}

func (s *session) send(frame any) error {
	data, err := encode(frame)
	if err != nil {
		return err
	}
	return s.write(data)
}

func (s *session) write(data []byte) error {
	return s.enqueue(data, false)
}

func (s *session) secret(ctx context.Context, reference string) (string, error) {
	if reference == "" {
		return "", &CallError{"invalid_params", "secret needs a non-empty reference"}
	}
	var out struct {
		Value *string `json:"value"`
	}
	if err := s.call(ctx, "secret", map[string]string{"reference": reference}, &out); err != nil {
		return "", err
	}
	if out.Value == nil {
		return "", &CallError{"invalid_reply", "secret reply without a string value"}
	}
	return *out.Value, nil
}

func (s *session) token(ctx context.Context, audience string) (string, error) {
	if audience == "" {
		return "", &CallError{"invalid_params", "token needs a non-empty audience"}
	}
	var out struct {
		AccessToken *string `json:"access_token"`
	}
	if err := s.call(ctx, "token", map[string]string{"audience": audience}, &out); err != nil {
		return "", err
	}
	if out.AccessToken == nil {
		return "", &CallError{"invalid_reply", "token reply without a string access_token"}
	}
	return *out.AccessToken, nil
}

func (s *session) call(ctx context.Context, method string, params any, out any) error {
	if !s.methods[method] {
		return &CallError{"unsupported", "skiff does not offer the method " + method}
	}
	return s.request(ctx, nil, "call", map[string]any{"method": method, "params": params}, out)
}

// request sends an extend or call with a fresh ref and waits for its reply (or for ctx,
// or for skiff to cancel t: then the reply is never coming).
func (s *session) request(ctx context.Context, t *Task, kind string, members map[string]any,
	out any) error {
	p := &pending{task: t, reply: make(chan reply, 1)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return &CallError{"closed", "not connected to skiff"}
	}
	if t != nil && t.isCancelled() {
		s.mu.Unlock()
		return &CallError{"cancelled", "task " + t.ID + " was cancelled (" + t.CancelReason() + ")"}
	}
	if t != nil && s.open[t.ID] != t {
		s.mu.Unlock()
		return &CallError{"closed", "task " + t.ID + " is no longer open"}
	}
	s.nextRef++
	ref := strconv.FormatUint(s.nextRef, 10)
	members["type"], members["ref"] = kind, ref
	data, err := encode(members)
	if err == nil && len(data)-4 > s.maxFrame {
		err = fmt.Errorf("%s frame of %d bytes exceeds max_frame %d", kind, len(data)-4, s.maxFrame)
	}
	if err != nil {
		s.mu.Unlock()
		return &CallError{"invalid_params", err.Error()}
	}
	s.pending[ref] = p
	s.mu.Unlock()
	if err := s.write(data); err != nil {
		s.forget(ref)
		return &CallError{"closed", "connection to skiff lost"}
	}
	return s.await(ctx, t, ref, p, out)
}

func (s *session) await(ctx context.Context, t *Task, ref string, p *pending, out any) error {
	var cancelled <-chan struct{}
	if t != nil {
		cancelled = t.cancelled
	}
	select {
	case rep := <-p.reply:
		if !rep.OK {
			if rep.Error == nil {
				return &CallError{"rejected", ""}
			}
			return rep.Error
		}
		if len(rep.Result) == 0 || string(rep.Result) == "null" {
			return nil
		}
		return json.Unmarshal(rep.Result, out)
	case <-cancelled:
		s.forget(ref)
		return &CallError{"cancelled", "task " + t.ID + " was cancelled (" + t.CancelReason() + ")"}
	case <-ctx.Done():
		s.forget(ref)
		return ctx.Err()
	}
}

func (s *session) forget(ref string) {
	s.mu.Lock()
	delete(s.pending, ref)
	s.mu.Unlock()
}
