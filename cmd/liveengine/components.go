package main

import (
	"context"
	"errors"
	"log/slog"

	"github.com/liveengine/liveengine/engine"
)

// Config is the whole configuration of a liveengine process. Each section
// belongs to one package and is validated by it; configs/liveengine.yaml is
// the commented reference.
type Config struct {
	Log     LogConfig     `yaml:"log"`
	Publish PublishConfig `yaml:"publish"`
	Bus     BusConfig     `yaml:"bus"`
	HTTP    HTTPConfig    `yaml:"http"`
	Engine  engine.Config `yaml:"engine"`
}

func (c *Config) componentDefaults() {}

func (c *Config) validate() error {
	return c.validateBase()
}

func (n *node) buildEngineComponents() error { return nil }

func (n *node) buildControlComponents() error { return nil }

func openRedisBus(ctx context.Context, url string, log *slog.Logger) (engine.Bus, error) {
	return nil, errors.New("bus.url: the Redis bus is not built into this binary yet")
}

func runBench(args []string) error { return errors.New("bench: not built yet") }

func runInvariants(args []string) error { return errors.New("invariants: not built yet") }

func runLeaderboardRebuild(args []string) error { return errors.New("leaderboard-rebuild: not built yet") }
