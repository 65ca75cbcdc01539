package transcode

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/asticode/go-astiav"

	"github.com/liveengine/liveengine/engine"
)

// readOpusFile demuxes the Opus packets of an Ogg file with libavformat.
func readOpusFile(t *testing.T, path string) (*engine.Track, []*engine.Unit) {
	t.Helper()
	fc := astiav.AllocFormatContext()
	defer fc.Free()
	if err := fc.OpenInput(path, nil, nil); err != nil {
		t.Fatal(err)
	}
	defer fc.CloseInput()
	if err := fc.FindStreamInfo(nil); err != nil {
		t.Fatal(err)
	}
	st := fc.Streams()[0]
	tb := st.TimeBase()
	track := &engine.Track{Codec: engine.CodecOpus, ClockRate: 48000, SampleRate: 48000, Channels: st.CodecParameters().ChannelLayout().NbChannels()}
	pkt := astiav.AllocPacket()
	defer pkt.Free()
	var units []*engine.Unit
	for {
		if err := fc.ReadFrame(pkt); err != nil {
			if errors.Is(err, astiav.ErrEof) {
				break
			}
			t.Fatal(err)
		}
		pts := time.Duration(pkt.Pts()) * time.Second * time.Duration(tb.Num()) / time.Duration(tb.Den())
		units = append(units, &engine.Unit{PTS: pts, DTS: pts, Key: true, Payload: pkt.Data()})
		pkt.Unref()
	}
	return track, units
}

func convertAll(t *testing.T, b *AudioBridge, in []*engine.Unit) []*engine.Unit {
	t.Helper()
	var out []*engine.Unit
	for _, u := range in {
		if err := b.Convert(u, func(o *engine.Unit) { out = append(out, o) }); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestAudioBridgeRoundTrip converts a 1 kHz tone Opus -> AAC -> Opus and
// checks, by decoding each stage with the ffmpeg CLI, that the tone and its
// duration survive.
func TestAudioBridgeRoundTrip(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tone.ogg")
	runCmd(t, "ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "3", "-ac", "2", "-c:a", "libopus", "-b:a", "96k", src)
	opusTrack, opusUnits := readOpusFile(t, src)
	if len(opusUnits) < 100 {
		t.Fatalf("tone has %d Opus packets", len(opusUnits))
	}

	toAAC, err := NewAudioBridge(opusTrack, engine.CodecAAC)
	if err != nil {
		t.Fatal(err)
	}
	defer toAAC.Close()
	aacTrack := toAAC.OutputTrack()
	if aacTrack.Codec != engine.CodecAAC || len(aacTrack.AACConfig) == 0 || aacTrack.SampleRate != 48000 {
		t.Fatalf("AAC output track %+v", aacTrack)
	}
	aacUnits := convertAll(t, toAAC, opusUnits)

	toOpus, err := NewAudioBridge(aacTrack, engine.CodecOpus)
	if err != nil {
		t.Fatal(err)
	}
	defer toOpus.Close()
	back := convertAll(t, toOpus, aacUnits)

	for name, units := range map[string][]*engine.Unit{"aac": aacUnits, "opus": back} {
		last := time.Duration(-1 << 62)
		for _, u := range units {
			if u.PTS <= last {
				t.Fatalf("%s: PTS not increasing: %s after %s", name, u.PTS, last)
			}
			last = u.PTS
		}
		// 3 s of input; encoders keep at most a frame or two back.
		if last < 2800*time.Millisecond || last > 3100*time.Millisecond {
			t.Fatalf("%s: last PTS %s, want about 3 s", name, last)
		}
	}
	if d := back[1].PTS - back[0].PTS; d != 20*time.Millisecond {
		t.Fatalf("Opus frame duration %s, want 20ms", d)
	}

	check := func(name string, track *engine.Track, units []*engine.Unit) {
		path := filepath.Join(dir, name+".ts")
		writeTS(t, path, []*engine.Track{track}, units)
		hz, rms := dominantFrequency(decodePCM(t, path), 48000)
		t.Logf("%s: %d units, tone %.1f Hz, rms %.0f", name, len(units), hz, rms)
		if hz < 980 || hz > 1020 {
			t.Fatalf("%s: tone at %.1f Hz, want 1000 Hz", name, hz)
		}
		if rms < 1000 {
			t.Fatalf("%s: rms %.0f: tone lost", name, rms)
		}
	}
	check("aac", aacTrack, aacUnits)
	check("opus", toOpus.OutputTrack(), back)
}

func TestAudioBridgeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		from *engine.Track
		to   engine.Codec
	}{
		{"nil", nil, engine.CodecOpus},
		{"aac to aac", &engine.Track{Codec: engine.CodecAAC, AACConfig: []byte{0x11, 0x90}}, engine.CodecAAC},
		{"h264", &engine.Track{Codec: engine.CodecH264}, engine.CodecOpus},
		{"aac without config", &engine.Track{Codec: engine.CodecAAC, SampleRate: 48000}, engine.CodecOpus},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewAudioBridge(tc.from, tc.to); !errors.Is(err, ErrUnsupportedBridge) {
				t.Fatalf("got %v, want ErrUnsupportedBridge", err)
			}
		})
	}
}

// TestAudioBridgeBadInput feeds garbage between good units: the bad unit is
// reported, and the bridge keeps converting.
func TestAudioBridgeBadInput(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "tone.ogg")
	runCmd(t, "ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000",
		"-t", "1", "-ac", "2", "-c:a", "libopus", src)
	track, units := readOpusFile(t, src)
	b, err := NewAudioBridge(track, engine.CodecAAC)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n := 0
	emit := func(*engine.Unit) { n++ }
	for i, u := range units {
		if i == 10 {
			bad := &engine.Unit{PTS: u.PTS, Payload: []byte{0xff, 0xff, 0xff, 0xff, 0x00, 0x01}}
			_ = b.Convert(bad, emit) // may or may not be rejected by libopus; must not break the bridge
		}
		if err := b.Convert(u, emit); err != nil {
			t.Fatalf("unit %d: %v", i, err)
		}
	}
	if n < 40 {
		t.Fatalf("only %d AAC units after bad input", n)
	}
}
