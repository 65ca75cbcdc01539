package transcode

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// mobileConfig runs the mobile ladder, whose 240p rung is the one a 640x360
// source gets (480p would upscale, 360p is the source).
func mobileConfig() Config {
	c := DefaultConfig()
	c.Ladder = PresetMobile
	return c
}

// TestLadderCloseWhileLive: closing the transcoder takes the renditions
// offline and frees the job, while the source keeps playing untouched; a
// source that reconnects at once gets its ladder back.
func TestLadderCloseWhileLive(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "800k"})
	eng := enginetest.NewEngine(t)
	tr := newTestTranscoder(t, eng, mobileConfig())

	reg := prometheus.NewRegistry()
	if err := reg.Register(tr.Collector()); err != nil {
		t.Fatal(err)
	}

	pub := enginetest.Publish(t, eng, "live", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	waitFor(t, 30*time.Second, "rendition live/240p", func() bool {
		_, err := eng.Stream("live/240p")
		return err == nil
	})
	for _, id := range []string{"live/480p", "live/360p"} {
		if _, err := eng.Stream(id); !errors.Is(err, engine.ErrStreamNotFound) {
			t.Fatalf("%s rung for a 360p source: %v", id, err)
		}
	}
	waitFor(t, 30*time.Second, "frames encoded", func() bool {
		return counterValue(t, tr.m.encoded.WithLabelValues("240p")) >= 10
	})

	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	for _, want := range []string{"liveengine_transcode_jobs", "liveengine_transcode_frames_decoded_total",
		"liveengine_transcode_frames_encoded_total", "liveengine_transcode_frame_encode_seconds"} {
		if !slices.Contains(names, want) {
			t.Fatalf("metric %s missing from %v", want, names)
		}
	}

	// Republish at once: the new job waits for the old one's rendition.
	pub.Close()
	pub2 := enginetest.Publish(t, eng, "live", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	waitFor(t, 30*time.Second, "rendition back after reconnect", func() bool {
		s, err := eng.Stream("live/240p")
		return err == nil && s.FramesIn() > 5 && len(tr.Jobs()) == 1
	})

	tr.Close()
	if n := len(tr.Jobs()); n != 0 {
		t.Fatalf("%d jobs after Close", n)
	}
	if _, err := eng.Stream("live/240p"); !errors.Is(err, engine.ErrStreamNotFound) {
		t.Fatalf("rendition still live after Close: %v", err)
	}
	src := pub2.Stream()
	before := src.FramesIn()
	waitFor(t, 30*time.Second, "source to keep playing", func() bool { return src.FramesIn() > before+10 })
	select {
	case <-src.Done():
		t.Fatal("source ended with the transcoder")
	default:
	}
}

// TestLadderTimestampsGoBack: a source whose clock restarts mid-stream
// (the clip played twice without an offset) keeps its renditions going,
// with the source's own timestamps.
func TestLadderTimestampsGoBack(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "800k"})
	m, err := enginetest.ReadTS(clip)
	if err != nil {
		t.Fatal(err)
	}
	eng := enginetest.NewEngine(t)
	rec := newRecorder(eng)
	tr := newTestTranscoder(t, eng, mobileConfig())
	pub, err := eng.Authorize(t.Context(), engine.PublishRequest{Key: "restart", Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		enginetest.PlayMedia(pub.Context(), pub, m, enginetest.PublishOptions{Realtime: true})
	}
	pub.Close()
	waitFor(t, 60*time.Second, "transcode job to end", func() bool { return len(tr.Jobs()) == 0 })
	rec.waitAllDone(t, 60*time.Second)

	srcFrames := 0
	for _, u := range m.Units {
		if u.Track == 0 {
			srcFrames++
		}
	}
	var frames int
	var back bool
	var last time.Duration
	for _, u := range rec.get("restart/240p").snapshot() {
		if u.Track != 0 {
			continue
		}
		frames++
		if u.PTS < last {
			back = true
		}
		last = u.PTS
	}
	t.Logf("240p: %d frames for %d source frames, PTS went back: %v", frames, 2*srcFrames, back)
	if !back || frames < srcFrames*3/2 {
		t.Fatalf("240p: %d frames for %d source frames, PTS went back: %v", frames, 2*srcFrames, back)
	}
}

// TestLadderBadVideo: garbage video units in the source are reported and
// skipped; the renditions keep going.
func TestLadderBadVideo(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "800k"})
	m, err := enginetest.ReadTS(clip)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var lastBad time.Duration
	for i, u := range m.Units {
		if u.Track == 0 && !u.Key {
			n++
			if n%7 == 0 && u.PTS < time.Second {
				c := *u
				c.NALUs = [][]byte{{0x41, 0xff, 0x00, 0x00, 0x00, 0x13, 0x37}, {0x65}, {0x67, 0xff, 0xff}}
				m.Units[i] = &c
				lastBad = u.PTS
			}
		}
	}
	eng := enginetest.NewEngine(t)
	rec := newRecorder(eng)
	tr := newTestTranscoder(t, eng, mobileConfig())
	pub, err := eng.Authorize(t.Context(), engine.PublishRequest{Key: "bad", Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	enginetest.PlayMedia(pub.Context(), pub, m, enginetest.PublishOptions{Realtime: true})
	pub.Close()
	waitFor(t, 60*time.Second, "transcode job to end", func() bool { return len(tr.Jobs()) == 0 })
	rec.waitAllDone(t, 60*time.Second)
	frames := 0
	var last time.Duration
	for _, u := range rec.get("bad/240p").snapshot() {
		if u.Track == 0 {
			frames++
			last = u.PTS
		}
	}
	decoded := counterValue(t, tr.m.decoded)
	t.Logf("240p: %d frames, last at %s; %v frames decoded of %d sent, %d garbage; decode errors %v",
		frames, last, decoded, n+2, n/7, counterValue(t, tr.m.decodeErrors))
	if decoded < float64(n/2) || last < lastBad+500*time.Millisecond {
		t.Fatalf("the ladder stopped at the garbage: last frame at %s, last garbage at %s", last, lastBad)
	}
}
