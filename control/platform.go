package control

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/store"
	"github.com/valyala/fasthttp"
)

// This file is what other control packages (control/ledger: gifts, wallet)
// use from the server: who is calling, who owns a stream and whether it is
// live, and a way to push events to a stream's room or a user's channel.

// StreamInfo is what a money route needs to know about a stream.
type StreamInfo struct {
	ID      string
	OwnerID string
	Status  string
	Live    bool
}

// ErrNoStream is returned by StreamInfo for an unknown stream id.
var ErrNoStream = errors.New("no such stream")

// StreamInfo looks up a stream's owner and live status (once per gift).
// Answers are cached for streamInfoTTL: a gift storm on one stream asked
// the database the same question thousands of times a second (~15 µs of
// CPU each on SQLite, ~60 µs when the pool was reopening connections).
// This process forgets a stream's entry when it applies the stream's
// status change; a change applied by another control process shows here
// within the TTL.
func (s *Server) StreamInfo(ctx context.Context, streamID string) (StreamInfo, error) {
	info, ok, gen := s.streamInfos.get(streamID)
	if ok {
		return info, nil
	}
	owner, status, err := s.store.StreamOwner(ctx, streamID)
	if errors.Is(err, store.ErrNotFound) {
		// Not cached: a stream created a moment later must be found.
		return StreamInfo{}, ErrNoStream
	}
	if err != nil {
		return StreamInfo{}, err
	}
	info = StreamInfo{ID: streamID, OwnerID: owner, Status: status, Live: store.Stream{Status: status}.Live()}
	s.streamInfos.put(info, gen)
	return info, nil
}

// streamInfoTTL bounds how stale a cached stream status may be: at worst a
// gift reaches a stream this long after another control process saw it go
// offline or end (its owner never changes).
const streamInfoTTL = time.Second

// streamInfoCap bounds the cache; when full it starts over (entries live a
// second anyway).
const streamInfoCap = 16384

// streamInfoCache holds recent StreamInfo answers by stream id.
type streamInfoCache struct {
	mu sync.RWMutex
	m  map[string]cachedStreamInfo
	// gen counts forgets: an answer read from the database before a
	// status change was applied must not be cached after it.
	gen uint64
}

type cachedStreamInfo struct {
	info    StreamInfo
	expires time.Time
}

// get returns id's cached answer, or false and the generation to hand to
// put with the answer read from the database.
func (c *streamInfoCache) get(id string) (StreamInfo, bool, uint64) {
	c.mu.RLock()
	e, ok := c.m[id]
	gen := c.gen
	c.mu.RUnlock()
	if !ok || time.Now().After(e.expires) {
		return StreamInfo{}, false, gen
	}
	return e.info, true, gen
}

// put caches info unless a status change was applied since gen was read.
func (c *streamInfoCache) put(info StreamInfo, gen uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return
	}
	if c.m == nil || len(c.m) >= streamInfoCap {
		c.m = make(map[string]cachedStreamInfo)
	}
	c.m[info.ID] = cachedStreamInfo{info: info, expires: time.Now().Add(streamInfoTTL)}
}

// forget drops a stream's entry: its status just changed.
func (c *streamInfoCache) forget(id string) {
	c.mu.Lock()
	delete(c.m, id)
	c.gen++
	c.mu.Unlock()
}

// PushRoom sends an event to every WebSocket client in a stream's room, on
// every control process: {"type":typ,"room":streamID,"data":data}.
func (s *Server) PushRoom(ctx context.Context, streamID, typ string, data any) error {
	return s.hub.Publish(ctx, realtime.RoomTopic(streamID), realtime.Envelope{Type: typ, Room: streamID, Data: data})
}

// PushUser sends an event to a user's personal channel on every control
// process: {"type":typ,"data":data}.
func (s *Server) PushUser(ctx context.Context, userID, typ string, data any) error {
	return s.hub.Publish(ctx, realtime.UserTopic(userID), realtime.Envelope{Type: typ, Data: data})
}

// Mount adds a route served by another package. access Authenticated makes
// the router answer 401 before h runs; h reads the caller with Caller and
// path parameters with Param, and returns errors (an *Error keeps its
// status and code; others become 500). Mount before Start.
func (s *Server) Mount(method, pattern string, access Access, h HandlerFunc) {
	s.router.add(method, pattern, access, h)
}

// MountHandler is Mount for a plain fasthttp handler that writes its own
// response.
func (s *Server) MountHandler(method, pattern string, access Access, h fasthttp.RequestHandler) {
	s.router.add(method, pattern, access, func(ctx *fasthttp.RequestCtx) error { h(ctx); return nil })
}

// RequireRole answers 403 unless the caller has one of roles (admins pass).
func RequireRole(ctx *fasthttp.RequestCtx, roles ...string) (Identity, error) {
	return requireRole(ctx, roles...)
}

// AuthenticateRequest resolves the bearer token of a request: the identity
// the router already checked, or the Authorization header for handlers
// served outside the router.
func (s *Server) AuthenticateRequest(ctx *fasthttp.RequestCtx) (Identity, error) {
	if id, ok := Caller(ctx); ok {
		return id, nil
	}
	h := string(ctx.Request.Header.Peek("Authorization"))
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return Identity{}, ErrUnauthorized
	}
	return s.verify(tok)
}

// Logger is the server's logger, for packages mounted on it.
func (s *Server) Logger() *slog.Logger { return s.log }
