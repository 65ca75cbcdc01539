package main

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRenditionAudioAligned pushes an 854x480 stream with the ladder on and
// checks, with ffprobe, that audio segment N of the 360p rendition starts
// at the same PTS as the source's segment N (within one AAC frame): players
// that switch renditions (hls.js) otherwise meet a hole in the audio
// buffer. The ladder has no 480p rung: the source is that size.
func TestRenditionAudioAligned(t *testing.T) {
	s := startServer(t, "all", "LIVEENGINE_TRANSCODE_ENABLED=true")
	pushRTMP(t, s.rtmpURL("align"), "-s", "854x480")
	mv := s.httpURL("/hls/align/index.m3u8")

	var body string
	waitUntil(t, 90*time.Second, "the multivariant playlist lists the 360p rung", func() bool {
		code, _, b := get(t, mv)
		body = string(b)
		return code == 200 && strings.Contains(body, "360p/stream.m3u8")
	})
	if strings.Contains(body, "480p/") || strings.Contains(body, "720p/") {
		t.Errorf("multivariant playlist has a rung the source's size or larger:\n%s", body)
	}

	playlist := func(rend string) *mediaPlaylist {
		_, _, b := get(t, s.httpURL("/hls/align/"+rend+"/stream.m3u8"))
		return parseMedia(t, b)
	}
	var src, low *mediaPlaylist
	waitUntil(t, 90*time.Second, "four complete 360p segments", func() bool {
		low = playlist("360p")
		return len(low.segments) >= 4
	})
	src = playlist("source")

	// The rendition's first segment may start after its siblings' (it
	// joins at a keyframe); compare the ones after it.
	dir := t.TempDir()
	audioStart := func(rend string, pl *mediaPlaylist, msn int) float64 {
		base := s.httpURL("/hls/align/" + rend + "/")
		code, _, init := get(t, base+pl.mapURI)
		if code != 200 {
			t.Fatalf("%s init: %d", rend, code)
		}
		code, _, seg := get(t, base+"seg"+strconv.Itoa(msn)+".mp4")
		if code != 200 {
			t.Fatalf("%s seg%d: %d", rend, msn, code)
		}
		f := filepath.Join(dir, rend+strconv.Itoa(msn)+".mp4")
		os.WriteFile(f, append(init, seg...), 0o644)
		for _, st := range ffprobe(t, f)["streams"].([]any) {
			m := st.(map[string]any)
			if m["codec_type"] == "audio" {
				v, _ := strconv.ParseFloat(m["start_time"].(string), 64)
				return v
			}
		}
		t.Fatalf("%s seg%d has no audio", rend, msn)
		return 0
	}
	compared := 0
	for i := 1; i < len(low.segments); i++ {
		msn := low.msn + i
		if msn < src.msn || msn >= src.msn+len(src.segments) {
			continue
		}
		a, b := audioStart("source", src, msn), audioStart("360p", low, msn)
		t.Logf("seg%d audio starts at %.4f s (source) and %.4f s (360p)", msn, a, b)
		if d := math.Abs(a - b); d > 1024.0/48000+0.001 {
			t.Errorf("seg%d: 360p audio starts %.1f ms from the source's, more than one AAC frame", msn, (b-a)*1000)
		}
		compared++
	}
	if compared < 2 {
		t.Fatalf("only %d segments in common (source %d..+%d, 360p %d..+%d)", compared, src.msn, len(src.segments), low.msn, len(low.segments))
	}
}
