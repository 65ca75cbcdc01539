// Package enginetest holds helpers for tests that need real media flowing
// through an engine: clips made by the ffmpeg CLI and a publisher that
// replays them like a live source.
package enginetest

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
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/liveengine/liveengine/engine"
)

// ClipSpec describes a generated test clip: testsrc2 video and, with Audio,
// a 1 kHz sine, encoded with libx264 (High, no B-frames, fixed GOP) and AAC.
type ClipSpec struct {
	Width, Height int
	FPS           int
	Seconds       int
	// GOP is the keyframe interval in frames; 0 means 2 seconds.
	GOP int
	// Audio adds an AAC track (48 kHz stereo, 128 kbit/s).
	Audio bool
	// Bitrate is the x264 bit rate, e.g. "2500k"; empty means "1500k".
	Bitrate string
}

func (c *ClipSpec) defaults() {
	if c.Width == 0 {
		c.Width, c.Height = 1280, 720
	}
	if c.FPS == 0 {
		c.FPS = 30
	}
	if c.Seconds == 0 {
		c.Seconds = 4
	}
	if c.GOP == 0 {
		c.GOP = 2 * c.FPS
	}
	if c.Bitrate == "" {
		c.Bitrate = "1500k"
	}
}

var clipMu sync.Mutex

// Clip returns the path of an MPEG-TS clip matching c, generating it with
// the ffmpeg CLI the first time. Clips are cached in the system temp dir so
// every test binary of a run shares them.
func Clip(t testing.TB, c ClipSpec) string {
	t.Helper()
	c.defaults()
	args := ClipArgs(c)
	sum := sha256.Sum256([]byte(fmt.Sprint(args)))
	dir := filepath.Join(os.TempDir(), "liveengine-clips")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, hex.EncodeToString(sum[:8])+".ts")
	clipMu.Lock()
	defer clipMu.Unlock()
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return path
	}
	tmp, err := os.CreateTemp(dir, "clip-*.ts")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	full := append([]string{"-y", "-hide_banner", "-loglevel", "error"}, args...)
	full = append(full, "-f", "mpegts", tmp.Name())
	out, err := exec.Command("ffmpeg", full...).CombinedOutput()
	if err != nil {
		os.Remove(tmp.Name())
		t.Fatalf("ffmpeg clip: %v\n%s", err, out)
	}
	// Rename is atomic: a concurrent test binary sees a whole clip or none.
	if err := os.Rename(tmp.Name(), path); err != nil {
		t.Fatal(err)
	}
	return path
}

// ClipArgs returns the ffmpeg input and encoding arguments that produce c,
// without the output; tests that push with ffmpeg themselves reuse them.
func ClipArgs(c ClipSpec) []string {
	c.defaults()
	args := []string{
		"-f", "lavfi", "-i", fmt.Sprintf("testsrc2=size=%dx%d:rate=%d", c.Width, c.Height, c.FPS),
	}
	if c.Audio {
		args = append(args, "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000")
	}
	args = append(args,
		"-t", fmt.Sprint(c.Seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
		"-pix_fmt", "yuv420p", "-bf", "0", "-g", fmt.Sprint(c.GOP), "-keyint_min", fmt.Sprint(c.GOP),
		"-sc_threshold", "0", "-b:v", c.Bitrate, "-maxrate", c.Bitrate, "-bufsize", c.Bitrate,
	)
	if c.Audio {
		args = append(args, "-c:a", "aac", "-b:a", "128k", "-ac", "2")
	}
	return args
}

// NewEngine returns a started engine on a fresh LocalBus with open publish
// auth, closed at test cleanup.
func NewEngine(t testing.TB) *engine.Engine {
	t.Helper()
	conf := engine.DefaultConfig()
	conf.StatsInterval = 500 * time.Millisecond
	bus := engine.NewLocalBus()
	eng, err := engine.New(conf, bus, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
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
	return eng
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

// Media is a clip read into memory: its tracks and units in decoding order,
// with times relative to the clip's start.
type Media struct {
	Tracks   []*engine.Track
	Units    []*engine.Unit
	Duration time.Duration
}

// ReadTS reads an MPEG-TS file with H.264 and optional AAC into memory.
func ReadTS(path string) (*Media, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := &mpegts.Reader{R: f}
	if err := r.Initialize(); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	m := &Media{}
	var video, audio *engine.Track
	videoIdx, audioIdx := -1, -1
	var first int64 = -1
	rel := func(ts int64) time.Duration {
		if first < 0 {
			first = ts
		}
		return time.Duration(ts-first) * time.Second / 90000
	}
	for _, tr := range r.Tracks() {
		switch c := tr.Codec.(type) {
		case *tscodecs.H264:
			video = &engine.Track{Codec: engine.CodecH264, ClockRate: 90000}
			videoIdx = len(m.Tracks)
			m.Tracks = append(m.Tracks, video)
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				var nalus [][]byte
				key := false
				for _, n := range au {
					if len(n) == 0 {
						continue
					}
					switch h264.NALUType(n[0] & 0x1f) {
					case h264.NALUTypeSPS:
						if video.SPS == nil {
							video.SPS = append([]byte(nil), n...)
							var sps h264.SPS
							if sps.Unmarshal(n) == nil {
								video.Width, video.Height = sps.Width(), sps.Height()
								video.FrameRate = sps.FPS()
							}
						}
					case h264.NALUTypePPS:
						if video.PPS == nil {
							video.PPS = append([]byte(nil), n...)
						}
					case h264.NALUTypeIDR:
						key = true
					case h264.NALUTypeAccessUnitDelimiter:
						continue
					}
					nalus = append(nalus, append([]byte(nil), n...))
				}
				m.Units = append(m.Units, &engine.Unit{Track: videoIdx, PTS: rel(pts), DTS: rel(dts), Key: key, NALUs: nalus})
				return nil
			})
		case *tscodecs.MPEG4Audio:
			cfg, err := c.Config.Marshal()
			if err != nil {
				return nil, err
			}
			audio = &engine.Track{Codec: engine.CodecAAC, ClockRate: c.Config.SampleRate, AACConfig: cfg,
				SampleRate: c.Config.SampleRate, Channels: int(c.Config.ChannelConfig)}
			audioIdx = len(m.Tracks)
			m.Tracks = append(m.Tracks, audio)
			sr := int64(c.Config.SampleRate)
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					p := pts + int64(i)*1024*90000/sr
					m.Units = append(m.Units, &engine.Unit{Track: audioIdx, PTS: rel(p), DTS: rel(p), Key: true, Payload: append([]byte(nil), au...)})
				}
				return nil
			})
		}
	}
	if video == nil && audio == nil {
		return nil, fmt.Errorf("read %s: no H.264 or AAC track", path)
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
	}
	// The first units may precede the clock origin by a frame (the origin is
	// whichever PES came first); shift so every time is non-negative.
	var min time.Duration
	for _, u := range m.Units {
		if u.DTS < min {
			min = u.DTS
		}
		if u.PTS > m.Duration {
			m.Duration = u.PTS
		}
	}
	for _, u := range m.Units {
		u.PTS -= min
		u.DTS -= min
	}
	m.Duration -= min
	if video != nil && video.FrameRate > 0 {
		m.Duration += time.Duration(float64(time.Second) / video.FrameRate)
	}
	return m, nil
}

// PublishOptions controls Publish.
type PublishOptions struct {
	// Realtime paces units by their DTS, like a live encoder.
	Realtime bool
	// Loop replays the clip until the test ends or the publisher is closed.
	Loop bool
	// Protocol is reported to the engine; "test" by default.
	Protocol string
	// Start is the clock origin of the clip's first loop (its units' NTP
	// is Start + PTS); now by default. Two publishers given one Start
	// play renditions of one source.
	Start time.Time
	// Lag writes each unit that long after its time, as a transcoder
	// delivers a rung its encode time after the source (Realtime only).
	Lag time.Duration
}

// Publish authorizes key on eng and publishes the clip at path. It returns
// once the stream is live; the media keeps flowing on a goroutine. The
// publisher is closed when the clip ends (without Loop), when it is kicked,
// or at test cleanup.
func Publish(t testing.TB, eng *engine.Engine, key, path string, o PublishOptions) *engine.Publisher {
	t.Helper()
	m, err := ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	if o.Protocol == "" {
		o.Protocol = "test"
	}
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: key, Protocol: o.Protocol, Remote: "enginetest"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		pub.Close()
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer pub.Close()
		PlayMedia(pub.Context(), pub, m, o)
	}()
	t.Cleanup(func() {
		pub.Close()
		<-done
	})
	return pub
}

// PlayMedia writes m's units into pub until ctx ends (or once, without Loop).
func PlayMedia(ctx context.Context, pub *engine.Publisher, m *Media, o PublishOptions) {
	start := o.Start
	if start.IsZero() {
		start = time.Now()
	}
	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * m.Duration
		for _, src := range m.Units {
			u := *src
			u.PTS += offset
			u.DTS += offset
			u.NTP = start.Add(u.PTS)
			if o.Realtime {
				if wait := time.Until(start.Add(u.DTS + o.Lag)); wait > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(wait):
					}
				}
			}
			if ctx.Err() != nil {
				return
			}
			pub.Write(&u)
		}
		if !o.Loop {
			return
		}
	}
}
