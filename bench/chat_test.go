package bench

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/liveengine/liveengine/control"
	"github.com/liveengine/liveengine/engine"
)

func startControl(t *testing.T, perIP int) string {
	t.Helper()
	bus := engine.NewLocalBus()
	t.Cleanup(func() { bus.Close() })
	conf := control.DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.JWTSecret = "bench-secret-bench-secret-bench-secret"
	conf.PasswordCost = 4
	conf.Database.URL = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
	conf.WS.MaxConnsPerIP = perIP
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	srv, err := control.New(conf, bus, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return "http://" + srv.Addr()
}

// TestChatFanoutAgainstInProcessControl runs the fan-out scenario on a real
// control server: every client must get every message once.
func TestChatFanoutAgainstInProcessControl(t *testing.T) {
	api := startControl(t, 0)
	rep := runScenario(t, context.Background(), "chat-fanout", "-api", api, "-n", "60", "-rate", "10", "-duration", "3s", "-pause", "1ms")
	if rep == nil {
		t.FailNow()
	}
	logReport(t, rep)
	if rep.Frames < 10 || rep.Ops != rep.Frames*60 || rep.Errors != 0 {
		t.Errorf("chat-fanout: published %d, delivered %d (want %d), errors %d", rep.Frames, rep.Ops, rep.Frames*60, rep.Errors)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, want := range []string{"loss 0.0000%", "duplicates 0", "connections closed 0"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
}

// TestChatFanoutPerIPCap: a server that caps WebSockets per address refuses
// the bench, and the error says how to lift the cap.
func TestChatFanoutPerIPCap(t *testing.T) {
	api := startControl(t, 5)
	_, err := RunScenario(context.Background(), []string{"chat-fanout", "-api", api, "-n", "6", "-duration", "1s"}, testProgress{t})
	// Concurrent joins meet the cap either at the handshake (429) or, for
	// one that lost the race for the last slot, as a 1008 close.
	if err == nil || !(strings.Contains(err.Error(), "429") || strings.Contains(err.Error(), "1008")) || !strings.Contains(err.Error(), "LIVEENGINE_CONTROL_WS_MAX_CONNS_PER_IP=0") {
		t.Fatalf("want a refusal by the per-IP cap that names the setting, got %v", err)
	}
}
