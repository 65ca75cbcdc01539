package redisbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/bustest"
	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// TestEngineOverRedis runs an engine node and a control plane in one test,
// each with its own Bus on one real Redis, as two machines would: the
// control plane issues a key, the engine authorizes a real clip's publisher
// with it, lifecycle events, stats and heartbeats reach the control plane,
// and the control plane's kick command disconnects the publisher.
func TestEngineOverRedis(t *testing.T) {
	url := testsvc.Redis(t)
	prefix := randomPrefix()
	control, nodeBus := newBus(t, url, prefix), newBus(t, url, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*bustest.Deadline)
	defer cancel()

	conf := engine.DefaultConfig()
	conf.NodeID = "engine-redis"
	conf.PublishAuth = engine.AuthKeys
	conf.StatsInterval = 200 * time.Millisecond
	eng, err := engine.New(conf, nodeBus, quietLogger().With("node", conf.NodeID))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)

	stats, err := control.Subscribe(ctx, engine.TopicStats)
	if err != nil {
		t.Fatal(err)
	}
	defer stats.Close()
	var mu sync.Mutex
	var events []engine.Event
	cctx, ccancel := context.WithCancel(ctx)
	consumed := make(chan struct{})
	go func() {
		defer close(consumed)
		control.ConsumeEvents(cctx, "control", "control-1", func(ev engine.Event) error {
			mu.Lock()
			defer mu.Unlock()
			events = append(events, ev)
			return nil
		})
	}()
	t.Cleanup(func() { ccancel(); <-consumed })
	hasEvent := func(kind engine.EventKind, stream string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range events {
			if ev.Kind == kind && ev.StreamID == stream && ev.NodeID == conf.NodeID {
				return true
			}
		}
		return false
	}

	if err := control.SetStreamKey(ctx, "sk-alice-0123", engine.Grant{StreamID: "alice"}); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Authorize(ctx, engine.PublishRequest{Key: "sk-unknown-99", Protocol: "test"}); !errors.Is(err, engine.ErrUnknownKey) {
		t.Fatalf("unknown key: err = %v, want ErrUnknownKey", err)
	}
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 160, Height: 90, FPS: 10, Seconds: 2, Audio: true})
	pub := enginetest.Publish(t, eng, "sk-alice-0123", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	if pub.StreamID() != "alice" {
		t.Fatalf("publisher stream = %q, want alice (from the control plane's grant)", pub.StreamID())
	}

	waitFor(t, "node_up and publish_started at the control plane", func() bool {
		return hasEvent(engine.EventNodeUp, "") && hasEvent(engine.EventPublishStarted, "alice")
	})
	waitFor(t, "the engine in the node registry", func() bool {
		nodes, err := control.Nodes(ctx)
		return err == nil && len(nodes) == 1 && nodes[0].ID == conf.NodeID && nodes[0].Streams == 1
	})
	deadline := time.After(bustest.Deadline)
	for got := false; !got; {
		select {
		case m := <-stats.C():
			var s engine.Stats
			if err := json.Unmarshal(m.Payload, &s); err != nil {
				t.Fatalf("stats payload: %v", err)
			}
			got = s.StreamID == "alice" && s.BitrateIn > 0
		case <-deadline:
			t.Fatalf("no stats sample with a bit rate for alice")
		}
	}

	if err := engine.SendCommand(ctx, control, engine.Command{Kind: engine.CommandKick, NodeID: conf.NodeID, StreamID: "alice", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pub.Context().Done():
	case <-time.After(bustest.Deadline):
		t.Fatalf("kick command did not disconnect the publisher")
	}
	if cause := context.Cause(pub.Context()); !errors.Is(cause, engine.ErrKicked) {
		t.Fatalf("publisher ended by %v, want ErrKicked", cause)
	}
	waitFor(t, "publish_stopped at the control plane", func() bool { return hasEvent(engine.EventPublishStopped, "alice") })

	// Revocation reaches the engine once its short auth cache expires.
	if err := control.RevokeStreamKey(ctx, "sk-alice-0123"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revoked key refused", func() bool {
		p, err := eng.Authorize(ctx, engine.PublishRequest{Key: "sk-alice-0123", Protocol: "test"})
		if err == nil {
			p.Close()
			return false
		}
		return errors.Is(err, engine.ErrKeyRevoked)
	})
}
