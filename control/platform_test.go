package control

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
)

// TestStreamInfoFollowsStatus: StreamInfo is cached, but this process's
// own status changes show at once: the engine's publish event (applied
// before the room hears "status") and the owner ending the stream. An
// unknown id is not cached: the stream created next is found.
func TestStreamInfoFollowsStatus(t *testing.T) {
	bus := newBus(t)
	s, c := startServer(t, testConfig(t, ""), bus)
	tk := c.register("ann", "streamer")
	ann := c.as(tk.AccessToken)
	in := ann.createStream("cached")
	bg := context.Background()

	info, err := s.StreamInfo(bg, in.ID)
	if err != nil || info.OwnerID != tk.User.ID || info.Live || info.Status == "" {
		t.Fatalf("new stream: %+v %v", info, err)
	}
	viewer := c.dial("")
	if env := viewer.request(map[string]string{"type": "subscribe", "room": in.ID}); env.Type != "ack" {
		t.Fatalf("subscribe: %+v", env)
	}
	if err := bus.AppendEvent(bg, engine.Event{Kind: engine.EventPublishStarted, StreamID: in.ID, NodeID: "n1", Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if env := viewer.expect("status", ""); !strings.Contains(string(env.Data), `"live"`) {
		t.Fatalf("status: %s", env.Data)
	}
	if info, err = s.StreamInfo(bg, in.ID); err != nil || !info.Live {
		t.Fatalf("after publish started: %+v %v", info, err)
	}
	ann.must(200, "POST", "/api/v1/streams/"+in.ID+"/end", nil, nil)
	if info, err = s.StreamInfo(bg, in.ID); err != nil || info.Live || info.Status != "ended" {
		t.Fatalf("after end: %+v %v", info, err)
	}

	if _, err := s.StreamInfo(bg, "st_missing"); !errors.Is(err, ErrNoStream) {
		t.Fatalf("unknown stream: %v", err)
	}
	next := ann.createStream("second")
	if info, err := s.StreamInfo(bg, next.ID); err != nil || info.OwnerID != tk.User.ID {
		t.Fatalf("second stream: %+v %v", info, err)
	}
}

// TestStreamInfoCacheSkipsStaleAnswers: an answer read from the database
// before a status change was applied is not cached after it (else a gift
// could reach a stream that just went offline for another second).
func TestStreamInfoCacheSkipsStaleAnswers(t *testing.T) {
	var c streamInfoCache
	_, ok, gen := c.get("s1")
	if ok {
		t.Fatal("empty cache hit")
	}
	c.forget("s1") // the status changes while the reader was at the database
	c.put(StreamInfo{ID: "s1", Live: true}, gen)
	if _, ok, _ := c.get("s1"); ok {
		t.Fatal("stale answer cached")
	}
	_, _, gen = c.get("s1")
	c.put(StreamInfo{ID: "s1", Live: false}, gen)
	if info, ok, _ := c.get("s1"); !ok || info.Live {
		t.Fatalf("fresh answer not cached: %+v %v", info, ok)
	}
}
