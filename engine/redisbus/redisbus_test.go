package redisbus_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/bustest"
	"github.com/liveengine/liveengine/engine/redisbus"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// testClaimIdle is short so that take-over subtests end quickly, and long
// enough that a loaded machine does not make live consumers look dead.
const testClaimIdle = 3 * time.Second

func quietLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.Default()
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func randomPrefix() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return "t" + hex.EncodeToString(b)
}

// newBus connects a bus to url with the given prefix, closed at cleanup.
func newBus(t testing.TB, url, prefix string) *redisbus.Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := redisbus.New(ctx, url, redisbus.Options{Prefix: prefix, ClaimIdle: testClaimIdle, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("redisbus.New: %v", err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// TestContract runs the bus contract on a real redis-server; every subtest
// gets its own key prefix on one shared server.
func TestContract(t *testing.T) {
	url := testsvc.Redis(t)
	bustest.Run(t, func(t *testing.T) engine.Bus { return newBus(t, url, randomPrefix()) })
}

func TestNewErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := redisbus.New(ctx, "http://nope", redisbus.Options{}); err == nil {
		t.Fatalf("bad url: want an error")
	}
	// A port nobody listens on: a clear connection error, not a hang.
	if _, err := redisbus.New(ctx, "redis://127.0.0.1:1/0", redisbus.Options{Logger: quietLogger()}); err == nil {
		t.Fatalf("unreachable redis: want an error")
	}
	for _, tc := range []struct {
		opts redisbus.Options
		key  string
	}{
		{redisbus.Options{Prefix: "has space"}, "bus.redis.prefix"},
		{redisbus.Options{EventsMaxLen: 5}, "bus.redis.events_max_len"},
		{redisbus.Options{ClaimIdle: time.Millisecond}, "bus.redis.claim_idle"},
	} {
		_, err := redisbus.New(ctx, "redis://127.0.0.1:1/0", tc.opts)
		if err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Fatalf("options %+v: err = %v, want one naming %s", tc.opts, err, tc.key)
		}
	}
	if err := redisbus.DefaultOptions().Validate(); err != nil {
		t.Fatalf("defaults do not validate: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	url := testsvc.Redis(t)
	prefix := randomPrefix()
	b := newBus(t, url, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.SetStreamKey(ctx, "", engine.Grant{StreamID: "s"}); !errors.Is(err, redisbus.ErrEmptyName) {
		t.Fatalf("empty key: %v", err)
	}
	if err := b.SetStreamKey(ctx, "k", engine.Grant{}); !errors.Is(err, redisbus.ErrEmptyName) {
		t.Fatalf("grant without stream: %v", err)
	}
	if _, err := b.AuthorizePublish(ctx, ""); !errors.Is(err, engine.ErrUnknownKey) {
		t.Fatalf("authorize empty key: %v", err)
	}
	if err := b.Publish(ctx, "", nil); !errors.Is(err, redisbus.ErrEmptyName) {
		t.Fatalf("publish empty topic: %v", err)
	}
	if err := b.ConsumeEvents(ctx, "", "c", nil); !errors.Is(err, redisbus.ErrEmptyName) {
		t.Fatalf("consume without group: %v", err)
	}

	raw := rawClient(t, url)
	// A grant written by something else is a clear error, not a panic.
	if err := raw.HSet(ctx, prefix+":key:broken", "grant", "{not json").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := b.AuthorizePublish(ctx, "broken"); !errors.Is(err, redisbus.ErrBadRecord) {
		t.Fatalf("broken grant: err = %v, want ErrBadRecord", err)
	}
	// A bad node entry is left out; the good ones are still listed.
	if err := raw.Set(ctx, prefix+":node:bad", "][", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	raw.SAdd(ctx, prefix+":nodes", "bad")
	if err := b.Heartbeat(ctx, engine.Node{ID: "good"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	nodes, err := b.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].ID != "good" {
		t.Fatalf("Nodes = %+v, %v; want only good", nodes, err)
	}

	// An undecodable event goes to the dead-letter stream and the group
	// carries on with the next one: nothing is lost, nothing stalls.
	if err := b.AppendEvent(ctx, engine.Event{Kind: engine.EventNodeUp, NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	if err := raw.XAdd(ctx, &redis.XAddArgs{Stream: prefix + ":events", Values: []any{"event", "garbage"}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := b.AppendEvent(ctx, engine.Event{Kind: engine.EventNodeDown, NodeID: "n1"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var kinds []engine.EventKind
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- b.ConsumeEvents(cctx, "control", "c1", func(ev engine.Event) error {
			mu.Lock()
			defer mu.Unlock()
			kinds = append(kinds, ev.Kind)
			return nil
		})
	}()
	waitFor(t, "two good events", func() bool { mu.Lock(); defer mu.Unlock(); return len(kinds) >= 2 })
	ccancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ConsumeEvents returned %v, want context.Canceled", err)
	}
	if want := []engine.EventKind{engine.EventNodeUp, engine.EventNodeDown}; !slices.Equal(kinds, want) {
		t.Fatalf("kinds = %v, want %v", kinds, want)
	}
	dead, err := raw.XRange(ctx, prefix+":events:dead", "-", "+").Result()
	if err != nil || len(dead) != 1 || dead[0].Values["field:event"] != "garbage" {
		t.Fatalf("dead-letter stream = %+v, %v; want the garbage entry", dead, err)
	}
	pending, err := raw.XPending(ctx, prefix+":events", "control").Result()
	if err != nil || pending.Count != 0 {
		t.Fatalf("pending = %+v, %v; want none", pending, err)
	}
}

func rawClient(t testing.TB, url string) *redis.Client {
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(bustest.Deadline)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

// TestTwoProcesses runs two Bus instances on one Redis, as two nodes would:
// each hears the other's pub/sub messages, they share a consumer group, and
// when one dies holding events the other takes them over.
func TestTwoProcesses(t *testing.T) {
	url := testsvc.Redis(t)
	prefix := randomPrefix()
	b1, b2 := newBus(t, url, prefix), newBus(t, url, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 2*bustest.Deadline)
	defer cancel()

	t.Run("PubSubAcross", func(t *testing.T) {
		s1, err := b1.Subscribe(ctx, "chat")
		if err != nil {
			t.Fatal(err)
		}
		defer s1.Close()
		s2, err := b2.Subscribe(ctx, "chat")
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		if err := b1.Publish(ctx, "chat", []byte("from 1")); err != nil {
			t.Fatal(err)
		}
		if err := b2.Publish(ctx, "chat", []byte("from 2")); err != nil {
			t.Fatal(err)
		}
		for i, s := range []engine.Subscription{s1, s2} {
			for _, want := range []string{"from 1", "from 2"} {
				select {
				case m := <-s.C():
					if string(m.Payload) != want {
						t.Fatalf("bus %d got %q, want %q", i+1, m.Payload, want)
					}
				case <-time.After(bustest.Deadline):
					t.Fatalf("bus %d: no message", i+1)
				}
			}
		}
	})

	t.Run("KeysAcross", func(t *testing.T) {
		if err := b1.SetStreamKey(ctx, "k1", engine.Grant{StreamID: "s1"}); err != nil {
			t.Fatal(err)
		}
		if g, err := b2.AuthorizePublish(ctx, "k1"); err != nil || g.StreamID != "s1" {
			t.Fatalf("other node: %+v, %v", g, err)
		}
		if err := b2.Heartbeat(ctx, engine.Node{ID: "engine-2"}, time.Minute); err != nil {
			t.Fatal(err)
		}
		if nodes, err := b1.Nodes(ctx); err != nil || len(nodes) != 1 || nodes[0].ID != "engine-2" {
			t.Fatalf("nodes seen by the other: %+v, %v", nodes, err)
		}
	})

	t.Run("SharedGroup", func(t *testing.T) {
		const n = 200
		for i := 0; i < n; i++ {
			b := b1
			if i%2 == 1 {
				b = b2
			}
			if err := b.AppendEvent(ctx, engine.Event{Kind: engine.EventPublishStarted, StreamID: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		var mu sync.Mutex
		by := map[string][]int{}
		total := func() int {
			mu.Lock()
			defer mu.Unlock()
			return len(by["1"]) + len(by["2"])
		}
		handler := func(me, other string) func(engine.Event) error {
			return func(ev engine.Event) error {
				mu.Lock()
				defer mu.Unlock()
				if len(by[other]) == 0 && len(by[me]) > 0 {
					return errors.New("waiting for the other node")
				}
				i, _ := strconv.Atoi(ev.StreamID)
				by[me] = append(by[me], i)
				return nil
			}
		}
		cctx, ccancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		for _, c := range []struct {
			bus       *redisbus.Bus
			me, other string
		}{{b1, "1", "2"}, {b2, "2", "1"}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.bus.ConsumeEvents(cctx, "shared", "node-"+c.me, handler(c.me, c.other))
			}()
		}
		waitFor(t, "all events", func() bool { return total() >= n })
		ccancel()
		wg.Wait()
		all := append(slices.Clone(by["1"]), by["2"]...)
		slices.Sort(all)
		for i := 0; i < n; i++ {
			if i >= len(all) || all[i] != i {
				t.Fatalf("events handled: %v, want each of 0..%d once", all, n-1)
			}
		}
		if len(by["1"]) == 0 || len(by["2"]) == 0 {
			t.Fatalf("not shared: node 1 %d, node 2 %d", len(by["1"]), len(by["2"]))
		}
	})

	t.Run("DeadProcessTakenOver", func(t *testing.T) {
		// A third process dies (its bus closes) while its handler holds an
		// event; the handler never returns in time. The other process's
		// consumer takes the event and the rest over after ClaimIdle.
		// Fresh buses: a new group reads the log from its start.
		prefix := randomPrefix()
		b2, b3 := newBus(t, url, prefix), newBus(t, url, prefix)
		for i := 0; i < 5; i++ {
			if err := b2.AppendEvent(ctx, engine.Event{Kind: engine.EventRecordingReady, StreamID: strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
		holding := make(chan struct{})
		release := make(chan struct{})
		defer close(release)
		go b3.ConsumeEvents(ctx, "dead", "node-3", func(ev engine.Event) error {
			if ev.StreamID == "2" {
				close(holding)
				<-release
				return errors.New("process gone")
			}
			return nil
		})
		select {
		case <-holding:
		case <-time.After(bustest.Deadline):
			t.Fatalf("dying consumer never reached event 2")
		}
		b3.Close()
		var mu sync.Mutex
		var got []string
		cctx, ccancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			b2.ConsumeEvents(cctx, "dead", "node-2", func(ev engine.Event) error {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, ev.StreamID)
				return nil
			})
		}()
		waitFor(t, "events taken over", func() bool { mu.Lock(); defer mu.Unlock(); return len(got) >= 3 })
		ccancel()
		<-done
		if want := []string{"2", "3", "4"}; !slices.Equal(got, want) {
			t.Fatalf("taken over %v, want %v", got, want)
		}
	})
}

// TestOneSubscriberConnection checks that the subscriptions of a Bus share
// one Redis connection, whatever the number of topics and subscribers, and
// that the last subscriber of a topic unsubscribes its channel.
func TestOneSubscriberConnection(t *testing.T) {
	url := testsvc.Redis(t)
	b := newBus(t, url, randomPrefix())
	raw := rawClient(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var subs []engine.Subscription
	for i := 0; i < 20; i++ {
		for j := 0; j < 2; j++ {
			s, err := b.Subscribe(ctx, "topic-"+strconv.Itoa(i))
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
	}
	counts := func() (conns, channels int) {
		list, err := raw.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(list, "\n") {
			if n := field(line, "sub"); n != "" && n != "0" {
				conns++
				channels, _ = strconv.Atoi(n)
			}
		}
		return conns, channels
	}
	if conns, channels := counts(); conns != 1 || channels != 20 {
		t.Fatalf("%d subscriber connections with %d channels, want 1 with 20", conns, channels)
	}
	for _, s := range subs[:20] { // both subscribers of topics 0..9
		s.Close()
	}
	waitFor(t, "10 channels unsubscribed", func() bool {
		conns, channels := counts()
		return conns == 1 && channels == 10
	})
	// Topic 15 still works for both its subscribers.
	if err := b.Publish(ctx, "topic-15", []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs[30:32] {
		select {
		case m := <-s.C():
			if string(m.Payload) != "x" || m.Topic != "topic-15" {
				t.Fatalf("got %q on %q", m.Payload, m.Topic)
			}
		case <-time.After(bustest.Deadline):
			t.Fatalf("no message on topic-15")
		}
	}
}

// field returns the value of name=value in a CLIENT LIST line.
func field(line, name string) string {
	for _, kv := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(kv, name+"="); ok {
			return v
		}
	}
	return ""
}

// TestSlowHandlerKeepsItsEvents checks that a consumer working slowly
// through a batch keeps refreshing the events it holds, so an idle consumer
// of the group does not take them over and handle them twice.
func TestSlowHandlerKeepsItsEvents(t *testing.T) {
	url := testsvc.Redis(t)
	prefix := randomPrefix()
	ctx, cancel := context.WithTimeout(context.Background(), 2*bustest.Deadline)
	defer cancel()
	mk := func() *redisbus.Bus {
		b, err := redisbus.New(ctx, url, redisbus.Options{Prefix: prefix, ClaimIdle: 2 * time.Second, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		return b
	}
	b1, b2 := mk(), mk()
	const n = 30
	for i := 0; i < n; i++ {
		if err := b1.AppendEvent(ctx, engine.Event{Kind: engine.EventPublishStarted, StreamID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	by := map[string][]string{}
	count := func(who string) int { mu.Lock(); defer mu.Unlock(); return len(by[who]) }
	total := func() int { mu.Lock(); defer mu.Unlock(); return len(by["slow"]) + len(by["idle"]) }
	cctx, ccancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		b1.ConsumeEvents(cctx, "g", "slow", func(ev engine.Event) error {
			time.Sleep(100 * time.Millisecond) // the handler's work
			mu.Lock()
			defer mu.Unlock()
			by["slow"] = append(by["slow"], ev.StreamID)
			return nil
		})
	}()
	waitFor(t, "the slow consumer to start", func() bool { return count("slow") > 0 })
	go func() {
		defer wg.Done()
		b2.ConsumeEvents(cctx, "g", "idle", func(ev engine.Event) error {
			mu.Lock()
			defer mu.Unlock()
			by["idle"] = append(by["idle"], ev.StreamID)
			return nil
		})
	}()
	waitFor(t, "every event handled", func() bool { return total() >= n })
	ccancel()
	wg.Wait()
	if total() != n {
		t.Fatalf("%d handlings of %d events (slow %v, idle %v): events handled twice", total(), n, by["slow"], by["idle"])
	}
}
