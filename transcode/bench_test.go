package transcode

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

func cpuTime(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkLadder runs the default 3-rung ladder over a 1080p30 clip (60 s,
// or LIVEENGINE_BENCH_SECONDS) as fast as it goes, then the ffmpeg CLI doing
// the same ladder with the same x264 settings to null outputs, and reports
// both throughputs in source frames per second, CPU use, and the ratio.
// Run: go test ./transcode -run XXX -bench Ladder -benchtime 1x
func BenchmarkLadder(b *testing.B) {
	secs := 60
	if s, err := strconv.Atoi(os.Getenv("LIVEENGINE_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	clip := enginetest.Clip(b, enginetest.ClipSpec{Width: 1920, Height: 1080, FPS: 30, Seconds: secs, GOP: 60, Audio: true, Bitrate: "6000k"})
	media, err := enginetest.ReadTS(clip)
	if err != nil {
		b.Fatal(err)
	}
	frames := 0
	for _, u := range media.Units {
		if u.Track == 0 {
			frames++
		}
	}
	ladder := BuiltinPresets()[PresetDefault]
	if n, err := strconv.Atoi(os.Getenv("LIVEENGINE_BENCH_THREADS")); err == nil && n >= 0 {
		ladder.Threads = n // x264 threads per rung, ours only
	}

	var oursWall, oursCPU, cliWall, cliCPU time.Duration
	for i := 0; i < b.N; i++ {
		w, c := runOurs(b, media, ladder, i)
		oursWall += w
		oursCPU += c
		w, c = runCLI(b, clip, ladder)
		cliWall += w
		cliCPU += c
	}
	n := float64(b.N)
	oursFPS := float64(frames) * n / oursWall.Seconds()
	cliFPS := float64(frames) * n / cliWall.Seconds()
	b.ReportMetric(oursFPS, "src_fps")
	b.ReportMetric(cliFPS, "cli_src_fps")
	b.ReportMetric(oursFPS/cliFPS, "ratio")
	b.ReportMetric(100*oursCPU.Seconds()/oursWall.Seconds(), "cpu_%")
	b.ReportMetric(100*cliCPU.Seconds()/cliWall.Seconds(), "cli_cpu_%")
	b.Logf("%d frames of 1080p30 (%d s), %d run(s): ladder %.1f src fps (%.2fx real time), %.1f CPU s, %.0f%% CPU;"+
		" ffmpeg CLI %.1f src fps (%.2fx real time), %.1f CPU s, %.0f%% CPU; ratio %.2f",
		frames, secs, b.N, oursFPS, oursFPS/30, oursCPU.Seconds()/n, 100*oursCPU.Seconds()/oursWall.Seconds(),
		cliFPS, cliFPS/30, cliCPU.Seconds()/n, 100*cliCPU.Seconds()/cliWall.Seconds(), oursFPS/cliFPS)
}

// runOurs pushes every unit of media through one transcode job, as fast as
// the rungs take frames (no drops), and returns wall and CPU time.
func runOurs(b *testing.B, media *enginetest.Media, ladder Ladder, run int) (wall, cpu time.Duration) {
	conf := engine.DefaultConfig()
	bus := engine.NewLocalBus()
	defer bus.Close()
	eng, err := engine.New(conf, bus, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer eng.Close()
	tr, err := New(DefaultConfig(), eng, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	pub, err := eng.Authorize(b.Context(), engine.PublishRequest{Key: fmt.Sprintf("bench%d", run), Protocol: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	s, err := pub.Start(media.Tracks)
	if err != nil {
		b.Fatal(err)
	}
	var before, after syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	start := time.Now()
	j, err := newJob(tr, s, ladder, true)
	if err != nil {
		b.Fatal(err)
	}
	tr.wg.Add(1)
	tr.m.jobs.Inc()
	for _, u := range media.Units {
		j.handle(u)
	}
	j.finish()
	wall = time.Since(start)
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	return wall, cpuTime(&after) - cpuTime(&before)
}

// runCLI runs the ffmpeg CLI on the same ladder: split, scale=-2:H, libx264
// per rung with the same settings, AAC once, null outputs.
func runCLI(b *testing.B, clip string, l Ladder) (wall, cpu time.Duration) {
	graph := "[0:v]split=" + strconv.Itoa(len(l.Rungs))
	for i := range l.Rungs {
		graph += fmt.Sprintf("[s%d]", i)
	}
	for i, r := range l.Rungs {
		graph += fmt.Sprintf(";[s%d]scale=-2:%d[v%d]", i, r.Height, i)
	}
	args := []string{"-nostdin", "-v", "error", "-i", clip, "-filter_complex", graph}
	for i, r := range l.Rungs {
		args = append(args, "-map", fmt.Sprintf("[v%d]", i), "-c:v", "libx264", "-preset", l.Preset, "-tune", l.Tune,
			"-profile:v", r.Profile, "-g", strconv.Itoa(l.GOP), "-keyint_min", strconv.Itoa(l.GOP), "-sc_threshold", "0", "-bf", "0",
			"-b:v", r.Bitrate.String(), "-maxrate", r.Bitrate.String(), "-bufsize", r.Bitrate.String(), "-f", "null", "-")
	}
	args = append(args, "-map", "0:a", "-c:a", "aac", "-b:a", "128k", "-f", "null", "-")
	cmd := exec.Command("ffmpeg", args...)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ffmpeg: %v: %s", err, out)
	}
	wall = time.Since(start)
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return wall, cpuTime(ru)
}

// BenchmarkLadderLive publishes the 1080p30 clip in real time through the
// engine with the default ladder on and reports the CPU the process spends
// per live stream, in cores (the goal is 0.75 or less), and the frames the
// overload policy had to drop.
// Run: go test ./transcode -run XXX -bench LadderLive -benchtime 1x
func BenchmarkLadderLive(b *testing.B) {
	secs := 20
	if s, err := strconv.Atoi(os.Getenv("LIVEENGINE_BENCH_SECONDS")); err == nil && s > 0 {
		secs = s
	}
	clip := enginetest.Clip(b, enginetest.ClipSpec{Width: 1920, Height: 1080, FPS: 30, Seconds: 60, GOP: 60, Audio: true, Bitrate: "6000k"})
	media, err := enginetest.ReadTS(clip)
	if err != nil {
		b.Fatal(err)
	}
	// Keep the first secs seconds.
	keep := media.Units[:0:0]
	for _, u := range media.Units {
		if u.DTS < time.Duration(secs)*time.Second {
			keep = append(keep, u)
		}
	}
	media.Units = keep
	for i := 0; i < b.N; i++ {
		bus := engine.NewLocalBus()
		eng, err := engine.New(engine.DefaultConfig(), bus, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		tr, err := New(DefaultConfig(), eng, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.Start(); err != nil {
			b.Fatal(err)
		}
		pub, err := eng.Authorize(b.Context(), engine.PublishRequest{Key: "live", Protocol: "bench"})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := pub.Start(media.Tracks); err != nil {
			b.Fatal(err)
		}
		var before, after syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &before)
		start := time.Now()
		enginetest.PlayMedia(pub.Context(), pub, media, enginetest.PublishOptions{Realtime: true})
		pub.Close()
		for len(tr.Jobs()) > 0 {
			time.Sleep(10 * time.Millisecond)
		}
		wall := time.Since(start)
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &after)
		var dropped, encoded float64
		for _, r := range tr.ladder.Rungs {
			dropped += counterValueB(tr.m.dropped.WithLabelValues(r.Name))
			encoded += counterValueB(tr.m.encoded.WithLabelValues(r.Name))
		}
		cores := (cpuTime(&after) - cpuTime(&before)).Seconds() / wall.Seconds()
		b.ReportMetric(cores, "cores/stream")
		b.ReportMetric(dropped, "frames_dropped")
		b.Logf("live 1080p30 for %d s with the default ladder: %.2f cores, %.0f frames encoded, %.0f dropped", secs, cores, encoded, dropped)
		tr.Close()
		eng.Close()
		bus.Close()
	}
}
