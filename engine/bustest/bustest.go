// Package bustest is the contract every engine.Bus implementation must pass.
// The same table of subtests runs against the in-process LocalBus and
// against redisbus on a real redis-server, so the embedded default and the
// multi-node deployment behave the same.
package bustest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
)

// Deadline bounds every wait of the contract. It is generous on purpose:
// the tests run on a small, shared, loaded machine, and a passing test never
// waits for it.
const Deadline = 45 * time.Second

// NewBus returns a fresh, empty bus for one subtest. It should close the bus
// at t.Cleanup; the contract also closes some buses itself, so Close must be
// safe to call twice. A Redis implementation should set its claim idle time
// to a few seconds so that the restart subtests end quickly.
type NewBus func(t *testing.T) engine.Bus

// Run runs the contract against the buses made by newBus. Subtests run in
// parallel; newBus must be safe for concurrent use.
func Run(t *testing.T, newBus NewBus) {
	tests := []struct {
		name string
		run  func(t *testing.T, b engine.Bus)
	}{
		{"StreamKeys", testStreamKeys},
		{"EventsInOrder", testEventsInOrder},
		{"EventsAppendedWhileConsuming", testEventsWhileConsuming},
		{"TwoGroupsEachGetAll", testTwoGroups},
		{"ConsumersInGroupShare", testConsumersShare},
		{"FailedHandlerRedelivered", testFailedRedelivered},
		{"RestartNewConsumerMissesNothing", func(t *testing.T, b engine.Bus) { testRestart(t, b, "b") }},
		{"RestartSameConsumerMissesNothing", func(t *testing.T, b engine.Bus) { testRestart(t, b, "a") }},
		{"IdleConsumerTakesOverStoppedOnesEvents", testTakeOver},
		{"PanickingHandlerLosesNothing", testPanic},
		{"PubSubFanOut", testPubSub},
		{"SubscriptionCloseEndsDelivery", testSubscriptionClose},
		{"Heartbeats", testHeartbeats},
		{"Commands", testCommands},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.run(t, newBus(t))
		})
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*Deadline)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it holds or Deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", Deadline, what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func testStreamKeys(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	if _, err := b.AuthorizePublish(ctx, "nope"); !errors.Is(err, engine.ErrUnknownKey) {
		t.Fatalf("unknown key: err = %v, want ErrUnknownKey", err)
	}
	grants := map[string]engine.Grant{
		"k-alice": {StreamID: "alice", UserID: "u1", Ladder: "720p", Record: true},
		"k-bob":   {StreamID: "bob"},
	}
	for k, g := range grants {
		if err := b.SetStreamKey(ctx, k, g); err != nil {
			t.Fatalf("SetStreamKey(%q): %v", k, err)
		}
	}
	for k, want := range grants {
		got, err := b.AuthorizePublish(ctx, k)
		if err != nil || got != want {
			t.Fatalf("AuthorizePublish(%q) = %+v, %v; want %+v", k, got, err, want)
		}
	}
	if err := b.RevokeStreamKey(ctx, "k-alice"); err != nil {
		t.Fatalf("RevokeStreamKey: %v", err)
	}
	if _, err := b.AuthorizePublish(ctx, "k-alice"); !errors.Is(err, engine.ErrKeyRevoked) {
		t.Fatalf("revoked key: err = %v, want ErrKeyRevoked", err)
	}
	if got, err := b.AuthorizePublish(ctx, "k-bob"); err != nil || got != grants["k-bob"] {
		t.Fatalf("revoking one key touched another: %+v, %v", got, err)
	}
	// Setting a key again issues it afresh.
	g2 := engine.Grant{StreamID: "alice", Ladder: "1080p"}
	if err := b.SetStreamKey(ctx, "k-alice", g2); err != nil {
		t.Fatalf("SetStreamKey again: %v", err)
	}
	if got, err := b.AuthorizePublish(ctx, "k-alice"); err != nil || got != g2 {
		t.Fatalf("re-set key = %+v, %v; want %+v", got, err, g2)
	}
}

// appendN appends events seq from..to-1 of stream sid.
func appendN(t *testing.T, b engine.Bus, sid string, from, to int) {
	t.Helper()
	ctx := ctxFor(t)
	for i := from; i < to; i++ {
		ev := engine.Event{
			Kind:     engine.EventPublishStarted,
			StreamID: sid,
			NodeID:   "node-1",
			Protocol: "rtmp",
			Remote:   "127.0.0.1:5000",
			Time:     time.Date(2026, 1, 2, 3, 4, 5, i*1000, time.UTC),
			Data:     map[string]string{"seq": strconv.Itoa(i)},
		}
		if err := b.AppendEvent(ctx, ev); err != nil {
			t.Fatalf("AppendEvent %d: %v", i, err)
		}
	}
}

func seqOf(t *testing.T, ev engine.Event) int {
	n, err := strconv.Atoi(ev.Data["seq"])
	if err != nil {
		t.Errorf("event %+v has no seq: %v", ev, err)
		return -1
	}
	return n
}

// collector records events handled successfully by one or more consumers.
type collector struct {
	mu   sync.Mutex
	seqs []int
	ids  []string
	by   map[string][]int // consumer → seqs
}

func newCollector() *collector { return &collector{by: map[string][]int{}} }

func (c *collector) add(consumer string, seq int, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seqs = append(c.seqs, seq)
	c.ids = append(c.ids, id)
	c.by[consumer] = append(c.by[consumer], seq)
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

func (c *collector) count(consumer string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.by[consumer])
}

func (c *collector) snapshot() ([]int, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.seqs), slices.Clone(c.ids)
}

// consume runs ConsumeEvents in a goroutine; stop cancels it and waits for
// it to return, failing the test if it does not.
func consume(t *testing.T, b engine.Bus, group, consumer string, fn func(engine.Event) error) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.ConsumeEvents(ctx, group, consumer, fn) }()
	var once sync.Once
	var result error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(Deadline):
				t.Errorf("ConsumeEvents(%s/%s) did not return within %s after its context ended", group, consumer, Deadline)
			}
		})
		return result
	}
	t.Cleanup(func() { stop() })
	return stop
}

func wantSeq(t *testing.T, what string, got []int, from, to int) {
	t.Helper()
	want := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		want = append(want, i)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got seqs %v, want %v", what, got, want)
	}
}

func testEventsInOrder(t *testing.T, b engine.Bus) {
	const n = 60
	appendN(t, b, "s1", 0, n)
	c := newCollector()
	var first engine.Event
	var firstOnce sync.Once
	stop := consume(t, b, "control", "c1", func(ev engine.Event) error {
		firstOnce.Do(func() { first = ev })
		c.add("c1", seqOf(t, ev), ev.ID)
		return nil
	})
	waitFor(t, "all events consumed", func() bool { return c.len() >= n })
	stop()
	seqs, ids := c.snapshot()
	wantSeq(t, "order", seqs, 0, n)
	seen := map[string]bool{}
	for _, id := range ids {
		if id == "" || seen[id] {
			t.Fatalf("event ids must be set and unique, got %q twice or empty", id)
		}
		seen[id] = true
	}
	want := engine.Event{
		ID:       first.ID,
		Kind:     engine.EventPublishStarted,
		StreamID: "s1",
		NodeID:   "node-1",
		Protocol: "rtmp",
		Remote:   "127.0.0.1:5000",
		Time:     time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		Data:     map[string]string{"seq": "0"},
	}
	if !first.Time.Equal(want.Time) {
		t.Fatalf("event time = %v, want %v", first.Time, want.Time)
	}
	first.Time = want.Time
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("event = %+v, want %+v", first, want)
	}
}

func testEventsWhileConsuming(t *testing.T, b engine.Bus) {
	c := newCollector()
	stop := consume(t, b, "control", "c1", func(ev engine.Event) error {
		c.add("c1", seqOf(t, ev), ev.ID)
		return nil
	})
	// An event without a time gets one from the bus.
	appendN(t, b, "s1", 0, 5)
	waitFor(t, "first events", func() bool { return c.len() >= 5 })
	appendN(t, b, "s1", 5, 20)
	waitFor(t, "later events", func() bool { return c.len() >= 20 })
	stop()
	seqs, _ := c.snapshot()
	wantSeq(t, "order", seqs, 0, 20)

	if err := b.AppendEvent(ctxFor(t), engine.Event{Kind: engine.EventNodeUp, NodeID: "n"}); err != nil {
		t.Fatalf("AppendEvent without time: %v", err)
	}
	var got engine.Event
	var mu sync.Mutex
	stop = consume(t, b, "other", "c1", func(ev engine.Event) error {
		mu.Lock()
		defer mu.Unlock()
		if ev.Kind == engine.EventNodeUp {
			got = ev
		}
		return nil
	})
	waitFor(t, "node_up event", func() bool { mu.Lock(); defer mu.Unlock(); return got.Kind != "" })
	stop()
	if got.Time.IsZero() {
		t.Fatalf("event appended without a time has none: %+v", got)
	}
}

func testTwoGroups(t *testing.T, b engine.Bus) {
	const n = 30
	appendN(t, b, "s1", 0, n)
	a, z := newCollector(), newCollector()
	stopA := consume(t, b, "control", "c1", func(ev engine.Event) error { a.add("c1", seqOf(t, ev), ev.ID); return nil })
	stopZ := consume(t, b, "recorder", "c1", func(ev engine.Event) error { z.add("c1", seqOf(t, ev), ev.ID); return nil })
	waitFor(t, "both groups consumed all events", func() bool { return a.len() >= n && z.len() >= n })
	stopA()
	stopZ()
	sa, _ := a.snapshot()
	sz, _ := z.snapshot()
	wantSeq(t, "group control", sa, 0, n)
	wantSeq(t, "group recorder", sz, 0, n)
}

func testConsumersShare(t *testing.T, b engine.Bus) {
	// More events than any sane read batch, so that one consumer cannot
	// take them all in one read.
	const n = 300
	appendN(t, b, "s1", 0, n)
	c := newCollector()
	handler := func(me, other string) func(engine.Event) error {
		return func(ev engine.Event) error {
			// Refuse (the event is redelivered) until the other consumer has
			// handled one, so that the test proves the work is shared
			// whatever the scheduling.
			if c.count(other) == 0 && c.count(me) > 0 {
				return errors.New("waiting for the other consumer")
			}
			c.add(me, seqOf(t, ev), ev.ID)
			return nil
		}
	}
	stop1 := consume(t, b, "control", "c1", handler("c1", "c2"))
	stop2 := consume(t, b, "control", "c2", handler("c2", "c1"))
	waitFor(t, "all events consumed", func() bool { return c.len() >= n })
	stop1()
	stop2()
	seqs, _ := c.snapshot()
	slices.Sort(seqs)
	wantSeq(t, "events handled once each", seqs, 0, n)
	if c.count("c1") == 0 || c.count("c2") == 0 {
		t.Fatalf("work not shared: c1 handled %d, c2 handled %d", c.count("c1"), c.count("c2"))
	}
}

func testFailedRedelivered(t *testing.T, b engine.Bus) {
	appendN(t, b, "s1", 0, 6)
	var mu sync.Mutex
	var calls []int
	failed := 0
	stop := consume(t, b, "control", "c1", func(ev engine.Event) error {
		mu.Lock()
		defer mu.Unlock()
		s := seqOf(t, ev)
		calls = append(calls, s)
		if s == 2 && failed < 2 {
			failed++
			return fmt.Errorf("handler failure %d", failed)
		}
		return nil
	})
	waitFor(t, "all events handled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls) >= 8
	})
	stop()
	mu.Lock()
	defer mu.Unlock()
	if want := []int{0, 1, 2, 2, 2, 3, 4, 5}; !slices.Equal(calls, want) {
		t.Fatalf("handler calls %v, want %v (a failed event comes back before later ones)", calls, want)
	}
}

// testRestart stops consumer "a" in the middle of the log while it is
// handling an event, appends more, and starts consumer next in the same
// group: a restarted control plane misses nothing.
func testRestart(t *testing.T, b engine.Bus, next string) {
	const n, more = 10, 5
	appendN(t, b, "s1", 0, n)
	first := newCollector()
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	doneA := make(chan error, 1)
	go func() {
		doneA <- b.ConsumeEvents(ctxA, "control", "a", func(ev engine.Event) error {
			s := seqOf(t, ev)
			if s == 4 {
				// The process is told to stop while handling event 4: the
				// handler gives up, the event is not acknowledged.
				cancelA()
				return context.Canceled
			}
			first.add("a", s, ev.ID)
			return nil
		})
	}()
	select {
	case <-doneA:
	case <-time.After(Deadline):
		t.Fatalf("consumer a did not return after its context ended")
	}
	seqs, _ := first.snapshot()
	wantSeq(t, "before the stop", seqs, 0, 4)

	appendN(t, b, "s1", n, n+more)
	second := newCollector()
	stop := consume(t, b, "control", next, func(ev engine.Event) error {
		second.add(next, seqOf(t, ev), ev.ID)
		return nil
	})
	waitFor(t, "the events after the stop", func() bool { return second.len() >= n+more-4 })
	stop()
	got, _ := second.snapshot()
	if next == "a" {
		// The same consumer resumes its own pending events first, so the
		// order holds across the restart.
		wantSeq(t, "after the restart", got, 4, n+more)
		return
	}
	// Another consumer may see new events before it claims the stopped
	// consumer's pending ones; what matters is that none is lost and none
	// acknowledged is redone.
	slices.Sort(got)
	wantSeq(t, "after the restart (sorted)", got, 4, n+more)
}

// testTakeOver stops a consumer while it handles an event and checks that
// another consumer of the group, already waiting for new events, receives
// the abandoned events without any new event being appended.
func testTakeOver(t *testing.T, b engine.Bus) {
	appendN(t, b, "s1", 0, 4)
	first := newCollector()
	blocked := make(chan struct{})
	ctxA, cancelA := context.WithCancel(context.Background())
	defer cancelA()
	doneA := make(chan error, 1)
	go func() {
		doneA <- b.ConsumeEvents(ctxA, "control", "a", func(ev engine.Event) error {
			s := seqOf(t, ev)
			if s == 2 {
				close(blocked)
				<-ctxA.Done()
				return ctxA.Err()
			}
			first.add("a", s, ev.ID)
			return nil
		})
	}()
	select {
	case <-blocked:
	case <-time.After(Deadline):
		t.Fatalf("consumer a never reached event 2")
	}
	second := newCollector()
	stop := consume(t, b, "control", "b", func(ev engine.Event) error {
		second.add("b", seqOf(t, ev), ev.ID)
		return nil
	})
	// Once b has caught up with what it can see, it waits for new events;
	// that is when a stops.
	waitFor(t, "consumer b to handle an event", func() bool { return second.len() >= 1 })
	cancelA()
	select {
	case <-doneA:
	case <-time.After(Deadline):
		t.Fatalf("consumer a did not return after its context ended")
	}
	waitFor(t, "consumer b to take over events 2 and 3", func() bool { return second.len() >= 2 })
	stop()
	got, _ := second.snapshot()
	slices.Sort(got)
	wantSeq(t, "taken over", got, 2, 4)
	firstSeqs, _ := first.snapshot()
	wantSeq(t, "handled by a", firstSeqs, 0, 2)
}

// testPanic: a handler panics, a supervisor recovers and starts the
// consumer again; the event it panicked on is delivered again, and none it
// had handled is.
func testPanic(t *testing.T, b engine.Bus) {
	appendN(t, b, "s1", 0, 5)
	c := newCollector()
	panicked := false
	fn := func(ev engine.Event) error {
		s := seqOf(t, ev)
		if s == 2 && !panicked {
			panicked = true
			panic("handler bug")
		}
		c.add("a", s, ev.ID)
		return nil
	}
	// The first run panics; the supervisor recovers it.
	func() {
		defer func() {
			if r := recover(); r != "handler bug" {
				t.Errorf("recovered %v, want the handler's panic", r)
			}
		}()
		b.ConsumeEvents(ctxFor(t), "control", "a", fn)
	}()
	stop := consume(t, b, "control", "a", fn)
	waitFor(t, "every event handled", func() bool { return c.len() >= 5 })
	stop()
	got, _ := c.snapshot()
	wantSeq(t, "handled across the panic", got, 0, 5)
}

func recv(t *testing.T, s engine.Subscription) engine.Message {
	t.Helper()
	select {
	case m, ok := <-s.C():
		if !ok {
			t.Fatalf("subscription closed while a message was expected")
		}
		return m
	case <-time.After(Deadline):
		t.Fatalf("no message within %s", Deadline)
	}
	return engine.Message{}
}

func testPubSub(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	var subs []engine.Subscription
	for i := 0; i < 3; i++ {
		s, err := b.Subscribe(ctx, "chat")
		if err != nil {
			t.Fatalf("Subscribe: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		subs = append(subs, s)
	}
	other, err := b.Subscribe(ctx, "gifts")
	if err != nil {
		t.Fatalf("Subscribe other topic: %v", err)
	}
	t.Cleanup(func() { other.Close() })
	if err := b.Publish(ctx, "nobody-listens", []byte("x")); err != nil {
		t.Fatalf("Publish to a topic without subscribers: %v", err)
	}
	const n = 20
	for i := 0; i < n; i++ {
		if err := b.Publish(ctx, "chat", []byte("m"+strconv.Itoa(i))); err != nil {
			t.Fatalf("Publish: %v", err)
		}
	}
	if err := b.Publish(ctx, "gifts", []byte("g")); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	for si, s := range subs {
		for i := 0; i < n; i++ {
			m := recv(t, s)
			if m.Topic != "chat" || string(m.Payload) != "m"+strconv.Itoa(i) {
				t.Fatalf("subscriber %d message %d = %q on %q, want %q on chat", si, i, m.Payload, m.Topic, "m"+strconv.Itoa(i))
			}
		}
	}
	// The other topic's subscriber got exactly its own message: had chat
	// messages leaked to it, they would come first.
	if m := recv(t, other); m.Topic != "gifts" || string(m.Payload) != "g" {
		t.Fatalf("gifts subscriber got %q on %q", m.Payload, m.Topic)
	}
}

// drainClosed waits until s's channel is closed, discarding messages.
func drainClosed(t *testing.T, s engine.Subscription, what string) {
	t.Helper()
	timeout := time.After(Deadline)
	for {
		select {
		case _, ok := <-s.C():
			if !ok {
				return
			}
		case <-timeout:
			t.Fatalf("%s: subscription channel not closed within %s", what, Deadline)
		}
	}
}

func testSubscriptionClose(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	s1, err := b.Subscribe(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Subscribe(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	if err := b.Publish(ctx, "stats", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, s1); string(m.Payload) != "one" {
		t.Fatalf("s1 got %q", m.Payload)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("Subscription.Close: %v", err)
	}
	if err := s1.Close(); err != nil {
		t.Fatalf("second Subscription.Close: %v", err)
	}
	drainClosed(t, s1, "closed subscription")
	if err := b.Publish(ctx, "stats", []byte("two")); err != nil {
		t.Fatal(err)
	}
	// The other subscriber of the topic still hears it.
	if m := recv(t, s2); string(m.Payload) != "one" {
		t.Fatalf("s2 first = %q", m.Payload)
	}
	if m := recv(t, s2); string(m.Payload) != "two" {
		t.Fatalf("s2 second = %q", m.Payload)
	}
	// Subscribing again after every subscriber of a topic left works.
	s2.Close()
	s3, err := b.Subscribe(ctx, "stats")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s3.Close() })
	if err := b.Publish(ctx, "stats", []byte("three")); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, s3); string(m.Payload) != "three" {
		t.Fatalf("s3 got %q", m.Payload)
	}
}

func testHeartbeats(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	if err := b.Heartbeat(ctx, engine.Node{}, time.Minute); err == nil {
		t.Fatalf("Heartbeat of a node without id: want an error")
	}
	now := time.Now().UTC().Truncate(time.Millisecond)
	long := engine.Node{ID: "engine-b", RTMPURL: "rtmp://b:1935/live", HTTPURL: "http://b:8888", Streams: 3, Readers: 40, CPU: 0.5, Updated: now}
	short := engine.Node{ID: "engine-a", RTMPURL: "rtmp://a:1935/live", Streams: 1, Updated: now}
	if err := b.Heartbeat(ctx, long, time.Minute); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	if err := b.Heartbeat(ctx, short, 1500*time.Millisecond); err != nil {
		t.Fatalf("Heartbeat: %v", err)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatalf("Nodes: %v", err)
	}
	if len(nodes) == 1 && nodes[0].ID == long.ID {
		// The short entry may already have expired on a very slow machine;
		// refresh it and look again.
		if err := b.Heartbeat(ctx, short, 1500*time.Millisecond); err != nil {
			t.Fatal(err)
		}
		if nodes, err = b.Nodes(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if len(nodes) != 2 {
		t.Fatalf("Nodes = %+v, want engine-a and engine-b", nodes)
	}
	for i, want := range []engine.Node{short, long} {
		got := nodes[i]
		if !got.Updated.Equal(want.Updated) {
			t.Fatalf("node %d updated = %v, want %v", i, got.Updated, want.Updated)
		}
		got.Updated = want.Updated
		if got != want {
			t.Fatalf("node %d = %+v, want %+v (sorted by id)", i, got, want)
		}
	}
	// A refreshed entry replaces the old one.
	long.Streams = 4
	if err := b.Heartbeat(ctx, long, time.Minute); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "engine-a to expire", func() bool {
		nodes, err := b.Nodes(ctx)
		if err != nil {
			t.Fatalf("Nodes: %v", err)
		}
		return len(nodes) == 1
	})
	nodes, err = b.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != long.ID || nodes[0].Streams != 4 {
		t.Fatalf("after expiry Nodes = %+v, %v; want only engine-b with 4 streams", nodes, err)
	}
}

func testCommands(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	sub, err := b.Subscribe(ctx, engine.TopicCommands)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	stats, err := b.Subscribe(ctx, engine.TopicStats)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stats.Close() })
	want := engine.Command{Kind: engine.CommandKick, NodeID: "engine-1", StreamID: "alice", Reason: "terms of service"}
	if err := engine.SendCommand(ctx, b, want); err != nil {
		t.Fatalf("SendCommand: %v", err)
	}
	m := recv(t, sub)
	var got engine.Command
	if err := json.Unmarshal(m.Payload, &got); err != nil {
		t.Fatalf("command payload %q: %v", m.Payload, err)
	}
	if m.Topic != engine.TopicCommands || got != want {
		t.Fatalf("got %+v on %q, want %+v on %q", got, m.Topic, want, engine.TopicCommands)
	}
	st := engine.Stats{StreamID: "alice", NodeID: "engine-1", Time: time.Now().UTC(), Viewers: 7, BitrateIn: 2_500_000, FPS: 30}
	if err := engine.PublishStats(ctx, b, st); err != nil {
		t.Fatalf("PublishStats: %v", err)
	}
	var gotStats engine.Stats
	if err := json.Unmarshal(recv(t, stats).Payload, &gotStats); err != nil {
		t.Fatal(err)
	}
	if gotStats.Viewers != 7 || gotStats.StreamID != "alice" {
		t.Fatalf("stats = %+v", gotStats)
	}
}

func testClose(t *testing.T, b engine.Bus) {
	ctx := ctxFor(t)
	sub, err := b.Subscribe(ctx, "chat")
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, b, "s1", 0, 3)
	c := newCollector()
	done := make(chan error, 1)
	go func() {
		done <- b.ConsumeEvents(context.Background(), "control", "c1", func(ev engine.Event) error {
			c.add("c1", seqOf(t, ev), ev.ID)
			return nil
		})
	}()
	waitFor(t, "events consumed", func() bool { return c.len() >= 3 })
	if err := b.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, engine.ErrClosed) {
			t.Fatalf("ConsumeEvents after Close returned %v, want ErrClosed", err)
		}
	case <-time.After(Deadline):
		t.Fatalf("ConsumeEvents did not return after Close")
	}
	drainClosed(t, sub, "after bus Close")
	if err := b.AppendEvent(ctx, engine.Event{Kind: engine.EventNodeDown}); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("AppendEvent after Close = %v, want ErrClosed", err)
	}
	if err := b.Publish(ctx, "chat", []byte("x")); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe(ctx, "chat"); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if err := b.ConsumeEvents(ctx, "control", "c1", func(engine.Event) error { return nil }); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("ConsumeEvents on a closed bus = %v, want ErrClosed", err)
	}
	if err := b.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}
