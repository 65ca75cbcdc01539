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

// TestSplice: a rendition switch keeps a viewer's timestamps going
// forward. A new rendition behind what was sent (a rung lags the source)
// or far ahead of it (counted from elsewhere) continues one picture step
// after the last packet; one a little ahead keeps its own spacing; the
// offset stays for the packets that follow.
func TestSplice(t *testing.T) {
	for _, c := range []struct {
		name          string
		offset, ts    uint32
		want          uint32 // first timestamp sent after the switch
		wantOffsetSet bool
	}{
		{"rung 150 ms behind", 0, 900_000 - 13_500, 900_000 + 3600, true},
		{"same picture", 0, 900_000, 900_000 + 3600, true},
		{"source 100 ms ahead", 0, 900_000 + 9000, 900_000 + 9000, false},
		{"far ahead", 0, 900_000 + 10*90000, 900_000 + 3600, true},
		{"behind, across the wrap", 0, 1<<32 - 100_000, 900_000 + 3600, true},
		{"earlier offset kept", 13_500 + 3600, 900_000 - 3600, 900_000 + 13_500, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Sent so far: pictures 3600 ticks apart (25 fps), the last at
			// 900 000 (after the offset).
			o := &outTrack{tsOffset: c.offset, lastTS: 900_000, frameTicks: 3600, sentAny: true}
			before := o.tsOffset
			o.splice(c.ts)
			if got := c.ts + o.tsOffset; got != c.want {
				t.Fatalf("first timestamp %d, want %d", got, c.want)
			}
			if (o.tsOffset != before) != c.wantOffsetSet {
				t.Fatalf("offset %d -> %d", before, o.tsOffset)
			}
		})
	}
	// Nothing sent yet: the source's timestamps as they are.
	o := &outTrack{}
	o.splice(12345)
	if o.tsOffset != 0 {
		t.Fatalf("offset %d before the first packet", o.tsOffset)
	}
}
