// Package engine is LiveEngine's media core: the registry of live streams,
// the fan-out hub that carries units from one publisher to many readers, and
// the engine side of the coordination bus.
package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"time"
)

// Publish authorization modes.
const (
	// AuthOpen maps keys the control plane issued to their stream and any
	// other well-formed key to the stream of the same id; for development.
	AuthOpen = "open"
	// AuthKeys asks the bus (the control plane's key records).
	AuthKeys = "keys"
)

// Config configures the engine.
type Config struct {
	// NodeID names this engine node on the bus.
	NodeID string `yaml:"node_id"`
	// PublishAuth is "open" or "keys".
	PublishAuth string `yaml:"-"`
	// AuthCacheTTL is how long a key's authorization answer is reused.
	AuthCacheTTL time.Duration `yaml:"auth_cache_ttl"`
	// ReaderQueueLen is the default bound of a reader's queue, in units.
	ReaderQueueLen int `yaml:"reader_queue_len"`
	// GOPCacheMaxUnits bounds the GOP cache of a stream.
	GOPCacheMaxUnits int `yaml:"gop_cache_max_units"`
	// StatsInterval is how often live stats and heartbeats are published.
	StatsInterval time.Duration `yaml:"stats_interval"`
}

// DefaultConfig returns the engine defaults.
func DefaultConfig() Config {
	return Config{
		NodeID:           "engine-1",
		PublishAuth:      AuthOpen,
		AuthCacheTTL:     3 * time.Second,
		ReaderQueueLen:   1024,
		GOPCacheMaxUnits: 4096,
		StatsInterval:    2 * time.Second,
	}
}

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	if c.PublishAuth != AuthOpen && c.PublishAuth != AuthKeys {
		return fmt.Errorf("publish.auth: %q is neither %q nor %q", c.PublishAuth, AuthOpen, AuthKeys)
	}
	if c.ReaderQueueLen < 16 {
		return fmt.Errorf("engine.reader_queue_len: %d is below 16", c.ReaderQueueLen)
	}
	if c.GOPCacheMaxUnits < 16 {
		return fmt.Errorf("engine.gop_cache_max_units: %d is below 16", c.GOPCacheMaxUnits)
	}
	if c.StatsInterval <= 0 {
		return fmt.Errorf("engine.stats_interval: must be positive")
	}
	if c.NodeID == "" {
		return fmt.Errorf("engine.node_id: must not be empty")
	}
	return nil
}

// Hook is told when streams start and stop. Hooks run synchronously on the
// publisher's goroutine and must not block: the packager, the transcoder and
// the SFU start their own goroutines from them.
type Hook interface {
	StreamStarted(s *Stream)
	StreamStopped(s *Stream)
}

// Engine is the stream registry.
type Engine struct {
	conf    Config
	bus     Bus
	log     *slog.Logger
	metrics *metrics

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu         sync.Mutex
	publishers map[string]*Publisher // by stream id, claimed before going live
	streams    map[string]*Stream
	hooks      []Hook
	authCache  map[string]authEntry
	advertise  Node
	closed     bool
}

// SetAdvertise sets the URLs this node announces in its heartbeats, so the
// control plane can send publishers and players to it.
func (e *Engine) SetAdvertise(rtmpURL, httpURL string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advertise.RTMPURL, e.advertise.HTTPURL = rtmpURL, httpURL
}

type authEntry struct {
	grant   Grant
	err     error
	expires time.Time
}

// New builds an engine on bus. Start begins its background work.
func New(conf Config, bus Bus, log *slog.Logger) (*Engine, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if bus == nil {
		return nil, errors.New("engine: nil bus")
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &Engine{
		conf:       conf,
		bus:        bus,
		log:        log.With("component", "engine"),
		ctx:        ctx,
		cancel:     cancel,
		publishers: map[string]*Publisher{},
		streams:    map[string]*Stream{},
		authCache:  map[string]authEntry{},
	}
	e.metrics = newMetrics(e)
	return e, nil
}

// Config returns the engine's configuration.
func (e *Engine) Config() Config { return e.conf }

// Bus returns the engine's bus.
func (e *Engine) Bus() Bus { return e.bus }

// Logger returns the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Start subscribes to commands and starts the stats and heartbeat loop.
func (e *Engine) Start() error {
	sub, err := e.bus.Subscribe(e.ctx, TopicCommands)
	if err != nil {
		return fmt.Errorf("engine: subscribe to commands: %w", err)
	}
	e.wg.Add(2)
	go e.commandLoop(sub)
	go e.statsLoop()
	e.appendEvent(Event{Kind: EventNodeUp})
	return nil
}

// Close ends every stream (publishers are disconnected, readers drain) and
// stops the engine's background work.
func (e *Engine) Close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	pubs := make([]*Publisher, 0, len(e.publishers))
	for _, p := range e.publishers {
		pubs = append(pubs, p)
	}
	e.mu.Unlock()
	// Renditions are closed by their producers when their source ends;
	// close sources first so hooks see an orderly shutdown.
	sort.Slice(pubs, func(i, j int) bool { return !pubs[i].internal && pubs[j].internal })
	for _, p := range pubs {
		p.Close()
	}
	e.appendEvent(Event{Kind: EventNodeDown})
	e.cancel()
	e.wg.Wait()
}

// AddHook registers h for stream start and stop notifications. Streams that
// are already live are reported to h at once.
func (e *Engine) AddHook(h Hook) {
	e.mu.Lock()
	e.hooks = append(e.hooks, h)
	live := e.streamListLocked()
	e.mu.Unlock()
	for _, s := range live {
		h.StreamStarted(s)
	}
}

// Stream returns the live stream with id.
func (e *Engine) Stream(id string) (*Stream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.streams[id]
	if !ok {
		return nil, fmt.Errorf("stream %q: %w", id, ErrStreamNotFound)
	}
	return s, nil
}

// Streams returns every live stream, sorted by id.
func (e *Engine) Streams() []*Stream {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.streamListLocked()
}

// Renditions returns the live streams of a group (the source stream and
// its renditions), sorted by id.
func (e *Engine) Renditions(group string) []*Stream {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*Stream
	for _, s := range e.streams {
		if s.group == group {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (e *Engine) streamListLocked() []*Stream {
	out := make([]*Stream, 0, len(e.streams))
	for _, s := range e.streams {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

var keyPattern = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

// ValidKey reports whether key is a well-formed stream key or stream id.
func ValidKey(key string) bool { return keyPattern.MatchString(key) }

// PublishRequest describes a publisher asking to go live.
type PublishRequest struct {
	// Key is the stream key the publisher presented.
	Key string
	// Protocol is "rtmp", "whip" or "rtsp".
	Protocol string
	// Remote is the publisher's address, for logs.
	Remote string
}

// Authorize checks a publisher's key and claims its stream. It is called
// before any media is read. The returned Publisher must be closed.
func (e *Engine) Authorize(ctx context.Context, req PublishRequest) (*Publisher, error) {
	if !ValidKey(req.Key) {
		return nil, fmt.Errorf("publish %q: %w", req.Key, ErrUnknownKey)
	}
	grant, err := e.authorize(ctx, req.Key)
	if err != nil {
		e.log.Warn("publish refused", "protocol", req.Protocol, "remote", req.Remote, "error", err)
		return nil, fmt.Errorf("publish: %w", err)
	}
	return e.claim(grant, req.Protocol, req.Remote, false)
}

// PublishRendition claims the stream "GROUP/NAME" for an internal producer
// (the transcoder). It needs no key.
func (e *Engine) PublishRendition(group, name string) (*Publisher, error) {
	g := Grant{StreamID: group + "/" + name}
	p, err := e.claim(g, "transcode", "", true)
	if err != nil {
		return nil, err
	}
	p.group, p.rendition = group, name
	return p, nil
}

func (e *Engine) authorize(ctx context.Context, key string) (Grant, error) {
	now := time.Now()
	e.mu.Lock()
	c, ok := e.authCache[key]
	e.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.grant, c.err
	}
	g, err := e.bus.AuthorizePublish(ctx, key)
	if err != nil && !errors.Is(err, ErrUnknownKey) && !errors.Is(err, ErrKeyRevoked) {
		// Bus trouble is not cached: the next attempt asks again.
		return Grant{}, fmt.Errorf("authorize: %w", err)
	}
	if e.conf.PublishAuth == AuthOpen && errors.Is(err, ErrUnknownKey) {
		// Open mode: keys the control plane issued still map to their
		// stream (so a secret key never shows in a playback URL); any other
		// key publishes the stream of the same name.
		g, err = Grant{StreamID: key}, nil
	}
	if err == nil && !ValidKey(g.StreamID) {
		return Grant{}, fmt.Errorf("authorize: invalid stream id %q in grant", g.StreamID)
	}
	e.mu.Lock()
	e.authCache[key] = authEntry{grant: g, err: err, expires: now.Add(e.conf.AuthCacheTTL)}
	if len(e.authCache) > 10000 {
		for k, v := range e.authCache {
			if now.After(v.expires) {
				delete(e.authCache, k)
			}
		}
	}
	e.mu.Unlock()
	return g, err
}

func (e *Engine) claim(g Grant, protocol, remote string, internal bool) (*Publisher, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if _, busy := e.publishers[g.StreamID]; busy {
		return nil, fmt.Errorf("publish %q: %w", g.StreamID, ErrStreamBusy)
	}
	ctx, cancel := context.WithCancelCause(e.ctx)
	p := &Publisher{
		eng:       e,
		grant:     g,
		protocol:  protocol,
		remote:    remote,
		internal:  internal,
		group:     g.StreamID,
		rendition: "source",
		ctx:       ctx,
		cancel:    cancel,
	}
	e.publishers[g.StreamID] = p
	return p, nil
}

// Kick disconnects the publisher of stream id; it reports whether there was one.
func (e *Engine) Kick(id string, reason error) bool {
	e.mu.Lock()
	p := e.publishers[id]
	e.mu.Unlock()
	if p == nil {
		return false
	}
	e.log.Info("publisher kicked", "stream", id, "reason", reason)
	p.cancel(reason)
	return true
}

// Publisher is the right to publish one stream, from authorization to Close.
type Publisher struct {
	eng       *Engine
	grant     Grant
	protocol  string
	remote    string
	internal  bool
	group     string
	rendition string
	ctx       context.Context
	cancel    context.CancelCauseFunc

	mu     sync.Mutex
	stream *Stream
	closed bool
}

// StreamID returns the id of the claimed stream.
func (p *Publisher) StreamID() string { return p.grant.StreamID }

// Grant returns the authorization grant.
func (p *Publisher) Grant() Grant { return p.grant }

// Context is cancelled when the publisher must stop: kicked by a command,
// its key revoked, or the engine closing. context.Cause tells why.
func (p *Publisher) Context() context.Context { return p.ctx }

// Start makes the stream live with its tracks; hooks are told.
func (p *Publisher) Start(tracks []*Track) (*Stream, error) {
	if len(tracks) == 0 {
		return nil, ErrNoTracks
	}
	e := p.eng
	s := &Stream{
		id:        p.grant.StreamID,
		group:     p.group,
		rendition: p.rendition,
		protocol:  p.protocol,
		tracks:    tracks,
		videoIdx:  -1,
		started:   time.Now(),
		eng:       e,
		maxGOP:    e.conf.GOPCacheMaxUnits,
		done:      make(chan struct{}),
		log:       e.log.With("stream", p.grant.StreamID),
	}
	for i, t := range tracks {
		if t.IsVideo() {
			s.videoIdx = i
			break
		}
	}
	p.mu.Lock()
	if p.closed || p.stream != nil {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.stream = s
	p.mu.Unlock()

	e.mu.Lock()
	e.streams[s.id] = s
	hooks := append([]Hook(nil), e.hooks...)
	e.mu.Unlock()

	desc := make([]string, len(tracks))
	for i, t := range tracks {
		desc[i] = t.Codec.String()
		if t.Width > 0 {
			desc[i] += fmt.Sprintf(" %dx%d", t.Width, t.Height)
		}
	}
	s.log.Info("stream live", "protocol", p.protocol, "remote", p.remote, "tracks", desc)
	if !p.internal {
		e.appendEvent(Event{Kind: EventPublishStarted, StreamID: s.id, Protocol: p.protocol, Remote: p.remote})
	}
	for _, h := range hooks {
		h.StreamStarted(s)
	}
	return s, nil
}

// Stream returns the live stream, nil before Start.
func (p *Publisher) Stream() *Stream {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stream
}

// Write fans a unit out to the stream's readers. Calls must come from one
// goroutine at a time. It never blocks on readers.
func (p *Publisher) Write(u *Unit) {
	p.stream.write(u)
}

// Close ends the publish: the stream goes offline, readers drain and stop,
// hooks are told, and the stream id can be published again.
func (p *Publisher) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	s := p.stream
	p.mu.Unlock()
	p.cancel(ErrClosed)

	e := p.eng
	e.mu.Lock()
	if e.publishers[p.grant.StreamID] == p {
		delete(e.publishers, p.grant.StreamID)
	}
	if s != nil && e.streams[s.id] == s {
		delete(e.streams, s.id)
	}
	hooks := append([]Hook(nil), e.hooks...)
	e.mu.Unlock()
	if s == nil {
		return
	}
	s.end()
	e.metrics.endedBytesIn.Add(s.bytesIn.Load())
	e.metrics.endedUnitsIn.Add(s.unitsIn.Load())
	s.log.Info("stream offline", "duration", time.Since(s.started).Round(time.Millisecond).String(), "bytes_in", s.bytesIn.Load())
	for _, h := range hooks {
		h.StreamStopped(s)
	}
	if !p.internal {
		e.appendEvent(Event{Kind: EventPublishStopped, StreamID: s.id, Protocol: p.protocol, Remote: p.remote})
	}
}

func (e *Engine) appendEvent(ev Event) {
	ev.NodeID = e.conf.NodeID
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.bus.AppendEvent(ctx, ev); err != nil {
		e.log.Error("lifecycle event lost", "kind", ev.Kind, "stream", ev.StreamID, "error", err)
	}
}

// ErrKicked is the cause of a publisher's context when a command kicked it.
var ErrKicked = errors.New("kicked by the control plane")

func (e *Engine) commandLoop(sub Subscription) {
	defer e.wg.Done()
	defer sub.Close()
	for {
		select {
		case <-e.ctx.Done():
			return
		case m, ok := <-sub.C():
			if !ok {
				return
			}
			var c Command
			if err := json.Unmarshal(m.Payload, &c); err != nil {
				e.log.Warn("malformed command", "error", err)
				continue
			}
			if c.NodeID != "" && c.NodeID != e.conf.NodeID {
				continue
			}
			switch c.Kind {
			case CommandKick, CommandEnd:
				reason := ErrKicked
				if c.Reason != "" {
					reason = fmt.Errorf("%w: %s", ErrKicked, c.Reason)
				}
				e.mu.Lock()
				for k := range e.authCache {
					delete(e.authCache, k) // a kick often follows a revocation
				}
				e.mu.Unlock()
				e.Kick(c.StreamID, reason)
			}
		}
	}
}

func (e *Engine) statsLoop() {
	defer e.wg.Done()
	t := time.NewTicker(e.conf.StatsInterval)
	defer t.Stop()
	type prev struct {
		bytes, frames uint64
		at            time.Time
	}
	last := map[*Stream]prev{}
	for {
		select {
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		streams := e.Streams()
		readers := 0
		seen := make(map[*Stream]prev, len(streams))
		for _, s := range streams {
			cur := prev{bytes: s.bytesIn.Load(), frames: s.framesIn.Load(), at: now}
			seen[s] = cur
			readers += s.ReaderCount("")
			if s.rendition != "source" {
				continue
			}
			st := Stats{StreamID: s.id, NodeID: e.conf.NodeID, Time: now, Dropped: s.droppedBy.Load()}
			for _, r := range e.Renditions(s.group) {
				st.Viewers += r.Viewers()
			}
			if p, ok := last[s]; ok {
				dt := now.Sub(p.at).Seconds()
				st.BitrateIn = int64(float64(cur.bytes-p.bytes) * 8 / dt)
				st.FPS = float64(cur.frames-p.frames) / dt
			}
			ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
			if err := PublishStats(ctx, e.bus, st); err != nil && e.ctx.Err() == nil {
				e.log.Debug("stats not published", "error", err)
			}
			cancel()
		}
		last = seen
		e.mu.Lock()
		node := e.advertise
		e.mu.Unlock()
		node.ID, node.Streams, node.Readers, node.Updated = e.conf.NodeID, len(streams), readers, now
		ctx, cancel := context.WithTimeout(e.ctx, 2*time.Second)
		err := e.bus.Heartbeat(ctx, node, 3*e.conf.StatsInterval)
		cancel()
		if err != nil && e.ctx.Err() == nil {
			e.log.Warn("heartbeat failed", "error", err)
		}
	}
}
