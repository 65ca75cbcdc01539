package redisbus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/bustest"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// TestRedisRestart restarts the redis-server (empty, as without
// persistence) under a running consumer and subscriber: both recover without
// being restarted themselves, and new events and messages flow again.
func TestRedisRestart(t *testing.T) {
	srv := testsvc.StartRedis(t)
	prefix := randomPrefix()
	b1, b2 := newBus(t, srv.URL, prefix), newBus(t, srv.URL, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 3*bustest.Deadline)
	defer cancel()

	sub, err := b2.Subscribe(ctx, "chat")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var mu sync.Mutex
	var kinds []engine.EventKind
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b2.ConsumeEvents(cctx, "control", "c1", func(ev engine.Event) error {
			mu.Lock()
			defer mu.Unlock()
			kinds = append(kinds, ev.Kind)
			return nil
		})
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(kinds) }
	if err := b1.AppendEvent(ctx, engine.Event{Kind: engine.EventNodeUp}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the event before the restart", func() bool { return count() == 1 })

	srv.Restart()

	// Appends fail while the clients reconnect; a node retries, as the
	// engine's next lifecycle event would.
	waitFor(t, "an append after the restart", func() bool {
		return b1.AppendEvent(ctx, engine.Event{Kind: engine.EventPublishStarted, StreamID: "s"}) == nil
	})
	waitFor(t, "the consumer to recover", func() bool { return count() >= 2 })
	// Pub/sub is ephemeral: publish until the resubscribed connection hears.
	deadline := time.After(bustest.Deadline)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for got := false; !got; {
		select {
		case m := <-sub.C():
			got = string(m.Payload) == "after"
		case <-tick.C:
			if err := b1.Publish(ctx, "chat", []byte("after")); err != nil {
				t.Logf("publish while reconnecting: %v", err)
			}
		case <-deadline:
			t.Fatalf("subscriber did not recover after the restart")
		}
	}
	ccancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if kinds[1] != engine.EventPublishStarted {
		t.Fatalf("events = %v", kinds)
	}
}
