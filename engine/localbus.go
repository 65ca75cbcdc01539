package engine

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"sync"
	"time"
)

var _ Bus = (*LocalBus)(nil)

// LocalBus is the in-process Bus used when engine and control run in one
// process. Events live in memory for the life of the process.
type LocalBus struct {
	mu      sync.Mutex
	keys    map[string]keyEntry
	events  []Event
	groups  map[string]*localGroup
	wake    chan struct{} // closed and replaced when an event is appended
	subs    map[string]map[*localSub]struct{}
	nodes   map[string]nodeEntry
	closed  bool
	nextSeq uint64
}

type keyEntry struct {
	grant   Grant
	revoked bool
}

type nodeEntry struct {
	node    Node
	expires time.Time
}

// localGroup tracks a consumer group: the next event to hand out and the
// events handed out but not acknowledged yet.
type localGroup struct {
	next    int
	pending map[int]struct{}
	retry   []int
}

// NewLocalBus returns an empty in-process bus.
func NewLocalBus() *LocalBus {
	return &LocalBus{
		keys:   map[string]keyEntry{},
		groups: map[string]*localGroup{},
		wake:   make(chan struct{}),
		subs:   map[string]map[*localSub]struct{}{},
		nodes:  map[string]nodeEntry{},
	}
}

// AuthorizePublish implements Authorizer.
func (b *LocalBus) AuthorizePublish(_ context.Context, key string) (Grant, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e, ok := b.keys[key]
	switch {
	case !ok:
		return Grant{}, ErrUnknownKey
	case e.revoked:
		return Grant{}, ErrKeyRevoked
	}
	return e.grant, nil
}

// SetStreamKey implements Bus.
func (b *LocalBus) SetStreamKey(_ context.Context, key string, g Grant) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.keys[key] = keyEntry{grant: g}
	return nil
}

// RevokeStreamKey implements Bus.
func (b *LocalBus) RevokeStreamKey(_ context.Context, key string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.keys[key]
	e.revoked = true
	b.keys[key] = e
	return nil
}

// AppendEvent implements Bus.
func (b *LocalBus) AppendEvent(_ context.Context, ev Event) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	b.nextSeq++
	ev.ID = strconv.FormatUint(b.nextSeq, 10)
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	b.events = append(b.events, ev)
	close(b.wake)
	b.wake = make(chan struct{})
	return nil
}

// ConsumeEvents implements Bus.
func (b *LocalBus) ConsumeEvents(ctx context.Context, group, consumer string, fn func(Event) error) error {
	for {
		b.mu.Lock()
		if b.closed {
			b.mu.Unlock()
			return ErrClosed
		}
		g := b.groups[group]
		if g == nil {
			g = &localGroup{pending: map[int]struct{}{}}
			b.groups[group] = g
		}
		idx := -1
		if len(g.retry) > 0 {
			idx, g.retry = g.retry[0], g.retry[1:]
		} else if g.next < len(b.events) {
			idx = g.next
			g.next++
		}
		var ev Event
		if idx >= 0 {
			ev = b.events[idx]
			g.pending[idx] = struct{}{}
		}
		wake := b.wake
		b.mu.Unlock()

		if idx < 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-wake:
			}
			continue
		}
		err := b.handle(g, idx, ev, fn)
		if err != nil {
			// Back off so a failing handler does not spin.
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

// handle runs fn on the event at idx. An event whose handler failed, or
// panicked (a supervisor may recover and restart the consumer), goes back to
// the group so it is delivered again.
func (b *LocalBus) handle(g *localGroup, idx int, ev Event, fn func(Event) error) (err error) {
	returned := false
	defer func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(g.pending, idx)
		if err != nil || !returned {
			g.retry = append([]int{idx}, g.retry...)
			// Wake the group's idle consumers: if this one is stopping, another
			// must pick the event up without waiting for a new append.
			if !b.closed {
				close(b.wake)
				b.wake = make(chan struct{})
			}
		}
	}()
	err = fn(ev)
	returned = true
	return err
}

// Publish implements Bus. A subscriber whose buffer is full misses the
// message, as a Redis pub/sub client that cannot keep up would.
func (b *LocalBus) Publish(_ context.Context, topic string, payload []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return ErrClosed
	}
	msg := Message{Topic: topic, Payload: payload}
	for s := range b.subs[topic] {
		select {
		case s.ch <- msg:
		default:
		}
	}
	return nil
}

// Subscribe implements Bus.
func (b *LocalBus) Subscribe(_ context.Context, topic string) (Subscription, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	s := &localSub{bus: b, topic: topic, ch: make(chan Message, 1024)}
	if b.subs[topic] == nil {
		b.subs[topic] = map[*localSub]struct{}{}
	}
	b.subs[topic][s] = struct{}{}
	return s, nil
}

type localSub struct {
	bus   *LocalBus
	topic string
	ch    chan Message
	once  sync.Once
}

func (s *localSub) C() <-chan Message { return s.ch }

func (s *localSub) Close() error {
	s.once.Do(func() {
		s.bus.mu.Lock()
		defer s.bus.mu.Unlock()
		if m := s.bus.subs[s.topic]; m != nil {
			delete(m, s)
			if len(m) == 0 {
				delete(s.bus.subs, s.topic)
			}
		}
		close(s.ch)
	})
	return nil
}

// Heartbeat implements Bus.
func (b *LocalBus) Heartbeat(_ context.Context, n Node, ttl time.Duration) error {
	if n.ID == "" {
		return errors.New("heartbeat: node id is empty")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if n.Updated.IsZero() {
		n.Updated = time.Now()
	}
	b.nodes[n.ID] = nodeEntry{node: n, expires: time.Now().Add(ttl)}
	return nil
}

// Nodes implements Bus.
func (b *LocalBus) Nodes(_ context.Context) ([]Node, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	out := make([]Node, 0, len(b.nodes))
	for id, e := range b.nodes {
		if now.After(e.expires) {
			delete(b.nodes, id)
			continue
		}
		out = append(out, e.node)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Close implements Bus: subscriptions end and consumers return ErrClosed.
func (b *LocalBus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	close(b.wake)
	b.wake = make(chan struct{})
	var subs []*localSub
	for _, m := range b.subs {
		for s := range m {
			subs = append(subs, s)
		}
	}
	b.mu.Unlock()
	for _, s := range subs {
		s.Close()
	}
	return nil
}
