// Package money mounts the money API (control/ledger: wallet, top-ups,
// gifts, leaderboards, withdrawals) on a control server. It is the bridge
// between the two packages: the control plane supplies who is calling, who
// owns a stream and the WebSocket rooms; the ledger supplies the routes.
// Keeping the bridge here leaves package control free of the ledger.
package money

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/liveengine/liveengine/control"
	"github.com/liveengine/liveengine/control/ledger"
	"github.com/valyala/fasthttp"
)

// Config is the money part of the configuration: YAML sections "ledger"
// and "wallet".
type Config struct {
	Ledger ledger.Config    `yaml:"ledger"`
	Wallet ledger.APIConfig `yaml:"wallet"`
}

// DefaultConfig returns the ledger's and the wallet API's defaults.
func DefaultConfig() Config {
	return Config{Ledger: ledger.DefaultConfig(), Wallet: ledger.DefaultAPIConfig()}
}

// Money is a started ledger and its API, mounted on a control server.
type Money struct {
	Ledger *ledger.Ledger
	API    *ledger.API
}

// Mount migrates the ledger's tables in the control database, starts the
// ledger and mounts its routes on s. lb may be nil (in-process leaderboard;
// pass ledger's Redis leaderboard when several control processes run). Call
// before s.Start; Close after s.Close.
func Mount(s *control.Server, conf Config, lb ledger.Leaderboard) (*Money, error) {
	ctx := context.Background()
	if err := ledger.Migrate(ctx, s.DB()); err != nil {
		return nil, fmt.Errorf("money: %w", err)
	}
	l, err := ledger.New(s.DB(), conf.Ledger, s.Logger())
	if err != nil {
		return nil, fmt.Errorf("money: %w", err)
	}
	if err := l.Start(); err != nil {
		return nil, fmt.Errorf("money: %w", err)
	}
	api, err := ledger.NewAPI(l, Deps(s, conf.Wallet, lb))
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("money: %w", err)
	}
	for _, r := range api.Routes() {
		// The ledger checks its own auth and roles; the router's Public
		// access still refuses a bad token before the handler runs.
		s.MountHandler(r.Method, r.Path, control.Public, r.Handler)
	}
	return &Money{Ledger: l, API: api}, nil
}

// Close stops the API and then the ledger.
func (m *Money) Close() {
	m.API.Close()
	m.Ledger.Close()
}

// Deps is the control plane's side of ledger.APIDeps.
func Deps(s *control.Server, conf ledger.APIConfig, lb ledger.Leaderboard) ledger.APIDeps {
	b := bridge{s}
	return ledger.APIDeps{Auth: b, Streams: b, Rooms: b, Leaderboard: lb, Config: conf, Log: s.Logger()}
}

type bridge struct{ s *control.Server }

var (
	_ ledger.Authenticator   = bridge{}
	_ ledger.StreamDirectory = bridge{}
	_ ledger.RoomPublisher   = bridge{}
)

// Authenticate implements ledger.Authenticator.
func (b bridge) Authenticate(ctx *fasthttp.RequestCtx) (string, string, error) {
	id, err := b.s.AuthenticateRequest(ctx)
	if err != nil {
		return "", "", err
	}
	return id.UserID, id.Role, nil
}

// StreamOwner implements ledger.StreamDirectory.
func (b bridge) StreamOwner(ctx context.Context, streamID string) (string, bool, error) {
	info, err := b.s.StreamInfo(ctx, streamID)
	if errors.Is(err, control.ErrNoStream) {
		return "", false, fmt.Errorf("stream %s: %w", streamID, ledger.ErrStreamNotFound)
	}
	if err != nil {
		return "", false, err
	}
	return info.OwnerID, info.Live, nil
}

// PublishRoomEvent implements ledger.RoomPublisher: the event goes to the
// stream's room on every control process, typed by its "type" field.
func (b bridge) PublishRoomEvent(ctx context.Context, streamID string, event any) error {
	typ := "event"
	switch ev := event.(type) {
	case ledger.GiftEvent: // every gift: no JSON round trip to read its type
		if ev.Type != "" {
			typ = ev.Type
		}
		return b.s.PushRoom(ctx, streamID, typ, event)
	case *ledger.GiftEvent:
		if ev.Type != "" {
			typ = ev.Type
		}
		return b.s.PushRoom(ctx, streamID, typ, event)
	}
	if raw, err := json.Marshal(event); err == nil {
		var head struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(raw, &head) == nil && head.Type != "" {
			typ = head.Type
		}
	}
	return b.s.PushRoom(ctx, streamID, typ, event)
}
