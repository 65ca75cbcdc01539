package control

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/engine"
	"github.com/valyala/fasthttp"
)

// streamView is a stream as the API shows it, with its playback URLs.
type streamView struct {
	store.Stream
	HLSURL  string `json:"hls_url"`
	WHEPURL string `json:"whep_url"`
}

// ingestView is what only the owner sees: the secret key and where to push.
type ingestView struct {
	streamView
	StreamKey string `json:"stream_key"`
	RTMPURL   string `json:"rtmp_url"`
	RTMPBase  string `json:"rtmp_server"`
	WHIPURL   string `json:"whip_url"`
}

func (s *Server) view(st store.Stream) streamView {
	base := strings.TrimRight(s.conf.PublicHTTPURL, "/")
	return streamView{Stream: st, HLSURL: base + "/hls/" + st.ID + "/index.m3u8", WHEPURL: base + "/whep/" + st.ID}
}

func (s *Server) ingest(st store.Stream) ingestView {
	rtmp := strings.TrimRight(s.conf.PublicRTMPURL, "/")
	return ingestView{streamView: s.view(st), StreamKey: st.Key, RTMPURL: rtmp + "/" + st.Key, RTMPBase: rtmp,
		WHIPURL: strings.TrimRight(s.conf.PublicHTTPURL, "/") + "/whip/" + st.Key}
}

type streamRequest struct {
	Title       *string    `json:"title"`
	Category    *string    `json:"category"`
	Tags        *[]string  `json:"tags"`
	Visibility  *string    `json:"visibility"`
	ScheduledAt *time.Time `json:"scheduled_at"`
}

func (r *streamRequest) validate(create bool) error {
	if create && (r.Title == nil || strings.TrimSpace(*r.Title) == "") {
		return badRequest("title: required")
	}
	if r.Title != nil {
		t := strings.TrimSpace(*r.Title)
		if t == "" || utf8.RuneCountInString(t) > 140 || !utf8.ValidString(t) {
			return badRequest("title: 1 to 140 characters")
		}
		r.Title = &t
	}
	if r.Category != nil {
		c := strings.ToLower(strings.TrimSpace(*r.Category))
		if utf8.RuneCountInString(c) > 40 {
			return badRequest("category: at most 40 characters")
		}
		r.Category = &c
	}
	if r.Tags != nil {
		if len(*r.Tags) > 10 {
			return badRequest("tags: at most 10")
		}
		tags := make([]string, 0, len(*r.Tags))
		for _, t := range *r.Tags {
			t = strings.ToLower(strings.TrimSpace(t))
			if t == "" || utf8.RuneCountInString(t) > 32 || strings.ContainsAny(t, ",") {
				return badRequest("tags: each 1 to 32 characters, no commas")
			}
			tags = append(tags, t)
		}
		r.Tags = &tags
	}
	if r.Visibility != nil && !store.ValidVisibility(*r.Visibility) {
		return badRequest("visibility: one of public, unlisted, private")
	}
	if r.ScheduledAt != nil && !r.ScheduledAt.IsZero() && r.ScheduledAt.Before(time.Now().Add(-time.Minute)) {
		return badRequest("scheduled_at: must be in the future")
	}
	return nil
}

func (s *Server) createStream(ctx *fasthttp.RequestCtx) error {
	id, err := requireRole(ctx, store.RoleStreamer)
	if err != nil {
		return err
	}
	if err := s.costlyLimit.allow("u:" + id.UserID); err != nil {
		return err
	}
	var req streamRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if err := req.validate(true); err != nil {
		return err
	}
	st := store.Stream{UserID: id.UserID, Title: *req.Title, Visibility: store.VisibilityPublic}
	if req.Category != nil {
		st.Category = *req.Category
	}
	if req.Tags != nil {
		st.Tags = *req.Tags
	}
	if req.Visibility != nil {
		st.Visibility = *req.Visibility
	}
	if req.ScheduledAt != nil {
		st.ScheduledAt = *req.ScheduledAt
	}
	if err := s.store.CreateStream(ctx, &st); err != nil {
		return err
	}
	if err := s.bus.SetStreamKey(ctx, st.Key, engine.Grant{StreamID: st.ID, UserID: id.UserID}); err != nil {
		// Without the key on the bus the engine would refuse the stream;
		// the row stays and a key rotation retries the bus.
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "stream created but the engine bus is unavailable; rotate the key to retry")
	}
	full, err := s.store.StreamByID(ctx, st.ID)
	if err != nil {
		return err
	}
	s.log.Info("stream created", "stream", st.ID, "user", id.UserID)
	writeJSON(ctx, fasthttp.StatusCreated, s.ingest(full))
	return nil
}

// loadStream loads the stream of the {id} param, hiding private streams
// from everyone but their owner and admins.
func (s *Server) loadStream(ctx *fasthttp.RequestCtx) (store.Stream, error) {
	st, err := s.store.StreamByID(ctx, Param(ctx, "id"))
	if errors.Is(err, store.ErrNotFound) {
		return st, notFound("stream")
	}
	if err != nil {
		return st, err
	}
	if st.Visibility == store.VisibilityPrivate {
		id, _ := Caller(ctx)
		if id.UserID != st.UserID && !id.HasRole(store.RoleAdmin) {
			return st, notFound("stream")
		}
	}
	return st, nil
}

// ownStream loads the {id} stream and checks the caller owns it (or is an
// admin).
func (s *Server) ownStream(ctx *fasthttp.RequestCtx) (store.Stream, Identity, error) {
	id, _ := Caller(ctx)
	st, err := s.loadStream(ctx)
	if err != nil {
		return st, id, err
	}
	if st.UserID != id.UserID && !id.HasRole(store.RoleAdmin) {
		return st, id, Errorf(fasthttp.StatusForbidden, "forbidden", "only the stream's owner may do this")
	}
	return st, id, nil
}

func (s *Server) getStream(ctx *fasthttp.RequestCtx) error {
	st, err := s.loadStream(ctx)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, s.view(st))
	return nil
}

func (s *Server) getStreamKey(ctx *fasthttp.RequestCtx) error {
	st, _, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	writeJSON(ctx, fasthttp.StatusOK, s.ingest(st))
	return nil
}

func (s *Server) updateStream(ctx *fasthttp.RequestCtx) error {
	st, _, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	var req streamRequest
	if err := decode(ctx, &req); err != nil {
		return err
	}
	if err := req.validate(false); err != nil {
		return err
	}
	if err := s.store.UpdateStream(ctx, st.ID, store.StreamUpdate{Title: req.Title, Category: req.Category, Tags: req.Tags,
		Visibility: req.Visibility, ScheduledAt: req.ScheduledAt}); err != nil {
		return err
	}
	st, err = s.store.StreamByID(ctx, st.ID)
	if err != nil {
		return err
	}
	_ = s.hub.Publish(ctx, realtime.RoomTopic(st.ID), realtime.Envelope{Type: "stream_updated", Room: st.ID,
		Data: map[string]any{"title": st.Title, "category": st.Category, "tags": st.Tags}})
	writeJSON(ctx, fasthttp.StatusOK, s.view(st))
	return nil
}

func (s *Server) endStream(ctx *fasthttp.RequestCtx) error {
	st, id, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	if st.Status == store.StatusEnded {
		writeJSON(ctx, fasthttp.StatusOK, s.view(st))
		return nil
	}
	// Revoke first: once the kick lands the publisher must not get back in.
	if err := s.bus.RevokeStreamKey(ctx, st.Key); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not reach the engine bus; try again")
	}
	if err := engine.SendCommand(ctx, s.bus, engine.Command{Kind: engine.CommandEnd, StreamID: st.ID, Reason: "ended by owner"}); err != nil {
		s.log.Warn("end command not sent", "stream", st.ID, "err", err)
	}
	streamID := st.ID
	st, err = s.store.EndStream(ctx, streamID)
	s.streamInfos.forget(streamID)
	if err != nil {
		return err
	}
	// Revoke again, after the row is ended: a key rotation that raced this
	// end may have replaced the key revoked above, or re-granted that very
	// key on the bus after our revoke (its own re-check ran before the
	// row was ended). The key the ended row holds must not publish.
	if err := s.bus.RevokeStreamKey(ctx, st.Key); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not reach the engine bus; try again")
	}
	s.publishStatus(ctx, st.ID, store.StatusEnded)
	s.log.Info("stream ended", "stream", st.ID, "by", id.UserID)
	writeJSON(ctx, fasthttp.StatusOK, s.view(st))
	return nil
}

func (s *Server) rotateKey(ctx *fasthttp.RequestCtx) error {
	st, id, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	if st.Status == store.StatusEnded {
		return Errorf(fasthttp.StatusConflict, "stream_ended", "the stream has ended; create a new one")
	}
	if err := s.costlyLimit.allow("u:" + id.UserID); err != nil {
		return err
	}
	newKey, oldKey, err := s.store.RotateKey(ctx, st.ID)
	if errors.Is(err, store.ErrConflict) {
		return Errorf(fasthttp.StatusConflict, "stream_ended", "the stream has ended; create a new one")
	}
	if err != nil {
		return err
	}
	if err := s.bus.SetStreamKey(ctx, newKey, engine.Grant{StreamID: st.ID, UserID: st.UserID}); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not reach the engine bus; rotate again")
	}
	if err := s.bus.RevokeStreamKey(ctx, oldKey); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not revoke the old key on the engine bus; rotate again")
	}
	// A rotation or end that raced this one may have replaced newKey in the
	// store and revoked it on the bus before the grant above landed, which
	// would leave a key the store no longer knows (or a key of an ended
	// stream) publishing. Whoever replaces a key revokes it after its own
	// store write, so checking again after the grant closes the gap.
	now, err := s.store.StreamByID(ctx, st.ID)
	if err != nil {
		return err
	}
	if now.Key != newKey || now.Status == store.StatusEnded {
		if err := s.bus.RevokeStreamKey(ctx, newKey); err != nil {
			return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not revoke a superseded key on the engine bus; rotate again")
		}
		if now.Status == store.StatusEnded {
			return Errorf(fasthttp.StatusConflict, "stream_ended", "the stream has ended; create a new one")
		}
		// The later rotation's key is the one that publishes; answer it.
		newKey = now.Key
	}
	// A publisher on the old key is kicked; it can come back with the new one.
	if st.Live() {
		_ = engine.SendCommand(ctx, s.bus, engine.Command{Kind: engine.CommandKick, StreamID: st.ID, Reason: "stream key rotated"})
	}
	st.Key = newKey
	s.log.Info("stream key rotated", "stream", st.ID, "by", id.UserID)
	writeJSON(ctx, fasthttp.StatusOK, s.ingest(st))
	return nil
}

// revokeKey revokes the key without a replacement: the stream cannot be
// published until the key is rotated.
func (s *Server) revokeKey(ctx *fasthttp.RequestCtx) error {
	st, id, err := s.ownStream(ctx)
	if err != nil {
		return err
	}
	if err := s.bus.RevokeStreamKey(ctx, st.Key); err != nil {
		return Errorf(fasthttp.StatusServiceUnavailable, "bus_unavailable", "could not reach the engine bus; try again")
	}
	if err := engine.SendCommand(ctx, s.bus, engine.Command{Kind: engine.CommandKick, StreamID: st.ID, Reason: "stream key revoked"}); err != nil {
		s.log.Warn("kick command not sent", "stream", st.ID, "err", err)
	}
	s.log.Info("stream key revoked", "stream", st.ID, "by", id.UserID)
	ctx.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

func (s *Server) myStreams(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	list, err := s.store.StreamsOf(ctx, id.UserID)
	if err != nil {
		return err
	}
	out := make([]streamView, len(list))
	for i, st := range list {
		out[i] = s.view(st)
	}
	writeJSON(ctx, fasthttp.StatusOK, map[string]any{"streams": out})
	return nil
}

func (s *Server) discover(kind string) HandlerFunc {
	return func(ctx *fasthttp.RequestCtx) error {
		args := ctx.QueryArgs()
		d := store.Discovery{Kind: kind, Category: strings.ToLower(string(args.Peek("category"))), UserID: string(args.Peek("user_id"))}
		var err error
		if d.Limit, err = intArg(args, "limit", 20, 1, 100); err != nil {
			return err
		}
		if d.Offset, err = intArg(args, "offset", 0, 0, 10000); err != nil {
			return err
		}
		if kind == "search" {
			d.Query = strings.TrimSpace(string(args.Peek("q")))
			if d.Query == "" || utf8.RuneCountInString(d.Query) > 100 || !utf8.ValidString(d.Query) {
				return badRequest("q: 1 to 100 characters")
			}
			key := "ip:" + s.clientIP(ctx)
			if id, ok := Caller(ctx); ok {
				key = "u:" + id.UserID
			}
			if err := s.costlyLimit.allow(key); err != nil {
				return err
			}
		}
		list, err := s.store.Discover(ctx, d)
		if err != nil {
			return err
		}
		out := make([]streamView, len(list))
		for i, st := range list {
			out[i] = s.view(st)
		}
		writeJSON(ctx, fasthttp.StatusOK, map[string]any{"streams": out})
		return nil
	}
}

func intArg(args *fasthttp.Args, name string, def, lo, hi int) (int, error) {
	v := args.Peek(name)
	if len(v) == 0 {
		return def, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < lo || n > hi {
		return 0, badRequest("%s: an integer from %d to %d", name, lo, hi)
	}
	return n, nil
}

// publishStatus tells a stream's room, on every control process, that its
// status changed.
func (s *Server) publishStatus(ctx context.Context, streamID, status string) {
	if err := s.hub.Publish(ctx, realtime.RoomTopic(streamID), realtime.Envelope{Type: "status", Room: streamID,
		Data: map[string]string{"status": status}}); err != nil {
		s.log.Warn("status not published", "stream", streamID, "err", err)
	}
}
