package enginetest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
)

func TestPublishRealClip(t *testing.T) {
	path := Clip(t, ClipSpec{Width: 640, Height: 360, Seconds: 2, Audio: true})
	m, err := ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Tracks) != 2 || m.Tracks[0].Width != 640 || m.Tracks[0].Height != 360 || m.Tracks[0].SPS == nil {
		t.Fatalf("tracks %+v", m.Tracks[0])
	}
	if m.Tracks[1].Codec != engine.CodecAAC || m.Tracks[1].SampleRate != 48000 {
		t.Fatalf("audio track %+v", m.Tracks[1])
	}
	if m.Duration < 1900*time.Millisecond || m.Duration > 2200*time.Millisecond {
		t.Fatalf("duration %v, want ~2s", m.Duration)
	}
	eng := NewEngine(t)
	pub := Publish(t, eng, "clip", path, PublishOptions{Realtime: true})
	var video, audio atomic.Int64
	var firstKey atomic.Int32
	r, err := pub.Stream().AddReader(engine.ReaderOptions{Kind: "test", QueueLen: 4096}, func(u *engine.Unit) {
		if u.Track == 0 {
			if video.Add(1) == 1 && u.Key {
				firstKey.Store(1)
			}
		} else {
			audio.Add(1)
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-r.Done()
	if firstKey.Load() != 1 || video.Load() < 55 || audio.Load() < 80 {
		t.Fatalf("video %d (first key %d) audio %d", video.Load(), firstKey.Load(), audio.Load())
	}
}
