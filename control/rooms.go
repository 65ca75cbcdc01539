package control

import (
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/sfu/roomtoken"
	"github.com/valyala/fasthttp"
)

// roomTokenRequest is the body of POST /api/v1/rooms/{name}/token; an empty
// body asks for a call.
type roomTokenRequest struct {
	Kind string `json:"kind"`
}

type roomTokenView struct {
	Token      string    `json:"token"`
	Room       string    `json:"room"`
	Kind       string    `json:"kind"`
	Identity   string    `json:"identity"`
	Name       string    `json:"name"`
	CanPublish bool      `json:"can_publish"`
	ExpiresAt  time.Time `json:"expires_at"`
	// SignalURL is the room WebSocket of the SFU; RoomURL opens the
	// engine's room page with this token.
	SignalURL string `json:"signal_url"`
	RoomURL   string `json:"room_url"`
}

// roomToken mints a join token for the caller. The policy is deliberately
// small: in a call room every signed-in user publishes (a call's name is its
// invitation, so apps should use unguessable names); in a live room only
// streamers and admins are hosts, everyone else joins to watch.
func (s *Server) roomToken(ctx *fasthttp.RequestCtx) error {
	id, _ := Caller(ctx)
	if s.conf.RoomSecret == "" {
		return Errorf(fasthttp.StatusServiceUnavailable, "rooms_disabled", "rooms are disabled: set webrtc.room_secret (LIVEENGINE_WEBRTC_ROOM_SECRET) for the engine and the control plane")
	}
	req := roomTokenRequest{Kind: roomtoken.Call}
	if len(ctx.PostBody()) > 0 {
		if err := decode(ctx, &req); err != nil {
			return err
		}
	}
	if err := s.costlyLimit.allow("u:" + id.UserID); err != nil {
		return err
	}
	u, err := s.store.UserByID(ctx, id.UserID)
	if err != nil {
		return err
	}
	c := roomtoken.Claims{
		Room:       Param(ctx, "name"),
		Identity:   u.ID,
		Name:       u.DisplayName,
		Kind:       req.Kind,
		CanPublish: req.Kind == roomtoken.Call || id.HasRole(store.RoleStreamer),
	}
	if c.Name == "" {
		c.Name = u.Username
	}
	if len(c.Name) > 128 {
		// Cut between characters: a display name holds up to 64 of up to
		// 4 bytes, and a byte cut left a broken one (U+FFFD) in the room.
		n := 128
		for n > 0 && !utf8.RuneStart(c.Name[n]) {
			n--
		}
		c.Name = c.Name[:n]
	}
	if err := c.Check(); err != nil {
		return badRequest("%s", strings.TrimPrefix(err.Error(), roomtoken.ErrBadToken.Error()+": "))
	}
	tok, err := roomtoken.Sign(s.conf.RoomSecret, c, s.conf.RoomTokenTTL)
	if err != nil {
		return err
	}
	base := strings.TrimRight(s.conf.PublicHTTPURL, "/")
	ws := "ws" + strings.TrimPrefix(base, "http") + "/rtc/ws"
	writeJSON(ctx, fasthttp.StatusOK, roomTokenView{
		Token: tok, Room: c.Room, Kind: c.Kind, Identity: c.Identity, Name: c.Name, CanPublish: c.CanPublish,
		ExpiresAt: time.Now().Add(s.conf.RoomTokenTTL).UTC().Truncate(time.Second),
		SignalURL: ws,
		RoomURL:   base + "/webrtc/room.html?token=" + url.QueryEscape(tok),
	})
	return nil
}
