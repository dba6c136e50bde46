package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	skiff "skiff/handler"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

func registerTopics(h *skiff.Handler) {
	h.Topic("conf.seen", confSeen)
	h.Topic("conf.ok", func(ctx context.Context, t *skiff.Task) error { return nil })
	h.Topic("conf.raise", func(ctx context.Context, t *skiff.Task) error {
		var v struct{ Msg string }
		_ = t.Decode(&v)
		return fmt.Errorf("bad record %s", v.Msg)
	})
	h.Topic("conf.retry", func(ctx context.Context, t *skiff.Task) error {
		var v struct{ Ms int64 }
		if err := t.Decode(&v); err != nil {
			return err
		}
		return skiff.Retry("try later", time.Duration(v.Ms)*time.Millisecond)
	})
	h.Topic("conf.retry-default", func(ctx context.Context, t *skiff.Task) error {
		return skiff.Retry("try later", 0)
	})
	h.Topic("conf.dlq", func(ctx context.Context, t *skiff.Task) error {
		return skiff.DeadLetter("poison record")
	})
	h.Topic("conf.async", func(ctx context.Context, t *skiff.Task) error {
		done := make(chan struct{})
		go func() { time.Sleep(10 * time.Millisecond); close(done) }()
		<-done
		return nil
	})
	h.Topic("conf.extend", func(ctx context.Context, t *skiff.Task) error {
		_, err := t.Extend(ctx, time.Second)
		return err
	})
	h.Topic("conf.wait-cancel", func(ctx context.Context, t *skiff.Task) error {
		v := struct{ Ms int64 }{Ms: 5000}
		if err := t.Decode(&v); err != nil {
			return err
		}
		sleepCtx(ctx, v.Ms)
		var reason any
		if r := t.CancelReason(); r != "" {
			reason = r
		}
		_, err := t.Produce(context.Background(), skiff.Produce{Topic: "conf.cancelled",
			Value: skiff.Vars{"cancelled": reason != nil, "reason": reason}})
		return err
	})
}

func confSeen(ctx context.Context, t *skiff.Task) error {
	r := t.Record
	if r == nil {
		return errors.New("no kafka metadata")
	}
	var headersB64 any = map[string]string{}
	if r.HeadersBase64 != nil {
		headersB64 = r.HeadersBase64
	}
	value := json.RawMessage(t.Value)
	if len(value) == 0 {
		value = json.RawMessage("null")
	}
	_, err := t.Produce(ctx, skiff.Produce{Topic: "conf.seen.out", Key: r.Key,
		Headers: map[string]string{"seen-by": "conformance"},
		Value: skiff.Vars{"id": t.ID, "source": t.Source, "topic": t.Topic, "value": value,
			"attempt": t.Attempt, "deadline": t.Deadline(), "traceparent": t.Traceparent,
			"record": skiff.Vars{"topic": r.Topic, "partition": r.Partition, "offset": r.Offset,
				"key": r.Key, "key_base64": r.KeyBase64, "headers": r.Headers,
				"headers_base64": headersB64, "timestamp": r.Timestamp,
				"schema_id": r.SchemaID}}})
	return err
}
