// Package redisbus is the Redis implementation of engine.Bus, for
// deployments with several engine and control nodes. It passes the same
// contract (engine/bustest) as the in-process LocalBus.
//
// Layout, under a key prefix (default "liveengine"):
//
//	PREFIX:key:<stream key>   hash {grant: JSON, revoked: 0|1}
//	PREFIX:events             stream of lifecycle events (XADD MAXLEN ~ N),
//	                          read by consumer groups (XREADGROUP, XACK,
//	                          XAUTOCLAIM for entries of dead consumers)
//	PREFIX:events:dead        events that could not be decoded, kept for a person
//	PREFIX:node:<id>          JSON of a node, expiring with its heartbeat TTL
//	PREFIX:nodes              set of node ids, pruned of expired ones on read
//	PREFIX:topic:<topic>      pub/sub channel
package redisbus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/engine"
)

var _ engine.Bus = (*Bus)(nil)

// ErrEmptyName is returned when a stream key, topic, group, consumer or node
// id is empty.
var ErrEmptyName = errors.New("redisbus: empty name")

// ErrBadRecord is returned when a record read from Redis cannot be decoded
// (written by something else, or corrupted).
var ErrBadRecord = errors.New("redisbus: bad record")

// Options tunes the Redis bus. Zero fields take DefaultOptions values.
type Options struct {
	// Prefix starts every Redis key and channel name, so several
	// deployments can share one Redis.
	Prefix string `yaml:"prefix"`
	// EventsMaxLen caps the events stream, approximately (XADD MAXLEN ~):
	// older events are trimmed even if a group has not read them.
	EventsMaxLen int64 `yaml:"events_max_len"`
	// ClaimIdle is how long an event may stay delivered but unacknowledged
	// by a consumer before another consumer of the group takes it over. It
	// must exceed the longest time a handler takes, or an event is handled
	// twice.
	ClaimIdle time.Duration `yaml:"claim_idle"`
	// Logger receives the bus's log lines; nil means slog.Default().
	Logger *slog.Logger `yaml:"-"`
}

// DefaultOptions returns the defaults.
func DefaultOptions() Options {
	return Options{
		Prefix:       "liveengine",
		EventsMaxLen: 100_000,
		ClaimIdle:    30 * time.Second,
	}
}

// withDefaults fills zero fields from DefaultOptions.
func (o Options) withDefaults() Options {
	d := DefaultOptions()
	if o.Prefix == "" {
		o.Prefix = d.Prefix
	}
	if o.EventsMaxLen == 0 {
		o.EventsMaxLen = d.EventsMaxLen
	}
	if o.ClaimIdle == 0 {
		o.ClaimIdle = d.ClaimIdle
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Validate checks the options; errors name the configuration key.
func (o Options) Validate() error {
	if o.Prefix == "" || strings.ContainsAny(o.Prefix, " \t\r\n") {
		return fmt.Errorf("bus.redis.prefix: %q must be non-empty and without spaces", o.Prefix)
	}
	if o.EventsMaxLen < 100 {
		return fmt.Errorf("bus.redis.events_max_len: %d is below 100", o.EventsMaxLen)
	}
	if o.ClaimIdle < 100*time.Millisecond {
		return fmt.Errorf("bus.redis.claim_idle: %s is below 100ms", o.ClaimIdle)
	}
	return nil
}

const (
	// readCount is how many events one XREADGROUP or XAUTOCLAIM fetches.
	readCount = 64
	// readBlock bounds a blocking read, so that a consumer notices its
	// context ending (go-redis does not interrupt a blocked read).
	readBlock = time.Second
	// failBackoff spaces deliveries of an event whose handler failed.
	failBackoff = 200 * time.Millisecond
	// errorBackoff spaces retries after Redis errors.
	errorBackoff = time.Second
	// subscribeTimeout bounds the wait for Redis to confirm a subscription.
	subscribeTimeout = 30 * time.Second
	// subQueueLen bounds a subscription's queue; a subscriber that does not
	// keep up misses messages, as LocalBus subscribers do.
	subQueueLen = 1024
)

// Bus is an engine.Bus on Redis. It is safe for concurrent use.
type Bus struct {
	client *redis.Client
	opts   Options
	log    *slog.Logger

	eventsKey string
	deadKey   string
	nodesKey  string

	closed    chan struct{}
	closeOnce sync.Once

	// subMu serialises SUBSCRIBE/UNSUBSCRIBE round trips, so a topic's
	// Redis subscription and its local subscribers never disagree.
	subMu sync.Mutex
	// mu guards the fields below, shared with the dispatch goroutine.
	mu           sync.Mutex
	ps           *redis.PubSub
	dispatchDone chan struct{}
	topics       map[string]map[*subscription]struct{} // Redis channel → local subscribers
	waiters      map[string][]chan struct{}            // Redis channel → Subscribe calls awaiting confirmation
	ackers       map[*acker]struct{}                   // batches of handled events not acknowledged yet

	metrics busMetrics
}

// New connects to the Redis at url (redis://[user:pass@]host:port/db or
// rediss:// for TLS) and checks it answers.
func New(ctx context.Context, url string, opts Options) (*Bus, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	ropt, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redisbus: url: %w", err)
	}
	client := redis.NewClient(ropt)
	if err := client.Ping(ctx).Err(); err != nil {
		client.Close()
		return nil, fmt.Errorf("redisbus: ping %s: %w", ropt.Addr, err)
	}
	p := opts.Prefix
	b := &Bus{
		client:    client,
		opts:      opts,
		log:       opts.Logger.With("component", "redisbus"),
		eventsKey: p + ":events",
		deadKey:   p + ":events:dead",
		nodesKey:  p + ":nodes",
		closed:    make(chan struct{}),
		topics:    map[string]map[*subscription]struct{}{},
		waiters:   map[string][]chan struct{}{},
		ackers:    map[*acker]struct{}{},
	}
	b.log.Info("redis bus connected", "addr", ropt.Addr, "db", ropt.DB, "prefix", p)
	return b, nil
}

func (b *Bus) isClosed() bool {
	select {
	case <-b.closed:
		return true
	default:
		return false
	}
}

// fail wraps a Redis error with context, or answers ErrClosed when the error
// is only the consequence of Close.
func (b *Bus) fail(op string, err error) error {
	if b.isClosed() {
		return fmt.Errorf("redisbus: %s: %w", op, engine.ErrClosed)
	}
	return fmt.Errorf("redisbus: %s: %w", op, err)
}

func (b *Bus) streamKey(key string) string { return b.opts.Prefix + ":key:" + key }
func (b *Bus) nodeKey(id string) string    { return b.opts.Prefix + ":node:" + id }
func (b *Bus) channel(topic string) string { return b.opts.Prefix + ":topic:" + topic }

// AuthorizePublish implements engine.Authorizer. The key itself never
// appears in errors or logs: it is a secret.
func (b *Bus) AuthorizePublish(ctx context.Context, key string) (engine.Grant, error) {
	if b.isClosed() {
		return engine.Grant{}, engine.ErrClosed
	}
	if key == "" {
		return engine.Grant{}, engine.ErrUnknownKey
	}
	vals, err := b.client.HMGet(ctx, b.streamKey(key), "grant", "revoked").Result()
	if err != nil {
		return engine.Grant{}, b.fail("authorize stream key", err)
	}
	if revoked, _ := vals[1].(string); revoked == "1" {
		return engine.Grant{}, engine.ErrKeyRevoked
	}
	raw, ok := vals[0].(string)
	if !ok {
		return engine.Grant{}, engine.ErrUnknownKey
	}
	g, err := decodeGrant(raw)
	if err != nil {
		return engine.Grant{}, fmt.Errorf("redisbus: authorize stream key: %w", err)
	}
	return g, nil
}

// SetStreamKey implements engine.Bus. Setting a revoked key issues it again.
func (b *Bus) SetStreamKey(ctx context.Context, key string, g engine.Grant) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	if key == "" {
		return fmt.Errorf("set stream key: %w", ErrEmptyName)
	}
	if g.StreamID == "" {
		return fmt.Errorf("set stream key: grant stream id: %w", ErrEmptyName)
	}
	data, err := json.Marshal(g)
	if err != nil {
		return fmt.Errorf("redisbus: encode grant of stream %q: %w", g.StreamID, err)
	}
	if err := b.client.HSet(ctx, b.streamKey(key), "grant", data, "revoked", "0").Err(); err != nil {
		return b.fail(fmt.Sprintf("set key of stream %q", g.StreamID), err)
	}
	return nil
}

// RevokeStreamKey implements engine.Bus.
func (b *Bus) RevokeStreamKey(ctx context.Context, key string) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	if key == "" {
		return fmt.Errorf("revoke stream key: %w", ErrEmptyName)
	}
	if err := b.client.HSet(ctx, b.streamKey(key), "revoked", "1").Err(); err != nil {
		return b.fail("revoke stream key", err)
	}
	return nil
}

// Heartbeat implements engine.Bus.
func (b *Bus) Heartbeat(ctx context.Context, n engine.Node, ttl time.Duration) error {
	if b.isClosed() {
		return engine.ErrClosed
	}
	if n.ID == "" {
		return fmt.Errorf("heartbeat: node id: %w", ErrEmptyName)
	}
	if ttl < time.Millisecond {
		return fmt.Errorf("redisbus: heartbeat of node %q: ttl %s is below 1ms", n.ID, ttl)
	}
	if n.Updated.IsZero() {
		n.Updated = time.Now()
	}
	data, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("redisbus: encode node %q: %w", n.ID, err)
	}
	_, err = b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, b.nodeKey(n.ID), data, ttl)
		p.SAdd(ctx, b.nodesKey, n.ID)
		return nil
	})
	if err != nil {
		return b.fail(fmt.Sprintf("heartbeat of node %q", n.ID), err)
	}
	return nil
}

// nodesScript reads every registered node and drops the ids whose entry
// expired, atomically, so a heartbeat racing the read is never unlisted.
var nodesScript = redis.NewScript(`
local out = {}
for _, id in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local v = redis.call('GET', ARGV[1] .. id)
  if v then
    table.insert(out, v)
  else
    redis.call('SREM', KEYS[1], id)
  end
end
return out
`)

// Nodes implements engine.Bus. Entries that cannot be decoded are logged and
// left out, so one bad entry does not hide the healthy nodes.
func (b *Bus) Nodes(ctx context.Context) ([]engine.Node, error) {
	if b.isClosed() {
		return nil, engine.ErrClosed
	}
	raws, err := nodesScript.Run(ctx, b.client, []string{b.nodesKey}, b.opts.Prefix+":node:").StringSlice()
	if err != nil {
		return nil, b.fail("list nodes", err)
	}
	out := make([]engine.Node, 0, len(raws))
	for _, raw := range raws {
		n, err := decodeNode(raw)
		if err != nil {
			b.log.Error("node registry entry skipped", "error", err)
			continue
		}
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// Close implements engine.Bus: subscriptions end, consumers return
// engine.ErrClosed, and the connections are released. It waits for the
// dispatch goroutine.
func (b *Bus) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.closed)
		b.mu.Lock()
		ps, done := b.ps, b.dispatchDone
		var subs []*subscription
		for _, set := range b.topics {
			for s := range set {
				subs = append(subs, s)
			}
		}
		b.mu.Unlock()
		for _, s := range subs {
			s.shutdown(false)
		}
		// Handled events are acknowledged before the connections go, so a
		// graceful stop redelivers nothing that was handled.
		b.mu.Lock()
		ackers := make([]*acker, 0, len(b.ackers))
		for a := range b.ackers {
			ackers = append(ackers, a)
		}
		b.mu.Unlock()
		for _, a := range ackers {
			a.flush()
		}
		var errs []error
		if ps != nil {
			if e := ps.Close(); e != nil {
				errs = append(errs, fmt.Errorf("redisbus: close pub/sub: %w", e))
			}
			<-done
		}
		if e := b.client.Close(); e != nil {
			errs = append(errs, fmt.Errorf("redisbus: close client: %w", e))
		}
		err = errors.Join(errs...)
		b.log.Info("redis bus closed")
	})
	return err
}
