package packager

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine/enginetest"
)

// TestFromFFmpeg is the whole path with real peers: the ffmpeg CLI
// publishes over RTMP, the packager serves LL-HLS, and ffprobe plays the
// multivariant playlist. It records how long after launching ffmpeg the
// first playlist with parts is served.
func TestFromFFmpeg(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	addr := startRTMP(t, ts)

	clip := enginetest.Clip(t, clip720)
	launched := time.Now()
	ff := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
		"-c", "copy", "-f", "flv", "rtmp://"+addr+"/live/e2e")
	var ffErr bytes.Buffer
	ff.Stderr = &ffErr
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ff.Process.Kill()
		_ = ff.Wait()
	})

	url := ts.base + "/hls/e2e/source/stream.m3u8"
	var first time.Duration
	waitFor(t, "the first playlist", 60*time.Second, func() bool {
		r := get(t, url)
		if r.status == 200 && strings.Contains(string(r.body), "#EXT-X-PART:") {
			first = time.Since(launched)
			return true
		}
		return false
	})
	t.Logf("first LL-HLS playlist with parts %v after launching ffmpeg (it waits for the first 2 s GOP, which fixes the target durations; goal <= 3 s; the poll adds up to 50 ms)", first)

	// ffprobe reads the stream through the multivariant playlist, as a
	// player would. Its HLS demuxer ignores parts, so give it segments.
	waitSegments(t, url, 2)
	out, err := exec.Command("ffprobe", "-v", "warning", "-show_entries", "stream=codec_name,width,height", "-of", "csv=p=0",
		ts.base+"/hls/e2e/index.m3u8").CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v\n%s\nffmpeg: %s", err, out, ffErr.String())
	}
	got := string(out)
	t.Logf("ffprobe over HLS: %s", strings.TrimSpace(got))
	if !strings.Contains(got, "h264,1280,720") || !strings.Contains(got, "aac") {
		t.Errorf("ffprobe over HLS found %q, want h264 1280x720 and aac", got)
	}
}
