package packager

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/opus"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts"
	tscodecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mpegts/codecs"

	"github.com/liveengine/liveengine/engine"
)

var opusClipOnce sync.Mutex

// opusClip makes (once per machine) a 4 s MPEG-TS clip with H.264, AAC and
// Opus tracks, like a WHIP stream the transcoder has bridged to AAC.
func opusClip(t *testing.T) string {
	t.Helper()
	opusClipOnce.Lock()
	defer opusClipOnce.Unlock()
	dir := filepath.Join(os.TempDir(), "liveengine-clips")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "packager-h264-aac-opus-v1.ts")
	if st, err := os.Stat(path); err == nil && st.Size() > 0 {
		return path
	}
	tmp := path + ".tmp"
	out, err := exec.Command("ffmpeg", "-y", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
		"-t", "4", "-map", "0:v", "-map", "1:a", "-map", "1:a",
		"-c:v", "libx264", "-preset", "veryfast", "-profile:v", "high", "-pix_fmt", "yuv420p", "-bf", "0", "-g", "30", "-sc_threshold", "0", "-b:v", "400k",
		"-c:a:0", "aac", "-b:a:0", "96k", "-ac", "2", "-c:a:1", "libopus", "-b:a:1", "64k",
		"-f", "mpegts", tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("ffmpeg: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

type clipMedia struct {
	tracks []*engine.Track
	units  []*engine.Unit
}

// readClip reads H.264, AAC and Opus from an MPEG-TS file.
func readClip(t *testing.T, path string) *clipMedia {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &mpegts.Reader{R: f}
	if err := r.Initialize(); err != nil {
		t.Fatal(err)
	}
	m := &clipMedia{}
	rel := func(ts int64) time.Duration { return time.Duration(ts) * time.Second / 90000 }
	for _, tr := range r.Tracks() {
		idx := len(m.tracks)
		switch c := tr.Codec.(type) {
		case *tscodecs.H264:
			vt := &engine.Track{Codec: engine.CodecH264, ClockRate: 90000}
			m.tracks = append(m.tracks, vt)
			r.OnDataH264(tr, func(pts, dts int64, au [][]byte) error {
				key := h264.IsRandomAccess(au)
				m.units = append(m.units, &engine.Unit{Track: idx, PTS: rel(pts), DTS: rel(dts), Key: key, NALUs: au})
				return nil
			})
		case *tscodecs.MPEG4Audio:
			cfg, err := c.Config.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			m.tracks = append(m.tracks, &engine.Track{Codec: engine.CodecAAC, ClockRate: c.Config.SampleRate, AACConfig: cfg, SampleRate: c.Config.SampleRate, Channels: int(c.Config.ChannelConfig)})
			sr := int64(c.Config.SampleRate)
			r.OnDataMPEG4Audio(tr, func(pts int64, aus [][]byte) error {
				for i, au := range aus {
					p := rel(pts + int64(i)*1024*90000/sr)
					m.units = append(m.units, &engine.Unit{Track: idx, PTS: p, DTS: p, Key: true, Payload: au})
				}
				return nil
			})
		case *tscodecs.Opus:
			m.tracks = append(m.tracks, &engine.Track{Codec: engine.CodecOpus, ClockRate: 48000, SampleRate: 48000, Channels: c.ChannelCount})
			r.OnDataOpus(tr, func(pts int64, packets [][]byte) error {
				p := rel(pts)
				for _, pkt := range packets {
					m.units = append(m.units, &engine.Unit{Track: idx, PTS: p, DTS: p, Key: true, Payload: pkt})
					p += opus.PacketDuration(pkt)
				}
				return nil
			})
		}
	}
	for {
		if err := r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			t.Fatal(err)
		}
	}
	var min time.Duration = -1
	for _, u := range m.units {
		if min < 0 || u.DTS < min {
			min = u.DTS
		}
	}
	for _, u := range m.units {
		u.PTS -= min
		u.DTS -= min
	}
	return m
}

// only keeps the tracks of codec, renumbered from 0.
func (m *clipMedia) only(codecs ...engine.Codec) *clipMedia {
	out := &clipMedia{}
	remap := map[int]int{}
	for i, tr := range m.tracks {
		for _, c := range codecs {
			if tr.Codec == c {
				remap[i] = len(out.tracks)
				out.tracks = append(out.tracks, tr)
			}
		}
	}
	for _, u := range m.units {
		if j, ok := remap[u.Track]; ok {
			v := *u
			v.Track = j
			out.units = append(out.units, &v)
		}
	}
	return out
}

// publishAll writes every unit at once and ends the stream.
func publishAll(t *testing.T, eng *engine.Engine, key string, m *clipMedia) {
	t.Helper()
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: key, Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if _, err := pub.Start(m.tracks); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for _, u := range m.units {
		v := *u
		v.NTP = start.Add(v.PTS)
		pub.Write(&v)
	}
}

func endedPlaylist(t *testing.T, url string) string {
	t.Helper()
	var body string
	waitFor(t, "EXT-X-ENDLIST in "+url, 30*time.Second, func() bool {
		body = string(get(t, url).body)
		return strings.Contains(body, "#EXT-X-ENDLIST")
	})
	return body
}

// TestAudioChoice checks that a stream with AAC and Opus is packaged with
// AAC, and that an Opus-only stream is packaged with Opus in fMP4 that
// ffprobe decodes.
func TestAudioChoice(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	m := readClip(t, opusClip(t))
	if len(m.tracks) != 3 {
		t.Fatalf("clip has %d tracks, want H.264, AAC and Opus", len(m.tracks))
	}
	publishAll(t, ts.eng, "both", m)
	publishAll(t, ts.eng, "opus", m.only(engine.CodecOpus))

	endedPlaylist(t, ts.base+"/hls/both/source/stream.m3u8")
	mv := get(t, ts.base+"/hls/both/index.m3u8")
	if !strings.Contains(string(mv.body), `CODECS="avc1.64001e,mp4a.40.2"`) {
		t.Errorf("H.264+AAC+Opus stream: multivariant\n%s", mv.body)
	}

	pl := endedPlaylist(t, ts.base+"/hls/opus/source/stream.m3u8")
	mv = get(t, ts.base+"/hls/opus/index.m3u8")
	if !strings.Contains(string(mv.body), `CODECS="opus"`) || strings.Contains(string(mv.body), "RESOLUTION") {
		t.Errorf("Opus-only stream: multivariant\n%s", mv.body)
	}
	if !strings.Contains(pl, "seg0.mp4") || !strings.Contains(pl, "seg1.mp4") {
		t.Fatalf("Opus-only playlist:\n%s", pl)
	}
	init := get(t, ts.base+"/hls/opus/source/init.mp4")
	seg := get(t, ts.base+"/hls/opus/source/seg1.mp4")
	if init.status != http.StatusOK || seg.status != http.StatusOK {
		t.Fatalf("init %d, segment %d", init.status, seg.status)
	}
	file := filepath.Join(t.TempDir(), "opus.mp4")
	if err := os.WriteFile(file, append(append([]byte(nil), init.body...), seg.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_name,sample_rate,nb_read_frames", "-of", "csv=p=0", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	t.Logf("ffprobe opus segment: %s", out)
	// One second of 20 ms Opus packets.
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "opus,48000,") || got == "opus,48000,0" {
		t.Errorf("ffprobe: %q, want decodable opus at 48000 Hz", got)
	}
}
