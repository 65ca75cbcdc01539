package packager

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/liveengine/liveengine/ingest/rtmp"
)

// startRTMP serves RTMP ingest into ts's engine on a loopback port and
// returns its address.
func startRTMP(t *testing.T, ts *testServer) string {
	t.Helper()
	conf := rtmp.DefaultConfig()
	conf.Addr = "127.0.0.1:0"
	srv, err := rtmp.New(conf, ts.eng, slog.New(slog.NewTextHandler(testLogWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	return srv.Addr().String()
}

// TestGOPGrowsMidStream publishes, with the ffmpeg CLI, a stream whose GOP
// is 1 s for 3 s and then 3 s: EXT-X-TARGETDURATION and PART-TARGET must
// not change between playlist reloads (RFC 8216 4.4.3.1, the LL-HLS draft
// for PART-TARGET), every EXTINF must round to at most the target, every
// part must last at most PART-TARGET, and the segments, some of which now
// start without a keyframe, must still decode back to back.
func TestGOPGrowsMidStream(t *testing.T) {
	t.Parallel()
	ts := newTestServer(t, testConfig())
	addr := startRTMP(t, ts)

	const fps, seconds = 30, 13
	clip := filepath.Join(t.TempDir(), "gop.ts")
	gen := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
		"-f", "lavfi", "-i", "testsrc2=size=320x240:rate="+strconv.Itoa(fps),
		"-f", "lavfi", "-i", "sine=frequency=1000:sample_rate=48000", "-t", strconv.Itoa(seconds),
		"-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-pix_fmt", "yuv420p", "-bf", "0",
		"-g", "600", "-sc_threshold", "0", "-force_key_frames", "expr:if(lt(t,3),eq(mod(n,30),0),eq(mod(n,90),0))",
		"-c:a", "aac", "-b:a", "64k", "-f", "mpegts", clip)
	if out, err := gen.CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg clip: %v\n%s", err, out)
	}
	ff := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-i", clip,
		"-c", "copy", "-f", "flv", "rtmp://"+addr+"/live/gop")
	ff.Stderr = testLogWriter{t}
	if err := ff.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = ff.Process.Kill()
		_ = ff.Wait()
	})

	base := ts.base + "/hls/gop/source/"
	target, partTarget := 0, time.Duration(0)
	reloads := 0
	segs := map[uint64]*playlist.MediaSegment{}
	indep := map[uint64]bool{} // segment starts with an INDEPENDENT part
	var last *playlist.Media
	var lastBody []byte
	waitFor(t, "the stream to end", 90*time.Second, func() bool {
		res := get(t, base+"stream.m3u8")
		if res.status != 200 || !strings.Contains(string(res.body), "#EXTINF:") {
			return false
		}
		m, _ := mediaPlaylist(t, base+"stream.m3u8")
		reloads++
		if target == 0 {
			target, partTarget = m.TargetDuration, m.PartInf.PartTarget
			t.Logf("first playlist: TARGETDURATION %d, PART-TARGET %v", target, partTarget)
		}
		if m.TargetDuration != target {
			t.Fatalf("EXT-X-TARGETDURATION changed from %d to %d after %d reloads:\n%s", target, m.TargetDuration, reloads, res.body)
		}
		if m.PartInf.PartTarget != partTarget {
			t.Fatalf("PART-TARGET changed from %v to %v after %d reloads:\n%s", partTarget, m.PartInf.PartTarget, reloads, res.body)
		}
		check := func(msn uint64, parts []*playlist.MediaPart) {
			for i, p := range parts {
				if p.Duration > partTarget {
					t.Errorf("part %d.%d lasts %v > PART-TARGET %v", msn, i, p.Duration, partTarget)
				}
			}
			if len(parts) > 0 {
				indep[msn] = parts[0].Independent
			}
		}
		for i, s := range m.Segments {
			msn := uint64(m.MediaSequence + i)
			if r := int(math.Round(s.Duration.Seconds())); r > target {
				t.Errorf("segment %d: EXTINF %v rounds to %d > TARGETDURATION %d", msn, s.Duration, r, target)
			}
			check(msn, s.Parts)
			segs[msn] = s
		}
		check(uint64(m.MediaSequence+len(m.Segments)), m.Parts)
		last, lastBody = m, res.body
		return m.Endlist
	})
	t.Logf("%d reloads, %d segments, TARGETDURATION %d, PART-TARGET %v; last playlist:\n%s", reloads, len(segs), target, partTarget, lastBody)

	// The 3 s GOPs must have been split, and a split segment does not
	// start with a keyframe; the 1 s GOPs start theirs with one.
	split, keyed := 0, 0
	for _, v := range indep {
		if v {
			keyed++
		} else {
			split++
		}
	}
	if split == 0 || keyed == 0 {
		t.Errorf("%d segments start with a keyframe, %d without; want both (GOP 1 s then 3 s, target %d)", keyed, split, target)
	}

	// The segments still listed decode back to back from the first one that
	// starts with a keyframe.
	first := uint64(last.MediaSequence)
	for !indep[first] && first < uint64(last.MediaSequence+len(last.Segments)) {
		first++
	}
	init := get(t, base+"init.mp4")
	if init.status != 200 {
		t.Fatalf("init.mp4: %d", init.status)
	}
	file := append([]byte(nil), init.body...)
	var dur time.Duration
	for msn := first; msn < uint64(last.MediaSequence+len(last.Segments)); msn++ {
		res := get(t, base+segmentURI(msn))
		if res.status != 200 {
			t.Fatalf("%s: %d %s", segmentURI(msn), res.status, res.body)
		}
		file = append(file, res.body...)
		dur += segs[msn].Duration
	}
	path := filepath.Join(t.TempDir(), "all.mp4")
	if err := os.WriteFile(path, file, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v",
		"-show_entries", "stream=nb_read_frames", "-of", "json", path)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("ffprobe of segments %d..: %v\n%s", first, err, stderr.String())
	}
	var probe struct {
		Streams []struct {
			NbReadFrames string `json:"nb_read_frames"`
		} `json:"streams"`
	}
	if err := json.Unmarshal(out, &probe); err != nil || len(probe.Streams) != 1 {
		t.Fatalf("ffprobe output: %v\n%s", err, out)
	}
	frames, _ := strconv.Atoi(probe.Streams[0].NbReadFrames)
	want := int(dur.Seconds() * fps)
	t.Logf("ffprobe decoded %d frames from %v of segments %d..", frames, dur, first)
	if frames < want-2 || frames > want+2 {
		t.Errorf("ffprobe decoded %d frames, want %d (%v at %d fps)", frames, want, dur, fps)
	}
}
