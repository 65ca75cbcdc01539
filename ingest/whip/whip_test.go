package whip

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/liveengine/liveengine/packager"
	"github.com/liveengine/liveengine/sfu"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/valyala/fasthttp"
)

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var (
	mediaOnce sync.Once
	mediaDir  string
	mediaErr  error
)

// testMedia makes (once per test binary) an H.264 Annex-B file and an Ogg
// Opus file with the ffmpeg CLI, as an encoder such as OBS would produce.
func testMedia(t *testing.T) (h264Path, oggPath string) {
	t.Helper()
	mediaOnce.Do(func() {
		mediaDir, mediaErr = os.MkdirTemp("", "whip-media-")
		if mediaErr != nil {
			return
		}
		cmds := [][]string{
			{"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-t", "6", "-c:v", "libx264", "-profile:v", "baseline",
				"-g", "25", "-bf", "0", "-pix_fmt", "yuv420p", "-b:v", "800k", "-bsf:v", "h264_mp4toannexb", "-f", "h264", filepath.Join(mediaDir, "v.h264")},
			{"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "6", "-ac", "2", "-c:a", "libopus",
				"-page_duration", "20000", "-f", "ogg", filepath.Join(mediaDir, "a.ogg")},
		}
		for _, args := range cmds {
			out, err := exec.Command("ffmpeg", append([]string{"-v", "error", "-y"}, args...)...).CombinedOutput()
			if err != nil {
				mediaErr = errors.New(err.Error() + ": " + string(out))
				return
			}
		}
	})
	if mediaErr != nil {
		t.Fatalf("making test media with ffmpeg: %v", mediaErr)
	}
	return filepath.Join(mediaDir, "v.h264"), filepath.Join(mediaDir, "a.ogg")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mediaDir != "" {
		os.RemoveAll(mediaDir)
	}
	os.Exit(code)
}

type server struct {
	eng  *engine.Engine
	sfu  *sfu.SFU
	whip *Server
	hls  *packager.Packager
	base string
}

func newServer(t *testing.T, eng *engine.Engine) *server {
	t.Helper()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	conf := sfu.DefaultConfig()
	conf.ICEUDPPort, conf.ICETCPPort, conf.ICEHost = 0, 0, "127.0.0.1"
	x, err := sfu.New(conf, eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	w, err := New(DefaultConfig(), eng, x.Transport(), log)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	hls, err := packager.New(packager.DefaultConfig(), eng, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := hls.Start(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		switch {
		case bytes.HasPrefix(ctx.Path(), []byte("/whip")):
			w.Handle(ctx)
		case bytes.HasPrefix(ctx.Path(), []byte("/hls/")):
			hls.Handle(ctx)
		default:
			x.Handle(ctx)
		}
	}}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		w.Close()
		hls.Close()
		x.Close()
	})
	return &server{eng: eng, sfu: x, whip: w, hls: hls, base: "http://" + ln.Addr().String()}
}

func clientAPI(t *testing.T) *webrtc.API {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

func gatheredOffer(t *testing.T, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	g := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g:
	case <-time.After(20 * time.Second):
		t.Fatal("gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

func do(t *testing.T, method, url, ctype, auth string, body []byte) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// publisher is a pion WHIP client sending the ffmpeg-made files in real time.
type publisher struct {
	plis     atomic.Int64 // PLIs the server sent us
	pc       *webrtc.PeerConnection
	location string
	stop     chan struct{}
	wg       sync.WaitGroup
}

func publish(t *testing.T, base, path, auth string) *publisher {
	t.Helper()
	h264Path, oggPath := testMedia(t)
	pc, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	video, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "video", "obs")
	if err != nil {
		t.Fatal(err)
	}
	audio, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2}, "audio", "obs")
	if err != nil {
		t.Fatal(err)
	}
	var senders []*webrtc.RTPSender
	for _, tr := range []webrtc.TrackLocal{video, audio} {
		tc, err := pc.AddTransceiverFromTrack(tr, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
		if err != nil {
			t.Fatal(err)
		}
		senders = append(senders, tc.Sender())
	}
	resp, body := do(t, http.MethodPost, base+path, "application/sdp", auth, []byte(gatheredOffer(t, pc)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHIP POST: %s: %s", resp.Status, body)
	}
	p := &publisher{pc: pc, location: resp.Header.Get("Location"), stop: make(chan struct{})}
	if p.location == "" {
		t.Fatal("no Location")
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	for _, snd := range senders {
		go func() {
			for {
				pkts, _, err := snd.ReadRTCP()
				if err != nil {
					return
				}
				for _, pkt := range pkts {
					if _, ok := pkt.(*rtcp.PictureLossIndication); ok {
						p.plis.Add(1)
					}
				}
			}
		}()
	}
	p.wg.Add(2)
	go p.sendVideo(t, h264Path, video)
	go p.sendAudio(t, oggPath, audio)
	t.Cleanup(p.close)
	return p
}

func (p *publisher) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
	_ = p.pc.Close()
}

func (p *publisher) sendVideo(t *testing.T, path string, track *webrtc.TrackLocalStaticSample) {
	defer p.wg.Done()
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
			case <-p.stop:
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

func (p *publisher) sendAudio(t *testing.T, path string, track *webrtc.TrackLocalStaticSample) {
	defer p.wg.Done()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		f, err := os.Open(path)
		if err != nil {
			t.Error(err)
			return
		}
		r, _, err := oggreader.NewWith(f)
		if err != nil {
			f.Close()
			t.Error(err)
			return
		}
		for {
			page, _, err := r.ParseNextPage()
			if err != nil {
				break
			}
			if bytes.HasPrefix(page, []byte("OpusTags")) {
				continue
			}
			select {
			case <-p.stop:
				f.Close()
				return
			case <-tick.C:
			}
			_ = track.WriteSample(media.Sample{Data: page, Duration: 20 * time.Millisecond})
		}
		f.Close()
	}
}

// countUnits attaches a reader to the stream and counts its units.
type unitCount struct{ video, keys, audio, aac atomic.Int64 }

func countUnits(t *testing.T, s *engine.Stream) *unitCount {
	c := &unitCount{}
	r, err := s.AddReader(engine.ReaderOptions{Name: "test", Kind: "bench"}, func(u *engine.Unit) {
		if s.Tracks()[u.Track].IsVideo() {
			c.video.Add(1)
			if u.Key {
				c.keys.Add(1)
			}
		} else if s.Tracks()[u.Track].Codec == engine.CodecAAC {
			c.aac.Add(1)
		} else {
			c.audio.Add(1)
		}
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return c
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestWHIPPublishesH264AndOpus(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv := newServer(t, eng)
	pub := publish(t, srv.base, "/whip/obs1", "")

	var s *engine.Stream
	waitFor(t, 30*time.Second, "stream obs1 live", func() bool {
		s, _ = eng.Stream("obs1")
		return s != nil
	})
	tracks := s.Tracks()
	if len(tracks) != 3 || tracks[0].Codec != engine.CodecH264 || tracks[1].Codec != engine.CodecOpus || tracks[2].Codec != engine.CodecAAC {
		t.Fatalf("tracks %+v, want [h264 opus aac]", tracks)
	}
	if tracks[0].Width != 640 || tracks[0].Height != 360 || len(tracks[0].SPS) == 0 || len(tracks[0].PPS) == 0 {
		t.Fatalf("video track %dx%d sps %d pps %d", tracks[0].Width, tracks[0].Height, len(tracks[0].SPS), len(tracks[0].PPS))
	}
	if s.Protocol() != "whip" {
		t.Errorf("protocol %q", s.Protocol())
	}
	c := countUnits(t, s)
	waitFor(t, 60*time.Second, "2 keyframes, 50 pictures and 50 audio frames", func() bool {
		return c.keys.Load() >= 2 && c.video.Load() >= 50 && c.audio.Load() >= 50 && c.aac.Load() >= 40
	})
	t.Logf("engine got %d pictures (%d keyframes), %d Opus frames and %d AAC frames", c.video.Load(), c.keys.Load(), c.audio.Load(), c.aac.Load())

	// A WHEP viewer of the WHIP stream gets H.264 and the original Opus.
	viewer, err := clientAPI(t).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = viewer.Close() })
	var vPkts, aPkts atomic.Int64
	viewer.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		n := &vPkts
		if tr.Kind() == webrtc.RTPCodecTypeAudio {
			n = &aPkts
		}
		for {
			if _, _, err := tr.ReadRTP(); err != nil {
				return
			}
			n.Add(1)
		}
	})
	for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		if _, err := viewer.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	resp, body := do(t, http.MethodPost, srv.base+"/whep/obs1", "application/sdp", "", []byte(gatheredOffer(t, viewer)))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("WHEP POST: %s: %s", resp.Status, body)
	}
	if err := viewer.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: body}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "WHEP video and Opus packets", func() bool { return vPkts.Load() >= 100 && aPkts.Load() >= 50 })

	// A viewer's PLI reaches the WHIP publisher.
	before := pub.plis.Load()
	var vssrc uint32
	for _, r := range viewer.GetReceivers() {
		if r.Track() != nil && r.Track().Kind() == webrtc.RTPCodecTypeVideo {
			vssrc = uint32(r.Track().SSRC())
		}
	}
	waitFor(t, 20*time.Second, "the viewer's PLI at the publisher", func() bool {
		_ = viewer.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: vssrc}})
		time.Sleep(100 * time.Millisecond) // pace the PLIs while polling
		return pub.plis.Load() > before
	})

	// DELETE ends the publish and the stream.
	resp, body = do(t, http.MethodDelete, srv.base+pub.location, "", "", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: %s %s", resp.Status, body)
	}
	waitFor(t, 20*time.Second, "stream offline", func() bool {
		_, err := eng.Stream("obs1")
		return errors.Is(err, engine.ErrStreamNotFound)
	})
}

func TestWHIPBearerToken(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv := newServer(t, eng)
	publish(t, srv.base, "/whip/", "Bearer tok1")
	waitFor(t, 30*time.Second, "stream tok1 live", func() bool {
		_, err := eng.Stream("tok1")
		return err == nil
	})
}

func TestWHIPHTTPErrors(t *testing.T) {
	conf := engine.DefaultConfig()
	conf.PublishAuth = engine.AuthKeys
	bus := engine.NewLocalBus()
	eng, err := engine.New(conf, bus, slog.New(slog.NewTextHandler(testWriter{t}, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { eng.Close(); bus.Close() })
	if err := bus.SetStreamKey(context.Background(), "goodkey", engine.Grant{StreamID: "cam"}); err != nil {
		t.Fatal(err)
	}
	if err := bus.SetStreamKey(context.Background(), "busykey", engine.Grant{StreamID: "busy"}); err != nil {
		t.Fatal(err)
	}
	busy, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "busykey", Protocol: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(busy.Close)
	srv := newServer(t, eng)
	big := bytes.Repeat([]byte("v"), DefaultConfig().MaxSDPBytes+1)
	for _, tc := range []struct {
		name, method, path, ctype, auth string
		body                            []byte
		status                          int
		says                            string
	}{
		{"unknown key", "POST", "/whip/nokey", "application/sdp", "", []byte("v=0\r\n"), 403, "unknown stream key"},
		{"unknown bearer", "POST", "/whip/", "application/sdp", "Bearer nokey", []byte("v=0\r\n"), 403, "unknown stream key"},
		{"malformed key", "POST", "/whip/a%20b", "application/sdp", "", []byte("v=0\r\n"), 403, "unknown stream key"},
		{"no key", "POST", "/whip/", "application/sdp", "", []byte("v=0\r\n"), 401, "no stream key"},
		{"busy stream", "POST", "/whip/busykey", "application/sdp", "", []byte("v=0\r\n"), 409, "already being published"},
		{"broken sdp", "POST", "/whip/goodkey", "application/sdp", "", []byte("not sdp"), 400, "bad SDP"},
		{"oversized", "POST", "/whip/goodkey", "application/sdp", "", big, 413, "too large"},
		{"unknown session", "PATCH", "/whip/session/feed", "application/trickle-ice-sdpfrag", "", []byte("a=end-of-candidates\r\n"), 404, "session not found"},
		{"get", "GET", "/whip/goodkey", "", "", nil, 405, "POST"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := do(t, tc.method, srv.base+tc.path, tc.ctype, tc.auth, tc.body)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.says)
			}
		})
	}
	// A refused or broken request leaves the key publishable.
	if _, err := eng.Stream("cam"); err == nil {
		t.Fatal("stream cam is live after refused requests")
	}
	p, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "goodkey", Protocol: "test"})
	if err != nil {
		t.Fatalf("key still claimed after a broken request: %v", err)
	}
	p.Close()
}

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	c := DefaultConfig()
	c.MaxSDPBytes = 1
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "whip.max_sdp_bytes") {
		t.Fatalf("got %v", err)
	}
	c = DefaultConfig()
	c.ConnectTimeout = 0
	if err := c.Validate(); err == nil || !strings.HasPrefix(err.Error(), "whip.connect_timeout") {
		t.Fatalf("got %v", err)
	}
}

// A WHIP stream gets LL-HLS with its Opus converted to AAC: ffprobe reads
// the playlist and finds H.264 and AAC.
func TestWHIPToHLS(t *testing.T) {
	eng := enginetest.NewEngine(t)
	srv := newServer(t, eng)
	publish(t, srv.base, "/whip/hls1", "")
	url := srv.base + "/hls/hls1/index.m3u8"
	var out []byte
	waitFor(t, 90*time.Second, "ffprobe to find h264 and aac in "+url, func() bool {
		var err error
		out, err = exec.Command("ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of", "csv=p=0", url).CombinedOutput()
		return err == nil && strings.Contains(string(out), "h264") && strings.Contains(string(out), "aac")
	})
	t.Logf("ffprobe %s: %s", url, strings.Join(strings.Fields(string(out)), " "))
}
