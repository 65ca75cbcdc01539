package sfu

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// Browsers (Chromium's WHIP and room publishers) send a keyframe only when
// asked, so the ingest asks once a GOP runs past keyframeInterval: HLS
// segments end at keyframes and would otherwise last 10 s or more. A
// publisher with short GOPs, like OBS, is never asked.
func TestIngestAsksForKeyframesAtSegmentPace(t *testing.T) {
	for _, tc := range []struct {
		gop     int // frames at 30 fps
		minPLIs int
		maxPLIs int
	}{
		{gop: 30, minPLIs: 0, maxPLIs: 0},  // 1 s GOP: nothing to ask
		{gop: 120, minPLIs: 4, maxPLIs: 7}, // one keyframe in 4 s: asked from 1 s on, every 500 ms
	} {
		t.Run(fmt.Sprintf("gop=%d", tc.gop), func(t *testing.T) {
			clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 320, Height: 180, FPS: 30, Seconds: 4, GOP: tc.gop})
			m, err := enginetest.ReadTS(clip)
			if err != nil {
				t.Fatal(err)
			}
			eng := enginetest.NewEngine(t)
			pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: fmt.Sprintf("kf%d", tc.gop), Protocol: "whip"})
			if err != nil {
				t.Fatal(err)
			}
			in := NewIngest(pub, true, false, nil)
			defer in.Close()
			var asked []time.Duration
			var at time.Duration
			in.SetKeyframeRequester(func() { asked = append(asked, at) })
			start := time.Now()
			for _, u := range m.Units {
				if u.Track != 0 {
					continue
				}
				// The wall clock follows the media, as it does for a live publisher.
				at = u.PTS
				in.writeAccessUnit(u.NALUs, uint32(u.PTS*90000/time.Second), false, start.Add(u.PTS))
			}
			if in.Stream() == nil {
				t.Fatal("stream never started")
			}
			if len(asked) < tc.minPLIs || len(asked) > tc.maxPLIs {
				t.Fatalf("%d keyframe requests at %v, want %d..%d", len(asked), asked, tc.minPLIs, tc.maxPLIs)
			}
			if len(asked) > 0 && asked[0] < keyframeInterval {
				t.Fatalf("first request at %v, before the %v GOP limit", asked[0], keyframeInterval)
			}
		})
	}
}
