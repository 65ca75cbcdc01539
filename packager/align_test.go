package packager

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// TestLateRenditionAligned publishes a source and a rendition carrying the
// same timestamps (as the transcoder does), the rendition joining late in
// the middle of a source segment, and checks that from the rendition's
// first full segment on, equal media sequence numbers mean equal times.
func TestLateRenditionAligned(t *testing.T) {
	t.Parallel()
	conf := testConfig()
	conf.SegmentDuration = 2 * time.Second
	ts := newTestServer(t, conf)
	m, err := enginetest.ReadTS(enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 9, GOP: 30, Audio: true, Bitrate: "400k"}))
	if err != nil {
		t.Fatal(err)
	}
	src, err := ts.eng.Authorize(context.Background(), engine.PublishRequest{Key: "al", Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	rend, err := ts.eng.PublishRendition("al", "low")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rend.Close)
	if _, err := src.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	if _, err := rend.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	// Write at once (the clip fits the readers' queues), the rendition from
	// the keyframe at 3 s: inside the source's segment [2 s, 4 s).
	start := time.Now()
	joined := false
	for _, u0 := range m.Units {
		u := *u0
		u.NTP = start.Add(u.PTS)
		src.Write(&u)
		if !joined && u.Track == 0 && u.Key && u.DTS >= 3*time.Second {
			joined = true
		}
		if joined {
			rend.Write(&u)
		}
	}
	if !joined {
		t.Fatal("clip has no keyframe after 3 s")
	}
	src.Close()
	rend.Close()

	ended := func(name string) *playlist.Media {
		var pl *playlist.Media
		url := ts.base + "/hls/al/" + name + "/stream.m3u8"
		waitFor(t, name+" EXT-X-ENDLIST", 30*time.Second, func() bool {
			return strings.Contains(string(get(t, url).body), "#EXT-X-ENDLIST")
		})
		pl, _ = mediaPlaylist(t, url)
		return pl
	}
	sp, lp := ended("source"), ended("low")
	bySeq := map[int]*playlist.MediaSegment{}
	for i, s := range sp.Segments {
		bySeq[sp.MediaSequence+i] = s
	}
	for i, s := range lp.Segments {
		msn := lp.MediaSequence + i
		o := bySeq[msn]
		t.Logf("msn %d: low %v at %v, source %s", msn, s.Duration, s.DateTime.Sub(start), describe(o, start))
		if o == nil {
			t.Errorf("msn %d of the rendition has no source segment", msn)
			continue
		}
		if i == 0 {
			// The first segment started late, inside the source's segment
			// of the same number.
			if s.DateTime.Before(*o.DateTime) || !s.DateTime.Before(o.DateTime.Add(o.Duration)) {
				t.Errorf("msn %d: rendition starts at %v, outside the source segment", msn, s.DateTime.Sub(start))
			}
			continue
		}
		if !s.DateTime.Equal(*o.DateTime) || s.Duration != o.Duration {
			t.Errorf("msn %d: rendition %v+%v, source %v+%v", msn, s.DateTime.Sub(start), s.Duration, o.DateTime.Sub(start), o.Duration)
		}
	}
}

func describe(s *playlist.MediaSegment, start time.Time) string {
	if s == nil {
		return "none"
	}
	return fmt.Sprintf("%v at %v", s.Duration, s.DateTime.Sub(start))
}
