package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/liveengine/liveengine/bench"
	"github.com/liveengine/liveengine/control"
	"github.com/liveengine/liveengine/control/ledger"
	"github.com/liveengine/liveengine/control/money"
	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/control/store"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/redisbus"
	"github.com/liveengine/liveengine/ingest/rtmp"
	"github.com/liveengine/liveengine/ingest/whip"
	"github.com/liveengine/liveengine/packager"
	"github.com/liveengine/liveengine/sfu"
	"github.com/liveengine/liveengine/transcode"
)

// Config is the whole configuration of a liveengine process. Each section
// belongs to one package and is validated by it; configs/liveengine.yaml is
// the commented reference.
type Config struct {
	Log       LogConfig        `yaml:"log"`
	Publish   PublishConfig    `yaml:"publish"`
	Bus       BusConfig        `yaml:"bus"`
	HTTP      HTTPConfig       `yaml:"http"`
	Engine    engine.Config    `yaml:"engine"`
	RTMP      rtmp.Config      `yaml:"rtmp"`
	HLS       packager.Config  `yaml:"hls"`
	Transcode transcode.Config `yaml:"transcode"`
	WebRTC    sfu.Config       `yaml:"webrtc"`
	WHIP      whip.Config      `yaml:"whip"`
	Control   control.Config   `yaml:"control"`
	Ledger    ledger.Config    `yaml:"ledger"`
	Wallet    ledger.APIConfig `yaml:"wallet"`
}

// BusConfig selects the coordination bus.
type BusConfig struct {
	// URL is empty for the in-process bus, or redis://HOST:PORT/DB.
	URL   string           `yaml:"url"`
	Redis redisbus.Options `yaml:"redis"`
}

func (c *Config) componentDefaults() {
	c.RTMP = rtmp.DefaultConfig()
	c.HLS = packager.DefaultConfig()
	c.Transcode = transcode.DefaultConfig()
	c.WebRTC = sfu.DefaultConfig()
	c.WHIP = whip.DefaultConfig()
	c.Control = control.DefaultConfig()
	m := money.DefaultConfig()
	c.Ledger, c.Wallet = m.Ledger, m.Wallet
	c.Bus.Redis = redisbus.DefaultOptions()
}

func (c *Config) validate() error {
	if err := c.validateBase(); err != nil {
		return err
	}
	if c.Bus.URL != "" {
		if err := c.Bus.Redis.Validate(); err != nil {
			return err
		}
	}
	for _, v := range []interface{ Validate() error }{c.RTMP, c.HLS, c.Transcode, c.WebRTC, c.WHIP, c.Control, c.Ledger, c.Wallet} {
		if err := v.Validate(); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) buildEngineComponents() error {
	c, log := n.conf, n.log
	rt, err := rtmp.New(c.RTMP, n.eng, log)
	if err != nil {
		return err
	}
	n.add("ingest/rtmp", rt)
	n.register(rt.Collector())

	pk, err := packager.New(c.HLS, n.eng, log)
	if err != nil {
		return err
	}
	n.add("packager", pk)
	n.register(pk.Collector())
	n.routes = append(n.routes, route{"/hls/", pk.Handle})

	// libav's own messages (x264 banners, decoder warnings) go to slog
	// instead of raw stderr.
	transcode.RouteLibavLogs(log)
	tc, err := transcode.New(c.Transcode, n.eng, log)
	if err != nil {
		return err
	}
	n.add("transcode", tc)
	n.register(tc.Collector())

	sf, err := sfu.New(c.WebRTC, n.eng, log)
	if err != nil {
		return err
	}
	wh, err := whip.New(c.WHIP, n.eng, sf.Transport(), log)
	if err != nil {
		sf.Close()
		return err
	}
	n.add("ingest/whip", wh)
	n.add("sfu", sf)
	n.register(sf.Collector())
	n.routes = append(n.routes, route{"/whip/", wh.Handle})
	for _, p := range []string{"/whep/", "/rtc/", "/webrtc/"} {
		n.routes = append(n.routes, route{p, sf.Handle})
	}
	n.eng.SetAdvertise(c.Control.PublicRTMPURL, c.Control.PublicHTTPURL)
	return nil
}

func (n *node) buildControlComponents() error {
	ctl, err := control.New(n.conf.Control, n.bus, n.log)
	if err != nil {
		return err
	}
	lb, err := n.leaderboard(ctl)
	if err != nil {
		ctl.Close()
		return err
	}
	m, err := money.Mount(ctl, money.Config{Ledger: n.conf.Ledger, Wallet: n.conf.Wallet}, lb)
	if err != nil {
		ctl.Close()
		return err
	}
	// Components close in reverse order: the API stops before the ledger
	// drains, so every accepted money request gets its answer.
	n.add("ledger", closer{m.Close})
	n.add("control", ctl)
	n.register(ctl.Collector())
	n.register(m.Ledger.Collector())
	if n.mode == "control" {
		// A control-only process has no engine HTTP server: its metrics
		// are served by the API server.
		ctl.MountHandler("GET", "/metrics", control.Public, n.metricsHandler())
	}
	return nil
}

// leaderboard picks the leaderboard store: Redis sorted sets when the bus
// is Redis (shared by every control process), else in-process. Either way
// it is rebuilt from the ledger, the source of truth, at start.
func (n *node) leaderboard(ctl *control.Server) (ledger.Leaderboard, error) {
	var lb ledger.Leaderboard
	if n.conf.Bus.URL != "" {
		opt, err := redis.ParseURL(n.conf.Bus.URL)
		if err != nil {
			return nil, fmt.Errorf("bus.url: %w", err)
		}
		rdb := redis.NewClient(opt)
		n.closers = append(n.closers, func() { rdb.Close() })
		lb = ledger.NewRedisLeaderboard(rdb, n.conf.Bus.Redis.Prefix+":lb")
	} else {
		lb = ledger.NewMemoryLeaderboard()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := ledger.Migrate(ctx, ctl.DB()); err != nil {
		return nil, err
	}
	if err := ledger.Rebuild(ctx, ctl.DB(), lb); err != nil {
		return nil, fmt.Errorf("leaderboard rebuild: %w", err)
	}
	return lb, nil
}

// closer adapts a close function to a component.
type closer struct{ close func() }

func (c closer) Start() error { return nil }
func (c closer) Close()       { c.close() }

func openRedisBus(ctx context.Context, url string, opts redisbus.Options, log *slog.Logger) (engine.Bus, error) {
	opts.Logger = log
	b, err := redisbus.New(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("bus.url: %w", err)
	}
	return b, nil
}

func runBench(args []string) error { return bench.Main(args) }

// runInvariants checks the ledger: balances sum to zero, none is negative
// where it may not be, every transfer's legs balance. Exit status 1 when a
// check fails, so it fits in cron and CI.
func runInvariants(args []string) error {
	fs, path := configFlag("invariants", args)
	fs.Parse(args)
	db, err := openControlDB(*path)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := ledger.Migrate(ctx, db); err != nil {
		return err
	}
	rep, err := ledger.CheckInvariants(ctx, db)
	if err != nil {
		return err
	}
	out, _ := json.MarshalIndent(rep, "", "  ")
	fmt.Println(string(out))
	if !rep.OK {
		return fmt.Errorf("invariants violated")
	}
	return nil
}

// runLeaderboardRebuild recomputes the Redis leaderboards from the ledger.
// In-process leaderboards need no command: they are rebuilt at each start.
func runLeaderboardRebuild(args []string) error {
	fs, path := configFlag("leaderboard-rebuild", args)
	fs.Parse(args)
	conf, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if conf.Bus.URL == "" {
		return fmt.Errorf("bus.url: leaderboards live in Redis only when bus.url is set; in-process leaderboards are rebuilt from the ledger at every start")
	}
	opt, err := redis.ParseURL(conf.Bus.URL)
	if err != nil {
		return fmt.Errorf("bus.url: %w", err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	db, err := sqldb.Open(conf.Control.Database.URL)
	if err != nil {
		return fmt.Errorf("control.database.url: %w", err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := ledger.Rebuild(ctx, db, ledger.NewRedisLeaderboard(rdb, conf.Bus.Redis.Prefix+":lb")); err != nil {
		return err
	}
	fmt.Println("leaderboards rebuilt from the ledger")
	return nil
}

// runSetRole gives an existing user a role, from the server's shell: how
// an operator makes the first admin of a deployment whose sign-up is open.
// control.admins makes listed usernames admins when they register, which
// is fine while nobody else can register first, not after.
func runSetRole(args []string) error {
	fs, path := configFlag("set-role", args)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: liveengine set-role [-config FILE] USERNAME|EMAIL viewer|streamer|moderator|admin")
		fs.PrintDefaults()
	}
	fs.Parse(args)
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("set-role: want a user and a role")
	}
	login, role := fs.Arg(0), fs.Arg(1)
	if !store.ValidRole(role) {
		return fmt.Errorf("set-role: %q is not a role (viewer, streamer, moderator, admin)", role)
	}
	db, err := openControlDB(*path)
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := store.New(db)
	if err := st.Migrate(ctx); err != nil {
		return err
	}
	u, err := st.UserByLogin(ctx, strings.ToLower(login))
	if err != nil {
		return fmt.Errorf("set-role: no user %q: %w", login, err)
	}
	if err := st.SetRole(ctx, u.ID, role); err != nil {
		return err
	}
	// Access tokens carry the role: the change shows at the user's next
	// sign-in or token refresh.
	fmt.Printf("%s (%s) is now %s (was %s); it applies from the user's next sign-in or token refresh\n", u.Username, u.ID, role, u.Role)
	return nil
}

// openControlDB loads the config at path and opens the control plane's
// database, for the commands that work on it from the shell.
func openControlDB(path string) (*sqldb.DB, error) {
	conf, err := loadConfig(path)
	if err != nil {
		return nil, err
	}
	db, err := sqldb.Open(conf.Control.Database.URL)
	if err != nil {
		return nil, fmt.Errorf("control.database.url: %w", err)
	}
	return db, nil
}
