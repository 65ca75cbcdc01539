package control

import (
	"github.com/valyala/fasthttp"
)

const (
	get   = fasthttp.MethodGet
	post  = fasthttp.MethodPost
	put   = fasthttp.MethodPut
	patch = fasthttp.MethodPatch
	del   = fasthttp.MethodDelete
)

// routes is the route table; docs/openapi.yaml documents each entry and
// TestOpenAPICoversRoutes keeps the two in step.
func (s *Server) routes() {
	r := &s.router
	r.add(get, "/api/v1/health", Public, s.health)

	r.add(post, "/api/v1/auth/register", Public, s.register)
	r.add(post, "/api/v1/auth/login", Public, s.login)
	r.add(post, "/api/v1/auth/refresh", Public, s.refresh)
	r.add(post, "/api/v1/auth/logout", Authenticated, s.logout)
	r.add(get, "/api/v1/auth/sessions", Authenticated, s.listSessions)
	r.add(del, "/api/v1/auth/sessions/{id}", Authenticated, s.revokeSession)

	r.add(get, "/api/v1/me", Authenticated, s.me)
	r.add(patch, "/api/v1/me", Authenticated, s.updateMe)
	r.add(get, "/api/v1/me/streams", Authenticated, s.myStreams)
	r.add(get, "/api/v1/users/{id}", Public, s.getUser)
	r.add(put, "/api/v1/users/{id}/follow", Authenticated, s.follow)
	r.add(del, "/api/v1/users/{id}/follow", Authenticated, s.unfollow)
	r.add(put, "/api/v1/users/{id}/role", Authenticated, s.setRole)

	r.add(post, "/api/v1/streams", Authenticated, s.createStream)
	r.add(get, "/api/v1/streams/{id}", Public, s.getStream)
	r.add(patch, "/api/v1/streams/{id}", Authenticated, s.updateStream)
	r.add(post, "/api/v1/streams/{id}/end", Authenticated, s.endStream)
	r.add(get, "/api/v1/streams/{id}/key", Authenticated, s.getStreamKey)
	r.add(post, "/api/v1/streams/{id}/key/rotate", Authenticated, s.rotateKey)
	r.add(del, "/api/v1/streams/{id}/key", Authenticated, s.revokeKey)

	r.add(get, "/api/v1/streams/{id}/comments", Public, s.listComments)
	r.add(post, "/api/v1/streams/{id}/comments", Authenticated, s.createComment)
	r.add(del, "/api/v1/streams/{id}/comments/{comment_id}", Authenticated, s.deleteComment)
	r.add(post, "/api/v1/streams/{id}/reactions", Authenticated, s.createReaction)
	r.add(post, "/api/v1/streams/{id}/moderators", Authenticated, s.addModerator)
	r.add(del, "/api/v1/streams/{id}/moderators/{user_id}", Authenticated, s.removeModerator)
	r.add(post, "/api/v1/streams/{id}/sanctions", Authenticated, s.addSanction)
	r.add(del, "/api/v1/streams/{id}/sanctions/{user_id}", Authenticated, s.liftSanction)

	r.add(get, "/api/v1/discover/live", Public, s.discover("live"))
	r.add(get, "/api/v1/discover/scheduled", Public, s.discover("scheduled"))
	r.add(get, "/api/v1/discover/trending", Public, s.discover("trending"))
	r.add(get, "/api/v1/discover/search", Public, s.discover("search"))

	r.add(post, "/api/v1/rooms/{name}/token", Authenticated, s.roomToken)

	r.add(get, "/api/v1/ws", Public, s.websocket)
}

func (s *Server) health(ctx *fasthttp.RequestCtx) error {
	if err := s.db.PingContext(ctx); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "database_unavailable", "database is not reachable")
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"status": "ok", "database": string(s.db.Dialect), "ws_connections": s.hub.Connections()})
	return nil
}

// websocket hands the request to the hub, which reads its own token (the
// query parameter or an auth message), so the router's check is skipped.
func (s *Server) websocket(ctx *fasthttp.RequestCtx) error {
	s.hub.HandleFrom(ctx, s.clientIP(ctx))
	return nil
}
