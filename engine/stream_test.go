package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func newTestEngine(t testing.TB) *Engine {
	t.Helper()
	e, err := New(DefaultConfig(), NewLocalBus(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

var testTracks = []*Track{
	{Codec: CodecH264, ClockRate: 90000, Width: 1280, Height: 720},
	{Codec: CodecAAC, ClockRate: 48000, SampleRate: 48000, Channels: 2},
}

func startStream(t testing.TB, e *Engine, key string) (*Publisher, *Stream) {
	t.Helper()
	p, err := e.Authorize(context.Background(), PublishRequest{Key: key, Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.Start(testTracks)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, s
}

// gop returns a GOP of n video units (the first is a keyframe) interleaved
// with audio units.
func gop(start time.Duration, n int) []*Unit {
	var out []*Unit
	for i := 0; i < n; i++ {
		pts := start + time.Duration(i)*33*time.Millisecond
		out = append(out, &Unit{Track: 0, PTS: pts, DTS: pts, Key: i == 0, NALUs: [][]byte{{0x65, 1, 2, 3}}})
		out = append(out, &Unit{Track: 1, PTS: pts, DTS: pts, Key: true, Payload: []byte{1, 2}})
	}
	return out
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSecondPublisherRefused(t *testing.T) {
	e := newTestEngine(t)
	p, _ := startStream(t, e, "demo")
	_, err := e.Authorize(context.Background(), PublishRequest{Key: "demo", Protocol: "test"})
	if !errors.Is(err, ErrStreamBusy) {
		t.Fatalf("second publisher: got %v, want ErrStreamBusy", err)
	}
	p.Close()
	p2, err := e.Authorize(context.Background(), PublishRequest{Key: "demo", Protocol: "test"})
	if err != nil {
		t.Fatalf("re-publish after close: %v", err)
	}
	p2.Close()
}

func TestMalformedKeyRefused(t *testing.T) {
	e := newTestEngine(t)
	for _, k := range []string{"", "a/b", "../x", "key with space", string(make([]byte, 200))} {
		if _, err := e.Authorize(context.Background(), PublishRequest{Key: k}); !errors.Is(err, ErrUnknownKey) {
			t.Errorf("key %q: got %v, want ErrUnknownKey", k, err)
		}
	}
}

func TestKeysModeAsksTheBus(t *testing.T) {
	conf := DefaultConfig()
	conf.PublishAuth = AuthKeys
	conf.AuthCacheTTL = time.Millisecond
	bus := NewLocalBus()
	e, err := New(conf, bus, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	if _, err := e.Authorize(ctx, PublishRequest{Key: "secret"}); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("unknown key: %v", err)
	}
	bus.SetStreamKey(ctx, "secret", Grant{StreamID: "public1"})
	time.Sleep(2 * time.Millisecond) // past the 1 ms cache TTL
	p, err := e.Authorize(ctx, PublishRequest{Key: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if p.StreamID() != "public1" {
		t.Fatalf("stream id %q, want public1 (playback never uses the key)", p.StreamID())
	}
	p.Close()
	bus.RevokeStreamKey(ctx, "secret")
	time.Sleep(2 * time.Millisecond)
	if _, err := e.Authorize(ctx, PublishRequest{Key: "secret"}); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("revoked key: %v", err)
	}
}

func TestReadersGetEveryUnitInOrder(t *testing.T) {
	e := newTestEngine(t)
	p, s := startStream(t, e, "demo")
	const readers = 5
	var got [readers][]*Unit
	var mu sync.Mutex
	for i := 0; i < readers; i++ {
		i := i
		if _, err := s.AddReader(ReaderOptions{Kind: "test"}, func(u *Unit) {
			mu.Lock()
			got[i] = append(got[i], u)
			mu.Unlock()
		}, nil); err != nil {
			t.Fatal(err)
		}
	}
	units := gop(0, 100)
	for _, u := range units {
		p.Write(u)
	}
	waitFor(t, "all units delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for i := range got {
			if len(got[i]) != len(units) {
				return false
			}
		}
		return true
	})
	for i := range got {
		for j, u := range got[i] {
			if u != units[j] {
				t.Fatalf("reader %d unit %d out of order", i, j)
			}
		}
	}
}

func TestNewReaderStartsAtLastKeyframe(t *testing.T) {
	e := newTestEngine(t)
	p, s := startStream(t, e, "demo")
	g1, g2 := gop(0, 30), gop(time.Second, 10)
	for _, u := range append(g1, g2...) {
		p.Write(u)
	}
	var first atomic.Pointer[Unit]
	var n atomic.Int64
	if _, err := s.AddReader(ReaderOptions{Kind: "test"}, func(u *Unit) {
		first.CompareAndSwap(nil, u)
		n.Add(1)
	}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "cached GOP delivered", func() bool { return n.Load() == int64(len(g2)) })
	if first.Load() != g2[0] {
		t.Fatal("new reader did not start at the last keyframe")
	}
}

func TestSlowReaderDropsToKeyframeWithoutStallingOthers(t *testing.T) {
	e := newTestEngine(t)
	p, s := startStream(t, e, "demo")
	block := make(chan struct{})
	var mu sync.Mutex
	var slowGot []*Unit
	slow, err := s.AddReader(ReaderOptions{Kind: "slow", QueueLen: 64}, func(u *Unit) {
		<-block
		mu.Lock()
		slowGot = append(slowGot, u)
		mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var fast atomic.Int64
	if _, err := s.AddReader(ReaderOptions{Kind: "fast", QueueLen: 4096}, func(*Unit) { fast.Add(1) }, nil); err != nil {
		t.Fatal(err)
	}
	g1, g2 := gop(0, 50), gop(2*time.Second, 20)
	writeDone := make(chan struct{})
	go func() {
		for _, u := range g1 {
			p.Write(u)
		}
		close(writeDone)
	}()
	select {
	case <-writeDone:
	case <-time.After(20 * time.Second):
		t.Fatal("publisher stalled behind a slow reader")
	}
	if slow.Dropped() == 0 {
		t.Fatal("slow reader dropped nothing")
	}
	// The reader catches up; it must then skip the rest of the GOP and
	// resume exactly at the next keyframe.
	close(block)
	waitFor(t, "slow reader drained its queue", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slowGot) >= 64
	})
	for _, u := range g2 {
		p.Write(u)
	}
	waitFor(t, "fast reader got everything", func() bool { return fast.Load() == int64(len(g1)+len(g2)) })
	waitFor(t, "slow reader got the second GOP", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(slowGot) > 0 && slowGot[len(slowGot)-1] == g2[len(g2)-1]
	})
	mu.Lock()
	defer mu.Unlock()
	idx := -1
	for i, u := range slowGot {
		if u == g2[0] {
			idx = i
		}
	}
	if idx < 0 {
		t.Fatal("slow reader did not resume at the next keyframe")
	}
	if len(slowGot)-idx != len(g2) {
		t.Fatalf("after resuming, got %d units, want the whole GOP (%d)", len(slowGot)-idx, len(g2))
	}
	if prev := slowGot[idx-1]; prev.Track == 0 && prev.PTS >= g2[0].PTS {
		t.Fatal("units out of order around the drop")
	}
}

func TestStreamEndDrainsReaders(t *testing.T) {
	e := newTestEngine(t)
	p, s := startStream(t, e, "demo")
	var n atomic.Int64
	ended := make(chan struct{})
	r, err := s.AddReader(ReaderOptions{Kind: "test"}, func(*Unit) { n.Add(1) }, func() { close(ended) })
	if err != nil {
		t.Fatal(err)
	}
	units := gop(0, 20)
	for _, u := range units {
		p.Write(u)
	}
	p.Close()
	<-ended
	<-r.Done()
	if n.Load() != int64(len(units)) {
		t.Fatalf("reader got %d units before end, want %d", n.Load(), len(units))
	}
	if _, err := e.Stream("demo"); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("ended stream still listed: %v", err)
	}
}

type recordingHook struct {
	mu      sync.Mutex
	started []string
	stopped []string
}

func (h *recordingHook) StreamStarted(s *Stream) {
	h.mu.Lock()
	h.started = append(h.started, s.ID())
	h.mu.Unlock()
}

func (h *recordingHook) StreamStopped(s *Stream) {
	h.mu.Lock()
	h.stopped = append(h.stopped, s.ID())
	h.mu.Unlock()
}

func TestHooksAndLifecycleEvents(t *testing.T) {
	e := newTestEngine(t)
	h := &recordingHook{}
	e.AddHook(h)
	p, _ := startStream(t, e, "demo")
	r, err := e.PublishRendition("demo", "360p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(testTracks); err != nil {
		t.Fatal(err)
	}
	if got := len(e.Renditions("demo")); got != 2 {
		t.Fatalf("renditions: %d, want 2", got)
	}
	r.Close()
	p.Close()
	h.mu.Lock()
	if len(h.started) != 2 || len(h.stopped) != 2 {
		t.Fatalf("hook saw started %v stopped %v", h.started, h.stopped)
	}
	h.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var kinds []EventKind
	e.Bus().ConsumeEvents(ctx, "test", "c1", func(ev Event) error {
		if ev.StreamID == "demo" || ev.Kind == EventNodeUp {
			kinds = append(kinds, ev.Kind)
		}
		if len(kinds) == 3 {
			cancel()
		}
		return nil
	})
	want := []EventKind{EventNodeUp, EventPublishStarted, EventPublishStopped}
	if len(kinds) != 3 {
		t.Fatalf("events %v, want %v (renditions are internal and emit none)", kinds, want)
	}
	for i := range want {
		if kinds[i] != want[i] {
			t.Fatalf("events %v, want %v", kinds, want)
		}
	}
}

func TestKickCommandCancelsPublisher(t *testing.T) {
	e := newTestEngine(t)
	p, _ := startStream(t, e, "demo")
	if err := SendCommand(context.Background(), e.Bus(), Command{Kind: CommandKick, StreamID: "demo", Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Context().Done():
	case <-time.After(20 * time.Second):
		t.Fatal("kick command did not cancel the publisher")
	}
	if !errors.Is(context.Cause(p.Context()), ErrKicked) {
		t.Fatalf("cause %v, want ErrKicked", context.Cause(p.Context()))
	}
}

func TestStatsPublished(t *testing.T) {
	conf := DefaultConfig()
	conf.StatsInterval = 50 * time.Millisecond
	bus := NewLocalBus()
	e, err := New(conf, bus, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	sub, _ := bus.Subscribe(context.Background(), TopicStats)
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	_, s := startStream(t, e, "demo")
	s.AddViewers(3)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-sub.C():
			if string(m.Payload) != "" && containsViewers(m.Payload, 3) {
				return
			}
		case <-deadline:
			t.Fatal("no stats with 3 viewers")
		}
	}
}

func containsViewers(p []byte, n int) bool {
	return strings.Contains(string(p), fmt.Sprintf(`"viewers":%d`, n))
}

func TestOpenModeMapsIssuedKeysToTheirStream(t *testing.T) {
	e := newTestEngine(t)
	ctx := context.Background()
	e.Bus().SetStreamKey(ctx, "sk_secret", Grant{StreamID: "pub42"})
	p, err := e.Authorize(ctx, PublishRequest{Key: "sk_secret"})
	if err != nil {
		t.Fatal(err)
	}
	if p.StreamID() != "pub42" {
		t.Fatalf("issued key published %q, want its stream pub42", p.StreamID())
	}
	p.Close()
	p, err = e.Authorize(ctx, PublishRequest{Key: "demo"})
	if err != nil || p.StreamID() != "demo" {
		t.Fatalf("open key: %v %v", p, err)
	}
	p.Close()
	e.Bus().RevokeStreamKey(ctx, "sk_revoked")
	if _, err := e.Authorize(ctx, PublishRequest{Key: "sk_revoked"}); !errors.Is(err, ErrKeyRevoked) {
		t.Fatalf("revoked key in open mode: %v", err)
	}
}
