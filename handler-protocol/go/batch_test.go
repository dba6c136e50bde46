package skiff

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// recvItems reads one frame and unpacks it: a results frame gives its items, any other
// frame itself. It fails on a frame above max or a results frame that is not well-formed.
func (f *fakeSkiff) recvItems(max int) (items []map[string]any, batched bool) {
	got := f.recv()
	if got["type"] != "results" {
		return []map[string]any{got}, false
	}
	raw, err := json.Marshal(got)
	if err != nil || len(raw) > max {
		f.t.Fatalf("results frame of %d bytes above max_frame %d", len(raw), max)
	}
	list, ok := got["results"].([]any)
	if !ok || len(list) == 0 {
		f.t.Fatalf("results frame without items: %v", got)
	}
	for _, it := range list {
		items = append(items, it.(map[string]any))
	}
	return items, true
}

func welcome(features ...string) map[string]any {
	return map[string]any{"type": "welcome", "version": 1, "session": "s-1",
		"max_frame": 4096, "features": features, "methods": []string{"publish_message"}}
}

func TestHelloListsBatchUnlessNoBatch(t *testing.T) {
	for _, c := range []struct {
		opts []Option
		want string
	}{{nil, `["cancel","batch"]`}, {[]Option{NoBatch()}, `["cancel"]`}} {
		f := newFakeSkiff(t)
		h := New("go-test", append([]Option{Socket(f.path), quiet()}, c.opts...)...)
		h.Job("x", func(ctx context.Context, task *Task) (Vars, error) { return nil, nil })
		done := start(t, f, h)
		hello := f.handshake()
		if got, _ := json.Marshal(hello["features"]); string(got) != c.want {
			t.Errorf("hello features %s, want %s", got, c.want)
		}
		f.send(map[string]any{"type": "drain", "deadline": 0})
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		done <- nil
	}
}

// A tasks frame is served item by item (an item without an id skipped, an unregistered
// job type failed), the results gathered in results frames within max_frame; an error
// frame with an index (a refused results item) does not end the session.
func serveTasksFrame(t *testing.T, features []string) (batchedFrames int) {
	f := newFakeSkiff(t)
	const n = 12
	h := New("go-test", Capacity(n+2), Socket(f.path), quiet())
	gate := make(chan struct{})
	h.Job("gate", func(ctx context.Context, task *Task) (Vars, error) {
		<-gate // all finish at once, racing to send their results
		return Vars{"pad": strings.Repeat("p", 600)}, nil
	})
	h.Topic("t.ok", func(ctx context.Context, task *Task) error { return nil })
	done := start(t, f, h)
	f.accept()
	f.recv()
	f.send(welcome(features...))
	f.send(map[string]any{"type": "error", "code": "unknown_task", "message": "no open task",
		"id": "z-old", "index": 1})
	var items []any
	want := map[string]string{}
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("z-%d", i)
		items = append(items, task(id, "gate", `{}`))
		want[id] = "complete"
	}
	items = append(items, map[string]any{"type": "task", "source": "zeebe", "job_type": "gate"},
		task("z-nope", "nope", `{}`),
		map[string]any{"type": "task", "id": "k-1", "source": "kafka", "topic": "t.ok",
			"deadline": time.Now().Add(time.Minute).UnixMilli(), "attempt": 1, "value": nil,
			"kafka": map[string]any{"topic": "t.ok", "partition": 0, "offset": 1}})
	want["z-nope"], want["k-1"] = "fail", "ack"
	f.send(map[string]any{"type": "tasks", "tasks": items})
	close(gate)
	got := map[string]string{}
	for len(got) < len(want) {
		list, batched := f.recvItems(4096)
		if batched {
			batchedFrames++
		}
		for _, it := range list {
			id := it["id"].(string)
			if _, dup := got[id]; dup {
				t.Fatalf("two results for %s", id)
			}
			got[id] = it["type"].(string)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	f.send(map[string]any{"type": "ping", "ref": "after"})
	if p := f.recv(); p["type"] != "pong" || p["ref"] != "after" {
		t.Fatalf("after the batch: %v", p)
	}
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
	return batchedFrames
}

func TestTasksFrameWithBatchWelcome(t *testing.T) {
	serveTasksFrame(t, []string{"batch", "cancel", "extend"})
}

func TestNoResultsFrameWithoutBatchWelcome(t *testing.T) {
	if n := serveTasksFrame(t, []string{"cancel", "extend"}); n != 0 {
		t.Fatalf("%d results frames to a skiff without batch", n)
	}
}

func frameOf(t *testing.T, v any) []byte {
	data, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// pack turns runs of results into results frames that never pass max_frame, keeps other
// frames single and in order, and sends plain frames to a skiff without batch.
func TestPackResultsWithinMaxFrame(t *testing.T) {
	var q []queued
	var ids []string
	for i := 0; i < 9; i++ {
		id := fmt.Sprintf("k-%d", i)
		q = append(q, queued{frameOf(t, map[string]any{"type": "ack", "id": id}), true})
		ids = append(ids, id)
		if i == 4 {
			q = append(q, queued{frameOf(t, map[string]string{"type": "pong", "ref": "p"}), false})
			ids = append(ids, "pong")
		}
	}
	one := len(q[0].data) - 4
	for _, max := range []int{one, one + 40, 2*one + 30, 3*one + 30, 4096} {
		s := &session{maxFrame: max, features: map[string]bool{"batch": true}}
		var seen []string
		data := s.pack(q)
		for len(data) > 0 {
			n := int(binary.BigEndian.Uint32(data[:4]))
			if n > max {
				t.Fatalf("max %d: a frame of %d bytes", max, n)
			}
			var fr struct {
				Type    string
				ID      string
				Results []struct{ Type, ID string }
			}
			if err := json.Unmarshal(data[4:4+n], &fr); err != nil {
				t.Fatalf("max %d: %v in %s", max, err, data[4:4+n])
			}
			switch fr.Type {
			case "results":
				if len(fr.Results) < 2 {
					t.Fatalf("max %d: a results frame of %d item", max, len(fr.Results))
				}
				for _, r := range fr.Results {
					seen = append(seen, r.ID)
				}
			case "pong":
				seen = append(seen, "pong")
			default:
				seen = append(seen, fr.ID)
			}
			data = data[4+n:]
		}
		if fmt.Sprint(seen) != fmt.Sprint(ids) {
			t.Fatalf("max %d: order %v, want %v", max, seen, ids)
		}
	}
	s := &session{maxFrame: 4096, features: map[string]bool{}}
	var plain []byte
	for _, f := range q {
		plain = append(plain, f.data...)
	}
	if !bytes.Equal(s.pack(q), plain) {
		t.Fatal("without batch the frames must leave as they are")
	}
	s.features["batch"] = true
	if got := s.pack(q); bytes.Count(got, resultsOpen) != 2 {
		t.Fatalf("with batch and room, two results frames around the pong: %s", got)
	}
}

func TestPublishMessageTraceContext(t *testing.T) {
	f := newFakeSkiff(t)
	h := New("go-test", Socket(f.path), quiet())
	h.Job("pub", func(ctx context.Context, task *Task) (Vars, error) {
		_, err := task.PublishMessage(ctx, Message{Name: "paid", Traceparent: task.Traceparent,
			Tracestate: task.Tracestate})
		return nil, err
	})
	done := start(t, f, h)
	f.handshake()
	tp := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	z := task("z-1", "pub", `{}`)
	z["traceparent"], z["tracestate"] = tp, "congo=t61rcWkgMzE"
	f.send(z)
	c := f.recv()
	params, _ := json.Marshal(c["params"])
	want := `{"correlation_key":"","name":"paid","time_to_live_ms":0,"traceparent":"` + tp +
		`","tracestate":"congo=t61rcWkgMzE"}`
	if c["method"] != "publish_message" || string(params) != want {
		t.Fatalf("call %s, want params %s", params, want)
	}
	f.send(map[string]any{"type": "reply", "ref": c["ref"], "ok": true,
		"result": map[string]any{"key": "1", "tenant_id": "<default>"}})
	if got := f.recv(); got["type"] != "complete" {
		t.Fatalf("result: %v", got)
	}
	f.send(task("z-2", "pub", `{}`)) // no trace context: the params leave it out
	c = f.recv()
	if p := c["params"].(map[string]any); p["traceparent"] != nil || p["tracestate"] != nil {
		t.Fatalf("params without trace context: %v", p)
	}
	f.send(map[string]any{"type": "reply", "ref": c["ref"], "ok": true,
		"result": map[string]any{"key": "2", "tenant_id": "<default>"}})
	f.recv()
	f.send(map[string]any{"type": "drain", "deadline": 0})
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	done <- nil
}

// enqueue returns once its frame is written, also when another goroutine wrote it: a frame
// queued behind a write under way reports the outcome of the write that carried it (here a
// failure, while the frame before it was written), so a drained session never closes before
// its results are out.
func TestEnqueueWaitsForTheWriteThatCarriesItsFrame(t *testing.T) {
	a, b := net.Pipe()
	s := &session{conn: a, maxFrame: 4096, features: map[string]bool{"batch": true}}
	s.wrote = sync.NewCond(&s.wmu)
	f1 := frameOf(t, map[string]any{"type": "ack", "id": "k-1"})
	f2 := frameOf(t, map[string]any{"type": "ack", "id": "k-2"})
	first := make(chan error, 1)
	go func() { first <- s.enqueue(f1, true) }()
	waitFor(t, s, func() bool { return s.flushing }) // blocked writing f1 to the pipe
	second := make(chan error, 1)
	go func() { second <- s.enqueue(f2, true) }()
	waitFor(t, s, func() bool { return s.queuedN == 2 })
	if _, err := io.ReadFull(b, make([]byte, len(f1))); err != nil {
		t.Fatal(err)
	}
	b.Close() // the write that carries f2 fails
	if err := <-first; err != nil {
		t.Fatalf("f1 was written (and read), yet: %v", err)
	}
	if err := <-second; err == nil {
		t.Fatal("f2 was never written, yet enqueue reported success")
	}
}

func waitFor(t *testing.T, s *session, cond func() bool) {
	for i := 0; i < 10000; i++ {
		s.wmu.Lock()
		ok := cond()
		s.wmu.Unlock()
		if ok {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("state not reached within 10 s")
}
