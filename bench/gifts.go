package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrInvariant means the gift storm's final check found money created or
// lost: a double charge, a lost charge, or earnings that do not add up.
var ErrInvariant = errors.New("bench: ledger invariant broken")

func init() {
	register("gifts", scenario{
		summary: "a gift storm: C senders top up (sandbox) and gift a live stream with Idempotency-Key headers, some retried; final invariant check",
		flags: func(fs *flag.FlagSet) runner {
			return &giftStorm{
				fs:      fs,
				api:     fs.String("api", "http://127.0.0.1:8080", "control API base URL"),
				n:       fs.Int("n", 20, "senders: accounts registered and topped up at start (registration is rate limited per IP: raise LIVEENGINE_CONTROL_LIMITS_AUTH_PER_MINUTE for hundreds)"),
				clients: fs.Int("clients", 0, "concurrent connections gifting, one request in flight each; connection k gifts as sender k mod -n (0: one per sender)"),
				raw:     fs.Bool("raw", false, "use the raw epoll HTTP/1.1 client (bench/rawhttp: one thread, ~10 µs of client CPU per request) instead of net/http, so the server's ceiling shows; http:// only"),
				coins:   fs.Int64("topup", 100000, "coins each sender tops up before the storm"),
				gift:    fs.String("gift", "", "gift id to send; empty: the cheapest active gift of the catalog"),
				replay:  fs.Float64("replay", 0.1, "fraction of gifts sent twice with the same Idempotency-Key (must charge once)"),
				publish: fs.String("publish-clip", "", "clip the scenario publishes to make its stream live (default: the generated 720p30 clip)"),
				stream:  fs.String("stream", "", "gift this live stream id instead of creating and publishing one"),
				admin:   fs.String("admin", "", "username listed in control.admins: registered (or signed in) to add a bench gift when the catalog has no active gift"),
				adminPw: fs.String("admin-password", "bench-admin-password", "password of -admin"),
				metrics: fs.String("metrics", "", "the server's Prometheus /metrics URL (e.g. http://127.0.0.1:8888/metrics): note the ledger's gifts per batch, transaction and fsync time over the storm, as BenchmarkGifts reports them"),
				idle:    fs.Duration("idle", 2*time.Second, "with -server-pid/-server-name: sample the server's CPU this long with the stream live before the storm, and subtract that rate from its CPU per gift (0: do not)"),
			}
		},
		target:      func(fs *flag.FlagSet) string { return flagString(fs, "api") },
		framesLabel: "replays/s",
	})
}

type giftStorm struct {
	fs      *flag.FlagSet
	api     *string
	n       *int
	clients *int
	raw     *bool
	coins   *int64
	gift    *string
	replay  *float64
	publish *string
	stream  *string
	admin   *string
	adminPw *string
	metrics *string
	idle    *time.Duration

	hc       *http.Client
	streamer *apiClient
	senders  []*apiClient
	streamID string
	giftID   string
	price    int64
	ingest   apiStream
	clip     *Clip
	host     string // HOST:PORT of -api, for -raw
	pid      int    // server process, for its CPU per gift

	mu      sync.Mutex
	charged map[*apiClient]int64 // coins of unique accepted gifts per sender
}

func (g *giftStorm) prepare(ctx context.Context) error {
	if *g.n < 1 || *g.clients < 0 || *g.coins < 1 || *g.replay < 0 || *g.replay > 1 {
		return fmt.Errorf("%w: need -n >= 1, -clients >= 0, -topup >= 1, 0 <= -replay <= 1", ErrUsage)
	}
	if *g.clients == 0 {
		*g.clients = *g.n
	}
	u, err := url.Parse(*g.api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: -api %q is not an http(s) URL", ErrUsage, *g.api)
	}
	if *g.raw {
		if u.Scheme != "http" || u.Port() == "" {
			return fmt.Errorf("%w: -raw needs -api http://HOST:PORT (no TLS), got %q", ErrUsage, *g.api)
		}
		g.host = u.Host
	}
	if pid, _ := strconv.Atoi(flagString(g.fs, "server-pid")); pid > 0 {
		g.pid = pid
	} else if name := flagString(g.fs, "server-name"); name != "" {
		if g.pid, err = FindProcess(name); err != nil {
			return err
		}
	}
	g.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * *g.clients}}
	g.charged = map[*apiClient]int64{}
	run := randomHex(4)
	g.streamer = newAPIClient(*g.api, g.hc)
	if _, err := g.streamer.register(ctx, run, 0, "streamer"); err != nil {
		return err
	}
	g.streamID = *g.stream
	if g.streamID == "" {
		st, err := g.streamer.createStream(ctx, "gift bench "+run)
		if err != nil {
			return err
		}
		g.streamID, g.ingest = st.ID, st
		if st.RTMPURL == "" {
			if _, err := g.streamer.call(ctx, http.MethodGet, "/api/v1/streams/"+st.ID+"/key", nil, &g.ingest); err != nil {
				return fmt.Errorf("stream key: %w", err)
			}
		}
		path := *g.publish
		if path == "" {
			path = DefaultClipPath()
			if err := EnsureClip(path, 10); err != nil {
				return err
			}
		}
		clip, err := LoadClip(path)
		if err != nil {
			return err
		}
		g.clip = clip
	}
	var cat struct {
		Gifts []struct {
			ID     string `json:"id"`
			Price  int64  `json:"price"`
			Active bool   `json:"active"`
		} `json:"gifts"`
	}
	if _, err := g.streamer.call(ctx, http.MethodGet, "/api/v1/gifts", nil, &cat); err != nil {
		return fmt.Errorf("gift catalog: %w", err)
	}
	for _, c := range cat.Gifts {
		if !c.Active || (*g.gift != "" && c.ID != *g.gift) {
			continue
		}
		if g.giftID == "" || c.Price < g.price {
			g.giftID, g.price = c.ID, c.Price
		}
	}
	if g.giftID == "" && *g.admin != "" {
		if err := g.addGift(ctx); err != nil {
			return err
		}
	}
	if g.giftID == "" {
		return fmt.Errorf("%w: no active gift %q in the catalog (an admin adds one; or pass -admin)", ErrAPI, *g.gift)
	}
	// Senders sign up four at a time: the server's password hashing, not
	// the round trips, sets the pace, and a few in flight keep both cores
	// busy without tripping over the registration limit any sooner.
	g.senders = make([]*apiClient, *g.n)
	errs := make(chan error, *g.n)
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < min(4, *g.n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				c, err := g.newSender(ctx, run, i+1)
				if err != nil {
					errs <- err
					continue
				}
				g.senders[i] = c
			}
		}()
	}
	for i := range *g.n {
		next <- i
	}
	close(next)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return nil
}

// newSender registers sender i and tops its wallet up through the sandbox
// provider.
func (g *giftStorm) newSender(ctx context.Context, run string, i int) (*apiClient, error) {
	c := newAPIClient(*g.api, g.hc)
	if _, err := c.register(ctx, run, i, ""); err != nil {
		return nil, err
	}
	var order struct {
		OrderID string `json:"order_id"`
	}
	if _, err := c.call(ctx, http.MethodPost, "/api/v1/wallet/topups", map[string]any{"coins": *g.coins, "provider": "sandbox"}, &order,
		"Idempotency-Key", "topup-"+randomHex(8)); err != nil {
		return nil, fmt.Errorf("top up: %w", err)
	}
	if _, err := c.call(ctx, http.MethodPost, "/api/v1/payments/sandbox/orders/"+order.OrderID+"/complete", nil, nil); err != nil {
		return nil, fmt.Errorf("complete top-up %s: %w", order.OrderID, err)
	}
	return c, nil
}

// addGift signs in as the admin (registering the account the first time)
// and adds a 10-coin gift.
func (g *giftStorm) addGift(ctx context.Context) error {
	admin := newAPIClient(*g.api, g.hc)
	var t tokens
	body := map[string]string{"username": *g.admin, "email": *g.admin + "@bench.invalid", "password": *g.adminPw}
	err := retryLimited(ctx, func() (int, error) { return admin.call(ctx, http.MethodPost, "/api/v1/auth/register", body, &t) })
	if err != nil {
		err = retryLimited(ctx, func() (int, error) {
			return admin.call(ctx, http.MethodPost, "/api/v1/auth/login", map[string]string{"login": *g.admin, "password": *g.adminPw}, &t)
		})
	}
	if err != nil {
		return fmt.Errorf("admin %s: %w", *g.admin, err)
	}
	admin.token = t.AccessToken
	id := "bench_rose"
	if *g.gift != "" {
		id = *g.gift
	}
	_, err = admin.call(ctx, http.MethodPost, "/api/v1/gifts", map[string]any{"id": id, "name": "Bench rose", "price": 10, "active": true}, nil,
		"Idempotency-Key", "gift-"+randomHex(8))
	var as *apiStatus
	if err != nil && !(errors.As(err, &as) && as.Code == "gift_exists") {
		return fmt.Errorf("add gift: %w", err)
	}
	g.giftID, g.price = id, 10
	return nil
}

type giftResult struct {
	TransferID string `json:"transfer_id"`
	Coins      int64  `json:"coins"`
	Balance    int64  `json:"balance"`
}

func (g *giftStorm) run(ctx context.Context, r *Run) error {
	var pubWG sync.WaitGroup
	// The stream stays live until the last sender is done: a gift still in
	// flight when the storm's time is up must not meet an offline stream.
	pubCtx, stopPublishing := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stopPublishing()
		pubWG.Wait()
	}()
	if g.clip != nil {
		app, key, err := splitRTMP(g.ingest)
		if err != nil {
			return err
		}
		pubWG.Add(1)
		go func() {
			defer pubWG.Done()
			quiet := NewRun("publish", app, 1)
			retry(pubCtx, r, func() error { return PublishRTMP(pubCtx, app, key, g.clip, quiet) })
		}()
		if err := g.waitLive(ctx); err != nil {
			return err
		}
	}
	g.storm(ctx, r)
	stopPublishing()
	pubWG.Wait()
	return g.check(r)
}

func splitRTMP(s apiStream) (string, string, error) {
	if s.RTMPServer != "" && s.StreamKey != "" {
		return s.RTMPServer, s.StreamKey, nil
	}
	i := strings.LastIndexByte(s.RTMPURL, '/')
	if i < 0 {
		return "", "", fmt.Errorf("%w: stream %s has no RTMP ingest URL", ErrAPI, s.ID)
	}
	return s.RTMPURL[:i], s.RTMPURL[i+1:], nil
}

func (g *giftStorm) waitLive(ctx context.Context) error {
	for {
		var st apiStream
		if _, err := g.streamer.call(ctx, http.MethodGet, "/api/v1/streams/"+g.streamID, nil, &st); err == nil && st.Status == "live" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stream %s never went live: %w", g.streamID, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// storm gifts until ctx ends with -clients connections, and notes the
// storm's own figures: gifts/s over the storm alone (the report's average
// also counts the wait for the stream to go live), request latency, and the
// server's and this process's CPU per gift.
func (g *giftStorm) storm(ctx context.Context, r *Run) {
	// The server's CPU with the stream live and no gifts (RTMP ingest,
	// packaging, timers), to tell the gifts' share apart.
	var idleRate float64 // CPU seconds per second
	if g.pid > 0 && *g.idle > 0 {
		t0, _ := procTicks(g.pid)
		at := time.Now()
		select {
		case <-ctx.Done():
		case <-time.After(*g.idle):
		}
		t1, _ := procTicks(g.pid)
		idleRate = float64(t1-t0) / clockTicks / time.Since(at).Seconds()
	}
	m0 := g.ledgerMetrics(ctx)
	var cpu0 uint64
	if g.pid > 0 {
		cpu0, _ = procTicks(g.pid)
	}
	self0, ops0, errs0, start := selfCPU(), r.Ops.Load(), r.Errors.Load(), time.Now()
	client := "net/http"
	if *g.raw {
		client = "raw epoll"
		if err := g.stormRaw(ctx, r); err != nil {
			r.Error(err)
		}
	} else {
		var wg sync.WaitGroup
		for k := range *g.clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.sender(ctx, r, g.senders[k%len(g.senders)])
			}()
		}
		wg.Wait()
	}
	dur := time.Since(start)
	gifts := r.Ops.Load() - ops0
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(max(gifts, 1)) }
	r.mu.Lock()
	lat := newDist(r.opLat)
	r.mu.Unlock()
	r.Note("storm: %d gifts in %.1f s = %.0f gifts/s, %d failed; request p50 %.1f ms, p99 %.1f ms; %d clients (%s) over %d senders",
		gifts, dur.Seconds(), float64(gifts)/dur.Seconds(), r.Errors.Load()-errs0, lat.P50, lat.P99, *g.clients, client, len(g.senders))
	if g.pid > 0 {
		cpu1, _ := procTicks(g.pid)
		srv := time.Duration(cpu1-cpu0) * (time.Second / clockTicks)
		net := srv - time.Duration(idleRate*dur.Seconds()*float64(time.Second))
		r.Note("server pid %d: CPU %.2f s = %.1f µs per gift (%.0f%% of one core); %.1f µs per gift over its %.1f%% with the stream live and no gifts",
			g.pid, srv.Seconds(), per(srv), 100*srv.Seconds()/dur.Seconds(), per(net), 100*idleRate)
	}
	if m1 := g.ledgerMetrics(context.WithoutCancel(ctx)); m0 != nil && m1 != nil {
		b := m1["batches_total"] - m0["batches_total"]
		fs := m1["wal_fsyncs_total"] - m0["wal_fsyncs_total"]
		r.Note("ledger (from -metrics): %.0f transfers in %.0f batches = %.1f gifts/batch, transaction %.2f ms per batch, fsync %.2f ms (%.0f fsyncs)",
			m1["transfers_total"]-m0["transfers_total"], b, (m1["transfers_total"]-m0["transfers_total"])/max(b, 1),
			1000*(m1["transaction_seconds_total"]-m0["transaction_seconds_total"])/max(b, 1),
			1000*(m1["wal_fsync_seconds_total"]-m0["wal_fsync_seconds_total"])/max(fs, 1), fs)
	}
	self := selfCPU() - self0
	r.Note("client (this process, the RTMP publisher included): CPU %.2f s = %.1f µs per gift", self.Seconds(), per(self))
}

// ledgerMetrics reads the ledger's counters (liveengine_ledger_*, without
// the prefix) from -metrics; nil without -metrics or when it cannot be
// read (the storm's figures stand without it).
func (g *giftStorm) ledgerMetrics(ctx context.Context) map[string]float64 {
	if *g.metrics == "" {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *g.metrics, nil)
	if err != nil {
		return nil
	}
	res, err := g.hc.Do(req)
	if err != nil {
		return nil
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 8<<20))
	if err != nil || res.StatusCode != http.StatusOK {
		return nil
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		rest, isLedger := strings.CutPrefix(name, "liveengine_ledger_")
		if !ok || !isLedger || strings.Contains(rest, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[rest] = v
		}
	}
	return m
}

// sender gifts as fast as the API answers; a share of requests is sent a
// second time with the same Idempotency-Key, as a client retrying after a
// lost answer would, and must get the same transfer back.
func (g *giftStorm) sender(ctx context.Context, r *Run, c *apiClient) {
	r.Active.Add(1)
	defer r.Active.Add(-1)
	body := map[string]any{"gift_id": g.giftID, "quantity": 1}
	path := "/api/v1/streams/" + g.streamID + "/gifts"
	for ctx.Err() == nil {
		key := "gift-" + randomHex(12)
		var res giftResult
		start := time.Now()
		// The storm's own deadline must not cut a request in half: an
		// unanswered gift would make the final check guess.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		st, err := c.call(rctx, http.MethodPost, path, body, &res, "Idempotency-Key", key)
		if err != nil {
			cancel()
			var as *apiStatus
			if errors.As(err, &as) && as.Code == "insufficient_funds" {
				return // spent: this sender is done
			}
			r.Error(err)
			continue
		}
		r.OpLatency(time.Since(start))
		r.Ops.Add(1)
		g.mu.Lock()
		g.charged[c] += res.Coins
		g.mu.Unlock()
		if rand.Float64() < *g.replay {
			var again giftResult
			_, err := c.call(rctx, http.MethodPost, path, body, &again, "Idempotency-Key", key)
			switch {
			case err != nil:
				r.Error(fmt.Errorf("replay of %s: %w", key, err))
			case again.TransferID != res.TransferID || again.Coins != res.Coins:
				r.Error(fmt.Errorf("%w: replay of %s gave transfer %s, first %s", ErrInvariant, key, again.TransferID, res.TransferID))
			default:
				r.Frames.Add(1) // replays answered from the idempotency store
			}
		}
		cancel()
		_ = st
	}
}

// check compares every sender's wallet with its top-up minus its accepted
// gifts, and the streamer's earnings with the gifts' total.
func (g *giftStorm) check(r *Run) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var bad int
	var total int64
	for _, c := range g.senders {
		var w struct {
			Coins int64 `json:"coins"`
		}
		if _, err := c.call(ctx, http.MethodGet, "/api/v1/wallet", nil, &w); err != nil {
			r.Error(fmt.Errorf("final wallet: %w", err))
			bad++
			continue
		}
		g.mu.Lock()
		spent := g.charged[c]
		g.mu.Unlock()
		total += spent
		if w.Coins != *g.coins-spent {
			bad++
			r.Error(fmt.Errorf("%w: wallet holds %d, want %d - %d = %d", ErrInvariant, w.Coins, *g.coins, spent, *g.coins-spent))
		}
	}
	var e struct {
		Available int64 `json:"available_coins"`
		Held      int64 `json:"held_coins"`
	}
	if _, err := g.streamer.call(ctx, http.MethodGet, "/api/v1/earnings", nil, &e); err != nil {
		r.Error(fmt.Errorf("final earnings: %w", err))
	} else if e.Available+e.Held > total {
		bad++
		r.Error(fmt.Errorf("%w: streamer earned %d from %d coins of gifts", ErrInvariant, e.Available+e.Held, total))
	}
	r.Note("invariants: %d senders checked, %d coins gifted, streamer earned %d (after commission), %d violations", len(g.senders), total, e.Available+e.Held, bad)
	if bad > 0 {
		return fmt.Errorf("%w: %d violations", ErrInvariant, bad)
	}
	return nil
}
