package sfu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// testLogger writes the SFU's logs into the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// testConfig binds everything on loopback, on free ports.
func testConfig() Config {
	c := DefaultConfig()
	c.ICEUDPPort, c.ICETCPPort, c.ICEHost = 0, 0, "127.0.0.1"
	c.RoomSecret = "test-secret-test-secret-test-secret"
	return c
}

// newTestSFU starts an SFU on eng and a fasthttp server for it; it returns
// the SFU and the server's base URL.
func newTestSFU(t testing.TB, eng *engine.Engine, conf Config) (*SFU, string) {
	t.Helper()
	x, err := New(conf, eng, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Start(); err != nil {
		t.Fatal(err)
	}
	base := serveHTTP(t, x.Handle)
	t.Cleanup(x.Close)
	return x, base
}

// serveHTTP serves h on a free loopback port until the test ends.
func serveHTTP(t testing.TB, h fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: h, MaxRequestBodySize: 1 << 20}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return "http://" + ln.Addr().String()
}

// clientOptions shapes a pion test peer.
type clientOptions struct {
	tcpOnly      bool
	videoOnly    bool                  // WHEP: offer a video section only
	interceptors []interceptor.Factory // added before the defaults, so closest to the network
}

// newClientAPI builds a pion API for a test peer on loopback.
func newClientAPI(t testing.TB, o clientOptions) *webrtc.API {
	t.Helper()
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		t.Fatal(err)
	}
	ir := &interceptor.Registry{}
	for _, f := range o.interceptors {
		ir.Add(f)
	}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		t.Fatal(err)
	}
	se := webrtc.SettingEngine{}
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetIPFilter(func(ip net.IP) bool { return ip.IsLoopback() })
	if len(o.interceptors) > 0 {
		// Test interceptors drop packets after SRTP decryption; the
		// retransmission carries the same SRTP index, which replay
		// protection would refuse although no real loss works that way.
		se.DisableSRTPReplayProtection(true)
	}
	if o.tcpOnly {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeTCP4})
	} else {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
}

// postSDP sends an offer to a WHIP/WHEP URL and returns the answer and the
// session URL.
func postSDP(t testing.TB, url string, offer string) (answer, location string) {
	t.Helper()
	resp, err := http.Post(url, "application/sdp", strings.NewReader(offer))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s: %s", url, resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/sdp" {
		t.Fatalf("answer content type %q", ct)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatal("no Location header")
	}
	return string(body), loc
}

// offerWithCandidates creates pc's offer and waits for gathering, so the
// offer carries every candidate (no trickle needed).
func offerWithCandidates(t testing.TB, pc *webrtc.PeerConnection) string {
	t.Helper()
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		t.Fatal(err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gathered:
	case <-time.After(20 * time.Second):
		t.Fatal("ICE gathering did not complete")
	}
	return pc.LocalDescription().SDP
}

// whepClient is a pion WHEP player.
type whepClient struct {
	pc       *webrtc.PeerConnection
	location string
	mu       sync.Mutex
	tracks   map[string]*webrtc.TrackRemote // by kind
	trackCh  chan *webrtc.TrackRemote
}

func playWHEP(t testing.TB, base, path string, o clientOptions) *whepClient {
	t.Helper()
	pc, err := newClientAPI(t, o).NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pc.Close() })
	c := &whepClient{pc: pc, tracks: map[string]*webrtc.TrackRemote{}, trackCh: make(chan *webrtc.TrackRemote, 4)}
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}
	if o.videoOnly {
		kinds = kinds[:1]
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			t.Fatal(err)
		}
	}
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		c.mu.Lock()
		c.tracks[tr.Kind().String()] = tr
		c.mu.Unlock()
		c.trackCh <- tr
	})
	answer, loc := postSDP(t, base+path, offerWithCandidates(t, pc))
	c.location = loc
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: answer}); err != nil {
		t.Fatal(err)
	}
	return c
}

// waitTrack waits for the remote track of kind.
func (c *whepClient) waitTrack(t testing.TB, kind string, timeout time.Duration) *webrtc.TrackRemote {
	t.Helper()
	deadline := time.After(timeout)
	for {
		c.mu.Lock()
		tr := c.tracks[kind]
		c.mu.Unlock()
		if tr != nil {
			return tr
		}
		select {
		case <-c.trackCh:
		case <-deadline:
			t.Fatalf("no %s track within %s", kind, timeout)
		}
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// httpDo sends a request and returns the status and body.
func httpDo(t testing.TB, method, url, ctype string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, fmt.Sprintf("%s", b)
}
