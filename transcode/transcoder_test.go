package transcode

import (
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// recording is what a test reader saw of one stream.
type recording struct {
	id     string
	tracks []*engine.Track
	reader *engine.Reader

	mu    sync.Mutex
	units []*engine.Unit
}

func (r *recording) snapshot() []*engine.Unit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.units)
}

// recorder is an engine hook that reads every stream that goes live, with a
// queue deep enough to lose nothing.
type recorder struct {
	mu      sync.Mutex
	streams map[string]*recording
	all     []*recording
}

func newRecorder(eng *engine.Engine) *recorder {
	rec := &recorder{streams: map[string]*recording{}}
	eng.AddHook(rec)
	return rec
}

func (rec *recorder) StreamStarted(s *engine.Stream) {
	r := &recording{id: s.ID(), tracks: s.Tracks()}
	rd, err := s.AddReader(engine.ReaderOptions{Name: "test", Kind: "bench", QueueLen: 16384}, func(u *engine.Unit) {
		r.mu.Lock()
		r.units = append(r.units, u)
		r.mu.Unlock()
	}, nil)
	if err != nil {
		return
	}
	r.reader = rd
	rec.mu.Lock()
	rec.streams[s.ID()] = r
	rec.all = append(rec.all, r)
	rec.mu.Unlock()
}

func (rec *recorder) StreamStopped(*engine.Stream) {}

func (rec *recorder) get(id string) *recording {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.streams[id]
}

func (rec *recorder) ids() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for id := range rec.streams {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// waitAllDone waits for every recorded stream to end and its reader to drain.
func (rec *recorder) waitAllDone(t *testing.T, timeout time.Duration) {
	t.Helper()
	deadline := time.After(timeout)
	rec.mu.Lock()
	all := slices.Clone(rec.all)
	rec.mu.Unlock()
	for _, r := range all {
		select {
		case <-r.reader.Done():
		case <-deadline:
			t.Fatalf("stream %s did not end", r.id)
		}
	}
}

func newTestTranscoder(t *testing.T, eng *engine.Engine, conf Config) *Transcoder {
	t.Helper()
	tr, err := New(conf, eng, slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.Close)
	return tr
}

type testLog struct{ t *testing.T }

func (w testLog) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runLadder publishes clip in real time as stream key, waits for the
// source and every rendition to end, and returns the recordings by id.
func runLadder(t *testing.T, eng *engine.Engine, tr *Transcoder, rec *recorder, key, clip string) {
	t.Helper()
	pub := enginetest.Publish(t, eng, key, clip, enginetest.PublishOptions{Realtime: true})
	select {
	case <-pub.Stream().Done():
	case <-time.After(90 * time.Second):
		t.Fatal("clip did not end")
	}
	waitFor(t, 60*time.Second, "transcode jobs to end", func() bool { return len(tr.Jobs()) == 0 })
	rec.waitAllDone(t, 60*time.Second)
}

type probeStream struct {
	CodecName string `json:"codec_name"`
	CodecType string `json:"codec_type"`
	Profile   string `json:"profile"`
	Width     int    `json:"width"`
	Height    int    `json:"height"`
	StartTime string `json:"start_time"`
}

type probePacket struct {
	PTSTime string `json:"pts_time"`
	Flags   string `json:"flags"`
	Size    string `json:"size"`
}

// probe writes a recording to MPEG-TS and reads it back with ffprobe: its
// streams, and the video keyframe times.
func probe(t *testing.T, dir string, r *recording) (streams []probeStream, keys []string, videoBytes int, dur float64) {
	t.Helper()
	path := filepath.Join(dir, strings.ReplaceAll(r.id, "/", "_")+".ts")
	writeTS(t, path, r.tracks, r.snapshot())
	var s struct {
		Streams []probeStream `json:"streams"`
	}
	if err := json.Unmarshal(ffprobe(t, "-show_streams", path), &s); err != nil {
		t.Fatal(err)
	}
	var p struct {
		Packets []probePacket `json:"packets"`
	}
	if err := json.Unmarshal(ffprobe(t, "-select_streams", "v:0", "-show_entries", "packet=pts_time,flags,size", path), &p); err != nil {
		t.Fatal(err)
	}
	var first, last float64
	for i, pk := range p.Packets {
		ts, _ := strconv.ParseFloat(pk.PTSTime, 64)
		if i == 0 {
			first = ts
		}
		last = ts
		n, _ := strconv.Atoi(pk.Size)
		videoBytes += n
		if strings.Contains(pk.Flags, "K") {
			keys = append(keys, pk.PTSTime)
		}
	}
	if len(p.Packets) > 1 {
		dur = last - first + 1.0/30 // the last frame lasts a frame interval
	}
	return s.Streams, keys, videoBytes, dur
}

// TestLadder1080p pushes a 1080p30 clip with audio through the default
// ladder and checks every rendition with ffprobe: size, codec, bit rate,
// keyframes at the same PTS everywhere, audio present, timestamps kept.
func TestLadder1080p(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 1920, Height: 1080, FPS: 30, Seconds: 6, GOP: 60, Audio: true, Bitrate: "6000k"})
	eng := enginetest.NewEngine(t)
	rec := newRecorder(eng)
	tr := newTestTranscoder(t, eng, DefaultConfig())
	runLadder(t, eng, tr, rec, "live1", clip)

	if got, want := rec.ids(), []string{"live1", "live1/360p", "live1/480p", "live1/720p"}; !slices.Equal(got, want) {
		t.Fatalf("streams %v, want %v", got, want)
	}
	dir := t.TempDir()
	src := rec.get("live1")
	srcVideo := map[time.Duration]*engine.Unit{}
	var srcAudio []*engine.Unit
	for _, u := range src.snapshot() {
		if u.Track == 0 {
			srcVideo[u.PTS] = u
		} else {
			srcAudio = append(srcAudio, u)
		}
	}
	_, srcKeys, _, _ := probe(t, dir, src)

	var keySets [][]string
	for _, tc := range []struct {
		name          string
		width, height int
		bitrate       float64
		profile       string
	}{
		{"720p", 1280, 720, 2800e3, "High"},
		{"480p", 854, 480, 1400e3, "Main"},
		{"360p", 640, 360, 800e3, "Main"},
	} {
		r := rec.get("live1/" + tc.name)
		streams, keys, vbytes, dur := probe(t, dir, r)
		var video, audio *probeStream
		for i := range streams {
			switch streams[i].CodecType {
			case "video":
				video = &streams[i]
			case "audio":
				audio = &streams[i]
			}
		}
		if video == nil || audio == nil {
			t.Fatalf("%s: streams %+v: want video and audio", tc.name, streams)
		}
		if video.CodecName != "h264" || video.Width != tc.width || video.Height != tc.height || video.Profile != tc.profile {
			t.Fatalf("%s: video %+v, want h264 %s %dx%d", tc.name, video, tc.profile, tc.width, tc.height)
		}
		if audio.CodecName != "aac" {
			t.Fatalf("%s: audio codec %s", tc.name, audio.CodecName)
		}
		vs, _ := strconv.ParseFloat(video.StartTime, 64)
		as, _ := strconv.ParseFloat(audio.StartTime, 64)
		t.Logf("%s: video starts at %.3f s, audio at %.3f s", tc.name, vs, as)
		if d := as - vs; d > 0.1 || d < -0.1 {
			t.Fatalf("%s: audio starts %.0f ms after video", tc.name, d*1000)
		}
		rate := float64(vbytes*8) / dur
		t.Logf("%s: %dx%d %s, %.0f kbit/s over %.2f s, keyframes at %v", tc.name, video.Width, video.Height, video.Profile, rate/1000, dur, keys)
		if dur < 4 {
			t.Fatalf("%s: only %.2f s of video", tc.name, dur)
		}
		// Low bounds are loose: testsrc2 is easy to code, and a loaded
		// machine makes the lower rungs skip frames.
		if rate < 0.2*tc.bitrate || rate > 1.5*tc.bitrate {
			t.Fatalf("%s: %.0f kbit/s, want about %.0f", tc.name, rate/1000, tc.bitrate/1000)
		}
		keySets = append(keySets, keys)

		// Exact source timestamps survive, wall-clock stamps with them;
		// the audio is the source's own units.
		var audioUnits []*engine.Unit
		for _, u := range r.snapshot() {
			if u.Track == 1 {
				audioUnits = append(audioUnits, u)
				continue
			}
			s, ok := srcVideo[u.PTS]
			if !ok {
				t.Fatalf("%s: video PTS %s is not a source PTS", tc.name, u.PTS)
			}
			if !u.NTP.Equal(s.NTP) {
				t.Fatalf("%s: NTP at %s is %s, source has %s", tc.name, u.PTS, u.NTP, s.NTP)
			}
		}
		if len(audioUnits) < len(srcAudio)*3/4 {
			t.Fatalf("%s: %d audio units, source has %d", tc.name, len(audioUnits), len(srcAudio))
		}
		for _, a := range audioUnits {
			if &a.Payload[0] != &srcAudioPayload(srcAudio, a.PTS)[0] {
				t.Fatalf("%s: audio unit at %s is not the source's", tc.name, a.PTS)
			}
		}
	}
	for i := 1; i < len(keySets); i++ {
		if !slices.Equal(keySets[i], keySets[0]) {
			t.Fatalf("keyframes differ across renditions:\n%v\n%v", keySets[0], keySets[i])
		}
	}
	// Every source keyframe (after the first decoded one) is a keyframe
	// on every rung.
	for _, k := range srcKeys {
		kf, _ := strconv.ParseFloat(k, 64)
		first, _ := strconv.ParseFloat(keySets[0][0], 64)
		if kf >= first && !slices.Contains(keySets[0], k) {
			t.Fatalf("source keyframe %s missing from renditions %v", k, keySets[0])
		}
	}
	// On a loaded machine frames get dropped, the lowest rung first.
	enc := counterValue(t, tr.m.encoded.WithLabelValues("720p"))
	d720 := counterValue(t, tr.m.dropped.WithLabelValues("720p"))
	d360 := counterValue(t, tr.m.dropped.WithLabelValues("360p"))
	t.Logf("720p: %v frames encoded, %v dropped; 360p: %v dropped", enc, d720, d360)
	if enc < 30 {
		t.Fatalf("720p encoded %v frames", enc)
	}
	if d360 < d720 {
		t.Fatalf("top rung dropped %v frames, lowest rung %v: priorities reversed", d720, d360)
	}
}

func srcAudioPayload(units []*engine.Unit, pts time.Duration) []byte {
	for _, u := range units {
		if u.PTS == pts {
			return u.Payload
		}
	}
	return []byte{0}
}

// TestLadderNoUpscale: a 480p source gets no 720p rung; and a source with no
// audio still transcodes, into video-only renditions.
func TestLadderNoUpscaleNoAudio(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 854, Height: 480, FPS: 30, Seconds: 3, GOP: 30})
	eng := enginetest.NewEngine(t)
	rec := newRecorder(eng)
	tr := newTestTranscoder(t, eng, DefaultConfig())
	runLadder(t, eng, tr, rec, "small", clip)
	if got, want := rec.ids(), []string{"small", "small/360p"}; !slices.Equal(got, want) {
		t.Fatalf("streams %v, want %v (720p would upscale, 480p is the source)", got, want)
	}
	dir := t.TempDir()
	for _, id := range []string{"small/360p"} {
		r := rec.get(id)
		if len(r.tracks) != 1 {
			t.Fatalf("%s: %d tracks, want video only", id, len(r.tracks))
		}
		streams, keys, _, dur := probe(t, dir, r)
		t.Logf("%s: %+v, %.2f s, keyframes %v", id, streams, dur, keys)
		if len(streams) != 1 || streams[0].CodecName != "h264" || dur < 2 {
			t.Fatalf("%s: streams %+v over %.2f s", id, streams, dur)
		}
	}
}

// TestLadderSkipsSourceSizedRung: a rung the size of the source (or within
// a few pixels of it) is not encoded; the source is that rendition already.
// A 640x360 source gets no rung from the default ladder (720p and 480p
// would upscale, 360p is the source) and only 240p from the mobile one.
func TestLadderSkipsSourceSizedRung(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "800k"})
	for _, tc := range []struct {
		ladder string
		want   []string
	}{
		{PresetDefault, []string{"same"}},
		{PresetMobile, []string{"same", "same/240p"}},
	} {
		eng := enginetest.NewEngine(t)
		rec := newRecorder(eng)
		conf := DefaultConfig()
		conf.Ladder = tc.ladder
		tr := newTestTranscoder(t, eng, conf)
		runLadder(t, eng, tr, rec, "same", clip)
		if got := rec.ids(); !slices.Equal(got, tc.want) {
			t.Errorf("ladder %s on a 640x360 source: streams %v, want %v", tc.ladder, got, tc.want)
		}
		if n := counterValue(t, tr.m.encoded.WithLabelValues("360p")); n != 0 {
			t.Errorf("ladder %s: %v frames encoded for a 360p rung of a 360p source", tc.ladder, n)
		}
	}
}

// TestLadderOpusSource: an Opus source's audio is encoded to AAC once and
// shared by the renditions.
func TestLadderOpusSource(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 3, GOP: 30})
	m, err := enginetest.ReadTS(clip)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ogg := filepath.Join(dir, "tone.ogg")
	runCmd(t, "ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "3", "-ac", "2", "-c:a", "libopus", ogg)
	opusTrack, opusUnits := readOpusFile(t, ogg)
	m.Tracks = append(m.Tracks, opusTrack)
	for _, u := range opusUnits {
		if u.PTS < 0 {
			continue
		}
		u.Track = 1
		m.Units = append(m.Units, u)
	}
	slices.SortStableFunc(m.Units, func(a, b *engine.Unit) int { return int(a.DTS - b.DTS) })

	eng := enginetest.NewEngine(t)
	rec := newRecorder(eng)
	tr := newTestTranscoder(t, eng, mobileConfig())
	pub, err := eng.Authorize(t.Context(), engine.PublishRequest{Key: "opus", Protocol: "whip"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	enginetest.PlayMedia(pub.Context(), pub, m, enginetest.PublishOptions{Realtime: true})
	pub.Close()
	waitFor(t, 60*time.Second, "transcode jobs to end", func() bool { return len(tr.Jobs()) == 0 })
	rec.waitAllDone(t, 60*time.Second)

	r := rec.get("opus/240p")
	if r == nil {
		t.Fatalf("no 240p rendition: %v", rec.ids())
	}
	if len(r.tracks) != 2 || r.tracks[1].Codec != engine.CodecAAC {
		t.Fatalf("240p tracks %+v", r.tracks)
	}
	path := filepath.Join(dir, "opus240.ts")
	writeTS(t, path, r.tracks, r.snapshot())
	hz, _ := dominantFrequency(decodePCM(t, path), 48000)
	t.Logf("240p audio from Opus: tone %.1f Hz", hz)
	if hz < 980 || hz > 1020 {
		t.Fatalf("tone %.1f Hz", hz)
	}
}

func rssKB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmRSS")
	return 0
}

// TestLadderCyclesRSS publishes and unpublishes 20 times with a three-rung
// ladder on: every frame, packet and context must be freed, so the RSS
// after the last cycle stays within a few MB of the RSS after the first.
func TestLadderCyclesRSS(t *testing.T) {
	if os.Getenv("MALLOC_ARENA_MAX") == "" {
		// glibc gives threads up to 8 malloc arenas per core, and every
		// x264 and decoder thread of a new job may land in a fresh one:
		// RSS then creeps up for a few cycles with no leak at all. The
		// engine runs with MALLOC_ARENA_MAX=2 (see the report to the
		// lead), so the measurement runs in a child set up the same way.
		cmd := exec.Command(os.Args[0], "-test.run=^TestLadderCyclesRSS$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), "MALLOC_ARENA_MAX=2")
		out, err := cmd.CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if strings.Contains(line, "VmRSS") || strings.Contains(line, "FAIL") || strings.Contains(line, "transcoder_test.go") && !strings.Contains(line, "level=") {
				t.Log(strings.TrimSpace(line))
			}
		}
		if err != nil {
			t.Fatalf("RSS cycles in a child process: %v", err)
		}
		return
	}
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 1, GOP: 15, Audio: true, Bitrate: "800k"})
	eng := enginetest.NewEngine(t)
	tr := newTestTranscoder(t, eng, DefaultConfig())
	small := x264Ladder(
		Rung{Name: "360p", Height: 360, Bitrate: 600_000, Profile: "main"},
		Rung{Name: "240p", Height: 240, Bitrate: 300_000, Profile: "main"},
		Rung{Name: "180p", Height: 180, Bitrate: 200_000, Profile: "baseline"},
	)
	if err := tr.SetLadder("cycle", small); err != nil {
		t.Fatal(err)
	}
	settle := func() int {
		runtime.GC()
		debug.FreeOSMemory()
		return rssKB(t)
	}
	var first, mid, last int
	cycles := 20
	if n, err := strconv.Atoi(os.Getenv("LIVEENGINE_RSS_CYCLES")); err == nil && n >= 2 {
		cycles = n
	}
	for i := 1; i <= cycles; i++ {
		pub := enginetest.Publish(t, eng, "cycle", clip, enginetest.PublishOptions{Realtime: true})
		waitFor(t, 30*time.Second, "rendition 180p", func() bool {
			_, err := eng.Stream("cycle/180p")
			return err == nil
		})
		<-pub.Stream().Done()
		waitFor(t, 30*time.Second, "job to end", func() bool { return len(tr.Jobs()) == 0 })
		waitFor(t, 30*time.Second, "renditions to end", func() bool { return len(eng.Streams()) == 0 })
		rss := settle()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("cycle %2d: VmRSS %d kB, Go heap in use %d kB", i, rss, ms.HeapInuse/1024)
		switch i {
		case 1:
			first = rss
		case cycles / 2:
			mid = rss
		}
		last = rss
	}
	t.Logf("VmRSS after cycle 1: %d kB, after cycle %d: %d kB, after cycle %d: %d kB; growth %+d kB overall, %+d kB over the second half",
		first, cycles/2, mid, cycles, last, last-first, last-mid)
	// A leak grows every cycle, so the second half must be flat too.
	limit, halfLimit := 6*1024, 3*1024
	if raceEnabled {
		// The race runtime's own bookkeeping grows with every goroutine
		// and channel ever made (the Go heap stays flat, as logged).
		limit, halfLimit = 12*1024, 6*1024
	}
	if last-first > limit {
		t.Fatalf("RSS grew %d kB over %d cycles", last-first, cycles-1)
	}
	if last-mid > halfLimit {
		t.Fatalf("RSS still growing: %+d kB over the last %d cycles", last-mid, cycles-cycles/2)
	}
	if n := counterValue(t, tr.m.encoded.WithLabelValues("180p")); n < float64(cycles*20) {
		t.Fatalf("180p encoded only %v frames over %d cycles", n, cycles)
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	return counterValueB(c)
}

func counterValueB(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
