package packager

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveengine/liveengine/engine"
)

// Packager packages every live stream of an engine into LL-HLS and serves
// it under /hls/. It is an engine.Hook.
type Packager struct {
	conf Config
	eng  *engine.Engine
	log  *slog.Logger

	metrics      *metrics
	sessions     *sessions
	cacheControl []byte // of media responses

	order     atomic.Uint64 // stream start order, for renditions' start-up
	closing   chan struct{}
	closeOnce sync.Once
	wg        sync.WaitGroup

	mu      sync.RWMutex
	groups  map[string]*group
	started bool
	closed  bool
}

var _ engine.Hook = (*Packager)(nil)

// New builds a packager for eng. Start attaches it to the engine.
func New(conf Config, eng *engine.Engine, log *slog.Logger) (*Packager, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if eng == nil {
		return nil, errors.New("hls: nil engine")
	}
	if log == nil {
		log = slog.Default()
	}
	p := &Packager{
		conf:    conf,
		eng:     eng,
		log:     log.With("component", "hls"),
		closing: make(chan struct{}),
		groups:  map[string]*group{},
	}
	maxAge := int(conf.EndedRetention / time.Second)
	if maxAge < 1 {
		maxAge = 1
	}
	p.cacheControl = []byte("public, max-age=" + strconv.Itoa(maxAge) + ", immutable")
	p.metrics = newMetrics(p)
	p.sessions = newSessions(conf.SessionTimeout)
	return p, nil
}

// Start registers the packager as an engine hook (streams already live are
// packaged at once) and starts its housekeeping.
func (p *Packager) Start() error {
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return fmt.Errorf("hls: start: %w", engine.ErrClosed)
	}
	p.started = true
	p.mu.Unlock()
	p.wg.Add(1)
	go p.housekeeping()
	p.eng.AddHook(p)
	return nil
}

// Close ends every playlist with EXT-X-ENDLIST, releases held requests and
// viewer counts, and waits for the packager's goroutines. Ended playlists
// stay servable until the HTTP server stops.
func (p *Packager) Close() {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		var rs []*rendition
		for _, g := range p.groups {
			rs = append(rs, g.list()...)
		}
		p.mu.Unlock()
		for _, r := range rs {
			if rd := r.getReader(); rd != nil {
				rd.Close()
				<-rd.Done() // onEnd has flushed and ended the playlist
			}
		}
		close(p.closing)
		p.wg.Wait()
		p.sessions.releaseAll()
		p.log.Info("hls packager closed", "renditions", len(rs))
	})
}

// sourceName is the rendition name of what the publisher sent.
const sourceName = "source"

// splitID splits a stream id into its group and rendition name.
func splitID(s *engine.Stream) (groupID, name string) {
	groupID, name = s.Group(), s.Rendition()
	if groupID == "" {
		groupID = s.ID()
	}
	if name == "" {
		name = sourceName
		if i := strings.IndexByte(s.ID(), '/'); i >= 0 {
			groupID, name = s.ID()[:i], s.ID()[i+1:]
		}
	}
	return groupID, name
}

// StreamStarted implements engine.Hook: it attaches an "hls" reader.
func (p *Packager) StreamStarted(s *engine.Stream) {
	gid, name := splitID(s)
	if !validName(gid) || !validName(name) {
		p.log.Warn("hls skips stream with an id that cannot be a URL", "stream", s.ID())
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	g := p.groups[gid]
	if g == nil {
		g = newGroup(gid)
		p.groups[gid] = g
	}
	p.mu.Unlock()

	r, err := newRendition(p, g, name, s)
	if err != nil {
		p.log.Warn("hls skips stream", "stream", s.ID(), "error", err)
		return
	}
	r.order = p.order.Add(1)
	g.mu.Lock()
	old := g.renditions[name]
	live := false
	for _, x := range g.renditions {
		x.mu.Lock()
		live = live || !x.ended
		x.mu.Unlock()
	}
	g.setLocked(name, r)
	g.mu.Unlock()
	if !live {
		g.restart() // a new publish: earlier timestamps do not apply
	}
	if old != nil {
		if rd := old.getReader(); rd != nil {
			rd.Close() // a stale rendition of an earlier publish
		}
	}
	rd, err := s.AddReader(engine.ReaderOptions{Name: "hls " + s.ID(), Kind: "hls", QueueLen: p.conf.ReaderQueueLen}, r.onUnit, r.onEnd)
	if err != nil {
		// The stream ended before the reader attached: end the playlist.
		r.onEnd()
		return
	}
	r.mu.Lock()
	r.reader = rd
	r.mu.Unlock()
	p.mu.RLock()
	closed := p.closed
	p.mu.RUnlock()
	if closed {
		// Close ran while the reader attached and did not see it.
		rd.Close()
	}
}

// StreamStopped implements engine.Hook. The reader flushes the last part
// and ends the playlist once it drained its queue.
func (p *Packager) StreamStopped(s *engine.Stream) {}

// housekeeping forgets ended streams after hls.ended_retention and expires
// viewer sessions.
func (p *Packager) housekeeping() {
	defer p.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-p.closing:
			return
		case now := <-t.C:
			p.sessions.expire(now)
			p.forgetEnded(now)
		}
	}
}

func (p *Packager) forgetEnded(now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for gid, g := range p.groups {
		g.mu.Lock()
		for name, r := range g.renditions {
			r.mu.Lock()
			gone := r.ended && now.Sub(r.endedAt) >= p.conf.EndedRetention
			r.mu.Unlock()
			if gone {
				g.setLocked(name, nil)
			}
		}
		empty := len(g.renditions) == 0
		g.mu.Unlock()
		if empty {
			delete(p.groups, gid)
			p.log.Info("hls stream forgotten", "stream", gid)
		}
	}
}

// group returns the group with id, or nil.
func (p *Packager) group(id string) *group {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.groups[id]
}
