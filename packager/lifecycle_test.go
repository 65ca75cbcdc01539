package packager

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveengine/liveengine/engine/enginetest"
)

// TestCloseEndsPlaylists closes the packager while a stream is live: held
// requests return, every playlist ends with EXT-X-ENDLIST, and the metrics
// account for what was produced and served.
func TestCloseEndsPlaylists(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	enginetest.Publish(t, ts.eng, "closing", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	url := ts.base + "/hls/closing/source/stream.m3u8"
	m := waitSegments(t, url, 1)
	msn := m.MediaSequence + len(m.Segments)

	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(ts.pk.Collector())

	held := make(chan response, 1)
	go func() { held <- get(t, url+"?_HLS_msn="+strconv.Itoa(msn+1)) }()
	waitFor(t, "the request to be held", 30*time.Second, func() bool {
		return metricValue(t, reg, "liveengine_hls_blocked_requests") >= 1
	})
	ts.pk.Close()
	select {
	case r := <-held:
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "#EXT-X-ENDLIST") {
			t.Errorf("held request after Close: %d\n%s", r.status, r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("held request not released by Close")
	}
	body := string(get(t, url).body)
	if !strings.Contains(body, "#EXT-X-ENDLIST") || strings.Contains(body, "PRELOAD-HINT") {
		t.Errorf("playlist after Close:\n%s", body)
	}
	for _, c := range []struct {
		name string
		min  float64
	}{
		{"liveengine_hls_segments_total", 1},
		{"liveengine_hls_parts_total", 5},
		{"liveengine_hls_bytes_served_total", 1000},
		{"liveengine_hls_requests_total", 3},
		{"liveengine_hls_renditions", 1},
	} {
		if v := metricValue(t, reg, c.name); v < c.min {
			t.Errorf("%s = %v, want at least %v", c.name, v, c.min)
		}
	}
	if v := metricValue(t, reg, "liveengine_hls_blocked_requests"); v != 0 {
		t.Errorf("%v requests still counted as blocked", v)
	}
}

// metricValue gathers the registry and returns the value of the metric
// called name (the sum over its labels).
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return v
}

// TestLongGOP packages a stream whose keyframes are 4 s apart with at most
// 6 parts per segment: segments end without a keyframe after 6 parts, and
// only parts that start with a keyframe are INDEPENDENT.
func TestLongGOP(t *testing.T) {
	t.Parallel()
	conf := testConfig()
	conf.MaxPartsPerSegment = 6
	ts := newTestServer(t, conf)
	path := enginetest.Clip(t, enginetest.ClipSpec{Width: 320, Height: 240, FPS: 30, Seconds: 8, GOP: 120, Bitrate: "300k"})
	m, err := enginetest.ReadTS(path)
	if err != nil {
		t.Fatal(err)
	}
	publishAll(t, ts.eng, "longgop", &clipMedia{tracks: m.Tracks, units: m.Units})
	body := endedPlaylist(t, ts.base+"/hls/longgop/source/stream.m3u8")
	pl, _ := mediaPlaylist(t, ts.base+"/hls/longgop/source/stream.m3u8")
	if len(pl.Segments) < 5 {
		t.Fatalf("%d segments:\n%s", len(pl.Segments), body)
	}
	for i, s := range pl.Segments {
		if len(s.Parts) > 6 {
			t.Errorf("segment %d has %d parts", i, len(s.Parts))
		}
		if s.Duration > 1300*time.Millisecond {
			t.Errorf("segment %d lasts %v", i, s.Duration)
		}
		for j, p := range s.Parts {
			// Keyframes at 0 s and 4 s. Segments 0-2 end after 6 parts
			// (1.2 s) without a keyframe; segment 3 starts at 3.6 s and the
			// keyframe at 4 s, past the 1 s grid line, starts segment 4.
			msn := pl.MediaSequence + i
			wantIndep := (msn == 0 || msn == 4) && j == 0
			if p.Independent != wantIndep {
				t.Errorf("segment %d part %d: INDEPENDENT %v, want %v", msn, j, p.Independent, wantIndep)
			}
		}
	}
}

// TestRepublish publishes a stream again while its ended playlists are
// still retained: the new publish continues the media sequence numbers, so
// URLs cached from the first publish are never reused.
func TestRepublish(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	m, err := enginetest.ReadTS(enginetest.Clip(t, enginetest.ClipSpec{Width: 320, Height: 240, FPS: 30, Seconds: 4, Audio: true, Bitrate: "300k"}))
	if err != nil {
		t.Fatal(err)
	}
	url := ts.base + "/hls/again/source/stream.m3u8"
	publishAll(t, ts.eng, "again", &clipMedia{tracks: m.Tracks, units: m.Units})
	endedPlaylist(t, url)
	first, _ := mediaPlaylist(t, url)
	last := first.MediaSequence + len(first.Segments) - 1

	publishAll(t, ts.eng, "again", &clipMedia{tracks: m.Tracks, units: m.Units})
	endedPlaylist(t, url)
	second, _ := mediaPlaylist(t, url)
	if second.MediaSequence <= last {
		t.Errorf("second publish starts at MSN %d, first ended at %d", second.MediaSequence, last)
	}
	if !second.Endlist || len(second.Segments) != len(first.Segments) {
		t.Errorf("second publish: %d segments, endlist %v; first had %d", len(second.Segments), second.Endlist, len(first.Segments))
	}
}
