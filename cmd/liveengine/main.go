// Command liveengine is LiveEngine's single binary: the all-in-one server,
// the engine and control processes for multi-node setups, the benches and
// the ledger tools.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `liveengine: an open live-streaming engine

Usage:
  liveengine [all] [-config FILE]   engine + control plane in one process (default)
  liveengine engine [-config FILE]  media engine only (RTMP, WHIP, HLS, WebRTC); needs bus.url
  liveengine control [-config FILE] control plane only (API, chat, money); needs bus.url
  liveengine bench SCENARIO [flags] load generators (liveengine bench -h)
  liveengine invariants [-config FILE]           check the money ledger's invariants
  liveengine leaderboard-rebuild [-config FILE]  rebuild leaderboards from the ledger
  liveengine room-token -room R -identity U [-name N] [-kind call|live]
                                    mint a room join token (webrtc.room_secret)
  liveengine set-role [-config FILE] USER ROLE   give an existing user a role (e.g. the first admin)
  liveengine version

Every config key can be overridden by an environment variable:
rtmp.addr -> LIVEENGINE_RTMP_ADDR.
`

func main() {
	args := os.Args[1:]
	cmd := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "all", "engine", "control":
		err = serve(cmd, args)
	case "bench":
		err = runBench(args)
	case "invariants":
		err = runInvariants(args)
	case "leaderboard-rebuild":
		err = runLeaderboardRebuild(args)
	case "room-token":
		err = runRoomToken(args)
	case "set-role":
		err = runSetRole(args)
	case "version":
		fmt.Println("liveengine", buildVersion())
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "liveengine: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "liveengine:", err)
		os.Exit(1)
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return "dev-" + s.Value[:12]
			}
		}
	}
	return version
}

// configFlag parses -config; the default is configs/liveengine.yaml when it
// exists, so `liveengine` run from the repository uses the commented file.
func configFlag(name string, args []string) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	def := ""
	if _, err := os.Stat("configs/liveengine.yaml"); err == nil {
		def = "configs/liveengine.yaml"
	}
	path := fs.String("config", def, "YAML config file (empty: built-in defaults)")
	return fs, path
}

func newLogger(c LogConfig) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func serve(mode string, args []string) error {
	fs, path := configFlag(mode, args)
	fs.Parse(args)
	conf, err := loadConfig(*path)
	if err != nil {
		return err
	}
	log := newLogger(conf.Log)
	if (mode == "engine" || mode == "control") && conf.Bus.URL == "" {
		return fmt.Errorf("bus.url: %s mode talks to the other side over Redis; set bus.url (LIVEENGINE_BUS_URL=redis://...)", mode)
	}
	if mode == "all" && conf.WebRTC.RoomSecret == "" {
		// One process holds both ends of the secret, so rooms work out of
		// the box; split processes must share a configured one.
		conf.WebRTC.RoomSecret = randomSecret()
		log.Info("webrtc.room_secret is empty: using a random one for this run; mint join tokens with POST /api/v1/rooms/NAME/token")
	}
	conf.Control.RoomSecret = conf.WebRTC.RoomSecret
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	n, err := newNode(ctx, mode, conf, log)
	if err != nil {
		return err
	}
	if err := n.start(); err != nil {
		n.close()
		return err
	}
	log.Info("liveengine started", "mode", mode, "version", buildVersion(), "config", *path)
	select {
	case <-ctx.Done():
		log.Info("shutting down", "signal", "received")
	case err = <-n.fatal:
		log.Error("fatal error, shutting down", "error", err)
	}
	stop()
	n.close()
	log.Info("liveengine stopped")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// randomSecret returns 32 random bytes, hex encoded.
func randomSecret() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
