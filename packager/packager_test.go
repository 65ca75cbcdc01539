package packager

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/liveengine/liveengine/engine/enginetest"
)

var clip720 = enginetest.ClipSpec{Width: 1280, Height: 720, FPS: 30, Seconds: 4, Audio: true}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		edit func(*Config)
		key  string
	}{
		{"defaults", func(*Config) {}, ""},
		{"part target too small", func(c *Config) { c.PartTarget = time.Millisecond }, "hls.part_target"},
		{"segment shorter than part", func(c *Config) { c.SegmentDuration = 100 * time.Millisecond }, "hls.segment_duration"},
		{"too few segments", func(c *Config) { c.SegmentCount = 2 }, "hls.segment_count"},
		{"too few parts per segment", func(c *Config) { c.MaxPartsPerSegment = 3 }, "hls.max_parts_per_segment"},
		{"too many parts per segment", func(c *Config) { c.MaxPartsPerSegment = 100000 }, "hls.max_parts_per_segment"},
		{"negative retention", func(c *Config) { c.EndedRetention = -time.Second }, "hls.ended_retention"},
		{"no session timeout", func(c *Config) { c.SessionTimeout = 0 }, "hls.session_timeout"},
	}
	for _, tt := range tests {
		c := DefaultConfig()
		tt.edit(&c)
		err := c.Validate()
		switch {
		case tt.key == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tt.name, err)
		case tt.key != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.key+":")):
			t.Errorf("%s: error %v does not name %s", tt.name, err, tt.key)
		}
	}
}

// TestLiveTags checks the LL-HLS tags and headers of a live media playlist,
// and how soon the first playlist with parts is served.
func TestLiveTags(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	path := enginetest.Clip(t, clip720)
	start := time.Now()
	enginetest.Publish(t, ts.eng, "live", path, enginetest.PublishOptions{Realtime: true, Loop: true})
	url := ts.base + "/hls/live/source/stream.m3u8"

	// The first request is held until the first part exists, and it is
	// answered before any segment is complete.
	first := get(t, url)
	elapsed := time.Since(start)
	if first.status != http.StatusOK {
		t.Fatalf("first playlist: %d %s", first.status, first.body)
	}
	t.Logf("first playlist with parts after %v:\n%s", elapsed, first.body)
	for _, tag := range []string{"#EXT-X-PART:", "#EXT-X-PRELOAD-HINT:TYPE=PART", "#EXT-X-PART-INF:PART-TARGET=", "#EXT-X-PROGRAM-DATE-TIME:", "#EXT-X-MAP:URI=\"init.mp4\""} {
		if !strings.Contains(string(first.body), tag) {
			t.Errorf("first playlist lacks %s", tag)
		}
	}

	m := waitSegments(t, url, 2)
	_, res := mediaPlaylist(t, url)
	if got := res.header.Get("Content-Type"); got != contentTypePlaylist {
		t.Errorf("Content-Type %q", got)
	}
	if got := res.header.Get("Cache-Control"); !strings.Contains(got, "no-cache") {
		t.Errorf("playlist Cache-Control %q", got)
	}
	if got := res.header.Get("Access-Control-Allow-Origin"); got != "*" {
		t.Errorf("Access-Control-Allow-Origin %q", got)
	}
	if m.Version < 9 {
		t.Errorf("EXT-X-VERSION %d", m.Version)
	}
	if m.ServerControl == nil || !m.ServerControl.CanBlockReload || m.ServerControl.PartHoldBack == nil {
		t.Fatalf("EXT-X-SERVER-CONTROL missing or incomplete: %+v", m.ServerControl)
	}
	if m.PartInf == nil {
		t.Fatal("no EXT-X-PART-INF")
	}
	pt := m.PartInf.PartTarget
	if pt < 200*time.Millisecond || pt > 250*time.Millisecond {
		t.Errorf("PART-TARGET %v, want about 200ms", pt)
	}
	if *m.ServerControl.PartHoldBack < 3*pt {
		t.Errorf("PART-HOLD-BACK %v < 3 x PART-TARGET %v", *m.ServerControl.PartHoldBack, pt)
	}
	if m.TargetDuration != 2 {
		t.Errorf("TARGETDURATION %d, want 2 (2 s GOP)", m.TargetDuration)
	}
	if m.Map == nil || m.Map.URI != "init.mp4" {
		t.Errorf("EXT-X-MAP %+v", m.Map)
	}
	if m.PreloadHint == nil || !strings.HasPrefix(m.PreloadHint.URI, "part") {
		t.Errorf("EXT-X-PRELOAD-HINT %+v", m.PreloadHint)
	}
	for i, s := range m.Segments {
		if s.DateTime == nil {
			t.Errorf("segment %d has no EXT-X-PROGRAM-DATE-TIME", i)
		}
		// One GOP; where the looped clip restarts, the seam adds a frame
		// or two of audio-led slack.
		if d := s.Duration - 2*time.Second; d < -40*time.Millisecond || d > 100*time.Millisecond {
			t.Errorf("segment %d lasts %v, want 2s (one GOP)", i, s.Duration)
		}
		want := segmentURI(uint64(m.MediaSequence + i))
		if s.URI != want {
			t.Errorf("segment %d URI %q, want %q", i, s.URI, want)
		}
		if len(s.Parts) == 0 {
			continue
		}
		if !s.Parts[0].Independent {
			t.Errorf("segment %d: first part not INDEPENDENT=YES", i)
		}
		var sum time.Duration
		for _, p := range s.Parts {
			sum += p.Duration
			if p.Duration > pt {
				t.Errorf("segment %d: part %s lasts %v > PART-TARGET %v", i, p.URI, p.Duration, pt)
			}
		}
		if d := sum - s.Duration; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("segment %d: parts sum to %v, segment lasts %v", i, sum, s.Duration)
		}
	}
	if len(m.Parts) > 0 && m.PreloadHint != nil {
		msn := m.MediaSequence + len(m.Segments)
		if want := partURI(uint64(msn), len(m.Parts)); m.PreloadHint.URI != want {
			t.Errorf("preload hint %q, want %q", m.PreloadHint.URI, want)
		}
	}

	// Media headers.
	for _, u := range []string{"init.mp4", m.Segments[0].URI, m.Segments[len(m.Segments)-1].Parts[0].URI} {
		r := get(t, ts.base+"/hls/live/source/"+u)
		if r.status != http.StatusOK || len(r.body) == 0 {
			t.Fatalf("%s: %d %s", u, r.status, r.body)
		}
		if ct := r.header.Get("Content-Type"); ct != contentTypeMP4 {
			t.Errorf("%s Content-Type %q", u, ct)
		}
		if cc := r.header.Get("Cache-Control"); !strings.Contains(cc, "max-age=") || !strings.Contains(cc, "immutable") {
			t.Errorf("%s Cache-Control %q", u, cc)
		}
	}
}

// TestFFprobeDecodes has ffprobe decode the init segment followed by a
// segment, and checks the tracks and the segment's duration.
func TestFFprobeDecodes(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	enginetest.Publish(t, ts.eng, "probe", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	base := ts.base + "/hls/probe/source/"
	m := waitSegments(t, base+"stream.m3u8", 1)
	init := get(t, base+"init.mp4")
	seg := get(t, base+m.Segments[0].URI)
	if init.status != 200 || seg.status != 200 {
		t.Fatalf("init %d, segment %d", init.status, seg.status)
	}
	file := filepath.Join(t.TempDir(), "seg.mp4")
	if err := os.WriteFile(file, append(append([]byte(nil), init.body...), seg.body...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-show_entries",
		"stream=codec_type,codec_name,width,height,nb_read_frames,sample_rate:format=duration", "-of", "json", file).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s", err, out)
	}
	var probe struct {
		Streams []struct {
			CodecType    string `json:"codec_type"`
			CodecName    string `json:"codec_name"`
			Width        int    `json:"width"`
			Height       int    `json:"height"`
			NbReadFrames string `json:"nb_read_frames"`
			SampleRate   string `json:"sample_rate"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &probe); err != nil {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	t.Logf("ffprobe: %s", out)
	var video, audio bool
	for _, s := range probe.Streams {
		switch s.CodecType {
		case "video":
			video = true
			if s.CodecName != "h264" || s.Width != 1280 || s.Height != 720 {
				t.Errorf("video stream %+v, want h264 1280x720", s)
			}
			if n, _ := strconv.Atoi(s.NbReadFrames); n != 60 {
				t.Errorf("decoded %s video frames, want 60 (2 s at 30 fps)", s.NbReadFrames)
			}
		case "audio":
			audio = true
			if s.CodecName != "aac" || s.SampleRate != "48000" {
				t.Errorf("audio stream %+v, want aac 48000", s)
			}
		}
	}
	if !video || !audio {
		t.Errorf("streams %+v, want video and audio", probe.Streams)
	}
	if d, _ := strconv.ParseFloat(probe.Format.Duration, 64); d < 1.9 || d > 2.1 {
		t.Errorf("duration %s, want about 2 s", probe.Format.Duration)
	}
}

// TestBlockingReload holds a playlist request for the next part and checks
// it returns only once that part is listed; it also checks the request
// validation and the preload-hinted part.
func TestBlockingReload(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	enginetest.Publish(t, ts.eng, "block", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	base := ts.base + "/hls/block/source/"
	m := waitSegments(t, base+"stream.m3u8", 1)

	for _, q := range []string{"_HLS_part=1", "_HLS_msn=abc", "_HLS_msn=-1", "_HLS_msn=1&_HLS_part=x", "_HLS_msn=99999"} {
		r := get(t, base+"stream.m3u8?"+q)
		if r.status != http.StatusBadRequest {
			t.Errorf("?%s: status %d, want 400", q, r.status)
		}
	}

	// Ask for the part after the preload hint: two parts ahead.
	msn := m.MediaSequence + len(m.Segments)
	next := len(m.Parts) + 1
	want := partURI(uint64(msn), next)
	wantNextSeg := partURI(uint64(msn+1), 0)

	var appeared time.Time // first time a plain poll lists the part
	var mu sync.Mutex
	stop := make(chan struct{})
	pollDone := make(chan struct{})
	go func() {
		defer close(pollDone)
		for {
			select {
			case <-stop:
				return
			default:
			}
			r, err := httpClient.Get(base + "stream.m3u8")
			if err == nil {
				buf := make([]byte, 1<<16)
				n, _ := readAll(r.Body, buf)
				r.Body.Close()
				body := string(buf[:n])
				if listsPart(body, want) || listsPart(body, wantNextSeg) {
					mu.Lock()
					if appeared.IsZero() {
						appeared = time.Now()
					}
					mu.Unlock()
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	asked := time.Now()
	r := get(t, fmt.Sprintf("%sstream.m3u8?_HLS_msn=%d&_HLS_part=%d", base, msn, next))
	answered := time.Now()
	close(stop)
	<-pollDone
	if r.status != http.StatusOK {
		t.Fatalf("blocking reload: %d %s", r.status, r.body)
	}
	if !listsPart(string(r.body), want) && !listsPart(string(r.body), wantNextSeg) {
		t.Fatalf("blocking reload for %s answered without it:\n%s", want, r.body)
	}
	mu.Lock()
	t.Logf("asked for %s at +0; answered at +%v; a plain poll first saw it at +%v", want, answered.Sub(asked), appeared.Sub(asked))
	mu.Unlock()

	// The preload-hinted part is held until it is complete.
	var pm playlist.Media
	if err := pm.Unmarshal(r.body); err != nil {
		t.Fatal(err)
	}
	if pm.PreloadHint == nil {
		t.Fatal("no preload hint")
	}
	hint := get(t, base+pm.PreloadHint.URI)
	if hint.status != http.StatusOK && hint.status != http.StatusNotFound {
		t.Fatalf("hinted part %s: %d %s", pm.PreloadHint.URI, hint.status, hint.body)
	}
	if hint.status == http.StatusOK && (len(hint.body) < 8 || string(hint.body[4:8]) != "moof") {
		t.Errorf("hinted part is not a moof box")
	}
	// A part far in the future, and an expired segment.
	if r := get(t, base+partURI(uint64(msn+100), 0)); r.status != http.StatusNotFound {
		t.Errorf("future part: %d", r.status)
	}
}

// listsPart reports whether a playlist has an EXT-X-PART line for uri (a
// preload hint does not count).
func listsPart(body, uri string) bool {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "#EXT-X-PART:") && strings.Contains(l, `URI="`+uri+`"`) {
			return true
		}
	}
	return false
}

func readAll(r interface{ Read([]byte) (int, error) }, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// TestEndlist checks that a stream that ends gets EXT-X-ENDLIST, that held
// requests are released, and that it is forgotten after the retention.
func TestEndlist(t *testing.T) {
	t.Parallel()
	conf := testConfig()
	conf.EndedRetention = 3 * time.Second
	ts := newTestServer(t, conf)
	pub := enginetest.Publish(t, ts.eng, "ends", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true})
	url := ts.base + "/hls/ends/source/stream.m3u8"
	m := waitSegments(t, url, 1)
	msn := m.MediaSequence + len(m.Segments)

	// A request held for a part that will never come returns at the end.
	held := make(chan response, 1)
	go func() { held <- get(t, fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=0", url, msn+2)) }()

	<-pub.Stream().Done()
	var ended *playlist.Media
	waitFor(t, "EXT-X-ENDLIST", 30*time.Second, func() bool {
		ended, _ = mediaPlaylist(t, url)
		return ended.Endlist
	})
	if ended.PreloadHint != nil {
		t.Errorf("ended playlist still has a preload hint")
	}
	var total time.Duration
	for _, s := range ended.Segments {
		total += s.Duration
	}
	if total < 3900*time.Millisecond || total > 4100*time.Millisecond {
		t.Errorf("ended playlist holds %v of media, want the whole 4 s clip", total)
	}
	select {
	case r := <-held:
		if r.status != http.StatusOK || !strings.Contains(string(r.body), "#EXT-X-ENDLIST") {
			t.Errorf("held request: %d %s", r.status, r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("held request not released at the end of the stream")
	}
	waitFor(t, "the ended stream to be forgotten", 30*time.Second, func() bool {
		return get(t, url).status == http.StatusNotFound
	})
	if r := get(t, url); !strings.Contains(string(r.body), "not live") {
		t.Errorf("404 body %q does not say why", r.body)
	}
}

// TestRenditions publishes a source and a 360p rendition of group g and
// checks the multivariant playlist, rendition reports and aligned media
// sequence numbers.
func TestRenditions(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	clip360 := enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 4, Audio: true, Bitrate: "500k"}
	p360 := enginetest.Clip(t, clip360)
	p720 := enginetest.Clip(t, clip720)
	enginetest.Publish(t, ts.eng, "g", p720, enginetest.PublishOptions{Realtime: true, Loop: true})
	publishRendition(t, ts.eng, "g", "360p", p360, enginetest.PublishOptions{Realtime: true, Loop: true})

	src := waitSegments(t, ts.base+"/hls/g/source/stream.m3u8", 2)
	low := waitSegments(t, ts.base+"/hls/g/360p/stream.m3u8", 2)
	_ = src
	_ = low

	mv := getMultivariant(t, ts.base+"/hls/g/index.m3u8")
	if len(mv.Variants) != 2 {
		t.Fatalf("%d variants, want 2", len(mv.Variants))
	}
	byURI := map[string]*playlist.MultivariantVariant{}
	for _, v := range mv.Variants {
		byURI[v.URI] = v
		if v.Bandwidth <= 0 || v.AverageBandwidth == nil || *v.AverageBandwidth <= 0 {
			t.Errorf("%s: bandwidth %d / %v", v.URI, v.Bandwidth, v.AverageBandwidth)
		}
		if len(v.Codecs) != 2 || !strings.HasPrefix(v.Codecs[0], "avc1.64") || v.Codecs[1] != "mp4a.40.2" {
			t.Errorf("%s: CODECS %v, want avc1.64xxxx (High) and mp4a.40.2", v.URI, v.Codecs)
		}
		if v.FrameRate == nil || *v.FrameRate < 29 || *v.FrameRate > 31 {
			t.Errorf("%s: FRAME-RATE %v", v.URI, v.FrameRate)
		}
	}
	if v := byURI["source/stream.m3u8"]; v == nil || v.Resolution != "1280x720" {
		t.Errorf("source variant %+v", v)
	}
	if v := byURI["360p/stream.m3u8"]; v == nil || v.Resolution != "640x360" {
		t.Errorf("360p variant %+v", v)
	}
	if mv.Variants[0].URI != "source/stream.m3u8" {
		t.Errorf("first variant %s, want the highest bandwidth (source)", mv.Variants[0].URI)
	}

	// Rendition reports point at the sibling, with numbers close to ours:
	// both clips have keyframes every 2 s from 0, so the segments align.
	for _, c := range []struct{ self, other string }{{"source", "360p"}, {"360p", "source"}} {
		m, _ := mediaPlaylist(t, ts.base+"/hls/g/"+c.self+"/stream.m3u8")
		if len(m.RenditionReport) != 1 {
			t.Fatalf("%s: %d rendition reports, want 1", c.self, len(m.RenditionReport))
		}
		rep := m.RenditionReport[0]
		if rep.URI != "../"+c.other+"/stream.m3u8" || rep.LastPart == nil {
			t.Errorf("%s: rendition report %+v", c.self, rep)
		}
		own := m.MediaSequence + len(m.Segments)
		if d := rep.LastMSN - own; d < -1 || d > 1 {
			t.Errorf("%s: sibling LAST-MSN %d, own current MSN %d", c.self, rep.LastMSN, own)
		}
	}
}

// TestViewers counts HLS sessions by client and User-Agent on the source
// stream, and drops them after the session timeout.
func TestViewers(t *testing.T) {
	t.Parallel()
	conf := testConfig()
	conf.SessionTimeout = 2 * time.Second
	ts := newTestServer(t, conf)
	pub := enginetest.Publish(t, ts.eng, "watch", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	for _, ua := range []string{"player-a", "player-b", "player-a"} {
		if r := get(t, ts.base+"/hls/watch/source/stream.m3u8", "User-Agent", ua); r.status != 200 {
			t.Fatalf("playlist: %d %s", r.status, r.body)
		}
	}
	if n := pub.Stream().Viewers(); n != 2 {
		t.Errorf("viewers %d, want 2", n)
	}
	waitFor(t, "sessions to expire", 30*time.Second, func() bool { return pub.Stream().Viewers() == 0 })
}

// TestHTTPErrors checks CORS preflight and the clear errors for unknown
// streams and malformed URLs.
func TestHTTPErrors(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	req, _ := http.NewRequest(http.MethodOptions, ts.base+"/hls/x/index.m3u8", nil)
	res, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "*" || !strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "GET") {
		t.Errorf("OPTIONS: %d %v", res.StatusCode, res.Header)
	}
	for _, c := range []struct {
		path   string
		status int
		says   string
	}{
		{"/hls/nope/index.m3u8", 404, "not live"},
		{"/hls/nope/source/stream.m3u8", 404, "not live"},
		{"/hls/bad%20id/index.m3u8", 400, "malformed"},
		{"/hls/x/source/seg01.mp4", 400, "malformed"},
		{"/hls/x/source/part1.mp4", 400, "malformed"},
		{"/hls/x/source/what.txt", 404, "not found"},
		{"/hls/x", 404, "index.m3u8"},
	} {
		r := get(t, ts.base+c.path)
		if r.status != c.status || !strings.Contains(string(r.body), c.says) {
			t.Errorf("%s: %d %q, want %d saying %q", c.path, r.status, r.body, c.status, c.says)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("%s: no CORS header on the error", c.path)
		}
	}
}

func derefFPS(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}

// TestStarvedRenditionLeavesMultivariant: a transcoder rendition that
// delivers under half the source's frame rate (an overloaded rung that
// keeps little more than its keyframes) is left out of the multivariant
// playlist, so new players do not pick it; its media playlist stays served
// for players already on it. A rung at full rate stays listed.
func TestStarvedRenditionLeavesMultivariant(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	full := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 30, Seconds: 4, Audio: true, Bitrate: "500k"})
	starved := enginetest.Clip(t, enginetest.ClipSpec{Width: 426, Height: 240, FPS: 6, GOP: 12, Seconds: 4, Audio: true, Bitrate: "200k"})
	enginetest.Publish(t, ts.eng, "s", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	publishRendition(t, ts.eng, "s", "360p", full, enginetest.PublishOptions{Realtime: true, Loop: true})
	publishRendition(t, ts.eng, "s", "240p", starved, enginetest.PublishOptions{Realtime: true, Loop: true})
	for _, name := range []string{"source", "360p", "240p"} {
		waitSegments(t, ts.base+"/hls/s/"+name+"/stream.m3u8", 2)
	}
	mv := getMultivariant(t, ts.base+"/hls/s/index.m3u8")
	var uris []string
	for _, v := range mv.Variants {
		uris = append(uris, v.URI)
		if v.FrameRate == nil || *v.FrameRate < 29 || *v.FrameRate > 31 {
			t.Errorf("%s: FRAME-RATE %v, want 30", v.URI, derefFPS(v.FrameRate))
		}
	}
	if want := []string{"source/stream.m3u8", "360p/stream.m3u8"}; strings.Join(uris, " ") != strings.Join(want, " ") {
		t.Errorf("variants %v, want %v (240p delivers 6 of 30 fps)", uris, want)
	}
	if r := get(t, ts.base+"/hls/s/240p/stream.m3u8"); r.status != http.StatusOK {
		t.Errorf("starved rendition's playlist: %d", r.status)
	}
}

// getMultivariant fetches and parses a multivariant playlist.
func getMultivariant(t *testing.T, url string) playlist.Multivariant {
	t.Helper()
	res := get(t, url)
	if res.status != http.StatusOK {
		t.Fatalf("multivariant: %d %s", res.status, res.body)
	}
	t.Logf("multivariant:\n%s", res.body)
	var mv playlist.Multivariant
	if err := mv.Unmarshal(res.body); err != nil {
		t.Fatalf("parse multivariant: %v", err)
	}
	return mv
}
