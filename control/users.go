package control

import (
	"errors"
	"net/url"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/store"
	"github.com/valyala/fasthttp"
)

func (s *Server) me(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	u, err := s.store.UserByID(ctx, id.UserID)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	}
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, u)
	return nil
}

func (s *Server) updateMe(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	var p store.Profile
	if err := decode(ctx, &p); err != nil {
		return err
	}
	if p.DisplayName != nil && (utf8.RuneCountInString(*p.DisplayName) > 64 || !utf8.ValidString(*p.DisplayName)) {
		return badRequest("display_name: at most 64 characters")
	}
	if p.Bio != nil && (utf8.RuneCountInString(*p.Bio) > 1000 || !utf8.ValidString(*p.Bio)) {
		return badRequest("bio: at most 1000 characters")
	}
	if p.AvatarURL != nil && *p.AvatarURL != "" {
		u, err := url.Parse(*p.AvatarURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(*p.AvatarURL) > 500 {
			return badRequest("avatar_url: an http(s) URL of at most 500 characters")
		}
	}
	if err := s.store.UpdateProfile(ctx, id.UserID, p); err != nil {
		return err
	}
	return s.me(ctx)
}

func (s *Server) getUser(ctx *fasthttp.RequestCtx) error {
	u, err := s.store.UserByID(ctx, Param(ctx, "id"))
	if errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	}
	if err != nil {
		return err
	}
	if id, _ := Caller(ctx); id.UserID != u.ID && !id.HasRole(store.RoleAdmin) {
		u.Email = ""
	}
	writeJSON(ctx, fasthttp.StatusOK, u)
	return nil
}

func (s *Server) follow(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	target := Param(ctx, "id")
	if target == id.UserID {
		return badRequest("you cannot follow yourself")
	}
	err := s.store.Follow(ctx, id.UserID, target)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	}
	if err != nil {
		return err
	}
	// Tell the followed user on their personal channel, on every process.
	_ = s.hub.Publish(ctx, realtime.UserTopic(target), realtime.Envelope{Type: "followed", Data: map[string]string{"user_id": id.UserID}})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) unfollow(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	if err := s.store.Unfollow(ctx, id.UserID, Param(ctx, "id")); err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

type roleRequest struct {
	Role string `json:"role"`
}

func (s *Server) setRole(ctx *fasthttp.RequestCtx) error {
	admin, err := requireRole(ctx, store.RoleAdmin)
	if err != nil {
		return err
	}
	var req roleRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if !store.ValidRole(req.Role) {
		return badRequest("role: one of viewer, streamer, moderator, admin")
	}
	target := Param(ctx, "id")
	err = s.store.SetRole(ctx, target, req.Role)
	if errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	}
	if err != nil {
		return err
	}
	s.log.Info("role changed", "user", target, "role", req.Role, "by", admin.UserID)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}
