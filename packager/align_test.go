package packager

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"

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
	m, src, rend := publishWithRendition(t, ts, "al", 30)
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

// TestAudioFollowsVideoCuts publishes a source whose audio arrives a little
// behind its video (as an RTMP publisher interleaves) and a rendition with
// the same units whose audio arrives well ahead of its video (as a
// transcoder rung's does: its pictures wait for the encoder), and checks
// that audio segment N starts at the same sample in both: the packager
// places audio by timestamp, not by arrival.
func TestAudioFollowsVideoCuts(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	m, src, rend := publishWithRendition(t, ts, "av", 60)
	// Arrival order: units sorted by DTS plus a per-track skew.
	order := func(audioSkew time.Duration) []*engine.Unit {
		out := slices.Clone(m.Units)
		at := func(u *engine.Unit) time.Duration {
			if u.Track != 0 {
				return u.DTS + audioSkew
			}
			return u.DTS
		}
		slices.SortStableFunc(out, func(a, b *engine.Unit) int { return int(at(a) - at(b)) })
		return out
	}
	start := time.Now()
	write := func(p *engine.Publisher, units []*engine.Unit) {
		for _, u0 := range units {
			u := *u0
			u.NTP = start.Add(u.PTS)
			p.Write(&u)
		}
		p.Close()
	}
	write(src, order(15*time.Millisecond))
	write(rend, order(-80*time.Millisecond))

	audioStarts := func(name string) map[int]uint64 {
		url := ts.base + "/hls/av/" + name + "/"
		waitFor(t, name+" EXT-X-ENDLIST", 30*time.Second, func() bool {
			return strings.Contains(string(get(t, url+"stream.m3u8").body), "#EXT-X-ENDLIST")
		})
		pl, _ := mediaPlaylist(t, url+"stream.m3u8")
		out := map[int]uint64{}
		for i := range pl.Segments {
			msn := pl.MediaSequence + i
			res := get(t, url+segmentURI(uint64(msn)))
			var parts fmp4.Parts
			if err := parts.Unmarshal(res.body); err != nil {
				t.Fatalf("%s seg%d: %v", name, msn, err)
			}
		find:
			for _, p := range parts {
				for _, tr := range p.Tracks {
					if tr.ID == 2 && len(tr.Samples) > 0 {
						out[msn] = tr.BaseTime
						break find
					}
				}
			}
		}
		return out
	}
	sa, la := audioStarts("source"), audioStarts("low")
	compared := 0
	for msn, l := range la {
		s, ok := sa[msn]
		if !ok || msn == 0 {
			continue
		}
		t.Logf("seg%d: audio starts at tick %d (source) and %d (low)", msn, s, l)
		if s != l {
			t.Errorf("seg%d: audio starts %.1f ms apart (source %d, low %d at 48 kHz)", msn, (float64(l)-float64(s))/48, s, l)
		}
		compared++
	}
	if compared < 2 {
		t.Fatalf("compared %d segments (source %v, low %v)", compared, sa, la)
	}
}

// publishWithRendition starts stream key and its rendition "low" in ts's
// engine, both with the tracks of a 9 s 640x360 clip with audio and a GOP
// of gop frames, as the transcoder would; the caller writes the units.
func publishWithRendition(t *testing.T, ts *testServer, key string, gop int) (*enginetest.Media, *engine.Publisher, *engine.Publisher) {
	t.Helper()
	m, err := enginetest.ReadTS(enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 9, GOP: gop, Audio: true, Bitrate: "400k"}))
	if err != nil {
		t.Fatal(err)
	}
	src, err := ts.eng.Authorize(context.Background(), engine.PublishRequest{Key: key, Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(src.Close)
	rend, err := ts.eng.PublishRendition(key, "low")
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
	return m, src, rend
}
