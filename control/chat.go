package control

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/store"
	"github.com/valyala/fasthttp"
)

// Reactions clients may send; a fixed set keeps rooms free of arbitrary
// payloads and lets apps ship matching animations.
var reactions = map[string]bool{"heart": true, "laugh": true, "wow": true, "clap": true, "fire": true, "sad": true}

// postComment is the one path for comments from REST and WebSocket: checks,
// store, then fan-out on the room topic.
func (s *Server) postComment(ctx context.Context, userID, streamID, body string) (store.Comment, error) {
	body = strings.TrimSpace(body)
	// WebSocket comments do not pass decode's check; NUL is refused by
	// PostgreSQL.
	if body == "" || !storableText(body) {
		return store.Comment{}, badRequest("body: a non-empty UTF-8 text without NUL characters")
	}
	if n := utf8.RuneCountInString(body); n > s.conf.Limits.CommentLength {
		return store.Comment{}, badRequest("body: %d characters, the limit is %d", n, s.conf.Limits.CommentLength)
	}
	if err := s.commentLimit.allow("u:" + userID); err != nil {
		return store.Comment{}, err
	}
	st, err := s.roomStream(ctx, userID, streamID)
	if err != nil {
		return store.Comment{}, err
	}
	if st.Status == store.StatusEnded {
		return store.Comment{}, Errorf(fasthttp.StatusConflict, "stream_ended", "the stream has ended; chat is closed")
	}
	if muted, err := s.store.Sanctioned(ctx, streamID, userID, store.SanctionMute); err != nil {
		return store.Comment{}, err
	} else if muted {
		return store.Comment{}, Errorf(fasthttp.StatusForbidden, "muted", "you are muted in this room")
	}
	u, err := s.store.UserByID(ctx, userID)
	if err != nil {
		return store.Comment{}, err
	}
	c := store.Comment{StreamID: streamID, UserID: userID, Username: u.Username, Body: body}
	if err := s.store.AddComment(ctx, &c); err != nil {
		return store.Comment{}, err
	}
	if err := s.hub.Publish(ctx, realtime.RoomTopic(streamID), realtime.Envelope{Type: "comment", Room: streamID, Data: c}); err != nil {
		s.log.Warn("comment stored but not fanned out", "stream", streamID, "err", err)
	}
	return c, nil
}

// roomStream loads a stream for a room action and refuses banned users.
func (s *Server) roomStream(ctx context.Context, userID, streamID string) (store.Stream, error) {
	// WebSocket room ids do not pass the HTTP layer's check; no stream id
	// holds NUL or broken UTF-8, and PostgreSQL would fail the lookup.
	if !storableText(streamID) {
		return store.Stream{}, notFound("stream")
	}
	st, err := s.store.StreamByID(ctx, streamID)
	if errors.Is(err, store.ErrNotFound) {
		return st, notFound("stream")
	}
	if err != nil {
		return st, err
	}
	if userID != "" {
		banned, err := s.store.Sanctioned(ctx, streamID, userID, store.SanctionBan)
		if err != nil {
			return st, err
		}
		if banned {
			return st, Errorf(fasthttp.StatusForbidden, "banned", "you are banned from this room")
		}
	}
	return st, nil
}

type commentRequest struct {
	Body string `json:"body"`
}

func (s *Server) createComment(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	// loadStream hides a private stream from strangers; without it the REST
	// path would let anyone who knows the id post into its room (the
	// WebSocket refuses them at subscribe).
	if _, err := s.loadStream(ctx); err != nil {
		return err
	}
	var req commentRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	c, err := s.postComment(ctx, id.UserID, Param(ctx, "id"), req.Body)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusCreated, c)
	return nil
}

func (s *Server) listComments(ctx *fasthttp.RequestCtx) error {
	st, err := s.loadStream(ctx)
	if err != nil {
		return err
	}
	limit, err := intArg(ctx.QueryArgs(), "limit", 50, 1, 200)
	if err != nil {
		return err
	}
	list, err := s.store.Comments(ctx, st.ID, limit)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"comments": list})
	return nil
}

// canModerate reports whether the caller moderates a stream: its owner,
// a moderator of it, or a site moderator or admin.
func (s *Server) canModerate(ctx context.Context, id Identity, st store.Stream) (bool, error) {
	if id.UserID == st.UserID || id.HasRole(store.RoleModerator) {
		return true, nil
	}
	return s.store.IsModerator(ctx, st.ID, id.UserID)
}

func (s *Server) moderatedStream(ctx *fasthttp.RequestCtx) (store.Stream, Identity, error) {
	id, _ := Caller(ctx)
	st, err := s.loadStream(ctx)
	if err != nil {
		return st, id, err
	}
	ok, err := s.canModerate(ctx, id, st)
	if err != nil {
		return st, id, err
	}
	if !ok {
		return st, id, Errorf(fasthttp.StatusForbidden, "forbidden", "only the stream's owner and moderators may do this")
	}
	return st, id, nil
}

func (s *Server) deleteComment(ctx *fasthttp.RequestCtx) error {
	st, id, err := s.moderatedStream(ctx)
	if err != nil {
		return err
	}
	cid := Param(ctx, "comment_id")
	if err := s.store.DeleteComment(ctx, st.ID, cid, id.UserID); errors.Is(err, store.ErrNotFound) {
		return notFound("comment")
	} else if err != nil {
		return err
	}
	_ = s.hub.Publish(ctx, realtime.RoomTopic(st.ID), realtime.Envelope{Type: "comment_deleted", Room: st.ID, Data: map[string]string{"id": cid}})
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

type reactionRequest struct {
	Emoji string `json:"emoji"`
}

func (s *Server) react(ctx context.Context, userID, streamID, emoji string) error {
	if !reactions[emoji] {
		return badRequest("emoji: one of heart, laugh, wow, clap, fire, sad")
	}
	if err := s.commentLimit.allow("r:" + userID); err != nil {
		return err
	}
	if _, err := s.roomStream(ctx, userID, streamID); err != nil {
		return err
	}
	if muted, err := s.store.Sanctioned(ctx, streamID, userID, store.SanctionMute); err != nil {
		return err
	} else if muted {
		return Errorf(fasthttp.StatusForbidden, "muted", "you are muted in this room")
	}
	return s.hub.Publish(ctx, realtime.RoomTopic(streamID), realtime.Envelope{Type: "reaction", Room: streamID,
		Data: map[string]string{"user_id": userID, "emoji": emoji}})
}

func (s *Server) createReaction(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	// A private stream's room is closed to strangers; see createComment.
	if _, err := s.loadStream(ctx); err != nil {
		return err
	}
	var req reactionRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if err := s.react(ctx, id.UserID, Param(ctx, "id"), req.Emoji); err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

type userRequest struct {
	UserID string `json:"user_id"`
}

func (s *Server) addModerator(ctx *fasthttp.RequestCtx) error {
	st, _, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	var req userRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if err := s.store.AddModerator(ctx, st.ID, req.UserID); errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	} else if err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) removeModerator(ctx *fasthttp.RequestCtx) error {
	st, _, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	if err := s.store.RemoveModerator(ctx, st.ID, Param(ctx, "user_id")); errors.Is(err, store.ErrNotFound) {
		return notFound("moderator")
	} else if err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

type sanctionRequest struct {
	UserID          string `json:"user_id"`
	Kind            string `json:"kind"`
	DurationSeconds int64  `json:"duration_seconds"`
	Reason          string `json:"reason"`
}

func (s *Server) addSanction(ctx *fasthttp.RequestCtx) error {
	st, id, err := s.moderatedStream(ctx)
	if err != nil {
		return err
	}
	var req sanctionRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if req.Kind != store.SanctionBan && req.Kind != store.SanctionMute {
		return badRequest("kind: ban or mute")
	}
	if req.DurationSeconds < 0 || req.DurationSeconds > 10*365*24*3600 {
		return badRequest("duration_seconds: 0 (until lifted) up to ten years")
	}
	if utf8.RuneCountInString(req.Reason) > 200 {
		return badRequest("reason: at most 200 characters")
	}
	if req.UserID == st.UserID || req.UserID == id.UserID {
		return badRequest("user_id: the owner and yourself cannot be sanctioned")
	}
	sa := store.Sanction{StreamID: st.ID, UserID: req.UserID, Kind: req.Kind, By: id.UserID, Reason: req.Reason}
	if req.DurationSeconds > 0 {
		sa.Until = time.Now().Add(time.Duration(req.DurationSeconds) * time.Second)
	}
	if err := s.store.Sanction(ctx, sa); errors.Is(err, store.ErrNotFound) {
		return notFound("user")
	} else if err != nil {
		return err
	}
	// "banned" also makes every hub drop the user's connections from the room.
	typ := "banned"
	if req.Kind == store.SanctionMute {
		typ = "muted"
	}
	_ = s.hub.Publish(ctx, realtime.RoomTopic(st.ID), realtime.Envelope{Type: typ, Room: st.ID, Data: map[string]any{"user_id": req.UserID, "until": sa.Until}})
	s.log.Info("user sanctioned", "stream", st.ID, "user", req.UserID, "kind", req.Kind, "by", id.UserID)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) liftSanction(ctx *fasthttp.RequestCtx) error {
	st, _, err := s.moderatedStream(ctx)
	if err != nil {
		return err
	}
	kind := string(ctx.QueryArgs().Peek("kind"))
	if kind == "" {
		kind = store.SanctionBan
	}
	if err := s.store.LiftSanction(ctx, st.ID, Param(ctx, "user_id"), kind); errors.Is(err, store.ErrNotFound) {
		return notFound(kind)
	} else if err != nil {
		return err
	}
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// chatBackend gives the WebSocket hub the server's rules.
type chatBackend struct{ s *Server }

func (b chatBackend) Authenticate(token string) (realtime.Identity, error) {
	id, err := b.s.verify(token)
	if err != nil {
		return realtime.Identity{}, err
	}
	return realtime.Identity{UserID: id.UserID, Role: id.Role}, nil
}

func (b chatBackend) Join(ctx context.Context, id realtime.Identity, streamID string) error {
	st, err := b.s.roomStream(ctx, id.UserID, streamID)
	if err != nil {
		return err
	}
	if st.Visibility == store.VisibilityPrivate && id.UserID != st.UserID && id.Role != store.RoleAdmin {
		return notFound("stream")
	}
	return nil
}

func (b chatBackend) Comment(ctx context.Context, id realtime.Identity, streamID, body string) error {
	_, err := b.s.postComment(ctx, id.UserID, streamID, body)
	return err
}

func (b chatBackend) React(ctx context.Context, id realtime.Identity, streamID, emoji string) error {
	return b.s.react(ctx, id.UserID, streamID, emoji)
}
