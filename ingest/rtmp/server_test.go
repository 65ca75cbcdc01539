package rtmp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// Deadlines are generous: the machine is small and shared.
const waitLong = 60 * time.Second

type logWriter struct{ t testing.TB }

func (w logWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newKeysEngine returns a started engine in "keys" auth mode and its bus.
func newKeysEngine(t *testing.T) (*engine.Engine, *engine.LocalBus) {
	t.Helper()
	conf := engine.DefaultConfig()
	conf.PublishAuth = engine.AuthKeys
	bus := engine.NewLocalBus()
	eng, err := engine.New(conf, bus, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		eng.Close()
		bus.Close()
	})
	return eng, bus
}

// startServer starts an RTMP server for eng on a free loopback port.
func startServer(t *testing.T, eng *engine.Engine) (*Server, string) {
	t.Helper()
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	srv, err := New(conf, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv, srv.Addr().String()
}

// clip720 is the shared 720p30 testsrc2 + AAC clip made by enginetest.
func clip720(t *testing.T) string {
	return enginetest.Clip(t, enginetest.ClipSpec{Width: 1280, Height: 720, FPS: 30, Seconds: 3, GOP: 30, Audio: true})
}

// bframesClip is a 720p30 clip with two B-frames between references, so
// FLV composition-time offsets are exercised.
func bframesClip(t *testing.T) string {
	t.Helper()
	args := enginetest.ClipArgs(enginetest.ClipSpec{Width: 1280, Height: 720, FPS: 30, Seconds: 3, GOP: 30, Audio: true})
	for i := range args {
		if args[i] == "-bf" {
			args[i+1] = "2"
		}
		if args[i] == "zerolatency" {
			args[i] = "film" // zerolatency forbids B-frames
		}
	}
	sum := sha256.Sum256([]byte(fmt.Sprint(args)))
	dir := filepath.Join(os.TempDir(), "liveengine-clips")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "rtmp-bf2-"+hex.EncodeToString(sum[:8])+".ts")
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return path
	}
	tmp := fmt.Sprintf("%s.%d.tmp.ts", path, os.Getpid())
	full := append([]string{"-y", "-hide_banner", "-loglevel", "error"}, args...)
	full = append(full, "-f", "mpegts", tmp)
	if out, err := exec.Command("ffmpeg", full...).CombinedOutput(); err != nil {
		os.Remove(tmp)
		t.Fatalf("ffmpeg b-frames clip: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ffmpegPush is a running ffmpeg CLI publisher.
type ffmpegPush struct {
	cmd    *exec.Cmd
	done   chan struct{}
	err    error
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// push starts `ffmpeg -re -i clip -c copy -f flv url`; loop repeats the
// clip until the test ends. The process is killed at cleanup.
func push(t *testing.T, url, clip string, loop bool, extra ...string) *ffmpegPush {
	t.Helper()
	args := []string{"-hide_banner", "-loglevel", "warning", "-nostdin", "-re"}
	if loop {
		args = append(args, "-stream_loop", "-1")
	}
	args = append(args, "-i", clip, "-c", "copy")
	args = append(args, extra...)
	args = append(args, "-f", "flv", url)
	return runFFmpeg(t, args)
}

// runFFmpeg starts the ffmpeg CLI; it is killed at cleanup.
func runFFmpeg(t *testing.T, args []string) *ffmpegPush {
	t.Helper()
	p := &ffmpegPush{cmd: exec.Command("ffmpeg", args...), done: make(chan struct{}), stderr: &syncBuffer{}}
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start ffmpeg: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// wait waits for ffmpeg to exit and returns its exit error.
func (p *ffmpegPush) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(waitLong):
		t.Fatalf("ffmpeg still running after %s; stderr:\n%s", waitLong, p.stderr.String())
		return nil
	}
}

// waitFor polls cond until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitStream(t *testing.T, eng *engine.Engine, id string) *engine.Stream {
	t.Helper()
	var s *engine.Stream
	waitFor(t, "stream "+id+" live", func() bool {
		s, _ = eng.Stream(id)
		return s != nil
	})
	return s
}

// recorder is an engine reader that keeps every unit it receives.
type recorder struct {
	mu    sync.Mutex
	units []*engine.Unit
	r     *engine.Reader
}

func record(t *testing.T, s *engine.Stream) *recorder {
	t.Helper()
	rec := &recorder{}
	r, err := s.AddReader(engine.ReaderOptions{Name: "test", Kind: "bench"}, func(u *engine.Unit) {
		rec.mu.Lock()
		rec.units = append(rec.units, u)
		rec.mu.Unlock()
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rec.r = r
	t.Cleanup(r.Close)
	return rec
}

func (r *recorder) snapshot() []*engine.Unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.units)
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.units)
}

// metricValue reads one sample of the server's collector.
func metricValue(t *testing.T, srv *Server, name string, labels map[string]string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(srv.Collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return sampleValue(m)
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

func sampleValue(m *dto.Metric) float64 {
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

func trackOf(s *engine.Stream, c engine.Codec) (int, *engine.Track) {
	for i, tr := range s.Tracks() {
		if tr.Codec == c {
			return i, tr
		}
	}
	return -1, nil
}

// checkMedia asserts what every RTMP publish from ffmpeg must look like.
func checkMedia(t *testing.T, s *engine.Stream, units []*engine.Unit, wantBFrames bool) {
	t.Helper()
	vi, vt := trackOf(s, engine.CodecH264)
	ai, at := trackOf(s, engine.CodecAAC)
	if vt == nil || at == nil {
		t.Fatalf("tracks = %+v, want H.264 and AAC", s.Tracks())
	}
	if vt.Width != 1280 || vt.Height != 720 || len(vt.SPS) == 0 || len(vt.PPS) == 0 || vt.ClockRate != 90000 {
		t.Fatalf("video track %dx%d sps=%d pps=%d clock=%d", vt.Width, vt.Height, len(vt.SPS), len(vt.PPS), vt.ClockRate)
	}
	if vt.FrameRate < 29 || vt.FrameRate > 31 {
		t.Errorf("video frame rate %v, want 30", vt.FrameRate)
	}
	if at.SampleRate != 48000 && at.SampleRate != 44100 || at.Channels != 2 || len(at.AACConfig) < 2 {
		t.Fatalf("audio track rate=%d channels=%d config=%x", at.SampleRate, at.Channels, at.AACConfig)
	}
	if len(units) == 0 || units[0].Track != vi || !units[0].Key {
		t.Fatalf("first unit is not a video keyframe: %+v", units[0])
	}
	var lastVideoDTS, lastAudioPTS time.Duration = -1, -1
	var videoPTS []time.Duration
	reordered, keys, frames := 0, 0, 0
	for i, u := range units {
		if u.NTP.IsZero() {
			t.Fatalf("unit %d has no NTP time", i)
		}
		switch u.Track {
		case vi:
			frames++
			if u.DTS < lastVideoDTS {
				t.Fatalf("video DTS went back: %v after %v", u.DTS, lastVideoDTS)
			}
			if u.PTS < u.DTS {
				t.Fatalf("video PTS %v before DTS %v", u.PTS, u.DTS)
			}
			if u.PTS != u.DTS {
				reordered++
			}
			hasIDR := false
			for _, n := range u.NALUs {
				switch n[0] & 0x1f {
				case 9, 12:
					t.Fatalf("AUD or filler NAL unit passed through")
				case 5:
					hasIDR = true
				}
			}
			if u.Key != hasIDR {
				t.Fatalf("unit %d: key=%v but IDR=%v", i, u.Key, hasIDR)
			}
			if u.Key {
				keys++
			}
			lastVideoDTS = u.DTS
			videoPTS = append(videoPTS, u.PTS)
		case ai:
			if u.PTS <= lastAudioPTS || u.DTS != u.PTS || len(u.Payload) == 0 || !u.Key {
				t.Fatalf("audio unit %d: pts %v after %v, payload %d", i, u.PTS, lastAudioPTS, len(u.Payload))
			}
			lastAudioPTS = u.PTS
		default:
			t.Fatalf("unit on unknown track %d", u.Track)
		}
	}
	slices.Sort(videoPTS)
	for i := 1; i < len(videoPTS); i++ {
		if videoPTS[i] <= videoPTS[i-1] {
			t.Fatalf("two video frames share PTS %v", videoPTS[i])
		}
	}
	if frames < 30 || keys < 1 {
		t.Fatalf("%d video frames, %d keyframes", frames, keys)
	}
	if wantBFrames && reordered == 0 {
		t.Fatalf("no video frame with PTS != DTS in a B-frame stream")
	}
	if !wantBFrames && reordered != 0 {
		t.Fatalf("%d frames with PTS != DTS in a stream without B-frames", reordered)
	}
}

// publishAndRecord pushes clip once and records the whole stream.
func publishAndRecord(t *testing.T, start func(url string) *ffmpegPush, wantBFrames bool) {
	eng := enginetest.NewEngine(t)
	srv, addr := startServer(t, eng)
	p := start("rtmp://" + addr + "/live/cam1")
	s := waitStream(t, eng, "cam1")
	rec := record(t, s)
	if err := p.wait(t); err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, p.stderr.String())
	}
	// Disconnect ends the stream; the reader drains and stops.
	select {
	case <-s.Done():
	case <-time.After(waitLong):
		t.Fatal("stream still live after the publisher left")
	}
	select {
	case <-rec.r.Done():
	case <-time.After(waitLong):
		t.Fatal("reader not done after the stream ended")
	}
	if _, err := eng.Stream("cam1"); !errors.Is(err, engine.ErrStreamNotFound) {
		t.Fatalf("stream after disconnect: %v", err)
	}
	checkMedia(t, s, rec.snapshot(), wantBFrames)
	if v := metricValue(t, srv, "liveengine_rtmp_publishes_accepted_total", nil); v != 1 {
		t.Errorf("accepted = %v, want 1", v)
	}
	waitFor(t, "connection count back to 0", func() bool {
		return metricValue(t, srv, "liveengine_rtmp_connections", nil) == 0
	})
}

func TestPublishFFmpeg(t *testing.T) {
	clip := clip720(t)
	publishAndRecord(t, func(url string) *ffmpegPush { return push(t, url, clip, false) }, false)
}

func TestPublishFFmpegBFrames(t *testing.T) {
	clip := bframesClip(t)
	publishAndRecord(t, func(url string) *ffmpegPush { return push(t, url, clip, false) }, true)
}

// TestPublishFFmpegLiveEncode is the canonical OBS-like case: ffmpeg
// encodes testsrc2 720p30 and a 44.1 kHz sine as it publishes, with
// B-frames, so sequence headers are real from the first tag.
func TestPublishFFmpegLiveEncode(t *testing.T) {
	publishAndRecord(t, func(url string) *ffmpegPush {
		return runFFmpeg(t, []string{"-hide_banner", "-loglevel", "warning", "-nostdin",
			"-re", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30",
			"-re", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=44100",
			"-t", "2", "-c:v", "libx264", "-preset", "ultrafast", "-bf", "2", "-g", "30", "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-b:a", "96k", "-ac", "2", "-f", "flv", url})
	}, true)
}

func TestPublishSingleTrack(t *testing.T) {
	eng := enginetest.NewEngine(t)
	_, addr := startServer(t, eng)
	clip := clip720(t)
	for _, tc := range []struct {
		name  string
		flag  string
		codec engine.Codec
	}{{"video-only", "-an", engine.CodecH264}, {"audio-only", "-vn", engine.CodecAAC}} {
		t.Run(tc.name, func(t *testing.T) {
			p := push(t, "rtmp://"+addr+"/live/"+tc.name, clip, false, tc.flag)
			s := waitStream(t, eng, tc.name)
			if len(s.Tracks()) != 1 || s.Tracks()[0].Codec != tc.codec {
				t.Fatalf("tracks = %+v, want only %v", s.Tracks(), tc.codec)
			}
			rec := record(t, s)
			waitFor(t, "units", func() bool { return rec.count() > 10 })
			if err := p.wait(t); err != nil {
				t.Fatalf("ffmpeg: %v\n%s", err, p.stderr.String())
			}
			<-s.Done()
		})
	}
}

func TestRepublishAfterDisconnect(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv, addr := startServer(t, eng)
	clip := clip720(t)
	for i := 0; i < 2; i++ {
		p := push(t, "rtmp://"+addr+"/live/again", clip, true)
		s := waitStream(t, eng, "again")
		waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })
		// ffmpeg killed: the TCP connection drops without FCUnpublish.
		_ = p.cmd.Process.Kill()
		<-p.done
		select {
		case <-s.Done():
		case <-time.After(waitLong):
			t.Fatalf("round %d: stream still live after the publisher vanished", i)
		}
	}
	if v := metricValue(t, srv, "liveengine_rtmp_publishes_accepted_total", nil); v != 2 {
		t.Errorf("accepted = %v, want 2", v)
	}
}

func TestSecondPublisherRefused(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv, addr := startServer(t, eng)
	clip := clip720(t)
	first := push(t, "rtmp://"+addr+"/live/busy", clip, true)
	s := waitStream(t, eng, "busy")
	waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })

	second := push(t, "rtmp://"+addr+"/live/busy", clip, false)
	if err := second.wait(t); err == nil {
		t.Fatalf("second publisher was not refused; stderr:\n%s", second.stderr.String())
	}
	if !strings.Contains(second.stderr.String(), "already being published") {
		t.Errorf("second publisher's error does not say why:\n%s", second.stderr.String())
	}
	if v := metricValue(t, srv, "liveengine_rtmp_publishes_refused_total", map[string]string{"reason": "busy"}); v != 1 {
		t.Errorf("refused busy = %v, want 1", v)
	}
	// The first publisher keeps streaming into the same stream.
	cur, err := eng.Stream("busy")
	if err != nil || cur != s {
		t.Fatalf("stream replaced or gone: %v", err)
	}
	frames := s.FramesIn()
	waitFor(t, "first publisher still streaming", func() bool { return s.FramesIn() > frames+15 })
	select {
	case <-first.done:
		t.Fatalf("first publisher exited: %v\n%s", first.err, first.stderr.String())
	default:
	}
}

func TestKeysAuth(t *testing.T) {
	eng, bus := newKeysEngine(t)
	if err := bus.SetStreamKey(context.Background(), "sk_live_123", engine.Grant{StreamID: "show42"}); err != nil {
		t.Fatal(err)
	}
	srv, addr := startServer(t, eng)
	clip := clip720(t)

	bad := push(t, "rtmp://"+addr+"/live/sk_wrong", clip, false)
	if err := bad.wait(t); err == nil {
		t.Fatalf("unknown key accepted; stderr:\n%s", bad.stderr.String())
	}
	if !strings.Contains(bad.stderr.String(), "unknown stream key") {
		t.Errorf("refusal does not say why:\n%s", bad.stderr.String())
	}
	if v := metricValue(t, srv, "liveengine_rtmp_publishes_refused_total", map[string]string{"reason": "unknown_key"}); v != 1 {
		t.Errorf("refused unknown_key = %v, want 1", v)
	}
	if len(eng.Streams()) != 0 {
		t.Fatalf("a refused publish created streams: %v", eng.Streams())
	}

	wrongApp := push(t, "rtmp://"+addr+"/other/sk_live_123", clip, false)
	if err := wrongApp.wait(t); err == nil {
		t.Fatal("wrong app accepted")
	}
	if v := metricValue(t, srv, "liveengine_rtmp_publishes_refused_total", map[string]string{"reason": "bad_app"}); v != 1 {
		t.Errorf("refused bad_app = %v, want 1", v)
	}

	good := push(t, "rtmp://"+addr+"/live/sk_live_123", clip, true)
	s := waitStream(t, eng, "show42")
	waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })
	_ = good
}

func TestKickClosesConnection(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv, addr := startServer(t, eng)
	p := push(t, "rtmp://"+addr+"/live/kickme", clip720(t), true)
	s := waitStream(t, eng, "kickme")
	waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })
	if !eng.Kick("kickme", engine.ErrKicked) {
		t.Fatal("Kick found no publisher")
	}
	if err := p.wait(t); err == nil {
		t.Fatalf("ffmpeg exited cleanly after a kick; stderr:\n%s", p.stderr.String())
	}
	<-s.Done()
	waitFor(t, "connection count back to 0", func() bool {
		return metricValue(t, srv, "liveengine_rtmp_connections", nil) == 0
	})
	if v := metricValue(t, srv, "liveengine_rtmp_malformed_closed_total", nil); v != 0 {
		t.Errorf("a kick counted as malformed: %v", v)
	}
}

func TestCloseEndsStreams(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	srv, err := New(conf, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr().String()
	p := push(t, "rtmp://"+addr+"/live/closing", clip720(t), true)
	s := waitStream(t, eng, "closing")
	waitFor(t, "frames", func() bool { return s.FramesIn() > 5 })
	srv.Close() // returns once every connection goroutine is done
	select {
	case <-s.Done():
	default:
		t.Fatal("stream still live after Close returned")
	}
	if err := p.wait(t); err == nil {
		t.Fatal("ffmpeg exited cleanly after server Close")
	}
	srv.Close() // idempotent
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Config){
		"rtmp.addr":           func(c *Config) { c.Addr = "1935" },
		"rtmp.app":            func(c *Config) { c.App = "a/b" },
		"rtmp.read_timeout":   func(c *Config) { c.ReadTimeout = 0 },
		"rtmp.start_timeout":  func(c *Config) { c.StartTimeout = 0 },
		"rtmp.max_chunk_size": func(c *Config) { c.MaxChunkSize = 1 << 30 },
	}
	for key, mutate := range bad {
		c := DefaultConfig()
		mutate(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), key+":") {
			t.Errorf("%s: err = %v", key, err)
		}
	}
	if _, err := New(Config{}, nil, nil); err == nil {
		t.Error("New accepted a zero config")
	}
	_ = io.EOF
}

// BenchmarkIngestCPU pushes the 720p30 clip in real time with the ffmpeg
// CLI and reports the CPU this process (RTMP server and engine) spent
// per second of media: the ingest cost of one RTMP publisher (no readers).
func BenchmarkIngestCPU(b *testing.B) {
	eng := enginetest.NewEngine(b)
	conf := DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	srv, err := New(conf, eng, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	clip := enginetest.Clip(b, enginetest.ClipSpec{Width: 1280, Height: 720, FPS: 30, Seconds: 3, GOP: 30, Audio: true})
	var cpu, media time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		key := fmt.Sprintf("bench%d", i)
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-i", clip, "-c", "copy", "-f", "flv", "rtmp://"+srv.Addr().String()+"/live/"+key)
		before := processCPU()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ffmpeg: %v\n%s", err, out)
		}
		cpu += processCPU() - before
		media += 3 * time.Second
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/media.Seconds()/1000, "cpu-ms/media-s")
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func TestPlayRefused(t *testing.T) {
	eng := enginetest.NewEngine(t)
	_, addr := startServer(t, eng)
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-rw_timeout", "20000000",
		"-i", "rtmp://"+addr+"/live/cam", "-f", "null", "-")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("ffmpeg played from an ingest-only server:\n%s", out)
	}
}

// TestCloseRightAfterStart: a Close that comes before go-rtmp's Serve has
// registered its listener (another component failed to start) still
// returns; it used to hang the binary's startup error path.
func TestCloseRightAfterStart(t *testing.T) {
	eng, _ := newKeysEngine(t)
	for i := 0; i < 50; i++ {
		srv, _ := startServer(t, eng)
		done := make(chan struct{})
		go func() { srv.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("Close right after Start hung (round %d)", i)
		}
	}
}
