// Command conformance is the Go SDK's conformance handler
// (handler-protocol/conformance/CONTRACT.md): the job types and topics every SDK serves
// with the same behaviours. Environment: SKIFF_SOCKET, CONF_NAME, CONF_CAPACITY (default
// 2), CONF_MODE: all (default), zeebe (job types only) or kafka (topics only).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	skiff "skiff/handler"
)

type params = map[string]any

func main() {
	capacity, err := strconv.Atoi(envOr("CONF_CAPACITY", "2"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "CONF_CAPACITY:", err)
		os.Exit(2)
	}
	h := skiff.New(envOr("CONF_NAME", "conformance-go"), skiff.Capacity(capacity),
		skiff.Backoff(50*time.Millisecond, 200*time.Millisecond))
	mode := envOr("CONF_MODE", "all")
	if mode != "kafka" {
		registerJobs(h)
	}
	if mode != "zeebe" {
		registerTopics(h)
	}
	if err := h.Run(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "conformance handler:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func callError(err error) (skiff.Vars, error) {
	var ce *skiff.CallError
	if errors.As(err, &ce) {
		return skiff.Vars{"error": skiff.Vars{"code": ce.Code, "message": ce.Message}}, nil
	}
	return nil, err
}

var (
	mu        sync.Mutex
	active    int
	maxActive int
)

func sleepCtx(ctx context.Context, ms int64) bool {
	select {
	case <-ctx.Done():
		return true
	case <-time.After(time.Duration(ms) * time.Millisecond):
		return false
	}
}

func registerJobs(h *skiff.Handler) {
	h.Job("conf-complete", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		var v struct{ N int64 }
		if err := t.Decode(&v); err != nil {
			return nil, err
		}
		return skiff.Vars{"doubled": v.N * 2, "seen": skiff.Vars{
			"id": t.ID, "job_type": t.JobType, "headers": t.Headers, "key": t.Job.Key,
			"retries": t.Job.Retries, "traceparent": t.Traceparent, "deadline": t.Deadline(),
			"attempt": t.Attempt}}, nil
	})
	h.Job("conf-none", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		return nil, nil
	})
	h.Job("conf-raise", confRaise)
	h.Job("conf-bpmn", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		return nil, skiff.BpmnError("RISK_TOO_HIGH", "too risky", skiff.Vars{"reason": "amount"})
	})
	h.Job("conf-jobfailed", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		return nil, skiff.Failed("try later", 2, 5*time.Second, skiff.Vars{"attempted": true})
	})
	h.Job("conf-async", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		done := make(chan skiff.Vars)
		go func() { time.Sleep(10 * time.Millisecond); done <- skiff.Vars{"async": true} }()
		return <-done, nil
	})
	h.Job("conf-sleep", confSleep)
	h.Job("conf-big", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		var v struct{ Size int }
		if err := t.Decode(&v); err != nil {
			return nil, err
		}
		blob := make([]byte, v.Size)
		for i := range blob {
			blob[i] = 'x'
		}
		return skiff.Vars{"blob": string(blob)}, nil
	})
	h.Job("conf-secret", confCall("reference", (*skiff.Task).Secret, h.Secret))
	h.Job("conf-token", confCall("audience", (*skiff.Task).Token, h.Token))
	h.Job("conf-echo", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		return skiff.Vars{"echo": t.Variables, "key": t.Job.Key,
			"process_instance_key": t.Job.ProcessInstanceKey}, nil
	})
	h.Job("conf-extend", func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		var v struct{ Ms int64 }
		if err := t.Decode(&v); err != nil {
			return nil, err
		}
		deadline, err := t.Extend(ctx, time.Duration(v.Ms)*time.Millisecond)
		if err != nil {
			var ce *skiff.CallError
			if errors.As(err, &ce) && ce.Code == "invalid_params" {
				return nil, err // refused locally: the job fails
			}
			return callError(err)
		}
		return skiff.Vars{"deadline": deadline, "task_deadline": t.Deadline()}, nil
	})
	h.Job("conf-wait-cancel", confWaitCancel)
	h.Job("conf-publish", confPublish(h))
	h.Job("conf-produce", confProduce(h))
}

func confRaise(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
	var v struct{ Msg string }
	_ = t.Decode(&v)
	return nil, fmt.Errorf("boom %s", v.Msg)
}

func confSleep(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
	v := struct{ Ms int64 }{Ms: 100}
	if err := t.Decode(&v); err != nil {
		return nil, err
	}
	mu.Lock()
	active++
	if active > maxActive {
		maxActive = active
	}
	seen := active
	mu.Unlock()
	time.Sleep(time.Duration(v.Ms) * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	active--
	return skiff.Vars{"active_at_start": seen, "max_active": maxActive}, nil
}

func confWaitCancel(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
	v := struct{ Ms int64 }{Ms: 5000}
	if err := t.Decode(&v); err != nil {
		return nil, err
	}
	sleepCtx(ctx, v.Ms)
	cancelled := t.CancelReason() != ""
	var extendError any
	if _, err := t.Extend(context.Background(), time.Second); err != nil {
		var ce *skiff.CallError
		if errors.As(err, &ce) {
			extendError = ce.Code
		}
	}
	var reason any
	if cancelled {
		reason = t.CancelReason()
	}
	_, err := t.PublishMessage(context.Background(), skiff.Message{Name: "cancelled",
		CorrelationKey: t.ID, Variables: skiff.Vars{"cancelled": cancelled, "reason": reason,
			"extend_error": extendError}})
	return skiff.Vars{"late": true}, err
}

// message reads conf-publish's params as the wire names them.
func message(p params) skiff.Message {
	m := skiff.Message{}
	m.Name, _ = p["name"].(string)
	m.CorrelationKey, _ = p["correlation_key"].(string)
	if vars, ok := p["variables"].(map[string]any); ok {
		m.Variables = vars
	}
	if ttl, ok := p["time_to_live_ms"].(json.Number); ok {
		m.TimeToLiveMs, _ = ttl.Int64()
	}
	m.MessageID, _ = p["message_id"].(string)
	m.TenantID, _ = p["tenant_id"].(string)
	m.Traceparent, _ = p["traceparent"].(string)
	m.Tracestate, _ = p["tracestate"].(string)
	return m
}

func decodeParams(t *skiff.Task) (params, string, error) {
	var v struct {
		Params json.RawMessage
		Via    string
	}
	if err := t.Decode(&v); err != nil {
		return nil, "", err
	}
	var p params
	dec := json.NewDecoder(bytesReader(v.Params))
	dec.UseNumber()
	return p, v.Via, dec.Decode(&p)
}

// confCall: conf-secret / conf-token (CONTRACT.md §4a): the call with v[arg], on the task or
// (v.via == "handler") on the handler; the result or the call error as variables.
func confCall(arg string,
	onTask func(*skiff.Task, context.Context, string) (string, error),
	onHandler func(context.Context, string) (string, error)) skiff.JobFunc {
	return func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		var v map[string]any
		if err := t.Decode(&v); err != nil {
			return nil, err
		}
		param, _ := v[arg].(string)
		var got string
		var err error
		if v["via"] == "handler" {
			got, err = onHandler(ctx, param)
		} else {
			got, err = onTask(t, ctx, param)
		}
		if err != nil {
			return callError(err)
		}
		return skiff.Vars{"result": got}, nil
	}
}

func confPublish(h *skiff.Handler) skiff.JobFunc {
	return func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		p, via, err := decodeParams(t)
		if err != nil {
			return nil, err
		}
		publish := t.PublishMessage
		if via == "handler" {
			publish = h.PublishMessage
		}
		res, err := publish(ctx, message(p))
		if err != nil {
			return callError(err)
		}
		return skiff.Vars{"result": res}, nil
	}
}

func confProduce(h *skiff.Handler) skiff.JobFunc {
	return func(ctx context.Context, t *skiff.Task) (skiff.Vars, error) {
		p, via, err := decodeParams(t)
		if err != nil {
			return nil, err
		}
		rec := skiff.Produce{Value: p["value"]}
		rec.Topic, _ = p["topic"].(string)
		if key, ok := p["key"].(string); ok {
			rec.Key = &key
		}
		if hs, ok := p["headers"].(map[string]any); ok {
			rec.Headers = map[string]string{}
			for k, v := range hs {
				rec.Headers[k], _ = v.(string)
			}
		}
		produce := t.Produce
		if via == "handler" {
			produce = h.Produce
		}
		res, err := produce(ctx, rec)
		if err != nil {
			return callError(err)
		}
		return skiff.Vars{"result": res}, nil
	}
}
