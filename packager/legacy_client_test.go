package packager

import (
	"strings"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine/enginetest"
)

// TestPartsUnawareClientsWaitForASegment: ffmpeg, ffplay and VLC ignore
// EXT-X-PART, so a playlist with only parts is empty to them and they give
// up ("Empty segment"). Asked right after the stream starts, they get the
// playlist once it holds a complete segment; an LL-HLS client gets the
// parts at once.
func TestPartsUnawareClientsWaitForASegment(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	enginetest.Publish(t, ts.eng, "legacy", enginetest.Clip(t, clip720), enginetest.PublishOptions{Realtime: true, Loop: true})
	url := ts.base + "/hls/legacy/source/stream.m3u8"

	// The first parts exist, no segment yet (GOP 2 s).
	waitFor(t, "the first part", 60*time.Second, func() bool {
		r := get(t, url, "User-Agent", "hls.js")
		return r.status == 200 && strings.Contains(string(r.body), "#EXT-X-PART:")
	})
	r := get(t, url, "User-Agent", "hls.js")
	if strings.Contains(string(r.body), "#EXTINF") {
		t.Log("a segment completed before the check; the LL client case is not exercised this run")
	}
	for _, ua := range []string{"Lavf/59.27.100", "VLC/3.0.18 LibVLC/3.0.18"} {
		r := get(t, url, "User-Agent", ua)
		if r.status != 200 || !strings.Contains(string(r.body), "#EXTINF") {
			t.Fatalf("%s got %d without a complete segment:\n%s", ua, r.status, r.body)
		}
	}
}
