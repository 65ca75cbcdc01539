package sfu

import (
	"context"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
)

var (
	h264Once sync.Once
	h264File string
	h264Err  error
)

// annexBClip makes (once per test binary) an H.264 Annex-B file with the
// ffmpeg CLI, as a browser or OBS encoder would send.
func annexBClip(t testing.TB) string {
	t.Helper()
	h264Once.Do(func() {
		dir, err := os.MkdirTemp("", "sfu-h264-")
		if err != nil {
			h264Err = err
			return
		}
		h264File = filepath.Join(dir, "v.h264")
		out, err := exec.Command("ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "4",
			"-c:v", "libx264", "-profile:v", "baseline", "-g", "25", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "600k",
			"-bsf:v", "h264_mp4toannexb", "-f", "h264", h264File).CombinedOutput()
		if err != nil {
			h264Err = errors.New(err.Error() + ": " + string(out))
		}
	})
	if h264Err != nil {
		t.Fatalf("ffmpeg: %v", h264Err)
	}
	return h264File
}

// sendH264File writes the file's access units on track at 25 fps, looping,
// until stop closes.
func sendH264File(t testing.TB, path string, track *webrtc.TrackLocalStaticSample, stop <-chan struct{}) {
	tick := time.NewTicker(40 * time.Millisecond)
	defer tick.Stop()
	for {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		r, err := h264reader.NewReader(f)
		if err != nil {
			f.Close()
			t.Error(err)
			return
		}
		var frame []byte
		for {
			nal, err := r.NextNAL()
			if err != nil {
				break
			}
			frame = append(frame, 0, 0, 0, 1)
			frame = append(frame, nal.Data...)
			if nal.UnitType != h264reader.NalUnitTypeCodedSliceIdr && nal.UnitType != h264reader.NalUnitTypeCodedSliceNonIdr {
				continue
			}
			select {
			case <-stop:
				f.Close()
				return
			case <-tick.C:
			}
			_ = track.WriteSample(media.Sample{Data: frame, Duration: 40 * time.Millisecond})
			frame = nil
		}
		f.Close()
	}
}

func TestLiveRoomPlaysOverWHEP(t *testing.T) {
	eng := enginetest.NewEngine(t)
	conf := testConfig()
	_, base := newTestSFU(t, eng, conf)
	host := joinRoom(t, base, conf.RoomSecret, JoinClaims{Room: "show", Identity: "host1", Kind: RoomLive, CanPublish: true})

	video, err := webrtc.NewTrackLocalStaticSample(H264Capability, "cam", "host1")
	if err != nil {
		t.Fatal(err)
	}
	host.pcMu.Lock()
	if _, err := host.pc.AddTransceiverFromTrack(video, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
		t.Fatal(err)
	}
	offer, err := host.pc.CreateOffer(nil)
	if err == nil {
		err = host.pc.SetLocalDescription(offer)
	}
	host.pcMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	host.send(Message{Type: MsgOffer, SDP: offer.SDP, Sources: map[string]string{"cam": SourceCamera}})
	host.wg.Add(1)
	go func() {
		defer host.wg.Done()
		sendH264File(t, annexBClip(t), video, host.stopped)
	}()

	var s *engine.Stream
	waitFor(t, 60*time.Second, "stream room-show live", func() bool {
		rs := eng.Renditions("room-show")
		if len(rs) > 0 {
			s = rs[0]
		}
		return s != nil
	})
	if s.Tracks()[0].Codec != engine.CodecH264 || s.Tracks()[0].Width != 640 {
		t.Fatalf("room stream tracks %+v", s.Tracks()[0])
	}
	c := playWHEP(t, base, "/whep/room-show", clientOptions{})
	r := receiveH264(c.waitTrack(t, "video", 30*time.Second))
	waitFor(t, 60*time.Second, "30 frames of the room", func() bool { return r.frameCount() >= 30 })
	r.checkDecodes(t, 25)

	// The host leaving ends the room stream.
	host.send(Message{Type: MsgLeave})
	waitFor(t, 30*time.Second, "room stream offline", func() bool { return len(eng.Renditions("room-show")) == 0 })
}

func TestWHEPRenditionPinned(t *testing.T) {
	eng := enginetest.NewEngine(t)
	src := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 25, Seconds: 2, GOP: 25})
	low := enginetest.Clip(t, enginetest.ClipSpec{Width: 320, Height: 180, FPS: 25, Seconds: 2, GOP: 25, Bitrate: "300k"})
	enginetest.Publish(t, eng, "grp", src, enginetest.PublishOptions{Realtime: true, Loop: true})
	m, err := enginetest.ReadTS(low)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := eng.PublishRendition("grp", "low")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		enginetest.PlayMedia(ctx, pub, m, enginetest.PublishOptions{Realtime: true, Loop: true})
	}()
	t.Cleanup(func() { cancel(); <-done; pub.Close() })
	_, base := newTestSFU(t, eng, testConfig())

	for _, path := range []string{"/whep/grp/low", "/whep/grp?rendition=low"} {
		c := playWHEP(t, base, path, clientOptions{})
		r := receiveH264(c.waitTrack(t, "video", 30*time.Second))
		waitFor(t, 60*time.Second, "frames of the low rendition", func() bool { return r.frameCount() >= 25 })
		r.mu.Lock()
		first := append([]byte(nil), r.first...)
		r.mu.Unlock()
		if !hasNALU(first, naluSPS) {
			t.Fatalf("%s: no SPS in the first access unit", path)
		}
		r.checkDecodes(t, 20)
	}
	if st, body := httpDo(t, http.MethodPost, base+"/whep/grp/nope", "application/sdp", []byte("v=0\r\n")); st != http.StatusNotFound {
		t.Fatalf("unknown rendition: %d %s", st, body)
	}
}

func TestWebPages(t *testing.T) {
	eng := enginetest.NewEngine(t)
	_, base := newTestSFU(t, eng, testConfig())
	for _, tc := range []struct {
		path   string
		status int
		has    string
	}{
		{"/webrtc/", 200, "WHEP player"},
		{"/webrtc/whep.html", 200, "/whep/"},
		{"/webrtc/room.html", 200, "/rtc/ws"},
		{"/webrtc/style.css", 200, "video"},
		{"/webrtc/../sfu.go", 404, ""},
		{"/webrtc/nope.html", 404, ""},
	} {
		st, body := httpDo(t, http.MethodGet, base+tc.path, "", nil)
		if st != tc.status || !strings.Contains(body, tc.has) {
			t.Errorf("GET %s: %d, want %d with %q", tc.path, st, tc.status, tc.has)
		}
	}
}

// abrViewer publishes group "abr": a 640x360 3 Mbit/s source and the
// rendition abr/low from lowSpec (its video bitrate declared as declared
// bit/s when not 0, as the transcoder does), and plays /whep/abr with the
// congestion controller starting at initial bit/s.
func abrViewer(t *testing.T, lowSpec enginetest.ClipSpec, declared, initial int, query string) (*viewer, *h264Receiver) {
	eng := enginetest.NewEngine(t)
	src := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 25, Seconds: 2, GOP: 25, Bitrate: "3000k"})
	low := enginetest.Clip(t, lowSpec)
	// One clock for both renditions, the low one delivered 150 ms late,
	// as a transcoded rung is: same timestamps and wall-clock times for a
	// picture, the rung's a little after the source's.
	start := time.Now()
	enginetest.Publish(t, eng, "abr", src, enginetest.PublishOptions{Realtime: true, Loop: true, Start: start})
	m, err := enginetest.ReadTS(low)
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range m.Tracks {
		if tr.IsVideo() && declared > 0 {
			tr.Bitrate = declared
		}
	}
	pub, err := eng.PublishRendition("abr", "low")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pub.Start(m.Tracks); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		enginetest.PlayMedia(ctx, pub, m, enginetest.PublishOptions{Realtime: true, Loop: true, Start: start, Lag: 150 * time.Millisecond})
	}()
	t.Cleanup(func() { cancel(); <-done; pub.Close() })
	conf := testConfig()
	conf.InitialBitrate = initial
	x, base := newTestSFU(t, eng, conf)

	c := playWHEP(t, base, "/whep/abr"+query, clientOptions{})
	r := receiveH264(c.waitTrack(t, "video", 30*time.Second))
	var v *viewer
	waitFor(t, 30*time.Second, "the session", func() bool {
		x.sessMu.Lock()
		defer x.sessMu.Unlock()
		for _, s := range x.sessions {
			v = s
		}
		return v != nil
	})
	if v.bwe == nil {
		t.Fatal("no bandwidth estimator on an ABR viewer")
	}
	return v, r
}

// TestWHEPABRSwitchesDown: the estimate starts far below the source's
// 3 Mbit/s, so the viewer must be moved to the low rendition. Its pictures
// come 150 ms after the source's (abrViewer), so its keyframes are never
// newer than what the viewer has seen: the switch still happens at its
// first fresh keyframe, not after the 5 s wait, and the timestamps the
// viewer gets never go back.
func TestWHEPABRSwitchesDown(t *testing.T) {
	v, r := abrViewer(t, enginetest.ClipSpec{Width: 320, Height: 180, FPS: 25, Seconds: 2, GOP: 25, Bitrate: "100k"}, 0, 500_000, "")
	waitFor(t, 60*time.Second, "a switch to abr/low", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.cur != nil && v.cur.key == "abr/low"
	})
	n := r.frameCount()
	waitFor(t, 30*time.Second, "frames after the switch", func() bool { return r.frameCount() >= n+25 })
	r.checkDecodes(t, n+20)
	m := v.x.tr.metrics.Snapshot()
	if m.Switches < 1 || m.ForcedSwitches != 0 {
		t.Fatalf("%d switches at a fresh keyframe, %d forced after %v: want the fresh keyframe", m.Switches, m.ForcedSwitches, switchWait)
	}
	if back := r.timestampsBack(); back != 0 {
		t.Fatalf("timestamps went back %d times", back)
	}
	t.Logf("estimate %d bit/s, %d frames received", v.bwe.GetTargetBitrate(), r.frameCount())
}

// TestWHEPStartBitrate: a viewer that asks to start low (start_bitrate)
// on a server whose estimates start at 20 Mbit/s begins its estimate
// there and is moved to the low rendition.
func TestWHEPStartBitrate(t *testing.T) {
	v, _ := abrViewer(t, enginetest.ClipSpec{Width: 320, Height: 180, FPS: 25, Seconds: 2, GOP: 25, Bitrate: "100k"}, 0, 20_000_000, "?start_bitrate=300000")
	if est := v.bwe.GetTargetBitrate(); est > 1_000_000 {
		t.Fatalf("estimate starts at %d bit/s, asked for 300000", est)
	}
	waitFor(t, 60*time.Second, "a switch to abr/low", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.cur != nil && v.cur.key == "abr/low"
	})
}

// TestWHEPABRKeepsSource: with room for the source, a viewer stays on it,
// even when only the rung declares its bitrate (a WHIP source measured
// over a tick; before, the first tick moved every viewer to the rung) and
// when the only other rendition is starved (5 of the source's 25 fps: a
// transcoder shedding frames) and the estimate is below the source.
func TestWHEPABRKeepsSource(t *testing.T) {
	for _, tc := range []struct {
		name              string
		low               enginetest.ClipSpec
		declared, initial int
	}{
		{"declared rung", enginetest.ClipSpec{Width: 320, Height: 180, FPS: 25, Seconds: 2, GOP: 25, Bitrate: "100k"}, 100_000, 20_000_000},
		{"starved rung", enginetest.ClipSpec{Width: 320, Height: 180, FPS: 5, Seconds: 2, GOP: 5, Bitrate: "100k"}, 0, 500_000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, r := abrViewer(t, tc.low, tc.declared, tc.initial, "")
			// 100 frames at 25 fps: about four ABR ticks.
			waitFor(t, 60*time.Second, "100 frames", func() bool { return r.frameCount() >= 100 })
			v.mu.Lock()
			defer v.mu.Unlock()
			if v.cur == nil || v.cur.key != "abr" || v.pending != nil {
				t.Fatalf("viewer on %v, switch pending %v: want the source", v.cur, v.pending != nil)
			}
		})
	}
}
