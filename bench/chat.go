package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/liveengine/liveengine/bench/wsload"
)

func init() {
	register("chat", scenario{
		summary: "K WebSocket clients in one room, S of them signed in and commenting: broadcast latency and delivery rate",
		flags: func(fs *flag.FlagSet) runner {
			return &chatStorm{
				api:     fs.String("api", "http://127.0.0.1:8080", "control API base URL"),
				n:       fs.Int("n", 50, "WebSocket clients in the room (anonymous readers plus the senders)"),
				senders: fs.Int("senders", 4, "signed-in clients that comment (registered at start; registration is rate limited)"),
				rate:    fs.Float64("rate", 1, "comments per second per sender (the API limits each user, 2/s by default)"),
				room:    fs.String("room", "", "stream id of the room; empty: register a streamer and create a stream"),
			}
		},
		target:      func(fs *flag.FlagSet) string { return flagString(fs, "api") },
		framesLabel: "sent/s",
	})
}

type chatStorm struct {
	api     *string
	n       *int
	senders *int
	rate    *float64
	room    *string

	hc     *http.Client
	tokens []string
	roomID string
	wsURL  string
}

func (c *chatStorm) prepare(ctx context.Context) error {
	if *c.n < 1 || *c.senders < 1 || *c.senders > *c.n || *c.rate <= 0 {
		return fmt.Errorf("%w: need 1 <= -senders <= -n and -rate > 0", ErrUsage)
	}
	u, err := url.Parse(*c.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: -api %q is not an http(s) URL", ErrUsage, *c.api)
	}
	c.wsURL = strings.Replace(strings.TrimSuffix(*c.api, "/"), "http", "ws", 1) + "/api/v1/ws"
	c.hc = &http.Client{Timeout: 15 * time.Second}
	run := randomHex(4)
	c.roomID = *c.room
	if c.roomID == "" {
		host := newAPIClient(*c.api, c.hc)
		if _, err := host.register(ctx, run, 0, "streamer"); err != nil {
			return err
		}
		st, err := host.createStream(ctx, "chat bench "+run)
		if err != nil {
			return err
		}
		c.roomID = st.ID
	}
	for i := 1; i <= *c.senders; i++ {
		cl := newAPIClient(*c.api, c.hc)
		if _, err := cl.register(ctx, run, i, ""); err != nil {
			return err
		}
		c.tokens = append(c.tokens, cl.token)
	}
	return nil
}

type wsMsg struct {
	Type  string          `json:"type"`
	Room  string          `json:"room,omitempty"`
	Ref   string          `json:"ref,omitempty"`
	Body  string          `json:"body,omitempty"`
	Token string          `json:"token,omitempty"`
	Data  json.RawMessage `json:"data,omitempty"`
	Error *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

func (c *chatStorm) run(ctx context.Context, r *Run) error {
	var wg sync.WaitGroup
	for i := 0; i < *c.n; i++ {
		token := ""
		if i < len(c.tokens) {
			token = c.tokens[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(ctx, r, func() error { return c.client(ctx, r, token) })
		}()
	}
	wg.Wait()
	return nil
}

// client is one WebSocket connection: it joins the room, counts every
// bench comment it receives and its latency, and comments when signed in.
func (c *chatStorm) client(ctx context.Context, r *Run, token string) error {
	u := c.wsURL
	if token != "" {
		u += "?access_token=" + url.QueryEscape(token)
	}
	conn, _, err := websocket.DefaultDialer.DialContext(ctx, u, nil)
	if err != nil {
		return fmt.Errorf("chat dial: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var wmu sync.Mutex
	send := func(m wsMsg) error {
		wmu.Lock()
		defer wmu.Unlock()
		conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		return conn.WriteJSON(m)
	}
	if err := send(wsMsg{Type: "subscribe", Room: c.roomID, Ref: "join"}); err != nil {
		return fmt.Errorf("chat subscribe: %w", err)
	}
	joined := make(chan struct{})
	readErr := make(chan error, 1)
	go func() {
		var once sync.Once
		for {
			var m wsMsg
			if err := conn.ReadJSON(&m); err != nil {
				readErr <- err
				return
			}
			now := time.Now()
			switch m.Type {
			case "ack":
				if m.Ref == "join" {
					once.Do(func() { close(joined) })
				}
			case "error":
				if m.Error != nil {
					r.Error(fmt.Errorf("chat: %s: %s (ref %s)", m.Error.Code, m.Error.Message, m.Ref))
				}
				if m.Ref == "join" {
					readErr <- fmt.Errorf("chat: join refused")
					return
				}
			case "comment":
				var d struct {
					Body string `json:"body"`
				}
				if json.Unmarshal(m.Data, &d) != nil || !strings.HasPrefix(d.Body, "bench ") {
					continue
				}
				ns, err := strconv.ParseInt(strings.TrimPrefix(d.Body, "bench "), 10, 64)
				if err != nil {
					continue
				}
				r.Ops.Add(1)
				r.Bytes.Add(int64(len(m.Data)))
				r.OpLatency(now.Sub(time.Unix(0, ns)))
			}
		}
	}()
	select {
	case <-joined:
	case err := <-readErr:
		return fmt.Errorf("chat join: %w", err)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(15 * time.Second):
		return fmt.Errorf("chat join: no ack after 15s")
	}
	r.Active.Add(1)
	defer r.Active.Add(-1)
	var tick <-chan time.Time
	if token != "" {
		t := time.NewTicker(time.Duration(float64(time.Second) / *c.rate))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-readErr:
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("chat read: %w", err)
		case <-tick:
			body := "bench " + strconv.FormatInt(time.Now().UnixNano(), 10)
			if err := send(wsMsg{Type: "comment", Room: c.roomID, Body: body}); err != nil {
				return fmt.Errorf("chat send: %w", err)
			}
			r.Frames.Add(1)
		}
	}
}

func init() {
	register("chat-fanout", scenario{
		summary: "N WebSocket clients in one room of LiveEngine or Centrifugo, R messages/s published through the server's HTTP API: delivery latency, loss, server CPU and RSS per connection",
		flags: func(fs *flag.FlagSet) runner {
			return &chatFanout{
				fs:      fs,
				server:  fs.String("server", "liveengine", "liveengine (comments through /api/v1, WebSocket /api/v1/ws) or centrifugo (JSON protocol over /connection/websocket, publish through /api)"),
				api:     fs.String("api", "http://127.0.0.1:8080", "server HTTP base URL (LiveEngine control API, or Centrifugo's HTTP server)"),
				n:       fs.Int("n", 1000, "WebSocket clients in the room"),
				rate:    fs.Float64("rate", 10, "messages published per second"),
				senders: fs.Int("senders", 8, "LiveEngine: signed-in users the comments rotate over (each user is limited to control.limits.comments_per_second)"),
				room:    fs.String("room", "", "LiveEngine: stream id of the room; empty: register a streamer and create a stream"),
				channel: fs.String("channel", "bench", "Centrifugo: channel"),
				secret:  fs.String("hmac-secret", "", "Centrifugo: client.token.hmac_secret_key, to sign each client's connection JWT (HS256)"),
				apiKey:  fs.String("api-key", "", "Centrifugo: http_api.key"),
				loops:   fs.Int("loops", runtime.GOMAXPROCS(0), "client epoll loops (threads reading the sockets)"),
				drain:   fs.Duration("drain", 10*time.Second, "after -duration, how long to wait for messages still in flight"),
				stamps:  fs.Bool("rx-stamps", true, "also report the latency up to the kernel's receive time in each client socket (SO_TIMESTAMPNS): what the server took, without the wait for a client thread to read"),
				pause:   fs.Duration("pause", time.Millisecond, "client loops rest this long after emptying their ready list, so a server write rarely has to wake a sleeping client thread (on one machine the server pays for that wake-up); adds up to this much to latency; 0 reads as soon as anything arrives"),
			}
		},
		target:      func(fs *flag.FlagSet) string { return flagString(fs, "api") },
		framesLabel: "published/s",
	})
}

// chatFanout measures one room's fan-out the same way on LiveEngine and on
// Centrifugo: the clients connect and join before the clock starts (and
// before the server's CPU is counted); each published message carries its
// sequence number and the publish call's start time (wsload.Body), and
// every client checks it receives each one once, in order.
type chatFanout struct {
	fs                         *flag.FlagSet
	server, api, room, channel *string
	secret, apiKey             *string
	n, senders, loops          *int
	rate                       *float64
	drain, pause               *time.Duration
	stamps                     *bool

	hc      *http.Client
	pid     int
	rssIdle float64
	rssConn float64
	meter   *wsload.Meter
	clients []*wsload.Loop
	publish func(ctx context.Context, seq int) error
	joined  time.Duration
	started atomic.Pointer[Run] // set when the clock starts
}

func (c *chatFanout) prepare(ctx context.Context) error {
	if *c.n < 1 || *c.rate <= 0 || *c.loops < 1 || *c.senders < 1 {
		return fmt.Errorf("%w: need -n >= 1, -rate > 0, -loops >= 1, -senders >= 1", ErrUsage)
	}
	u, err := url.Parse(*c.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: -api %q is not an http(s) URL", ErrUsage, *c.api)
	}
	c.hc = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	// The server's RSS before the clients connect, to give memory per
	// connection (the same -server-pid / -server-name the run samples).
	if pid, _ := strconv.Atoi(flagString(c.fs, "server-pid")); pid > 0 {
		c.pid = pid
	} else if name := flagString(c.fs, "server-name"); name != "" {
		if c.pid, err = FindProcess(name); err != nil {
			return err
		}
	}
	if c.pid > 0 {
		c.rssIdle = procRSSMB(c.pid)
	}
	wsBase := strings.Replace(strings.TrimSuffix(*c.api, "/"), "http", "ws", 1)
	var join func(id int) (*wsload.Conn, error)
	switch *c.server {
	case "liveengine":
		join, err = c.prepareLiveEngine(ctx, wsBase)
	case "centrifugo":
		join, err = c.prepareCentrifugo(wsBase)
	default:
		err = fmt.Errorf("%w: -server %q: liveengine or centrifugo", ErrUsage, *c.server)
	}
	if err != nil {
		return err
	}
	c.meter = wsload.NewMeter(*c.n)
	c.meter.Samples = func(ds []time.Duration) {
		if r := c.started.Load(); r != nil {
			r.Ops.Add(int64(len(ds)))
			r.OpLatencies(ds)
		}
	}
	if *c.server == "centrifugo" {
		c.meter.Reply = centrifugoPong
	}
	for i := 0; i < *c.loops; i++ {
		l, err := wsload.NewLoop(c.meter.Handler())
		if err != nil {
			return err
		}
		l.Pause = *c.pause
		l.Stamps = *c.stamps
		c.clients = append(c.clients, l)
	}
	start := time.Now()
	err = wsload.Connect(ctx, *c.n, 32, func(i int) error {
		conn, err := join(i)
		if err == nil {
			err = c.clients[i%len(c.clients)].Add(conn)
		}
		if err != nil {
			return fmt.Errorf("client %d: %w", i, err)
		}
		return nil
	})
	if err != nil {
		c.closeClients()
		var he *wsload.HandshakeError
		// The cap answers 429 at the handshake, or closes with 1008 a
		// client that won the handshake but lost the race for the last slot.
		if errors.As(err, &he) && he.Status == http.StatusTooManyRequests || strings.Contains(err.Error(), "max_conns_per_ip") {
			return fmt.Errorf("%w (all bench clients come from one address: start LiveEngine with LIVEENGINE_CONTROL_WS_MAX_CONNS_PER_IP=0)", err)
		}
		return err
	}
	if ctx.Err() != nil {
		c.closeClients()
		return ctx.Err()
	}
	c.joined = time.Since(start)
	if c.pid > 0 {
		c.rssConn = procRSSMB(c.pid)
	}
	return nil
}

func (c *chatFanout) closeClients() {
	for _, l := range c.clients {
		l.Close()
	}
}

// prepareLiveEngine creates the room and the senders; clients join
// anonymously ({"type":"subscribe"} → ack).
func (c *chatFanout) prepareLiveEngine(ctx context.Context, wsBase string) (func(int) (*wsload.Conn, error), error) {
	run := randomHex(4)
	room := *c.room
	if room == "" {
		host := newAPIClient(*c.api, c.hc)
		if _, err := host.register(ctx, run, 0, "streamer"); err != nil {
			return nil, err
		}
		st, err := host.createStream(ctx, "fan-out bench "+run)
		if err != nil {
			return nil, err
		}
		room = st.ID
	}
	var senders []*apiClient
	for i := 1; i <= *c.senders; i++ {
		cl := newAPIClient(*c.api, c.hc)
		if _, err := cl.register(ctx, run, i, ""); err != nil {
			return nil, err
		}
		senders = append(senders, cl)
	}
	c.publish = func(ctx context.Context, seq int) error {
		s := senders[seq%len(senders)]
		_, err := s.call(ctx, http.MethodPost, "/api/v1/streams/"+room+"/comments", map[string]string{"body": wsload.Body(seq, time.Now())}, nil)
		return err
	}
	sub := []byte(`{"type":"subscribe","room":` + strconv.Quote(room) + `,"ref":"join"}`)
	return func(id int) (*wsload.Conn, error) {
		return joinWith(ctx, wsBase+"/api/v1/ws", id, [][]byte{sub}, func(m []byte) (bool, error) {
			if !bytes.Contains(m, []byte(`"ref":"join"`)) {
				return false, nil
			}
			if bytes.Contains(m, []byte(`"type":"error"`)) {
				return false, fmt.Errorf("subscribe refused: %s", m)
			}
			return true, nil
		})
	}, nil
}

// prepareCentrifugo: each client connects with its own HS256 JWT (sub =
// its number) and subscribes to the channel; messages are published
// through Centrifugo's HTTP API with the API key.
func (c *chatFanout) prepareCentrifugo(wsBase string) (func(int) (*wsload.Conn, error), error) {
	if *c.secret == "" || *c.apiKey == "" {
		return nil, fmt.Errorf("%w: -server centrifugo needs -hmac-secret and -api-key", ErrUsage)
	}
	base := strings.TrimSuffix(*c.api, "/")
	c.publish = func(ctx context.Context, seq int) error {
		body, _ := json.Marshal(map[string]any{"channel": *c.channel, "data": map[string]string{"body": wsload.Body(seq, time.Now())}})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/publish", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-API-Key", *c.apiKey)
		resp, err := c.hc.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
			return fmt.Errorf("centrifugo publish: HTTP %d: %s", resp.StatusCode, b)
		}
		return nil
	}
	sub := []byte(`{"id":2,"subscribe":{"channel":` + strconv.Quote(*c.channel) + `}}`)
	return func(id int) (*wsload.Conn, error) {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": strconv.Itoa(id), "exp": time.Now().Add(24 * time.Hour).Unix()}).SignedString([]byte(*c.secret))
		if err != nil {
			return nil, err
		}
		connect := []byte(`{"id":1,"connect":{"token":"` + tok + `","name":"lebench"}}`)
		return joinWith(context.Background(), wsBase+"/connection/websocket", id, [][]byte{connect, sub}, func(m []byte) (bool, error) {
			if bytes.Contains(m, []byte(`"error"`)) {
				return false, fmt.Errorf("centrifugo refused: %s", m)
			}
			return bytes.Contains(m, []byte(`"id":2`)), nil
		})
	}, nil
}

// centrifugoPong answers Centrifugo's JSON-protocol ping ("{}", alone or
// on a line of a batched frame) with "{}".
func centrifugoPong(p []byte) []byte {
	for _, line := range bytes.Split(p, []byte("\n")) {
		if string(bytes.TrimSpace(line)) == "{}" {
			return []byte("{}")
		}
	}
	return nil
}

// joinWith dials, sends the setup messages and reads until done says the
// client has joined.
func joinWith(ctx context.Context, u string, id int, setup [][]byte, done func([]byte) (bool, error)) (*wsload.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	conn, err := wsload.Dial(ctx, u, nil)
	if err != nil {
		return nil, err
	}
	conn.ID = id
	for _, m := range setup {
		if err := conn.WriteText(m); err != nil {
			conn.Close()
			return nil, err
		}
	}
	deadline, _ := ctx.Deadline()
	for {
		m, err := conn.ReadText(deadline)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("join: %w", err)
		}
		ok, err := done(m)
		if err != nil {
			conn.Close()
			return nil, err
		}
		if ok {
			return conn, nil
		}
	}
}

func (c *chatFanout) run(ctx context.Context, r *Run) error {
	defer c.closeClients()
	r.Active.Store(int64(*c.n))
	c.started.Store(r)
	var cpu0 uint64
	if c.pid > 0 {
		cpu0, _ = procTicks(c.pid)
	}
	reads0, self0 := c.reads(), selfCPU()
	// Messages go out at the rate whatever each call takes: every publish
	// runs on its own goroutine (a server that answers slowly does not slow
	// the publisher down, as with many independent senders).
	interval := time.Duration(float64(time.Second) / *c.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var pubs sync.WaitGroup
	var failed, slow atomic.Int64
	published := 0
	pubStart := time.Now()
publishing:
	for {
		select {
		case <-ctx.Done():
			break publishing
		case <-tick.C:
		}
		seq := published
		published++
		r.Frames.Add(1)
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			start := time.Now()
			pctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := c.publish(pctx, seq); err != nil {
				failed.Add(1)
				r.Error(fmt.Errorf("publish %d: %w", seq, err))
			}
			if time.Since(start) > interval {
				slow.Add(1)
			}
		}()
	}
	pubDur := time.Since(pubStart)
	pubs.Wait()
	late := slow.Load()
	want := int64(published) * int64(*c.n)
	deadline := time.Now().Add(*c.drain)
	for c.meter.Received() < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	got := c.meter.Received()
	r.Note("published %d messages (%.1f/s; %d publish calls took longer than the interval, %d failed or timed out) to %d clients (joined in %s)",
		published, float64(published)/pubDur.Seconds(), late, failed.Load(), *c.n, c.joined.Round(time.Millisecond))
	r.Note("deliveries %d of %d: loss %.4f%%, duplicates %d, reordered %d, connections closed %d %v",
		got, want, 100*float64(want-got)/float64(max(want, 1)), c.meter.Duplicates.Load(), c.meter.Reordered.Load(), c.meter.Closed.Load(), c.meter.CloseErrors())
	if lat := c.meter.Latencies(); len(lat) > 0 {
		q := func(p float64) float64 { return wsload.QuantileMS(lat, p) }
		r.Note("delivery latency (publish call → receipt) p50 %.1f ms, p99 %.1f ms, max %.1f ms", q(0.5), q(0.99), q(1))
	}
	if arr := c.meter.Arrivals(); len(arr) > 0 {
		q := func(p float64) float64 { return wsload.QuantileMS(arr, p) }
		r.Note("publish call → arrival in the client's socket (kernel receive stamp; %d deliveries stamped) p50 %.1f ms, p99 %.1f ms, max %.1f ms", len(arr), q(0.5), q(0.99), q(1))
	}
	if fs, spread := c.meter.FanoutSpread(); len(fs) > 0 {
		q := wsload.QuantileMS
		r.Note("per message: first receipt p50 %.1f ms, p99 %.1f ms (publish call → fan-out starts); last − first receipt p50 %.1f ms, p99 %.1f ms (the fan-out)",
			q(fs, .5), q(fs, .99), q(spread, .5), q(spread, .99))
	}
	if c.pid > 0 {
		cpu1, _ := procTicks(c.pid)
		cpuS := float64(cpu1-cpu0) / 100
		r.Note("server pid %d: RSS idle %.1f MB → %.1f MB with %d clients joined = %.1f KB per connection; CPU %.2f s = %.1f µs per delivery",
			c.pid, c.rssIdle, c.rssConn, *c.n, (c.rssConn-c.rssIdle)*1024/float64(*c.n), cpuS, cpuS*1e6/float64(max(got, 1)))
	}
	self := selfCPU() - self0
	r.Note("client (this process): %d loops, %d read(2) calls for %d deliveries, CPU %.2f s = %.1f µs per delivery",
		len(c.clients), c.reads()-reads0, got, self.Seconds(), float64(self.Microseconds())/float64(max(got, 1)))
	if got < want || c.meter.Duplicates.Load() > 0 {
		return fmt.Errorf("chat-fanout: %d of %d deliveries missing, %d duplicated", want-got, want, c.meter.Duplicates.Load())
	}
	return nil
}

func (c *chatFanout) reads() int64 {
	var n int64
	for _, l := range c.clients {
		n += l.Reads.Load()
	}
	return n
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
