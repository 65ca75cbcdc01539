package redisbus

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/engine"
)

// Publish implements engine.Bus with PUBLISH on the topic's channel.
func (b *Bus) Publish(ctx context.Context, topic string, payload []byte) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	if topic == "" {
		return fmt.Errorf("publish: topic: %w", ErrEmptyName)
	}
	if err := b.client.Publish(ctx, b.channel(topic), payload).Err(); err != nil {
		return b.fail(fmt.Sprintf("publish on %q", topic), err)
	}
	b.metrics.published.Add(1)
	return nil
}

// Subscribe implements engine.Bus. All subscriptions of a Bus share one
// Redis connection: the first local subscriber of a topic subscribes its
// channel, the last one to leave unsubscribes it. Subscribe returns once
// Redis has confirmed the subscription, so a message published after it
// returns is delivered.
func (b *Bus) Subscribe(ctx context.Context, topic string) (engine.Subscription, error) {
	if b.isClosed() {
		return nil, engine.ErrClosed
	}
	if topic == "" {
		return nil, fmt.Errorf("subscribe: topic: %w", ErrEmptyName)
	}
	ch := b.channel(topic)
	s := &subscription{bus: b, topic: topic, channel: ch, c: make(chan engine.Message, subQueueLen)}

	b.subMu.Lock()
	defer b.subMu.Unlock()
	b.mu.Lock()
	if b.isClosed() {
		b.mu.Unlock()
		return nil, engine.ErrClosed
	}
	if set := b.topics[ch]; set != nil {
		// The channel is subscribed already (subMu guarantees confirmed).
		set[s] = struct{}{}
		b.mu.Unlock()
		return s, nil
	}
	// Register before subscribing so nothing that arrives right after the
	// confirmation is missed.
	b.topics[ch] = map[*subscription]struct{}{s: {}}
	confirmed := make(chan struct{})
	b.waiters[ch] = append(b.waiters[ch], confirmed)
	if b.ps == nil {
		b.ps = b.client.Subscribe(context.WithoutCancel(ctx))
		b.dispatchDone = make(chan struct{})
		go b.dispatch(b.ps.ChannelWithSubscriptions(redis.WithChannelSize(subQueueLen)), b.dispatchDone)
	}
	ps := b.ps
	b.mu.Unlock()

	undo := func() {
		b.mu.Lock()
		delete(b.topics, ch)
		delete(b.waiters, ch)
		b.mu.Unlock()
	}
	if err := ps.Subscribe(ctx, ch); err != nil {
		undo()
		return nil, b.fail(fmt.Sprintf("subscribe to %q", topic), err)
	}
	timer := time.NewTimer(subscribeTimeout)
	defer timer.Stop()
	select {
	case <-confirmed:
		return s, nil
	case <-ctx.Done():
		undo()
		_ = ps.Unsubscribe(context.Background(), ch)
		return nil, fmt.Errorf("redisbus: subscribe to %q: %w", topic, ctx.Err())
	case <-b.closed:
		return nil, engine.ErrClosed
	case <-timer.C:
		undo()
		_ = ps.Unsubscribe(context.Background(), ch)
		return nil, fmt.Errorf("redisbus: subscribe to %q: not confirmed by redis within %s", topic, subscribeTimeout)
	}
}

// dispatch routes messages of the shared connection to local subscribers
// and wakes Subscribe calls when Redis confirms. It ends when the PubSub is
// closed.
func (b *Bus) dispatch(in <-chan any, done chan struct{}) {
	defer close(done)
	for m := range in {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			b.mu.Lock()
			for _, w := range b.waiters[m.Channel] {
				close(w)
			}
			delete(b.waiters, m.Channel)
			b.mu.Unlock()
		case *redis.Message:
			// One payload shared by every subscriber, as LocalBus does.
			msg := engine.Message{Payload: []byte(m.Payload)}
			b.mu.Lock()
			for s := range b.topics[m.Channel] {
				msg.Topic = s.topic
				select {
				case s.c <- msg:
					b.metrics.delivered.Add(1)
				default:
					b.metrics.dropped.Add(1)
					if s.dropped.Add(1) == 1 {
						b.log.Warn("subscriber too slow, messages dropped", "topic", s.topic)
					}
				}
			}
			b.mu.Unlock()
		}
	}
}

// subscription is one local subscriber of a topic.
type subscription struct {
	bus     *Bus
	topic   string
	channel string
	c       chan engine.Message
	once    sync.Once
	dropped atomic.Uint64
}

var _ engine.Subscription = (*subscription)(nil)

func (s *subscription) C() <-chan engine.Message { return s.c }

// Close implements engine.Subscription; the last subscriber of a topic
// unsubscribes the shared connection from its channel.
func (s *subscription) Close() error {
	s.shutdown(true)
	return nil
}

func (s *subscription) shutdown(unsubscribe bool) {
	s.once.Do(func() {
		b := s.bus
		if unsubscribe {
			b.subMu.Lock()
			defer b.subMu.Unlock()
		}
		b.mu.Lock()
		last := false
		if set := b.topics[s.channel]; set != nil {
			delete(set, s)
			if len(set) == 0 {
				delete(b.topics, s.channel)
				last = true
			}
		}
		close(s.c)
		ps := b.ps
		b.mu.Unlock()
		if unsubscribe && last && ps != nil && !b.isClosed() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := ps.Unsubscribe(ctx, s.channel); err != nil && !b.isClosed() {
				b.log.Warn("unsubscribe", "topic", s.topic, "error", err)
			}
		}
	})
}
