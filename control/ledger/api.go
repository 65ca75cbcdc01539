package ledger

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/liveengine/liveengine/control/ledger/payment"
	"github.com/valyala/fasthttp"
)

// Roles the API distinguishes.
const RoleAdmin = "admin"

// HeaderIdempotencyKey carries the client's idempotency key.
const HeaderIdempotencyKey = "Idempotency-Key"

// Authenticator identifies the caller of a request (the control plane's JWT
// auth). A non-nil error answers 401.
type Authenticator interface {
	Authenticate(ctx *fasthttp.RequestCtx) (userID, role string, err error)
}

// StreamDirectory tells who owns a stream and whether it is live.
type StreamDirectory interface {
	StreamOwner(ctx context.Context, streamID string) (ownerID string, live bool, err error)
}

// ErrStreamNotFound is what a StreamDirectory returns (wrapped) for an
// unknown stream; the API answers 404.
var ErrStreamNotFound = errors.New("stream not found")

// RoomPublisher sends an event to a stream's WebSocket room.
type RoomPublisher interface {
	PublishRoomEvent(ctx context.Context, streamID string, event any) error
}

// APIDeps is what the money API needs from the control plane.
type APIDeps struct {
	Auth    Authenticator
	Streams StreamDirectory
	Rooms   RoomPublisher
	// Leaderboard defaults to an in-process one.
	Leaderboard Leaderboard
	// Providers default to APIConfig.Providers().
	Providers []payment.Provider
	Config    APIConfig
	Log       *slog.Logger
}

// Route is one endpoint for the control router.
type Route struct {
	Method  string
	Path    string
	Handler fasthttp.RequestHandler
}

// API serves wallets, top-ups, gifts, leaderboards, earnings, withdrawals and
// admin reports over fasthttp.
type API struct {
	l         *Ledger
	deps      APIDeps
	conf      APIConfig
	log       *slog.Logger
	providers map[string]payment.Provider
	routes    []Route
	patterns  []routePattern
	serves    []func(*fasthttp.RequestCtx, params) // routes[i] after matching

	inflightMu sync.Mutex
	inflight   map[string]struct{}

	catalog *catalogCache
	// deadlines are the gift path's request contexts.
	deadlines sharedDeadlines

	events     chan GiftEvent
	eventsDone chan struct{}
	closeOnce  sync.Once
	now        func() time.Time
}

// GiftEvent is what a stream's room receives when a gift is sent (for the
// on-screen animation) and what leaderboards count.
type GiftEvent struct {
	Type         string    `json:"type"` // "gift"
	StreamID     string    `json:"stream_id"`
	SenderID     string    `json:"sender_id"`
	StreamerID   string    `json:"streamer_id"`
	GiftID       string    `json:"gift_id"`
	GiftName     string    `json:"gift_name"`
	AnimationURL string    `json:"animation_url"`
	Tier         int       `json:"tier"`
	Quantity     int64     `json:"quantity"`
	Coins        int64     `json:"coins"`
	TransferID   string    `json:"transfer_id"`
	At           time.Time `json:"at"`
	earned       int64
}

// NewAPI builds the money API on a started ledger. Close it before the ledger.
func NewAPI(l *Ledger, deps APIDeps) (*API, error) {
	if err := deps.Config.Validate(); err != nil {
		return nil, err
	}
	if deps.Auth == nil || deps.Streams == nil {
		return nil, errors.New("ledger api: Auth and Streams are required")
	}
	if deps.Leaderboard == nil {
		deps.Leaderboard = NewMemoryLeaderboard()
	}
	if deps.Providers == nil {
		deps.Providers = deps.Config.Providers()
	}
	if deps.Log == nil {
		deps.Log = slog.Default()
	}
	a := &API{
		l: l, deps: deps, conf: deps.Config, log: deps.Log.With("component", "wallet-api"),
		providers: make(map[string]payment.Provider), inflight: make(map[string]struct{}),
		events: make(chan GiftEvent, 65536), eventsDone: make(chan struct{}), now: time.Now,
	}
	a.catalog = newCatalogCache(l.db, deps.Config.CatalogTTL)
	a.deadlines.timeout = deps.Config.RequestTimeout
	for _, p := range deps.Providers {
		a.providers[p.Name()] = p
	}
	a.buildRoutes()
	if _, ok := a.providers["sandbox"]; ok {
		a.log.Warn("sandbox payment provider enabled: any signed-in user can buy coins for free; set wallet.sandbox.enabled=false in production")
	}
	go a.runEvents()
	return a, nil
}

// Close stops the gift-event worker after it delivered what was queued.
func (a *API) Close() {
	a.closeOnce.Do(func() {
		close(a.events)
		<-a.eventsDone
	})
}

// Leaderboard returns the API's leaderboard (for Rebuild).
func (a *API) Leaderboard() Leaderboard { return a.deps.Leaderboard }

// Routes lists the endpoints; paths use {name} for parameters, and every
// handler reads its parameters from the request path itself, so any router
// that matches the pattern can mount it.
func (a *API) Routes() []Route { return a.routes }

// Handle serves every route of the API (404/405 otherwise); for mounting
// the whole /api/v1 money surface with one call, and for tests.
func (a *API) Handle(ctx *fasthttp.RequestCtx) {
	path := strings.Trim(string(ctx.Path()), "/")
	segs := strings.Count(path, "/") + 1
	methodOK := false
	for i, r := range a.routes {
		if len(a.patterns[i].segs) != segs {
			continue
		}
		if p, ok := matchPath(a.patterns[i], path); ok {
			if string(ctx.Method()) == r.Method {
				a.serves[i](ctx, p) // matched once, not again by r.Handler
				return
			}
			methodOK = true
		}
	}
	if methodOK {
		writeError(ctx, fasthttp.StatusMethodNotAllowed, "method_not_allowed", "method not allowed on this path")
		return
	}
	writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint")
}

// maxParams bounds the parameters of one route pattern, so that matching
// a request allocates none.
const maxParams = 2

// routePattern is a route's path split at "/"; a "{name}" segment matches
// any non-empty segment.
type routePattern struct {
	segs  []string
	names []string // of the parameters, in path order
}

func parsePattern(pattern string) routePattern {
	p := routePattern{segs: strings.Split(strings.Trim(pattern, "/"), "/")}
	for _, seg := range p.segs {
		if strings.HasPrefix(seg, "{") {
			p.names = append(p.names, seg[1:len(seg)-1])
		}
	}
	if len(p.names) > maxParams {
		panic(fmt.Sprintf("ledger: route %s has more than %d parameters", pattern, maxParams))
	}
	return p
}

// params are the path parameters of a matched request.
type params struct {
	names []string
	vals  [maxParams]string
}

// get returns the parameter called name ("" if the route has none).
func (p params) get(name string) string {
	for i, n := range p.names {
		if n == name {
			return p.vals[i]
		}
	}
	return ""
}

type caller struct {
	id, role string
}

func (c caller) admin() bool { return c.role == RoleAdmin }

type handlerFunc func(ctx *fasthttp.RequestCtx, p params, who caller)

// route registers a handler; auth "" = public, "user", "admin".
func (a *API) route(method, pattern, auth string, h handlerFunc) {
	pat := parsePattern(pattern)
	serve := func(ctx *fasthttp.RequestCtx, p params) {
		var who caller
		if auth != "" {
			id, role, err := a.deps.Auth.Authenticate(ctx)
			if err != nil || id == "" {
				writeError(ctx, fasthttp.StatusUnauthorized, "unauthorized", "sign in first")
				return
			}
			who = caller{id: id, role: role}
			if auth == "admin" && !who.admin() {
				writeError(ctx, fasthttp.StatusForbidden, "forbidden", "admins only")
				return
			}
		}
		if len(ctx.PostBody()) > 64<<10 {
			writeError(ctx, fasthttp.StatusRequestEntityTooLarge, "body_too_large", "request body over 64 KiB")
			return
		}
		h(ctx, p, who)
	}
	a.patterns = append(a.patterns, pat)
	a.serves = append(a.serves, serve)
	a.routes = append(a.routes, Route{Method: method, Path: pattern, Handler: func(ctx *fasthttp.RequestCtx) {
		p, ok := matchPath(pat, string(ctx.Path()))
		if !ok {
			writeError(ctx, fasthttp.StatusNotFound, "not_found", "no such endpoint")
			return
		}
		serve(ctx, p)
	}})
}

// matchPath matches a request path against a pattern as if both were
// split at "/" after trimming their slashes, without splitting: the gift
// hot path tries a dozen routes per request. Parameters are substrings
// of path.
func matchPath(pat routePattern, path string) (params, bool) {
	path = strings.Trim(path, "/")
	p := params{names: pat.names}
	n := 0
	last := len(pat.segs) - 1
	for i, want := range pat.segs {
		seg := path
		if i < last {
			j := strings.IndexByte(path, '/')
			if j < 0 {
				return params{}, false
			}
			seg, path = path[:j], path[j+1:]
		} else if strings.IndexByte(path, '/') >= 0 {
			return params{}, false
		}
		if strings.HasPrefix(want, "{") {
			if seg == "" {
				return params{}, false
			}
			p.vals[n] = seg
			n++
			continue
		}
		if seg != want {
			return params{}, false
		}
	}
	return p, true
}

func (a *API) buildRoutes() {
	a.route("GET", "/api/v1/wallet", "user", a.getWallet)
	a.route("GET", "/api/v1/wallet/transactions", "user", a.listTransactions)
	a.route("POST", "/api/v1/wallet/topups", "user", a.createTopup)
	a.route("GET", "/api/v1/wallet/topups/{id}", "user", a.getTopup)
	a.route("POST", "/api/v1/payments/webhooks/{provider}", "", a.webhook)
	a.route("POST", "/api/v1/payments/sandbox/orders/{id}/complete", "user", a.sandboxComplete)
	a.route("GET", "/api/v1/gifts", "", a.listGifts)
	a.route("POST", "/api/v1/gifts", "admin", a.createGift)
	a.route("PUT", "/api/v1/gifts/{id}", "admin", a.updateGift)
	a.route("POST", "/api/v1/streams/{id}/gifts", "user", a.sendGift)
	a.route("GET", "/api/v1/leaderboards/gifters", "", a.leaderboardGifters)
	a.route("GET", "/api/v1/leaderboards/streamers", "", a.leaderboardStreamers)
	a.route("GET", "/api/v1/streams/{id}/leaderboard", "", a.streamLeaderboard)
	a.route("GET", "/api/v1/earnings", "user", a.getEarnings)
	a.route("POST", "/api/v1/withdrawals", "user", a.createWithdrawal)
	a.route("GET", "/api/v1/withdrawals", "user", a.listWithdrawals)
	a.route("GET", "/api/v1/admin/withdrawals", "admin", a.adminListWithdrawals)
	a.route("POST", "/api/v1/admin/withdrawals/{id}/approve", "admin", a.approveWithdrawal)
	a.route("POST", "/api/v1/admin/withdrawals/{id}/reject", "admin", a.rejectWithdrawal)
	a.route("PUT", "/api/v1/admin/streamers/{id}/commission", "admin", a.setCommission)
	a.route("GET", "/api/v1/admin/reports/commission", "admin", a.commissionReport)
	a.route("GET", "/api/v1/admin/invariants", "admin", a.invariants)
	a.route("POST", "/api/v1/admin/leaderboards/rebuild", "admin", a.rebuildLeaderboards)
}

// apiError is the body of every error answer.
type apiError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func writeError(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	var e apiError
	e.Error.Code, e.Error.Message = code, msg
	b, _ := json.Marshal(e)
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(ctx, fasthttp.StatusInternalServerError, "internal", "encoding failed")
		return
	}
	writeRaw(ctx, status, b)
}

func writeRaw(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	ctx.SetBody(body)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("ledger: marshal %T: %v", v, err))
	}
	return b
}

// decode reads a JSON body strictly; on error it answers 400.
func decode(ctx *fasthttp.RequestCtx, v any) bool {
	dec := json.NewDecoder(strings.NewReader(string(ctx.PostBody())))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(ctx, fasthttp.StatusBadRequest, "bad_request", "invalid JSON body: "+err.Error())
		return false
	}
	return true
}

// idem is one idempotent request in flight.
type idem struct {
	a                *API
	key, fingerprint string
}

// release marks the request no longer in flight.
func (id idem) release() {
	id.a.inflightMu.Lock()
	delete(id.a.inflight, id.key)
	id.a.inflightMu.Unlock()
}

// beginIdempotent reads the Idempotency-Key header, scopes it to the caller,
// fingerprints the request and marks it in flight; a concurrent duplicate
// answers 409. The caller must call release.
func (a *API) beginIdempotent(ctx *fasthttp.RequestCtx, who caller) (idem, bool) {
	k := ctx.Request.Header.Peek(HeaderIdempotencyKey)
	if len(k) == 0 || len(k) > 200 {
		writeError(ctx, fasthttp.StatusBadRequest, "idempotency_key_required", "send an Idempotency-Key header (1..200 bytes) with every money-moving request")
		return idem{}, false
	}
	h := sha256.New()
	h.Write(ctx.Method())
	h.Write([]byte{' '})
	h.Write(ctx.Path())
	h.Write([]byte{'\n'})
	h.Write(ctx.PostBody())
	var sum [sha256.Size]byte
	fp := hex.EncodeToString(h.Sum(sum[:0])[:16])
	key := "u:" + who.id + ":" + string(k)
	a.inflightMu.Lock()
	if _, busy := a.inflight[key]; busy {
		a.inflightMu.Unlock()
		writeError(ctx, fasthttp.StatusConflict, "idempotency_in_flight", "a request with this Idempotency-Key is still being processed; retry later")
		return idem{}, false
	}
	a.inflight[key] = struct{}{}
	a.inflightMu.Unlock()
	return idem{a: a, key: key, fingerprint: fp}, true
}

// replayStored answers from a stored transfer with this key, if any; used
// before answering a validation error so that a retry of a request that
// succeeded earlier (say, before the stream ended) gets its first answer.
func (a *API) replayStored(ctx *fasthttp.RequestCtx, rc context.Context, id idem) bool {
	db := a.l.db
	var fp, body string
	var status int
	err := db.QueryRowContext(rc, db.Rebind("SELECT fingerprint, resp_status, resp_body FROM ledger_transfers WHERE idem_key = ?"), id.key).Scan(&fp, &status, &body)
	if err != nil {
		return false
	}
	if fp != id.fingerprint {
		writeError(ctx, fasthttp.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
		return true
	}
	// The row may be committed and not yet durable (the first request
	// still waits for its fsync): answer once it is.
	if err := a.l.SyncCommitted(rc); err != nil {
		a.internal(ctx, err)
		return true
	}
	writeRaw(ctx, status, []byte(body))
	return true
}

// transferError answers a ledger error.
func (a *API) transferError(ctx *fasthttp.RequestCtx, err error) {
	var fe *FundsError
	switch {
	case errors.As(err, &fe):
		writeError(ctx, fasthttp.StatusPaymentRequired, "insufficient_funds", fmt.Sprintf("not enough coins: balance %d, needs %d", fe.Balance, fe.Requested))
	case errors.Is(err, ErrIdempotencyConflict):
		writeError(ctx, fasthttp.StatusUnprocessableEntity, "idempotency_key_reused", "this Idempotency-Key was used with a different request")
	case errors.Is(err, ErrInvalidTransfer):
		writeError(ctx, fasthttp.StatusBadRequest, "invalid_transfer", err.Error())
	case errors.Is(err, ErrClosed):
		writeError(ctx, fasthttp.StatusServiceUnavailable, "unavailable", "shutting down; retry with the same Idempotency-Key")
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		writeError(ctx, fasthttp.StatusServiceUnavailable, "timeout", "not answered in time; retry with the same Idempotency-Key")
	default:
		a.log.Error("transfer failed", "err", err)
		writeError(ctx, fasthttp.StatusInternalServerError, "internal", "transfer failed; retry with the same Idempotency-Key")
	}
}

func (a *API) reqContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), a.conf.RequestTimeout)
}

// eventLinger is how long the gift-event worker lets events gather after
// the first one: rooms and leaderboards see a gift at most this much later,
// and the worker wakes once per burst instead of once or twice per gift (a
// wake-up, a context and a leaderboard lock for every gift or two in
// BenchmarkGifts' profile).
const eventLinger = 2 * time.Millisecond

// runEvents delivers gift events to rooms and leaderboards off the request
// path, a batch at a time.
func (a *API) runEvents() {
	defer close(a.eventsDone)
	batch := make([]GiftEvent, 0, 512)
	recs := make([]GiftRecord, 0, 512)
	for ev := range a.events {
		batch = append(batch[:0], ev)
		if len(a.events) < cap(batch)-1 {
			time.Sleep(eventLinger)
		}
	fill:
		for len(batch) < cap(batch) {
			select {
			case ev, ok := <-a.events:
				if !ok {
					break fill
				}
				batch = append(batch, ev)
			default:
				break fill
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		recs = recs[:0]
		for _, ev := range batch {
			recs = append(recs, GiftRecord{Sender: ev.SenderID, StreamID: ev.StreamID, Coins: ev.Coins, Streamer: ev.StreamerID, Earned: ev.earned, At: ev.At})
			if a.deps.Rooms != nil {
				if err := a.deps.Rooms.PublishRoomEvent(ctx, ev.StreamID, ev); err != nil {
					a.log.Warn("gift event not delivered to room", "stream", ev.StreamID, "err", err)
				}
			}
		}
		if err := a.deps.Leaderboard.Add(ctx, recs); err != nil {
			a.log.Warn("leaderboard update failed; rebuild from the ledger", "gifts", len(recs), "err", err)
		}
		cancel()
	}
}

func decodeStrict(body []byte, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}
