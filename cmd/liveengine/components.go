package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/liveengine/liveengine/bench"
	"github.com/liveengine/liveengine/control"
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
	c.Bus.Redis = redisbus.DefaultOptions()
}

func (c *Config) validate() error {
	if err := c.validateBase(); err != nil {
		return err
	}
	for _, v := range []interface{ Validate() error }{c.RTMP, c.HLS, c.Transcode, c.WebRTC, c.WHIP, c.Control} {
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
	n.add("control", ctl)
	return nil
}

func openRedisBus(ctx context.Context, url string, opts redisbus.Options, log *slog.Logger) (engine.Bus, error) {
	opts.Logger = log
	b, err := redisbus.New(ctx, url, opts)
	if err != nil {
		return nil, fmt.Errorf("bus.url: %w", err)
	}
	return b, nil
}

func runBench(args []string) error { return bench.Main(args) }

func runInvariants(args []string) error { return fmt.Errorf("invariants: not wired yet") }

func runLeaderboardRebuild(args []string) error {
	return fmt.Errorf("leaderboard-rebuild: not wired yet")
}
