package control

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/liveengine/liveengine/bench/wsload"
	"github.com/liveengine/liveengine/engine"
)

const fanoutServerEnv = "LIVEENGINE_FANOUT_SERVER"

// serveForBenchmark runs a control server until stdin closes.
func serveForBenchmark() int {
	dir, _ := os.MkdirTemp("", "fanout")
	defer os.RemoveAll(dir)
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	conf.JWTSecret = strings.Repeat("b", 32)
	conf.PasswordCost = 4
	conf.Database.URL = "sqlite://" + filepath.Join(dir, "c.db")
	conf.Limits.CommentsPerSecond = 1000
	conf.Limits.CommentBurst = 1000
	conf.WS.MaxConnsPerIP = 0 // every bench client comes from 127.0.0.1
	bus := engine.NewLocalBus()
	s, err := New(conf, bus, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := s.Start(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if prof := os.Getenv("LIVEENGINE_FANOUT_CPUPROFILE"); prof != "" {
		if f, err := os.Create(prof); err == nil {
			_ = pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	fmt.Printf("ADDR %s\n", s.Addr())
	// Each "gc" line from the parent collects garbage and returns it to the
	// OS, so RSS shows what the connections hold, not GC slack.
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if f, ok := strings.CutPrefix(in.Text(), "heap "); ok {
			if w, err := os.Create(f); err == nil {
				_ = pprof.Lookup("heap").WriteTo(w, 0)
				w.Close()
			}
			continue
		}
		if in.Text() == "gc" {
			debug.FreeOSMemory()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			fmt.Printf("MEM %d %d %d\n", ms.HeapInuse, ms.StackInuse, runtime.NumGoroutine())
		}
	}
	s.Close()
	bus.Close()
	return 0
}

// BenchmarkChatFanout measures chat fan-out as the issue asks: N WebSocket
// clients in one room, comments POSTed through the API at 10/s for 20 s
// (LIVEENGINE_FANOUT_CLIENTS="1000,5000,10000", LIVEENGINE_FANOUT_SECONDS=20),
// reporting delivery latency (POST start → receipt) p50/p99, loss, server
// RSS per connection and server CPU per delivery. The server runs in a child
// process so its memory is its own. Run with -benchtime=1x.
func BenchmarkChatFanout(b *testing.B) {
	counts := []int{1000, 5000, 10000}
	if v := os.Getenv("LIVEENGINE_FANOUT_CLIENTS"); v != "" {
		counts = nil
		for _, f := range strings.Split(v, ",") {
			n, _ := strconv.Atoi(f)
			counts = append(counts, n)
		}
	}
	secs := 20
	if v := os.Getenv("LIVEENGINE_FANOUT_SECONDS"); v != "" {
		secs, _ = strconv.Atoi(v)
	}
	for _, n := range counts {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				runFanout(b, n, 10, time.Duration(secs)*time.Second)
			}
		})
	}
}

func procStatus(pid int, field string) int64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	return 0
}

// procCPU is the process's user+system CPU time in clock ticks.
func procCPU(pid int) int64 {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	u, _ := strconv.ParseInt(f[11], 10, 64)
	sy, _ := strconv.ParseInt(f[12], 10, 64)
	return u + sy
}

func runFanout(b *testing.B, clients, perSecond int, dur time.Duration) {
	b.StopTimer()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fanoutServerEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	out := bufio.NewReader(stdout)
	line, err := out.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ADDR ") {
		b.Fatalf("server did not start: %q %v", line, err)
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "ADDR "))
	pid := cmd.Process.Pid
	c := &client{t: b, base: "http://" + addr, ws: "ws://" + addr + "/api/v1/ws"}
	alice := c.as(c.register("alice", "streamer").AccessToken)
	in := alice.createStream("fanout")
	type mem struct{ heap, stack, goroutines int64 }
	collect := func() mem {
		_, _ = io.WriteString(stdin, "gc\n")
		l, err := out.ReadString('\n')
		if err != nil {
			b.Fatal(err)
		}
		var m mem
		fmt.Sscanf(l, "MEM %d %d %d", &m.heap, &m.stack, &m.goroutines)
		return m
	}
	memBefore := collect()
	rssBefore := procStatus(pid, "VmRSS")

	total := int(dur.Seconds()) * perSecond
	// The client is bench/wsload: a few epoll loops read every socket and
	// check every frame (sequence and latency) without a goroutine per
	// connection, so it leaves the CPU to the server it shares the box with.
	// Loops rest 1 ms after emptying their ready list (LIVEENGINE_FANOUT_PAUSE
	// overrides), so the server's writes seldom wake a sleeping client
	// thread: on one machine that wake-up is charged to the server's write.
	pause := time.Millisecond
	if v := os.Getenv("LIVEENGINE_FANOUT_PAUSE"); v != "" {
		if d, err := time.ParseDuration(v); err == nil {
			pause = d
		}
	}
	meter := wsload.NewMeter(clients)
	loops := make([]*wsload.Loop, runtime.GOMAXPROCS(0))
	for i := range loops {
		l, err := wsload.NewLoop(meter.Handler())
		if err != nil {
			b.Fatal(err)
		}
		l.Pause = pause
		l.Stamps = true
		loops[i] = l
		defer l.Close()
	}
	subscribe := []byte(`{"type":"subscribe","room":"` + in.ID + `","ref":"s"}`)
	err = wsload.Connect(context.Background(), clients, 32, func(i int) error {
		return joinRoom(c.ws, subscribe, i, loops[i%len(loops)])
	})
	if err != nil {
		b.Fatalf("dial: %v", err)
	}
	memAfter := collect()
	rssAfter := procStatus(pid, "VmRSS")
	if f := os.Getenv("LIVEENGINE_FANOUT_HEAPPROFILE"); f != "" {
		_, _ = io.WriteString(stdin, "heap "+f+"\n")
	}
	cpuBefore, selfBefore := procCPU(pid), procCPU(os.Getpid())
	b.StartTimer()
	tick := time.NewTicker(time.Second / time.Duration(perSecond))
	for seq := 0; seq < total; seq++ {
		<-tick.C
		alice.must(201, "POST", "/api/v1/streams/"+in.ID+"/comments", map[string]string{"body": wsload.Body(seq, time.Now())}, nil)
	}
	tick.Stop()
	// Wait for stragglers, bounded.
	deadline := time.Now().Add(30 * time.Second)
	for meter.Received() < int64(total*clients) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	b.StopTimer()
	cpuTicks, selfTicks := procCPU(pid)-cpuBefore, procCPU(os.Getpid())-selfBefore
	all := meter.Latencies()
	pct := func(p float64) float64 { return wsload.QuantileMS(all, p) }
	if n := meter.Duplicates.Load() + meter.Reordered.Load(); n > 0 {
		b.Errorf("%d messages repeated or out of order (one publisher: order must hold)", n)
	}
	if n := meter.Closed.Load(); n > 0 {
		b.Errorf("%d connections closed during the run: %v", n, meter.CloseErrors())
	}
	expected := total * clients
	loss := float64(expected-len(all)) / float64(expected)
	perConnKB := float64(rssAfter-rssBefore) / float64(clients)
	cpuSec := float64(cpuTicks) / 100 // USER_HZ
	b.ReportMetric(pct(0.50), "p50_ms")
	b.ReportMetric(pct(0.99), "p99_ms")
	b.ReportMetric(pct(1.0), "max_ms")
	b.ReportMetric(loss*100, "loss_%")
	b.ReportMetric(perConnKB, "server_rss_KB/conn")
	b.ReportMetric(float64(len(all))/cpuSec, "deliveries/server_cpu_s")
	if fs, spread := meter.FanoutSpread(); len(fs) > 0 {
		q := wsload.QuantileMS
		b.Logf("per message: first receipt p50 %.1f ms p99 %.1f ms (publish call → fan-out starts); last − first p50 %.1f ms p99 %.1f ms (the fan-out)",
			q(fs, .5), q(fs, .99), q(spread, .5), q(spread, .99))
	}
	if arr := meter.Arrivals(); len(arr) > 0 {
		q := func(p float64) float64 { return wsload.QuantileMS(arr, p) }
		b.Logf("publish call → arrival in the client's socket (kernel receive stamp, %d of the deliveries): p50 %.1f ms p99 %.1f ms max %.1f ms",
			len(arr), q(.5), q(.99), q(1))
	}
	b.Logf("client reads %d, server CPU %.1f µs/delivery, client (this process) CPU %.1f µs/delivery, load average at the end %s",
		readsOf(loops), cpuSec*1e6/float64(max(1, len(all))), float64(selfTicks)/100*1e6/float64(max(1, len(all))), loadavg())
	b.Logf("clients=%d messages=%d delivered=%d/%d p50=%.1fms p99=%.1fms max=%.1fms loss=%.3f%% server RSS %d→%d KB (%.1f KB/conn; heap %.1f KB/conn, stack %.1f KB/conn, %.2f goroutines/conn) server CPU %.1fs",
		clients, total, len(all), expected, pct(0.5), pct(0.99), pct(1), loss*100, rssBefore, rssAfter, perConnKB,
		float64(memAfter.heap-memBefore.heap)/1024/float64(clients), float64(memAfter.stack-memBefore.stack)/1024/float64(clients),
		float64(memAfter.goroutines-memBefore.goroutines)/float64(clients), cpuSec)
}

// joinRoom opens one bench connection, subscribes it to the room and hands
// it to a loop.
func joinRoom(url string, subscribe []byte, id int, loop *wsload.Loop) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := wsload.Dial(ctx, url, nil)
	if err != nil {
		return err
	}
	conn.ID = id
	if err := conn.WriteText(subscribe); err != nil {
		conn.Close()
		return err
	}
	for {
		msg, err := conn.ReadText(time.Now().Add(60 * time.Second))
		if err != nil {
			conn.Close()
			return err
		}
		if bytes.Contains(msg, []byte(`"ref":"s"`)) {
			if bytes.Contains(msg, []byte(`"type":"error"`)) {
				conn.Close()
				return fmt.Errorf("subscribe refused: %s", msg)
			}
			return loop.Add(conn)
		}
	}
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}

func readsOf(loops []*wsload.Loop) int64 {
	var n int64
	for _, l := range loops {
		n += l.Reads.Load()
	}
	return n
}
