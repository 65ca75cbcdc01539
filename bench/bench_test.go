package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/liveengine/liveengine/control"
	"github.com/liveengine/liveengine/control/ledger"
	"github.com/liveengine/liveengine/control/money"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/liveengine/liveengine/ingest/rtmp"
	"github.com/liveengine/liveengine/ingest/whip"
	"github.com/liveengine/liveengine/packager"
	"github.com/liveengine/liveengine/sfu"
)

// mediaServer is LiveEngine's media side built from its packages: engine,
// RTMP ingest, LL-HLS packager and WHEP, on loopback ports.
type mediaServer struct {
	eng  *engine.Engine
	rtmp string // rtmp://127.0.0.1:PORT/live
	http string // http://127.0.0.1:PORT
	addr string // RTMP host:port
}

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func newMediaServer(t *testing.T) *mediaServer {
	t.Helper()
	eng := enginetest.NewEngine(t)
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	rc := rtmp.DefaultConfig()
	rc.Addr = "127.0.0.1:0"
	rs, err := rtmp.New(rc, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)

	pk, err := packager.New(packager.DefaultConfig(), eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := pk.Start(); err != nil {
		t.Fatal(err)
	}

	sc := sfu.DefaultConfig()
	sc.ICEUDPPort, sc.ICETCPPort, sc.ICEHost = 0, 0, "127.0.0.1"
	sc.RoomSecret = "bench-secret-bench-secret-bench-secret"
	sc.TURN.Enabled = false
	sf, err := sfu.New(sc, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := sf.Start(); err != nil {
		t.Fatal(err)
	}

	wh, err := whip.New(whip.DefaultConfig(), eng, sf.Transport(), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Start(); err != nil {
		t.Fatal(err)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Name: "liveengine-bench-test", Handler: func(ctx *fasthttp.RequestCtx) {
		switch p := string(ctx.Path()); {
		case strings.HasPrefix(p, "/hls/"):
			pk.Handle(ctx)
		case strings.HasPrefix(p, "/whip/"):
			wh.Handle(ctx)
		default:
			sf.Handle(ctx)
		}
	}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		pk.Close() // ends held requests so Shutdown does not wait on them
		wh.Close()
		sf.Close()
		_ = srv.Shutdown()
		<-done
	})
	return &mediaServer{
		eng:  eng,
		addr: rs.Addr().String(),
		rtmp: "rtmp://" + rs.Addr().String() + "/live",
		http: "http://" + ln.Addr().String(),
	}
}

// testClip is a small clip so the test machine's CPU goes to the servers.
func testClip(t *testing.T) string {
	return enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 4, GOP: 30, Audio: true, Bitrate: "800k"})
}

func runScenario(t *testing.T, ctx context.Context, args ...string) *Report {
	t.Helper()
	rep, err := RunScenario(ctx, args, testProgress{t})
	if err != nil {
		t.Errorf("%s: %v", args[0], err)
	}
	return rep
}

type testProgress struct{ t testing.TB }

func (w testProgress) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func logReport(t *testing.T, rep *Report) {
	var b strings.Builder
	rep.WriteTable(&b)
	t.Log("\n" + b.String())
}

// TestScenariosAgainstInProcessServer publishes over RTMP and watches the
// same stream with LL-HLS and WHEP viewers, all for a few seconds, and
// checks that every report has sane figures and that the stamp read back
// on loopback is between 0 and 5 s.
func TestScenariosAgainstInProcessServer(t *testing.T) {
	srv := newMediaServer(t)
	clip := testClip(t)
	ctx := context.Background()

	var wg sync.WaitGroup
	var pub, hls, whep *Report
	wg.Add(3)
	go func() {
		defer wg.Done()
		pub = runScenario(t, ctx, "rtmp-publish", "-url", srv.rtmp+"/g2g", "-clip", clip, "-duration", "16s")
	}()
	go func() {
		defer wg.Done()
		hls = runScenario(t, ctx, "hls-viewers", "-url", srv.http+"/hls/g2g/index.m3u8", "-n", "3", "-duration", "15s", "-server-pid", itoa(os.Getpid()))
	}()
	go func() {
		defer wg.Done()
		whep = runScenario(t, ctx, "whep-viewers", "-url", srv.http+"/whep/g2g", "-n", "2", "-duration", "15s", "-settle", "1s", "-server-pid", itoa(os.Getpid()))
	}()
	wg.Wait()
	for _, r := range []*Report{pub, hls, whep} {
		if r == nil {
			t.FailNow()
		}
		logReport(t, r)
	}
	if pub.Frames == 0 || pub.MbpsAvg <= 0 || pub.Errors != 0 {
		t.Errorf("rtmp-publish: frames %d, %.2f Mbit/s, errors %d", pub.Frames, pub.MbpsAvg, pub.Errors)
	}
	for _, r := range []*Report{hls, whep} {
		if r.Frames == 0 || r.MbpsAvg <= 0 {
			t.Errorf("%s: frames %d, %.2f Mbit/s", r.Scenario, r.Frames, r.MbpsAvg)
		}
		if r.Latency.N == 0 || r.Latency.P50 < 0 || r.Latency.P95 > 5000 {
			t.Errorf("%s: stamp latency %+v, want samples between 0 and 5 s", r.Scenario, r.Latency)
		}
	}
	if hls.Ops == 0 || hls.EdgeDelay.N == 0 {
		t.Errorf("hls-viewers: %d parts, %d edge delay samples", hls.Ops, hls.EdgeDelay.N)
	}
	if hls.Server == nil || hls.Server.RSSMaxMB <= 0 {
		t.Errorf("hls-viewers: no server process figures: %+v", hls.Server)
	}
	if whep.Packets == 0 {
		t.Errorf("whep-viewers: no RTP packets")
	}
	// The steady window: packets over the server's CPU time in it.
	if st := whep.Steady; st == nil || st.Viewers != 2 || st.WindowS < 1 || st.PacketsPerS <= 0 || st.ServerCPUPct <= 0 ||
		st.PacketsPerCore <= 0 || st.RSSMB <= 0 {
		t.Errorf("whep-viewers: steady window %+v", st)
	}
	dir := t.TempDir()
	if err := hls.WriteJSON(filepath.Join(dir, "r.json")); err != nil {
		t.Fatal(err)
	}
	if err := hls.WriteHTML(filepath.Join(dir, "r.html")); err != nil {
		t.Fatal(err)
	}
	page, _ := os.ReadFile(filepath.Join(dir, "r.html"))
	if !bytes.Contains(page, []byte("<svg")) || bytes.Contains(page, []byte("<script")) {
		t.Errorf("HTML report is not a self-contained SVG page")
	}
}

// TestRelayAddsKnownDelay checks the meter against a known delay: a relay
// holding the publisher's packets for 500 ms must read about 500 ms more
// than the direct path, through the same server and the same WHEP viewer.
func TestRelayAddsKnownDelay(t *testing.T) {
	srv := newMediaServer(t)
	clip := testClip(t)
	const delay = 500 * time.Millisecond
	relay, err := NewRelay("127.0.0.1:0", srv.addr, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(relay.Close)
	ctx := context.Background()

	var wg sync.WaitGroup
	var direct, delayed *Report
	wg.Add(2)
	go func() {
		defer wg.Done()
		direct = runScenario(t, ctx, "whep-viewers", "-url", srv.http+"/whep/direct", "-publish", srv.rtmp+"/direct", "-publish-clip", clip, "-duration", "10s")
	}()
	go func() {
		defer wg.Done()
		delayed = runScenario(t, ctx, "whep-viewers", "-url", srv.http+"/whep/relayed", "-publish", "rtmp://"+relay.Addr()+"/live/relayed", "-publish-clip", clip, "-duration", "10s")
	}()
	wg.Wait()
	if direct == nil || delayed == nil {
		t.FailNow()
	}
	logReport(t, direct)
	logReport(t, delayed)
	if direct.Latency.N < 30 || delayed.Latency.N < 30 {
		t.Fatalf("too few stamps: direct %d, relayed %d", direct.Latency.N, delayed.Latency.N)
	}
	diff := time.Duration((delayed.Latency.P50 - direct.Latency.P50) * float64(time.Millisecond))
	t.Logf("relay adds %v (p50 direct %.0f ms, relayed %.0f ms)", diff, direct.Latency.P50, delayed.Latency.P50)
	if diff < delay-150*time.Millisecond || diff > delay+250*time.Millisecond {
		t.Errorf("relay of %v measured as %v more", delay, diff)
	}
}

// TestWHIPToWHEP publishes with the WHIP scenario and watches with WHEP:
// the stamp survives WebRTC ingest and the SFU.
func TestWHIPToWHEP(t *testing.T) {
	srv := newMediaServer(t)
	clip := testClip(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	var pub, view *Report
	wg.Add(2)
	go func() {
		defer wg.Done()
		pub = runScenario(t, ctx, "whip-publish", "-url", srv.http+"/whip/wkey", "-clip", clip, "-duration", "10s")
	}()
	go func() {
		defer wg.Done()
		view = runScenario(t, ctx, "whep-viewers", "-url", srv.http+"/whep/wkey", "-duration", "9s")
	}()
	wg.Wait()
	if pub == nil || view == nil {
		t.FailNow()
	}
	logReport(t, pub)
	logReport(t, view)
	if pub.Frames == 0 || pub.Errors != 0 {
		t.Errorf("whip-publish: %d frames, %d errors", pub.Frames, pub.Errors)
	}
	if view.Latency.N == 0 || view.Latency.P50 < 0 || view.Latency.P95 > 5000 {
		t.Errorf("whep-viewers after WHIP: stamp latency %+v", view.Latency)
	}
}

func TestUsage(t *testing.T) {
	if err := Main([]string{"-h"}); err != nil {
		t.Errorf("-h: %v", err)
	}
	if _, err := RunScenario(context.Background(), []string{"nope"}, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
		t.Errorf("unknown scenario: %v", err)
	}
	if _, err := RunScenario(context.Background(), []string{"rtmp-publish", "-url", "http://x"}, io.Discard); err == nil {
		t.Errorf("bad rtmp url accepted")
	}
	for name := range scenarios {
		if _, err := RunScenario(context.Background(), []string{name, "-h"}, io.Discard); err == nil {
			t.Errorf("%s -h: no ErrHelp", name)
		}
	}
}

func itoa(i int) string { return fmt.Sprint(i) }

// TestChatAgainstInProcessControl runs the chat scenario against a real
// control server (SQLite, in-process bus) for a few seconds.
func TestChatAgainstInProcessControl(t *testing.T) {
	api := startControl(t, control.DefaultConfig().WS.MaxConnsPerIP)
	rep := runScenario(t, context.Background(), "chat", "-api", api, "-n", "10", "-senders", "2", "-rate", "1", "-duration", "5s")
	if rep == nil {
		t.FailNow()
	}
	logReport(t, rep)
	if rep.Frames == 0 || rep.Ops < rep.Frames || rep.Errors != 0 {
		t.Errorf("chat: sent %d, delivered %d, errors %d", rep.Frames, rep.Ops, rep.Errors)
	}
	if rep.OpLatency.N == 0 || rep.OpLatency.P95 > 5000 {
		t.Errorf("chat: broadcast latency %+v", rep.OpLatency)
	}
}

// TestGiftsAgainstInProcessPlatform runs the gift storm against a control
// server with the money API mounted, sharing an in-process bus with an
// engine and its RTMP ingest: the scenario creates a stream, publishes it
// live over RTMP, storms it and checks the ledger's invariants.
func TestGiftsAgainstInProcessPlatform(t *testing.T) {
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	bus := engine.NewLocalBus()
	t.Cleanup(func() { bus.Close() })
	econf := engine.DefaultConfig()
	econf.StatsInterval = 500 * time.Millisecond
	eng, err := engine.New(econf, bus, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	rc := rtmp.DefaultConfig()
	rc.Addr = "127.0.0.1:0"
	rs, err := rtmp.New(rc, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rs.Close)

	conf := control.DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.JWTSecret = "bench-secret-bench-secret-bench-secret"
	conf.PasswordCost = 4
	conf.Admins = []string{"benchadmin"}
	conf.PublicRTMPURL = "rtmp://" + rs.Addr().String() + "/live"
	conf.Database.URL = "sqlite://" + filepath.Join(t.TempDir(), "control.db")
	ctl, err := control.New(conf, bus, log)
	if err != nil {
		t.Fatal(err)
	}
	m, err := money.Mount(ctl, money.DefaultConfig(), ledger.NewMemoryLeaderboard())
	if err != nil {
		ctl.Close()
		t.Fatal(err)
	}
	if err := ctl.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctl.Close()
		m.Close()
	})

	// The net/http client, one connection per sender; then the raw epoll
	// client with two connections per sender (a sender's gifts race each
	// other) and every third gift replayed, the server's CPU sampled.
	for _, mode := range [][]string{
		{"-n", "3", "-duration", "12s"},
		{"-n", "3", "-clients", "6", "-raw", "-replay", "0.3", "-duration", "8s", "-server-pid", itoa(os.Getpid())},
	} {
		args := append([]string{"gifts", "-api", "http://" + ctl.Addr(), "-admin", "benchadmin", "-publish-clip", testClip(t)}, mode...)
		rep := runScenario(t, context.Background(), args...)
		if rep == nil {
			t.FailNow()
		}
		logReport(t, rep)
		if rep.Ops == 0 || rep.Errors != 0 {
			t.Errorf("gifts %v: %d accepted, %d errors: %v", mode, rep.Ops, rep.Errors, rep.ErrorSample)
		}
		notes := strings.Join(rep.Notes, "\n")
		if !strings.Contains(notes, " 0 violations") || !strings.Contains(notes, "µs per gift") {
			t.Errorf("gifts %v: notes %q", mode, rep.Notes)
		}
		if len(mode) > 4 && mode[4] == "-raw" && (rep.Frames == 0 || !strings.Contains(notes, "server pid")) {
			t.Errorf("gifts %v: %d replays checked, notes %q", mode, rep.Frames, rep.Notes)
		}
	}
}
