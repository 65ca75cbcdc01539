// Package sfu is LiveEngine's WebRTC side: the shared transport (one UDP and
// one TCP ICE port, interceptors, optional TURN), WHEP playback of any
// engine stream, and rooms for live shows and calls with a WebSocket
// signalling protocol (PROTOCOL.md). WHIP ingest lives in ingest/whip and
// builds on this package's Transport and Ingest.
package sfu

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"mime"
	"path"
	"strings"
	"sync"

	"github.com/liveengine/liveengine/engine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
)

//go:embed web
var webFS embed.FS

// SFU serves WHEP playback and rooms.
type SFU struct {
	conf Config
	eng  *engine.Engine
	log  *slog.Logger
	tr   *Transport

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	feedsMu sync.Mutex
	feeds   map[string]*feed

	sessMu   sync.Mutex
	sessions map[string]*viewer

	roomsMu sync.Mutex
	rooms   map[string]*Room

	goMu   sync.Mutex // guards closed against wg.Add after Close began
	closed bool
}

// spawn runs fn on a goroutine that Close waits for; after Close began it
// reports false and does not run fn.
func (x *SFU) spawn(fn func()) bool {
	x.goMu.Lock()
	defer x.goMu.Unlock()
	if x.closed {
		return false
	}
	x.wg.Add(1)
	go func() {
		defer x.wg.Done()
		fn()
	}()
	return true
}

// New builds the SFU and binds its ICE ports.
func New(conf Config, eng *engine.Engine, log *slog.Logger) (*SFU, error) {
	if eng == nil {
		return nil, errors.New("sfu: nil engine")
	}
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "sfu")
	tr, err := NewTransport(conf, log)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &SFU{
		conf: conf, eng: eng, log: log, tr: tr,
		ctx: ctx, cancel: cancel,
		feeds:    map[string]*feed{},
		sessions: map[string]*viewer{},
		rooms:    map[string]*Room{},
	}, nil
}

// Transport returns the shared WebRTC transport; WHIP ingest makes its peer
// connections on it.
func (x *SFU) Transport() *Transport { return x.tr }

// Collector returns the WebRTC metrics (WHIP, WHEP and rooms together).
func (x *SFU) Collector() prometheus.Collector { return &x.tr.metrics }

// Start listens to the engine bus for room commands (mute).
func (x *SFU) Start() error {
	sub, err := x.eng.Bus().Subscribe(x.ctx, engine.TopicCommands)
	if err != nil {
		return fmt.Errorf("sfu: subscribe to commands: %w", err)
	}
	x.spawn(func() {
		defer sub.Close()
		for {
			select {
			case <-x.ctx.Done():
				return
			case m, ok := <-sub.C():
				if !ok {
					return
				}
				var c engine.Command
				if json.Unmarshal(m.Payload, &c) != nil || c.Kind != engine.CommandMute {
					continue
				}
				x.muteCommand(c)
			}
		}
	})
	return nil
}

// Close ends every WHEP session and room (participants are disconnected),
// waits for the SFU's goroutines, then releases the ports.
func (x *SFU) Close() {
	x.goMu.Lock()
	if x.closed {
		x.goMu.Unlock()
		return
	}
	x.closed = true
	x.goMu.Unlock()
	x.cancel()
	x.sessMu.Lock()
	viewers := make([]*viewer, 0, len(x.sessions))
	for _, v := range x.sessions {
		viewers = append(viewers, v)
	}
	x.sessMu.Unlock()
	for _, v := range viewers {
		v.close()
	}
	x.roomsMu.Lock()
	rooms := make([]*Room, 0, len(x.rooms))
	for _, r := range x.rooms {
		rooms = append(rooms, r)
	}
	x.roomsMu.Unlock()
	for _, r := range rooms {
		r.close()
	}
	x.wg.Wait()
	if err := x.tr.Close(); err != nil {
		x.log.Warn("transport close", "error", err)
	}
}

// Handle serves /whep/, /rtc/ and /webrtc/.
func (x *SFU) Handle(ctx *fasthttp.RequestCtx) {
	p := string(ctx.Path())
	switch {
	case strings.HasPrefix(p, "/whep/"):
		if CORS(ctx) {
			return
		}
		x.handleWHEP(ctx, strings.TrimPrefix(p, "/whep/"))
	case p == "/rtc/ws":
		x.handleWS(ctx)
	case p == "/webrtc" || strings.HasPrefix(p, "/webrtc/"):
		x.serveWeb(ctx, strings.TrimPrefix(strings.TrimPrefix(p, "/webrtc"), "/"))
	default:
		ctx.NotFound()
	}
}

func (x *SFU) serveWeb(ctx *fasthttp.RequestCtx, name string) {
	if name == "" {
		name = "index.html"
	}
	b, err := fs.ReadFile(webFS, path.Join("web", path.Clean("/" + name)[1:]))
	if err != nil {
		ctx.NotFound()
		return
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "application/octet-stream"
	}
	ctx.SetContentType(ct)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetBody(b)
}
