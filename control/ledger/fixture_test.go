package ledger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/auth"
	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/valyala/fasthttp"
)

// bearerAuth stands in for the control plane's JWT auth: "Bearer USER" or
// "Bearer USER:admin". The thing under test is the money API, not tokens.
type bearerAuth struct{}

func (bearerAuth) Authenticate(ctx *fasthttp.RequestCtx) (string, string, error) {
	h := string(ctx.Request.Header.Peek("Authorization"))
	tok, ok := strings.CutPrefix(h, "Bearer ")
	if !ok || tok == "" {
		return "", "", errors.New("no token")
	}
	user, role, _ := strings.Cut(tok, ":")
	return user, role, nil
}

// streamTable is a stream directory; a stream in block waits until released.
type streamTable struct {
	mu      sync.Mutex
	streams map[string]streamRec
	block   map[string]chan struct{}
}

type streamRec struct {
	owner string
	live  bool
}

func newStreamTable() *streamTable {
	return &streamTable{streams: map[string]streamRec{}, block: map[string]chan struct{}{}}
}

func (s *streamTable) set(id, owner string, live bool) {
	s.mu.Lock()
	s.streams[id] = streamRec{owner, live}
	s.mu.Unlock()
}

func (s *streamTable) StreamOwner(ctx context.Context, id string) (string, bool, error) {
	s.mu.Lock()
	r, ok := s.streams[id]
	b := s.block[id]
	s.mu.Unlock()
	if b != nil {
		select {
		case <-b:
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
	if !ok {
		return "", false, fmt.Errorf("stream %q: %w", id, ErrStreamNotFound)
	}
	return r.owner, r.live, nil
}

// roomLog records room events.
type roomLog struct {
	mu     sync.Mutex
	events []GiftEvent
}

func (r *roomLog) PublishRoomEvent(_ context.Context, _ string, ev any) error {
	r.mu.Lock()
	r.events = append(r.events, ev.(GiftEvent))
	r.mu.Unlock()
	return nil
}

func (r *roomLog) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.events)
}

// server is a money API served over loopback.
type server struct {
	t       testing.TB
	db      *sqldb.DB
	l       *Ledger
	api     *API
	streams *streamTable
	rooms   *roomLog
	addr    string
	client  *fasthttp.HostClient
}

func startServer(t testing.TB, db *sqldb.DB, conf Config, lb Leaderboard) *server {
	t.Helper()
	return startServerAuth(t, db, conf, lb, bearerAuth{})
}

// jwtAuth is the control plane's check (control.Server.AuthenticateRequest):
// an HS256 access token from control/auth, verified on every request.
type jwtAuth struct{ tokens *auth.Tokens }

func (j jwtAuth) Authenticate(ctx *fasthttp.RequestCtx) (string, string, error) {
	tok, ok := strings.CutPrefix(string(ctx.Request.Header.Peek("Authorization")), "Bearer ")
	if !ok || tok == "" {
		return "", "", errors.New("no token")
	}
	c, err := j.tokens.Verify(tok)
	if err != nil {
		return "", "", err
	}
	return c.Subject, c.Role, nil
}

// benchJWTSecret signs the benchmark's access tokens (server and client
// process share it).
var benchJWTSecret = []byte("ledger-bench-jwt-secret-0123456789abcdef")

func benchTokens() *auth.Tokens {
	t, err := auth.NewTokens(benchJWTSecret, time.Hour)
	if err != nil {
		panic(err)
	}
	return t
}

func startServerAuth(t testing.TB, db *sqldb.DB, conf Config, lb Leaderboard, authn Authenticator) *server {
	t.Helper()
	return startServerWith(t, db, conf, lb, authn, nil)
}

// startServerWith is startServerAuth with the API's configuration changed
// by edit (nil: the defaults, PayPal enabled).
func startServerWith(t testing.TB, db *sqldb.DB, conf Config, lb Leaderboard, authn Authenticator, edit func(*APIConfig)) *server {
	t.Helper()
	l := newLedger(t, db, conf)
	s := &server{t: t, db: db, l: l, streams: newStreamTable(), rooms: &roomLog{}}
	aconf := DefaultAPIConfig()
	aconf.PayPal = ProviderConfig{Enabled: true}
	aconf.PayPal.Secret = "paypal-test-secret-0123456789"
	aconf.PayPal.ReplayWindow = 5 * time.Minute
	if edit != nil {
		edit(&aconf)
	}
	api, err := NewAPI(l, APIDeps{Auth: authn, Streams: s.streams, Rooms: s.rooms, Leaderboard: lb, Config: aconf, Log: testLog()})
	if err != nil {
		t.Fatal(err)
	}
	s.api = api
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: api.Handle, Concurrency: 4096}
	go srv.Serve(ln)
	// Cleanups run last-in first-out: server, then API, then ledger.
	t.Cleanup(api.Close)
	t.Cleanup(func() { srv.Shutdown() })
	s.addr = ln.Addr().String()
	s.client = &fasthttp.HostClient{Addr: s.addr, MaxConns: 1024, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, MaxConnWaitTimeout: 60 * time.Second}
	return s
}

// do sends a request; user "" is anonymous; key "" sends no Idempotency-Key.
func (s *server) do(method, path, user, key string, body any, headers ...string) (int, []byte) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://" + s.addr + path)
	req.Header.SetMethod(method)
	if user != "" {
		req.Header.Set("Authorization", "Bearer "+user)
	}
	if key != "" {
		req.Header.Set(HeaderIdempotencyKey, key)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	switch b := body.(type) {
	case nil:
	case []byte:
		req.SetBody(b)
	case string:
		req.SetBodyString(b)
	default:
		j, _ := json.Marshal(b)
		req.SetBody(j)
	}
	if err := s.client.DoTimeout(req, resp, 60*time.Second); err != nil {
		return 0, []byte(err.Error())
	}
	return resp.StatusCode(), append([]byte(nil), resp.Body()...)
}

// must sends a request and fails the test unless it answers want.
func (s *server) must(want int, method, path, user, key string, body any, out any) []byte {
	s.t.Helper()
	st, b := s.do(method, path, user, key, body)
	if st != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, st, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}

// topup buys coins through the sandbox provider, as a user would.
func (s *server) topup(user string, coins int64) {
	s.t.Helper()
	var o OrderView
	s.must(201, "POST", "/api/v1/wallet/topups", user, "topup-"+user+fmt.Sprint(coins), map[string]any{"coins": coins, "provider": "sandbox"}, &o)
	s.must(200, "POST", o.Checkout.URL, user, "", nil, nil)
}

func (s *server) balance(a AccountID) int64 {
	s.t.Helper()
	b, err := s.l.Balance(context.Background(), a)
	if err != nil {
		s.t.Fatal(err)
	}
	return b
}

func (s *server) addGift(id string, price int64) {
	s.t.Helper()
	s.must(201, "POST", "/api/v1/gifts", "root:admin", "", map[string]any{"id": id, "name": id, "price": price, "animation_url": "https://cdn.example/" + id + ".json", "tier": 1}, nil)
}

// eventually polls cond with a generous deadline.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
