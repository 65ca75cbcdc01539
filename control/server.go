// Package control is the LiveEngine control plane: the JSON API under
// /api/v1 (users and auth, live streams and discovery, chat, moderation)
// and the WebSocket hub at /api/v1/ws. It talks to the media engine only
// through the engine.Bus: it writes stream keys, sends commands and reads
// lifecycle events and stats, so the engine may run on other machines.
package control

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveengine/liveengine/control/auth"
	"github.com/liveengine/liveengine/control/realtime"
	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/engine"
	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// Server is a control plane process.
type Server struct {
	conf   Config
	bus    engine.Bus
	log    *slog.Logger
	db     *sqldb.DB
	store  *store.Store
	tokens *auth.Tokens
	hub    *realtime.Hub
	router router

	authLimit    *limiter
	costlyLimit  *limiter
	commentLimit *limiter

	consumerID string
	dummyHash  string           // bcrypt hash at the configured cost, for unknown logins
	requests   [4]atomic.Uint64 // by status class 2xx..5xx
	started    atomic.Bool
	viewersMu  sync.Mutex
	viewers    map[string]viewerCount // last viewer count written per stream
	// streamInfos caches StreamInfo (a gift's owner and live check).
	streamInfos streamInfoCache

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	srv *fasthttp.Server
	ln  net.Listener
}

// New opens the database, applies migrations and builds the server. The bus
// is the engine's (LocalBus in one process, redisbus across machines).
func New(conf Config, bus engine.Bus, log *slog.Logger) (*Server, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if bus == nil {
		return nil, errors.New("control: bus is nil")
	}
	log = log.With("component", "control")
	secret := []byte(conf.JWTSecret)
	if len(secret) == 0 {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, fmt.Errorf("control.jwt_secret: generate: %w", err)
		}
		log.Warn("control.jwt_secret is not set: using a random secret; sessions end at restart and several control processes will reject each other's tokens. Set LIVEENGINE_CONTROL_JWT_SECRET (32+ bytes) in production.")
	}
	tokens, err := auth.NewTokens(secret, conf.AccessTTL)
	if err != nil {
		return nil, fmt.Errorf("control.jwt_secret: %w", err)
	}
	db, err := sqldb.Open(conf.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("control.database.url: %w", err)
	}
	st := store.New(db)
	mctx, mcancel := context.WithTimeout(context.Background(), time.Minute)
	defer mcancel()
	if err := st.Migrate(mctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	host, _ := os.Hostname()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		conf: conf, bus: bus, log: log, db: db, store: st, tokens: tokens,
		authLimit:    newLimiter("sign-in", rate.Limit(float64(conf.Limits.AuthPerMinute)/60), conf.Limits.AuthPerMinute),
		costlyLimit:  newLimiter("costly", rate.Limit(float64(conf.Limits.CostlyPerMinute)/60), max(1, conf.Limits.CostlyPerMinute/4)),
		commentLimit: newLimiter("comment", rate.Limit(conf.Limits.CommentsPerSecond), conf.Limits.CommentBurst),
		consumerID:   fmt.Sprintf("%s-%d-%s", host, os.Getpid(), store.NewID(4)),
		viewers:      map[string]viewerCount{},
		ctx:          ctx, cancel: cancel,
	}
	if s.dummyHash, err = auth.HashPassword(store.NewID(12), conf.PasswordCost); err != nil {
		cancel()
		db.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	hub, err := realtime.New(conf.WS, bus, chatBackend{s}, log)
	if err != nil {
		cancel()
		db.Close()
		return nil, err
	}
	s.hub = hub
	s.routes()
	s.srv = &fasthttp.Server{
		Handler: s.Handler(),
		Name:    "liveengine-control",
		// The handler refuses bodies over MaxBodyBytes with a 413 after
		// reading them (route); fasthttp itself only stops bodies over
		// twice that. When fasthttp refuses a body it answers and closes at
		// once, with the rest of the body unread: the kernel then resets
		// the connection, and a client still sending, or not yet reading,
		// lost the 413 to "connection reset" (TestBadInputStoresNothing
		// failed 1 run in 12 that way).
		MaxRequestBodySize: 2 * conf.MaxBodyBytes,
		ReadTimeout:        30 * time.Second,
		WriteTimeout:       30 * time.Second,
		IdleTimeout:        2 * time.Minute,
		// Small per-connection buffers: most connections are WebSockets
		// that fasthttp hands over after the handshake.
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// The WebSocket hub closes the sockets it takes over itself, so
		// fasthttp can free each handshake's request context at once
		// (realtime.Hub.HandleFrom).
		KeepHijackedConns: true,
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				WriteError(ctx, Errorf(fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than %d bytes", conf.MaxBodyBytes))
				return
			}
			WriteError(ctx, badRequest("malformed HTTP request: %v", err))
		},
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
	}
	return s, nil
}

// Start listens on control.addr and starts consuming engine events and
// stats. It returns once the listener is open.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.conf.Addr)
	if err != nil {
		return fmt.Errorf("control.addr %q: %w", s.conf.Addr, err)
	}
	s.ln = ln
	s.startBackground()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && s.ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("control server stopped", "err", err)
		}
	}()
	s.log.Info("control API listening", "addr", ln.Addr().String(), "database", string(s.db.Dialect))
	return nil
}

// StartBackground starts only the event and stats consumers, for callers
// that mount Handler on their own server instead of calling Start.
func (s *Server) StartBackground() { s.startBackground() }

func (s *Server) startBackground() {
	if !s.started.CompareAndSwap(false, true) {
		return
	}
	s.wg.Add(2)
	go s.consumeEvents()
	go s.consumeStats()
}

// Addr is the listening address after Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// DB is the shared database (for control/ledger's tables).
func (s *Server) DB() *sqldb.DB { return s.db }

// Hub is the WebSocket hub.
func (s *Server) Hub() *realtime.Hub { return s.hub }

// Routes is the route table, sorted (docs/openapi.yaml must list them all).
func (s *Server) Routes() []Route { return s.router.table() }

// Close stops accepting requests, disconnects WebSocket clients, stops the
// consumers and closes the database. It does not close the bus, which
// belongs to the caller.
func (s *Server) Close() {
	if s.ln != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_ = s.srv.ShutdownWithContext(ctx)
		cancel()
		// Shutdown misses a listener whose Serve had not started yet.
		_ = s.ln.Close()
	}
	s.hub.Close()
	s.cancel()
	s.wg.Wait()
	s.db.Close()
}

// Handler is the HTTP handler of every route, for tests and for mounting
// on another fasthttp server.
func (s *Server) Handler() fasthttp.RequestHandler {
	return s.serveHTTP
}

func (s *Server) serveHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	path := string(ctx.Path())
	method := string(ctx.Method())
	// CORS: the API is token-based (no cookies), so any origin may call it.
	ctx.Response.Header.Set("Access-Control-Allow-Origin", "*")
	if method == fasthttp.MethodOptions {
		ctx.Response.Header.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS")
		ctx.Response.Header.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Idempotency-Key")
		ctx.Response.Header.Set("Access-Control-Max-Age", "600")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	}
	if serveWeb(ctx, method, path) {
		return
	}
	// PostgreSQL text holds neither NUL bytes nor invalid UTF-8, and no id,
	// name or search term has them: refuse them here, once, rather than let
	// every lookup fail deep in the driver with a 500.
	if !storableText(path) || !storableArgs(ctx.QueryArgs()) {
		WriteError(ctx, badRequest("the path and query must be UTF-8 text without NUL characters"))
		return
	}
	rt, params, allowed := s.router.match(method, path)
	switch {
	case rt == nil && len(allowed) > 0:
		ctx.Response.Header.Set("Allow", strings.Join(allowed, ", "))
		WriteError(ctx, Errorf(fasthttp.StatusMethodNotAllowed, "method_not_allowed", "%s is not allowed on %s; use %s", method, path, strings.Join(allowed, ", ")))
		return
	case rt == nil:
		WriteError(ctx, Errorf(fasthttp.StatusNotFound, "no_route", "no route %s %s; see docs/openapi.yaml", method, path))
		return
	}
	if params != nil {
		ctx.SetUserValue(paramsKey, params)
	}
	if len(ctx.PostBody()) > s.conf.MaxBodyBytes {
		WriteError(ctx, Errorf(fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body is larger than %d bytes", s.conf.MaxBodyBytes))
		return
	}
	if err := s.authenticate(ctx, rt.Access); err != nil {
		WriteError(ctx, err)
		return
	}
	if err := rt.handler(ctx); err != nil {
		var apiErr *Error
		if !errors.As(err, &apiErr) {
			s.log.Error("request failed", "method", method, "route", rt.Pattern, "err", err)
		}
		WriteError(ctx, err)
	}
	if c := ctx.Response.StatusCode()/100 - 2; c >= 0 && c < 4 {
		s.requests[c].Add(1)
	}
	if d := time.Since(start); d > 2*time.Second {
		s.log.Warn("slow request", "method", method, "route", rt.Pattern, "took", d)
	}
}

// clientIP is the caller's address, from X-Forwarded-For only when the
// server sits behind a trusted proxy.
func (s *Server) clientIP(ctx *fasthttp.RequestCtx) string {
	if s.conf.TrustProxy {
		if xff := string(ctx.Request.Header.Peek("X-Forwarded-For")); xff != "" {
			// The last entry is the address our proxy saw; earlier ones are
			// whatever the client sent (proxies append), so the first one
			// let a client pick a fresh address per request and escape
			// the per-address limits.
			return strings.TrimSpace(xff[strings.LastIndexByte(xff, ',')+1:])
		}
	}
	return ctx.RemoteIP().String()
}
