package skiff

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeSkiff accepts one handler connection on a temporary socket.
type fakeSkiff struct {
	t    *testing.T
	ln   net.Listener
	path string
	conn net.Conn
	r    *bufio.Reader
}

func newFakeSkiff(t *testing.T) *fakeSkiff {
	dir, err := os.MkdirTemp("", "skiff-go-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "h.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return &fakeSkiff{t: t, ln: ln, path: path}
}

func (f *fakeSkiff) accept() {
	c, err := f.ln.Accept()
	if err != nil {
		f.t.Fatal(err)
	}
	f.conn, f.r = c, bufio.NewReader(c)
	f.t.Cleanup(func() { c.Close() })
}

func (f *fakeSkiff) send(frame any) {
	data, err := encode(frame)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.conn.Write(data); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSkiff) recv() map[string]any {
	f.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var head [4]byte
	if _, err := io.ReadFull(f.r, head[:]); err != nil {
		f.t.Fatalf("no frame: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:]))
	if _, err := io.ReadFull(f.r, body); err != nil {
		f.t.Fatal(err)
	}
	var out map[string]any
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil {
		f.t.Fatal(err)
	}
	return out
}

func (f *fakeSkiff) handshake() map[string]any {
	f.accept()
	hello := f.recv()
	f.send(map[string]any{"type": "welcome", "version": 1, "session": "s-1",
		"max_frame": 4096, "features": []string{"cancel", "extend"},
		"methods": []string{"publish_message"}})
	return hello
}

func task(id, jobType string, vars string) map[string]any {
	return map[string]any{"type": "task", "id": id, "source": "zeebe", "job_type": jobType,
		"deadline":  time.Now().Add(time.Minute).UnixMilli(),
		"variables": json.RawMessage(vars), "headers": map[string]string{},
		"zeebe": map[string]any{"key": "9223372036854775807", "retries": 3}}
}

func start(t *testing.T, f *fakeSkiff, h *Handler) chan error {
	done := make(chan error, 1)
	go func() { done <- h.Run(context.Background()) }()
	t.Cleanup(func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	})
	return done
}

func quiet() Option { return Logger(log.New(io.Discard, "", 0)) }

func TestRoundTrip(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Capacity(2), Socket(f.path), quiet())
	h.Job("score", func(ctx context.Context, task *Task) (Vars, error) {
		var v struct{ Amount int64 }
		if err := task.Decode(&v); err != nil {
			return nil, err
		}
		if v.Amount > 100 {
			return nil, BpmnError("TOO_HIGH", "amount", nil)
		}
		return Vars{"score": v.Amount / 2, "key": task.Job.Key}, nil
	})
	h.Job("boom", func(ctx context.Context, task *Task) (Vars, error) {
		return nil, Errorf("boom %d", 7)
	})
	h.Job("panic", func(ctx context.Context, task *Task) (Vars, error) { panic("oops") })
	done := start(t, f, h)
	hello := f.handshake()
	if hello["name"] != "go-test" || hello["capacity"] != json.Number("2") {
		t.Fatalf("hello %v", hello)
	}
	if _, ok := hello["topics"]; ok {
		t.Fatalf("a Zeebe-only hello has no topics: %v", hello)
	}
	f.send(task("z-1", "score", `{"amount": 84}`))
	got := f.recv()
	vars := got["variables"].(map[string]any)
	if got["type"] != "complete" || vars["score"] != json.Number("42") ||
		vars["key"] != "9223372036854775807" {
		t.Fatalf("complete: %v", got)
	}
	f.send(task("z-2", "score", `{"amount": 101}`))
	if got := f.recv(); got["type"] != "bpmn_error" || got["code"] != "TOO_HIGH" {
		t.Fatalf("bpmn_error: %v", got)
	}
	f.send(task("z-3", "boom", `{}`))
	got = f.recv()
	stack := got["error"].(map[string]any)["stack"].([]any)
	top := stack[0].(map[string]any)
	if got["type"] != "fail" || got["message"] != "boom 7" ||
		!strings.HasSuffix(top["file"].(string), "skiff_test.go") {
		t.Fatalf("structured fail: %v", got)
	}
	f.send(task("z-4", "panic", `{}`))
	if got := f.recv(); got["type"] != "fail" || !strings.Contains(got["message"].(string), "oops") {
		t.Fatalf("panic: %v", got)
	}
	f.send(task("z-5", "score", `{"amount": "x"}`))
	if got := f.recv(); got["type"] != "fail" {
		t.Fatalf("decode error: %v", got)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatalf("Run after drain: %v", err)
	}
	done <- nil
}

func TestCancelStopsContextAndSendsNoResult(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Capacity(1), Socket(f.path), quiet())
	stopped := make(chan string, 1)
	h.Job("wait", func(ctx context.Context, task *Task) (Vars, error) {
		<-ctx.Done()
		_, err := task.Extend(context.Background(), time.Second)
		var ce *CallError
		if errors.As(err, &ce) {
			stopped <- task.CancelReason() + "/" + ce.Code
		}
		return Vars{"late": true}, nil
	})
	h.Job("ok", func(ctx context.Context, task *Task) (Vars, error) { return nil, nil })
	done := start(t, f, h)
	f.handshake()
	f.send(task("z-1", "wait", `{}`))
	f.send(map[string]any{"type": "cancel", "id": "z-1", "reason": "job_gone"})
	if got := <-stopped; got != "job_gone/cancelled" {
		t.Fatalf("cancelled function saw %q", got)
	}
	f.send(task("z-2", "ok", `{}`)) // the slot is free: the next frame is z-2's result
	if got := f.recv(); got["id"] != "z-2" {
		t.Fatalf("expected z-2's result, got %v", got)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}

func TestExtendAndDeadlineContext(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Capacity(1), Socket(f.path), quiet())
	h.Job("slow", func(ctx context.Context, task *Task) (Vars, error) {
		d, err := task.Extend(ctx, time.Minute)
		if err != nil {
			return nil, err
		}
		<-ctx.Done() // the extended deadline (set in the past by the reply) stops the context
		return Vars{"deadline": d, "task": task.Deadline()}, nil
	})
	done := start(t, f, h)
	f.handshake()
	f.send(task("z-1", "slow", `{}`))
	ext := f.recv()
	if ext["type"] != "extend" || ext["timeout_ms"] != json.Number("60000") {
		t.Fatalf("extend: %v", ext)
	}
	f.send(map[string]any{"type": "reply", "ref": ext["ref"], "ok": true,
		"result": map[string]any{"deadline": 1000}})
	got := f.recv()
	if v := got["variables"].(map[string]any); v["deadline"] != json.Number("1000") ||
		v["task"] != json.Number("1000") {
		t.Fatalf("result: %v", got)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}

func TestRefusedHelloIsAProtocolError(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Socket(f.path), quiet())
	h.Topic("t.v1", func(ctx context.Context, task *Task) error { return nil })
	done := start(t, f, h)
	f.accept()
	if hello := f.recv(); hello["topics"] == nil || hello["job_types"] != nil {
		t.Fatalf("topics-only hello: %v", hello)
	}
	f.send(map[string]any{"type": "error", "code": "protocol", "message": "no such topic"})
	err := <-done
	var perr *ProtocolError
	if !errors.As(err, &perr) || perr.Code != "protocol" {
		t.Fatalf("Run: %v", err)
	}
	done <- nil
}

func TestKafkaResults(t *testing.T) {
	cases := []struct {
		err  error
		want map[string]any
	}{
		{nil, map[string]any{"type": "ack", "id": "k-1"}},
		{Retry("later", 2*time.Second),
			map[string]any{"type": "nack", "id": "k-1", "message": "later", "retry_backoff_ms": int64(2000)}},
		{Retry("later", 0), map[string]any{"type": "nack", "id": "k-1", "message": "later"}},
		{DeadLetter("poison"),
			map[string]any{"type": "nack", "id": "k-1", "message": "poison", "dead_letter": true}},
	}
	kt := &Task{ID: "k-1", Source: "kafka"}
	for _, c := range cases {
		var got map[string]any
		if c.err == nil {
			got = map[string]any{"type": "ack", "id": "k-1"}
		} else {
			got = errorResult(kt, c.err, nil)
		}
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(c.want)
		if string(a) != string(b) {
			t.Errorf("%v: got %s, want %s", c.err, a, b)
		}
	}
	zt := &Task{ID: "z-1", Source: "zeebe"}
	got := errorResult(zt, DeadLetter("bad input"), nil)
	if got["retries"] != 0 || got["dead_letter"] != nil {
		t.Errorf("DeadLetter in a job fails with retries 0: %v", got)
	}
}

func TestDrainSendsEveryResultBeforeClosing(t *testing.T) {
	f := newFakeSkiff(t)
	const n = 20
	h := New("go-test", Capacity(n), Socket(f.path), quiet())
	gate := make(chan struct{})
	h.Job("gate", func(ctx context.Context, task *Task) (Vars, error) {
		<-gate // all finish at the same moment, racing to send their results
		return nil, nil
	})
	done := start(t, f, h)
	f.handshake()
	for i := 0; i < n; i++ {
		f.send(task("z-"+string(rune('a'+i)), "gate", `{}`))
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	close(gate)
	seen := map[any]bool{}
	for i := 0; i < n; i++ {
		seen[f.recv()["id"]] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct results, want %d", len(seen), n)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}

func TestSecretAndTokenCalls(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Capacity(1), Socket(f.path), quiet())
	h.Job("calls", func(ctx context.Context, task *Task) (Vars, error) {
		out := Vars{}
		v, err := task.Secret(ctx, "vault:secret/app/db#password")
		out["secret"], out["secret_err"] = v, fmt.Sprint(err)
		v, err = h.Token(ctx, "billing-api")
		out["token"], out["token_err"] = v, fmt.Sprint(err)
		_, err = task.Secret(ctx, "")
		var ce *CallError
		if !errors.As(err, &ce) || ce.Code != "invalid_params" {
			return nil, fmt.Errorf("empty reference: %v", err)
		}
		return out, nil
	})
	done := start(t, f, h)
	f.accept()
	f.recv()
	f.send(map[string]any{"type": "welcome", "version": 1, "session": "s-1",
		"max_frame": 4096, "methods": []string{"publish_message", "secret", "token"}})
	f.send(task("z-1", "calls", `{}`))
	c := f.recv()
	params := c["params"].(map[string]any)
	if c["type"] != "call" || c["method"] != "secret" ||
		params["reference"] != "vault:secret/app/db#password" {
		t.Fatalf("secret call: %v", c)
	}
	f.send(map[string]any{"type": "reply", "ref": c["ref"], "ok": true,
		"result": map[string]any{"value": "s3cret \u00e9", "version": 3}})
	c = f.recv()
	if c["method"] != "token" || c["params"].(map[string]any)["audience"] != "billing-api" {
		t.Fatalf("token call: %v", c)
	}
	f.send(map[string]any{"type": "reply", "ref": c["ref"], "ok": false,
		"error": map[string]any{"code": "forbidden", "message": "not allowed"}})
	got := f.recv()
	vars := got["variables"].(map[string]any)
	if got["type"] != "complete" || vars["secret"] != "s3cret \u00e9" ||
		vars["secret_err"] != "<nil>" || vars["token"] != "" ||
		vars["token_err"] != "forbidden: not allowed" {
		t.Fatalf("results: %v", got)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}

func TestSecretUnsupportedWithoutTheMethod(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Capacity(1), Socket(f.path), quiet())
	h.Job("calls", func(ctx context.Context, task *Task) (Vars, error) {
		_, err := task.Token(ctx, "billing-api")
		var ce *CallError
		if !errors.As(err, &ce) {
			return nil, fmt.Errorf("not a call error: %v", err)
		}
		return Vars{"code": ce.Code}, nil
	})
	done := start(t, f, h)
	f.handshake() // methods: publish_message only
	f.send(task("z-1", "calls", `{}`))
	if got := f.recv(); got["type"] != "complete" ||
		got["variables"].(map[string]any)["code"] != "unsupported" {
		t.Fatalf("expected a local unsupported and no call frame: %v", got)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}
