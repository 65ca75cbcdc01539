package redisbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/engine"
)

// AppendEvent implements engine.Bus: one XADD on the events stream, trimmed
// approximately to Options.EventsMaxLen.
func (b *Bus) AppendEvent(ctx context.Context, ev engine.Event) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	ev.ID = "" // the stream assigns it
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("redisbus: encode %s event: %w", ev.Kind, err)
	}
	err = b.client.XAdd(ctx, &redis.XAddArgs{
		Stream: b.eventsKey,
		MaxLen: b.opts.EventsMaxLen,
		Approx: true,
		// kind is for people reading the stream with redis-cli; event is
		// what consumers decode.
		Values: []any{"kind", string(ev.Kind), "event", data},
	}).Err()
	if err != nil {
		return b.fail(fmt.Sprintf("append %s event", ev.Kind), err)
	}
	b.metrics.appended.Add(1)
	return nil
}

// ConsumeEvents implements engine.Bus on a Redis consumer group. Each round
// it first re-reads this consumer's own unacknowledged events (a handler
// failed, or a previous process of the same name stopped), then takes over
// events another consumer has held longer than Options.ClaimIdle (it died),
// then waits for new ones. Redis errors are logged and retried; it returns
// only when ctx ends (ctx.Err()) or the bus closes (engine.ErrClosed).
func (b *Bus) ConsumeEvents(ctx context.Context, group, consumer string, fn func(engine.Event) error) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	if group == "" || consumer == "" {
		return fmt.Errorf("consume events: group %q, consumer %q: %w", group, consumer, ErrEmptyName)
	}
	c := &eventConsumer{bus: b, group: group, name: consumer, fn: fn}
	c.log = b.log.With("group", group, "consumer", consumer)
	return c.run(ctx)
}

// eventConsumer is one ConsumeEvents call.
type eventConsumer struct {
	bus   *Bus
	group string
	name  string
	fn    func(engine.Event) error
	log   *slog.Logger
}

func (c *eventConsumer) run(ctx context.Context) error {
	b := c.bus
	if err := c.createGroup(ctx); err != nil && ctx.Err() == nil && !b.isClosed() {
		// Not fatal: the read loop recreates the group when Redis answers.
		c.log.Warn("create consumer group", "error", err)
	}
	claimEvery := min(max(b.opts.ClaimIdle/2, 50*time.Millisecond), 5*time.Second)
	own := true // start with events a previous run of this consumer left
	claimCursor := "0-0"
	var lastSweep time.Time
	failing := false // a Redis error streak is being logged once
	for {
		if b.isClosed() {
			return engine.ErrClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var msgs []redis.XMessage
		var err error
		claimed := false
		switch {
		case own:
			msgs, err = c.read(ctx, "0", 0)
			if err == nil && len(msgs) == 0 {
				own = false
				continue
			}
		case time.Since(lastSweep) >= claimEvery:
			msgs, claimCursor, err = b.client.XAutoClaim(ctx, &redis.XAutoClaimArgs{
				Stream:   b.eventsKey,
				Group:    c.group,
				Consumer: c.name,
				MinIdle:  b.opts.ClaimIdle,
				Start:    claimCursor,
				Count:    readCount,
			}).Result()
			if err != nil || claimCursor == "0-0" || claimCursor == "" {
				claimCursor = "0-0"
				lastSweep = time.Now()
			}
			if err == nil && len(msgs) == 0 {
				continue
			}
			claimed = true
		default:
			msgs, err = c.read(ctx, ">", readBlock)
		}
		if err != nil {
			if errors.Is(err, redis.Nil) {
				continue // a blocking read timed out
			}
			if b.isClosed() {
				return engine.ErrClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if isNoGroup(err) {
				// The stream was deleted (FLUSHDB, a person); start again.
				if err := c.createGroup(ctx); err == nil {
					c.log.Warn("consumer group recreated")
					continue
				}
			}
			b.metrics.redisErrors.Add(1)
			if !failing {
				c.log.Warn("read events", "error", err)
				failing = true
			}
			c.pause(ctx, errorBackoff)
			continue
		}
		if failing {
			c.log.Info("read events recovered")
			failing = false
		}
		if claimed {
			b.metrics.claimed.Add(uint64(len(msgs)))
			c.log.Info("events taken over from a stopped consumer", "count", len(msgs), "first", msgs[0].ID)
		}
		switch c.handle(ctx, msgs, time.Now()) {
		case batchDone:
		case batchStale:
			// The rest is still ours: reading it again refreshes its idle
			// time, so other consumers do not take it over.
			own = true
		case batchFailed:
			// What was not acknowledged is in our pending list; read it
			// again first, in order, after a pause.
			own = true
			c.pause(ctx, failBackoff)
		}
	}
}

// pause waits d, or less if ctx ends or the bus closes; it reports whether
// the full time passed.
func (c *eventConsumer) pause(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
	case <-c.bus.closed:
	}
	return false
}

func (c *eventConsumer) createGroup(ctx context.Context) error {
	err := c.bus.client.XGroupCreateMkStream(ctx, c.bus.eventsKey, c.group, "0").Err()
	if err != nil && !strings.HasPrefix(err.Error(), "BUSYGROUP") {
		return c.bus.fail(fmt.Sprintf("create group %q", c.group), err)
	}
	return nil
}

func isNoGroup(err error) bool { return strings.HasPrefix(err.Error(), "NOGROUP") }

// read is XREADGROUP from id ("0": our pending entries, ">": new ones).
func (c *eventConsumer) read(ctx context.Context, id string, block time.Duration) ([]redis.XMessage, error) {
	args := &redis.XReadGroupArgs{
		Group:    c.group,
		Consumer: c.name,
		Streams:  []string{c.bus.eventsKey, id},
		Count:    readCount,
		Block:    block,
	}
	if block == 0 {
		args.Block = -1 // no BLOCK argument: answer at once
	}
	streams, err := c.bus.client.XReadGroup(ctx, args).Result()
	if err != nil {
		return nil, err
	}
	if len(streams) == 0 {
		return nil, nil
	}
	return streams[0].Messages, nil
}

// ackDelay bounds how long a handled event waits for its acknowledgement.
// Acknowledgements of a batch go in one XACK; a process that dies meanwhile
// sees at most those events delivered again (at-least-once), and a handler
// that blocks does not leave the events before it claimable by others.
const ackDelay = 50 * time.Millisecond

// acker batches the XACKs of one batch of events; a timer flushes them while
// a slow handler runs.
type acker struct {
	c      *eventConsumer
	ctx    context.Context
	mu     sync.Mutex
	ids    []string
	timer  *time.Timer
	failed bool
}

func (a *acker) add(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, id)
	if a.timer == nil {
		a.timer = time.AfterFunc(ackDelay, func() { a.flush() })
	}
}

// flush acknowledges what is queued; it reports false if any XACK of the
// batch failed (those events will be delivered again).
func (a *acker) flush() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	if len(a.ids) > 0 {
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		defer cancel()
		if err := a.c.bus.client.XAck(ctx, a.c.bus.eventsKey, a.c.group, a.ids...).Err(); err != nil {
			a.c.log.Warn("ack events; they will be delivered again", "first", a.ids[0], "count", len(a.ids), "error", err)
			a.failed = true
		} else {
			a.c.bus.metrics.handled.Add(uint64(len(a.ids)))
		}
		a.ids = a.ids[:0]
	}
	return !a.failed
}

// batchResult says how far handle got through a batch.
type batchResult int

const (
	// batchDone: every event was handled and acknowledged.
	batchDone batchResult = iota
	// batchStale: handling stopped because the batch was read so long ago
	// that other consumers would soon take its remaining events over.
	batchStale
	// batchFailed: a handler or Redis failed, or ctx ended.
	batchFailed
)

// handle gives msgs (read at readAt) to the handler in order and
// acknowledges the successes. It stops at the first failure, when ctx ends,
// or when the batch gets stale.
func (c *eventConsumer) handle(ctx context.Context, msgs []redis.XMessage, readAt time.Time) batchResult {
	b := c.bus
	// The acks must not be lost because the handler's context just ended.
	ack := &acker{c: c, ctx: context.WithoutCancel(ctx), ids: make([]string, 0, len(msgs))}
	b.mu.Lock()
	b.ackers[ack] = struct{}{}
	b.mu.Unlock()
	defer func() {
		// Also on a handler's panic: what was handled is acknowledged.
		ack.flush()
		b.mu.Lock()
		delete(b.ackers, ack)
		b.mu.Unlock()
	}()
	result := func(r batchResult) batchResult {
		if !ack.flush() {
			return batchFailed
		}
		return r
	}
	for _, m := range msgs {
		if ctx.Err() != nil || b.isClosed() {
			return result(batchFailed)
		}
		if time.Since(readAt) > b.opts.ClaimIdle/2 {
			return result(batchStale)
		}
		ev, err := decodeEvent(m.ID, m.Values)
		switch {
		case len(m.Values) == 0:
			// Trimmed by MAXLEN while pending: nothing left to deliver.
			c.log.Warn("event trimmed before it was handled", "id", m.ID)
		case err != nil:
			// Keep the bad entry where a person can read it, then move on:
			// one bad record must not stall the group.
			c.log.Error("undecodable event moved to the dead-letter stream", "id", m.ID, "error", err, "dead_letter", b.deadKey)
			vals := []any{"id", m.ID, "group", c.group, "error", err.Error()}
			for k, v := range m.Values {
				vals = append(vals, "field:"+k, v)
			}
			if derr := b.client.XAdd(ctx, &redis.XAddArgs{Stream: b.deadKey, MaxLen: b.opts.EventsMaxLen, Approx: true, Values: vals}).Err(); derr != nil {
				c.log.Error("dead-letter write failed; event stays pending", "id", m.ID, "error", derr)
				return result(batchFailed)
			}
			b.metrics.deadLettered.Add(1)
		default:
			if herr := c.fn(ev); herr != nil {
				b.metrics.failed.Add(1)
				c.log.Warn("event handler failed; event will be delivered again", "id", m.ID, "kind", ev.Kind, "stream", ev.StreamID, "error", herr)
				return result(batchFailed)
			}
		}
		ack.add(m.ID)
	}
	return result(batchDone)
}

// decodeEvent decodes a stream entry written by AppendEvent.
func decodeEvent(id string, values map[string]any) (engine.Event, error) {
	raw, ok := values["event"].(string)
	if !ok {
		return engine.Event{}, fmt.Errorf("event %s: no event field: %w", id, ErrBadRecord)
	}
	var ev engine.Event
	if err := json.Unmarshal([]byte(raw), &ev); err != nil {
		return engine.Event{}, fmt.Errorf("event %s: %w: %w", id, ErrBadRecord, err)
	}
	if ev.Kind == "" {
		return engine.Event{}, fmt.Errorf("event %s: no kind: %w", id, ErrBadRecord)
	}
	ev.ID = id
	return ev, nil
}

// decodeGrant decodes a stream key's grant written by SetStreamKey.
func decodeGrant(raw string) (engine.Grant, error) {
	var g engine.Grant
	if err := json.Unmarshal([]byte(raw), &g); err != nil {
		return engine.Grant{}, fmt.Errorf("grant: %w: %w", ErrBadRecord, err)
	}
	if g.StreamID == "" {
		return engine.Grant{}, fmt.Errorf("grant: no stream id: %w", ErrBadRecord)
	}
	return g, nil
}

// decodeNode decodes a registry entry written by Heartbeat.
func decodeNode(raw string) (engine.Node, error) {
	var n engine.Node
	if err := json.Unmarshal([]byte(raw), &n); err != nil {
		return engine.Node{}, fmt.Errorf("node: %w: %w", ErrBadRecord, err)
	}
	if n.ID == "" {
		return engine.Node{}, fmt.Errorf("node: no id: %w", ErrBadRecord)
	}
	return n, nil
}
