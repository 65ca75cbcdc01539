// Package realtime is the control plane's WebSocket hub: clients subscribe
// to stream rooms (comments, reactions, viewer counts, status changes, gifts)
// and receive their personal channel. Every message goes through the bus
// (topic "room.STREAMID" or "user.USERID"), so clients connected to
// different control processes sharing one Redis bus see the same room.
//
// Memory per connection is kept small on purpose: one goroutine (the reader)
// per idle connection with a small read buffer, and no write buffer: each
// message is framed once and the same bytes are written to every socket by
// a few shard writers (writer.go).
package realtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/engine"
	"github.com/valyala/fasthttp"
)

// ErrClosed is returned by a hub that was closed.
var ErrClosed = errors.New("realtime hub closed")

// Identity is who a connection belongs to; UserID is empty for anonymous
// viewers, who may read rooms but not write to them.
type Identity struct {
	UserID   string
	Username string
	Role     string
}

// Backend is what the hub asks the control plane: it owns the rules
// (authentication, bans, rate limits, storage); the hub owns the sockets.
type Backend interface {
	// Authenticate resolves an access token.
	Authenticate(token string) (Identity, error)
	// Join decides whether id may enter a stream's room.
	Join(ctx context.Context, id Identity, streamID string) error
	// Comment posts a comment; the backend stores and publishes it.
	Comment(ctx context.Context, id Identity, streamID, body string) error
	// React posts a reaction; the backend publishes it.
	React(ctx context.Context, id Identity, streamID, emoji string) error
}

// CodedError is an error that carries a stable code for clients (the
// control package's API errors implement it).
type CodedError interface {
	error
	Code() string
}

// Config tunes the hub.
type Config struct {
	// SendQueue is how many messages may wait for a slow client before it
	// is disconnected.
	SendQueue int `yaml:"send_queue"`
	// MaxRooms is how many rooms one connection may join.
	MaxRooms int `yaml:"max_rooms"`
	// PingInterval is how often the hub pings clients; a client silent for
	// three intervals is disconnected.
	PingInterval time.Duration `yaml:"ping_interval"`
	// MaxMessageBytes caps a client message.
	MaxMessageBytes int64 `yaml:"max_message_bytes"`
	// AllowedOrigins lists browser origins allowed to connect; empty allows
	// the same host only, "*" allows any.
	AllowedOrigins []string `yaml:"allowed_origins"`
	// MaxConnsPerIP caps open WebSockets per client address (0: no cap), so
	// one host cannot take every file descriptor. Behind a proxy set
	// control.trust_proxy, or every client shares the proxy's address.
	MaxConnsPerIP int `yaml:"max_conns_per_ip"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{SendQueue: 256, MaxRooms: 16, PingInterval: 25 * time.Second, MaxMessageBytes: 4096, MaxConnsPerIP: 200}
}

// Validate checks the config; errors name the key under control.ws.
func (c Config) Validate() error {
	switch {
	case c.SendQueue < 1:
		return fmt.Errorf("control.ws.send_queue: must be at least 1, got %d", c.SendQueue)
	case c.MaxRooms < 1:
		return fmt.Errorf("control.ws.max_rooms: must be at least 1, got %d", c.MaxRooms)
	case c.PingInterval < time.Second || c.PingInterval > 24*time.Hour:
		// The cap keeps 3 × ping_interval (the read deadline) from
		// overflowing into a deadline in the past.
		return fmt.Errorf("control.ws.ping_interval: must be 1s to 24h, got %s", c.PingInterval)
	case c.MaxMessageBytes < 256:
		return fmt.Errorf("control.ws.max_message_bytes: must be at least 256, got %d", c.MaxMessageBytes)
	case c.MaxConnsPerIP < 0:
		return fmt.Errorf("control.ws.max_conns_per_ip: must be 0 (no cap) or more, got %d", c.MaxConnsPerIP)
	}
	return nil
}

// RoomTopic is the bus topic of a stream's room.
func RoomTopic(streamID string) string { return "room." + streamID }

// UserTopic is the bus topic of a user's personal channel.
func UserTopic(userID string) string { return "user." + userID }

// Envelope is every server → client message.
type Envelope struct {
	Type string `json:"type"`
	// Room is the stream id for room messages, empty on the personal channel.
	Room string `json:"room,omitempty"`
	// Ref echoes the client's ref on ack and error replies.
	Ref   string          `json:"ref,omitempty"`
	Data  any             `json:"data,omitempty"`
	Error *EnvelopeError  `json:"error,omitempty"`
	Raw   json.RawMessage `json:"-"`
}

// EnvelopeError is the error of an "error" envelope.
type EnvelopeError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Hub holds the WebSocket connections of one control process.
type Hub struct {
	conf     Config
	bus      engine.Bus
	backend  Backend
	log      *slog.Logger
	upgrader websocket.FastHTTPUpgrader

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	shards []chan job // one writer goroutine each

	mu     sync.Mutex
	topics map[string]*topic
	conns  map[*conn]struct{}
	perIP  map[string]int
	nextID int
	closed bool

	connections atomic.Int64
	delivered   atomic.Uint64
	dropped     atomic.Uint64
}

// topic is one bus topic with local listeners.
type topic struct {
	name  string
	conns map[*conn]struct{}
	sub   engine.Subscription
	// byShard is the listeners split by writer shard, rebuilt on the first
	// delivery after a join or leave; the slices are never modified once
	// built, so writers read them without the lock.
	byShard [][]*conn
}

// New returns a hub; call Close to disconnect every client.
func New(conf Config, bus engine.Bus, backend Backend, log *slog.Logger) (*Hub, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &Hub{conf: conf, bus: bus, backend: backend, log: log.With("component", "ws"),
		ctx: ctx, cancel: cancel, topics: map[string]*topic{}, conns: map[*conn]struct{}{}, perIP: map[string]int{}}
	h.upgrader = websocket.FastHTTPUpgrader{
		HandshakeTimeout: 10 * time.Second,
		ReadBufferSize:   512,
		// gorilla writes nothing after the handshake (see writer.go); the
		// pool lends a buffer only for a write it would make on its own.
		WriteBufferSize: 256,
		WriteBufferPool: &sync.Pool{},
		CheckOrigin:     h.checkOrigin,
		Error: func(ctx *fasthttp.RequestCtx, status int, reason error) {
			ctx.SetStatusCode(status)
			ctx.SetContentType("application/json")
			b, _ := json.Marshal(map[string]EnvelopeError{"error": {Code: "bad_handshake", Message: reason.Error()}})
			ctx.SetBody(b)
		},
	}
	// One writer per CPU: a room's fan-out runs on every core at once.
	h.shards = make([]chan job, runtime.GOMAXPROCS(0))
	for i := range h.shards {
		h.shards[i] = make(chan job, 1024)
		h.wg.Add(1)
		go h.writer(h.shards[i])
	}
	h.wg.Add(1)
	go h.pinger()
	return h, nil
}

func (h *Hub) checkOrigin(ctx *fasthttp.RequestCtx) bool {
	origin := string(ctx.Request.Header.Peek("Origin"))
	if origin == "" {
		return true
	}
	for _, o := range h.conf.AllowedOrigins {
		if o == "*" || strings.EqualFold(o, origin) {
			return true
		}
	}
	host := string(ctx.Host())
	return strings.EqualFold(strings.TrimPrefix(strings.TrimPrefix(origin, "https://"), "http://"), host)
}

// Connections is the number of open connections.
func (h *Hub) Connections() int64 { return h.connections.Load() }

// Delivered counts messages queued to clients.
func (h *Hub) Delivered() uint64 { return h.delivered.Load() }

// Dropped counts clients disconnected for being too slow.
func (h *Hub) Dropped() uint64 { return h.dropped.Load() }

// JSONAppender is envelope data that encodes itself: AppendJSON appends
// exactly what json.Marshal would write, or reports false (b unchanged) to
// leave it to encoding/json. Gift events implement it: one is published
// for every gift.
type JSONAppender interface {
	AppendJSON(b []byte) ([]byte, bool)
}

// Publish sends a message to a topic on the bus; every hub with listeners
// on the topic, this one included, delivers it.
func (h *Hub) Publish(ctx context.Context, topicName string, env Envelope) error {
	// 512 bytes hold a gift event: no growing on the way.
	payload, ok := appendEnvelope(make([]byte, 0, 512), env)
	if !ok {
		var err error
		if payload, err = json.Marshal(env); err != nil {
			return fmt.Errorf("publish %s: %w", topicName, err)
		}
	}
	if err := h.bus.Publish(ctx, topicName, payload); err != nil {
		return fmt.Errorf("publish %s: %w", topicName, err)
	}
	return nil
}

// appendEnvelope writes env as json.Marshal would when its data is a
// JSONAppender and it carries no ref or error; ok=false otherwise.
func appendEnvelope(b []byte, env Envelope) ([]byte, bool) {
	a, ok := env.Data.(JSONAppender)
	if !ok || env.Ref != "" || env.Error != nil || !plainJSONString(env.Type) || !plainJSONString(env.Room) {
		return b, false
	}
	// A nil pointer would panic in a value method; encoding/json writes null.
	if v := reflect.ValueOf(env.Data); v.Kind() == reflect.Pointer && v.IsNil() {
		return b, false
	}
	n := len(b)
	b = append(append(append(b, `{"type":"`...), env.Type...), '"')
	if env.Room != "" {
		b = append(append(append(b, `,"room":"`...), env.Room...), '"')
	}
	b = append(b, `,"data":`...)
	b, ok = a.AppendJSON(b)
	if !ok {
		return b[:n], false
	}
	return append(b, '}'), true
}

// plainJSONString reports whether json.Marshal writes s between quotes
// as it is (no escapes: printable ASCII other than " \ < > &).
func plainJSONString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// DeliverLocal sends a message to this hub's listeners of a topic only,
// for data every control process already has (viewer counts from stats).
func (h *Hub) DeliverLocal(topicName string, env Envelope) {
	payload, err := json.Marshal(env)
	if err != nil {
		return
	}
	h.deliver(topicName, payload)
}

func (h *Hub) deliver(topicName string, payload []byte) {
	h.mu.Lock()
	t := h.topics[topicName]
	if t == nil || len(t.conns) == 0 {
		h.mu.Unlock()
		return
	}
	if t.byShard == nil {
		t.byShard = make([][]*conn, len(h.shards))
		for c := range t.conns {
			t.byShard[c.shard] = append(t.byShard[c.shard], c)
		}
	}
	byShard, n := t.byShard, len(t.conns)
	h.mu.Unlock()
	f := frame(opText, payload)
	for i, conns := range byShard {
		if len(conns) == 0 {
			continue
		}
		select {
		case h.shards[i] <- job{frame: f, conns: conns}:
		case <-h.ctx.Done():
			return
		}
	}
	h.delivered.Add(uint64(n))
	// A ban takes effect on open connections at once, on every process.
	if strings.HasPrefix(string(payload[:min(len(payload), 16)]), `{"type":"banned"`) {
		h.expel(topicName, payload)
	}
}

// expel removes the banned user's connections from a room.
func (h *Hub) expel(topicName string, payload []byte) {
	var env struct {
		Data struct {
			UserID string `json:"user_id"`
		} `json:"data"`
	}
	if json.Unmarshal(payload, &env) != nil || env.Data.UserID == "" {
		return
	}
	h.mu.Lock()
	t := h.topics[topicName]
	var victims []*conn
	if t != nil {
		for c := range t.conns {
			if c.identity().UserID == env.Data.UserID {
				victims = append(victims, c)
			}
		}
	}
	h.mu.Unlock()
	for _, c := range victims {
		h.leave(c, topicName)
	}
}

// join adds a connection to a topic, subscribing to the bus on first use.
func (h *Hub) join(c *conn, topicName string) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	t := h.topics[topicName]
	if t == nil {
		sub, err := h.bus.Subscribe(h.ctx, topicName)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", topicName, err)
		}
		t = &topic{name: topicName, conns: map[*conn]struct{}{}, sub: sub}
		h.topics[topicName] = t
		h.wg.Add(1)
		go h.relay(t)
	}
	t.conns[c] = struct{}{}
	t.byShard = nil
	return nil
}

// leave removes a connection from a topic, unsubscribing when it was the
// last local listener.
func (h *Hub) leave(c *conn, topicName string) {
	h.mu.Lock()
	t := h.topics[topicName]
	if t == nil {
		h.mu.Unlock()
		return
	}
	delete(t.conns, c)
	t.byShard = nil
	var sub engine.Subscription
	if len(t.conns) == 0 {
		delete(h.topics, topicName)
		sub = t.sub
	}
	h.mu.Unlock()
	c.forget(topicName)
	if sub != nil {
		sub.Close()
	}
}

// relay copies bus messages of one topic to the local listeners.
func (h *Hub) relay(t *topic) {
	defer h.wg.Done()
	for msg := range t.sub.C() {
		h.deliver(t.name, msg.Payload)
	}
}

// pinger pings every connection so dead peers are found and proxies keep
// idle connections open. send never blocks, so a slow client never blocks
// the pinger.
func (h *Hub) pinger() {
	defer h.wg.Done()
	tick := time.NewTicker(h.conf.PingInterval)
	defer tick.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-tick.C:
		}
		h.mu.Lock()
		all := make([]*conn, 0, len(h.conns))
		for c := range h.conns {
			all = append(all, c)
		}
		h.mu.Unlock()
		for _, c := range all {
			c.send(pingFrame)
		}
	}
}

// Handle upgrades GET /api/v1/ws for a client at the connection's remote
// address; see HandleFrom.
func (h *Hub) Handle(ctx *fasthttp.RequestCtx) { h.HandleFrom(ctx, ctx.RemoteIP().String()) }

// HandleFrom upgrades GET /api/v1/ws for a client at address ip (the
// caller resolves proxies). The access token may come as the
// "access_token" query parameter, an Authorization: Bearer header, or later
// in an "auth" message (which keeps it out of URLs and logs).
//
// The fasthttp.Server must set KeepHijackedConns: the hub closes each
// socket itself once the client is gone, and fasthttp releases the
// handshake's request context right after the upgrade (without the option
// it would close the socket at that point).
func (h *Hub) HandleFrom(ctx *fasthttp.RequestCtx, ip string) {
	var id Identity
	tok := string(ctx.QueryArgs().Peek("access_token"))
	if tok == "" {
		if a := string(ctx.Request.Header.Peek("Authorization")); len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			tok = a[7:]
		}
	}
	if tok != "" {
		var err error
		if id, err = h.backend.Authenticate(tok); err != nil {
			refuse(ctx, fasthttp.StatusUnauthorized, errCode(err, "unauthorized"), err.Error())
			return
		}
	}
	h.mu.Lock()
	err := h.admitLocked(ip)
	h.mu.Unlock()
	if err != nil {
		if errors.Is(err, ErrClosed) {
			refuse(ctx, fasthttp.StatusServiceUnavailable, "shutting_down", "server is shutting down")
		} else {
			ctx.Response.Header.Set("Retry-After", "10")
			refuse(ctx, fasthttp.StatusTooManyRequests, "too_many_connections", err.Error())
		}
		return
	}
	sock := ctx.Conn()
	_ = h.upgrader.Upgrade(ctx, func(ws *websocket.Conn) {
		c := &conn{hub: h, ws: ws, sock: sock, id: id, ip: ip, fd: -1}
		if sc, ok := sock.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				_ = raw.Control(func(fd uintptr) { c.fd = int(fd) })
			}
		}
		if err := h.register(c); err != nil {
			// Lost a race for the last slot (or the hub closed) after the
			// check above: the handshake is done, so say why in a close frame.
			code := uint16(websocket.ClosePolicyViolation)
			if errors.Is(err, ErrClosed) {
				code = websocket.CloseGoingAway
			}
			c.send(closeFrame(code, err.Error()))
			c.close()
			_ = sock.Close()
			return
		}
		// The connection lives on its own goroutine and this handler
		// returns at once, so fasthttp releases the request context (about
		// 2 KB with its header buffers) instead of holding it for the
		// connection's whole life. The socket is then ours to close.
		go func() {
			defer h.wg.Done()
			defer sock.Close() // after serve's close(): no writer uses c.fd any more
			c.serve()
		}()
	})
}

// ErrTooManyConns is the refusal of a client address over
// control.ws.max_conns_per_ip.
var ErrTooManyConns = errors.New("too many WebSocket connections from one address")

// admitLocked checks that ip may open one more connection. The slot is
// taken only in register, once the handshake is through, so a handshake
// that fails half-way never holds one.
func (h *Hub) admitLocked(ip string) error {
	if h.closed {
		return ErrClosed
	}
	if max := h.conf.MaxConnsPerIP; max > 0 && h.perIP[ip] >= max {
		return fmt.Errorf("%w: %s has %d open, the limit (control.ws.max_conns_per_ip) is %d", ErrTooManyConns, ip, h.perIP[ip], max)
	}
	return nil
}

func refuse(ctx *fasthttp.RequestCtx, status int, code, msg string) {
	ctx.SetStatusCode(status)
	ctx.SetContentType("application/json")
	b, _ := json.Marshal(map[string]EnvelopeError{"error": {Code: code, Message: msg}})
	ctx.SetBody(b)
}

func (h *Hub) register(c *conn) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.admitLocked(c.ip); err != nil {
		return err
	}
	h.perIP[c.ip]++
	h.conns[c] = struct{}{}
	c.shard = h.nextID % len(h.shards)
	h.nextID++
	h.wg.Add(1)
	h.connections.Add(1)
	return nil
}

func (h *Hub) unregister(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	for _, t := range c.topicList() {
		h.leave(c, t)
	}
	h.mu.Lock()
	if h.perIP[c.ip]--; h.perIP[c.ip] <= 0 {
		delete(h.perIP, c.ip)
	}
	h.mu.Unlock()
	h.connections.Add(-1)
}

// Close disconnects every client and waits for the hub's goroutines.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	all := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		all = append(all, c)
	}
	h.mu.Unlock()
	h.cancel()
	for _, c := range all {
		c.goingAway()
	}
	h.wg.Wait()
}

func errCode(err error, fallback string) string {
	var ce CodedError
	if errors.As(err, &ce) {
		return ce.Code()
	}
	return fallback
}
