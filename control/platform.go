package control

import (
	"context"
	"errors"
	"log/slog"
	"strings"

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

// StreamInfo looks up a stream's owner and live status (once per gift:
// store.StreamOwner, not the whole row).
func (s *Server) StreamInfo(ctx context.Context, streamID string) (StreamInfo, error) {
	owner, status, err := s.store.StreamOwner(ctx, streamID)
	if errors.Is(err, store.ErrNotFound) {
		return StreamInfo{}, ErrNoStream
	}
	if err != nil {
		return StreamInfo{}, err
	}
	return StreamInfo{ID: streamID, OwnerID: owner, Status: status, Live: store.Stream{Status: status}.Live()}, nil
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
