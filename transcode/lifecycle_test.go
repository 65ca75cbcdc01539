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

// TestLadderCloseWhileLive: closing the transcoder takes the renditions
// offline and frees the job, while the source keeps playing untouched; a
// source that reconnects at once gets its ladder back.
func TestLadderCloseWhileLive(t *testing.T) {
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 2, GOP: 30, Audio: true, Bitrate: "800k"})
	eng := enginetest.NewEngine(t)
	tr := newTestTranscoder(t, eng, DefaultConfig())

	reg := prometheus.NewRegistry()
	if err := reg.Register(tr.Collector()); err != nil {
		t.Fatal(err)
	}

	pub := enginetest.Publish(t, eng, "live", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	waitFor(t, 30*time.Second, "rendition live/360p", func() bool {
		_, err := eng.Stream("live/360p")
		return err == nil
	})
	if _, err := eng.Stream("live/480p"); !errors.Is(err, engine.ErrStreamNotFound) {
		t.Fatalf("480p rung for a 360p source: %v", err)
	}
	waitFor(t, 30*time.Second, "frames encoded", func() bool {
		return counterValue(t, tr.m.encoded.WithLabelValues("360p")) >= 10
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
		s, err := eng.Stream("live/360p")
		return err == nil && s.FramesIn() > 5 && len(tr.Jobs()) == 1
	})

	tr.Close()
	if n := len(tr.Jobs()); n != 0 {
		t.Fatalf("%d jobs after Close", n)
	}
	if _, err := eng.Stream("live/360p"); !errors.Is(err, engine.ErrStreamNotFound) {
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
