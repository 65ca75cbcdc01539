package sfu

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine/enginetest"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// h264Receiver reads a remote H.264 track, depacketizes it into Annex-B
// access units and keeps them for a decoder check.
type h264Receiver struct {
	mu       sync.Mutex
	frames   int
	firstKey bool // the first access unit had SPS, PPS and an IDR
	first    []byte
	annexB   bytes.Buffer
	seqs     map[uint16]bool
	packets  atomic.Int64
	// In sequence order (resends of older packets left out): the newest
	// packet's timestamp and how often a timestamp went back.
	newest         uint16
	newestTS       uint32
	tsBack, tsSeen int
}

func receiveH264(tr *webrtc.TrackRemote) *h264Receiver {
	r := &h264Receiver{seqs: map[uint16]bool{}}
	go func() {
		sb := samplebuilder.New(512, &codecs.H264Packet{}, 90000)
		for {
			pkt, _, err := tr.ReadRTP()
			if err != nil {
				return
			}
			r.packets.Add(1)
			r.mu.Lock()
			r.seqs[pkt.SequenceNumber] = true
			if r.tsSeen == 0 || int16(pkt.SequenceNumber-r.newest) > 0 {
				if r.tsSeen > 0 && int32(pkt.Timestamp-r.newestTS) < 0 {
					r.tsBack++
				}
				r.newest, r.newestTS = pkt.SequenceNumber, pkt.Timestamp
				r.tsSeen++
			}
			r.mu.Unlock()
			sb.Push(pkt)
			for s := sb.Pop(); s != nil; s = sb.Pop() {
				r.mu.Lock()
				if r.frames == 0 {
					r.first = append([]byte(nil), s.Data...)
					r.firstKey = hasNALU(s.Data, naluSPS) && hasNALU(s.Data, naluPPS) && hasNALU(s.Data, naluIDR)
				}
				r.frames++
				r.annexB.Write(s.Data)
				r.mu.Unlock()
			}
		}
	}()
	return r
}

// timestampsBack returns how many packets, in sequence order, had a
// timestamp before the one of the packet ahead of them.
func (r *h264Receiver) timestampsBack() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tsBack
}

func (r *h264Receiver) frameCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.frames
}

// hasNALU reports whether an Annex-B buffer holds a NAL unit of type typ.
func hasNALU(b []byte, typ byte) bool {
	for i := 0; i+3 < len(b); i++ {
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 && b[i+3]&0x1f == typ {
			return true
		}
	}
	return false
}

// checkDecodes writes the received Annex-B stream to a file and asks
// ffprobe to decode every frame of it.
func (r *h264Receiver) checkDecodes(t *testing.T, minFrames int) {
	t.Helper()
	r.mu.Lock()
	data := append([]byte(nil), r.annexB.Bytes()...)
	firstKey := r.firstKey
	r.mu.Unlock()
	if !firstKey {
		var types []byte
		r.mu.Lock()
		for i := 0; i+3 < len(r.first); i++ {
			if r.first[i] == 0 && r.first[i+1] == 0 && r.first[i+2] == 1 {
				types = append(types, r.first[i+3]&0x1f)
			}
		}
		r.mu.Unlock()
		t.Fatalf("the first access unit is not a keyframe with SPS and PPS: NAL types %v", types)
	}
	path := filepath.Join(t.TempDir(), "received.h264")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
		"-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "csv=p=0", path).CombinedOutput()
	if err != nil {
		t.Fatalf("ffprobe: %v: %s", err, out)
	}
	fields := strings.Split(strings.TrimSpace(string(out)), ",")
	t.Logf("ffprobe of the received stream: %s", strings.TrimSpace(string(out)))
	if len(fields) < 4 || fields[0] != "h264" {
		t.Fatalf("ffprobe: unexpected %q", out)
	}
	var n int
	for _, c := range fields[3] {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	if n < minFrames {
		t.Fatalf("ffprobe decoded %d frames, want at least %d", n, minFrames)
	}
}

func TestWHEPPlaysEngineStream(t *testing.T) {
	eng := enginetest.NewEngine(t)
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 25, Seconds: 4, GOP: 25, Audio: true})
	enginetest.Publish(t, eng, "cam1", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	x, base := newTestSFU(t, eng, testConfig())

	c := playWHEP(t, base, "/whep/cam1", clientOptions{})
	r := receiveH264(c.waitTrack(t, "video", 30*time.Second))
	waitFor(t, 60*time.Second, "50 video frames", func() bool { return r.frameCount() >= 50 })
	r.checkDecodes(t, 45)

	// The AAC source plays as Opus through the stream's bridge.
	audio := c.waitTrack(t, "audio", 30*time.Second)
	if m := audio.Codec().MimeType; !strings.EqualFold(m, webrtc.MimeTypeOpus) {
		t.Fatalf("audio codec %s", m)
	}
	var opusPkts atomic.Int64
	go func() {
		for {
			pkt, _, err := audio.ReadRTP()
			if err != nil {
				return
			}
			if len(pkt.Payload) > 0 {
				opusPkts.Add(1)
			}
		}
	}()
	waitFor(t, 30*time.Second, "50 Opus packets", func() bool { return opusPkts.Load() >= 50 })

	s, _ := eng.Stream("cam1")
	if v := s.Viewers(); v != 1 {
		t.Errorf("stream viewers = %d, want 1", v)
	}
	snap := x.Transport().Metrics().Snapshot()
	t.Logf("metrics: %+v", snap)
	if snap.PeersWHEP != 1 || snap.PacketsOut == 0 {
		t.Errorf("metrics: peers %d packets %d", snap.PeersWHEP, snap.PacketsOut)
	}

	// Trickle ICE on the session: a candidate and the end of candidates.
	frag := "a=ice-ufrag:x\r\na=ice-pwd:y\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n"
	if st, body := httpDo(t, http.MethodPatch, base+c.location, "application/trickle-ice-sdpfrag", []byte(frag)); st != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", st, body)
	}
	if st, body := httpDo(t, http.MethodPatch, base+c.location, "application/trickle-ice-sdpfrag", []byte("not a fragment")); st != http.StatusBadRequest {
		t.Fatalf("PATCH garbage: %d %s", st, body)
	}

	// DELETE ends the session.
	if st, body := httpDo(t, http.MethodDelete, base+c.location, "", nil); st != http.StatusOK {
		t.Fatalf("DELETE: %d %s", st, body)
	}
	waitFor(t, 20*time.Second, "viewer count back to 0", func() bool { return s.Viewers() == 0 })
}

// lossFactory drops every 20th RTP packet the first time it arrives, so
// the receiver's NACK generator must get them retransmitted.
type lossFactory struct {
	dropped atomic.Int64
}

func (f *lossFactory) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &lossInterceptor{f: f, seen: map[uint32]map[uint16]bool{}}, nil
}

type lossInterceptor struct {
	interceptor.NoOp
	f    *lossFactory
	mu   sync.Mutex
	seen map[uint32]map[uint16]bool
}

func (l *lossInterceptor) BindRemoteStream(info *interceptor.StreamInfo, reader interceptor.RTPReader) interceptor.RTPReader {
	if !strings.HasPrefix(strings.ToLower(info.MimeType), "video/") {
		return reader
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		for {
			n, attr, err := reader.Read(b, a)
			if err != nil {
				return n, attr, err
			}
			var h rtp.Header
			if _, err := h.Unmarshal(b[:n]); err != nil {
				return n, attr, nil
			}
			l.mu.Lock()
			seen := l.seen[h.SSRC]
			if seen == nil {
				seen = map[uint16]bool{}
				l.seen[h.SSRC] = seen
			}
			drop := h.SequenceNumber%20 == 7 && !seen[h.SequenceNumber]
			seen[h.SequenceNumber] = true
			l.mu.Unlock()
			if !drop {
				return n, attr, nil
			}
			l.f.dropped.Add(1)
		}
	})
}

func TestWHEPRecoversLossWithNACK(t *testing.T) {
	loss := &lossFactory{}
	x, _, r := playLiveWHEP(t, "lossy", clientOptions{interceptors: []interceptor.Factory{loss}})
	waitFor(t, 60*time.Second, "60 frames and 40 drops", func() bool { return r.frameCount() >= 60 && loss.dropped.Load() >= 40 })
	r.checkDecodes(t, 55)

	// Every sequence number between the first and the last seen arrived.
	r.mu.Lock()
	var lo, hi uint16
	first := true
	for s := range r.seqs {
		if first || int16(s-lo) < 0 {
			lo = s
		}
		if first || int16(s-hi) > 0 {
			hi = s
		}
		first = false
	}
	missing := 0
	for s := lo; s != hi-100; s++ { // the newest packets may still be in flight
		if !r.seqs[s] {
			missing++
		}
	}
	span := int(hi - lo)
	r.mu.Unlock()
	snap := x.Transport().Metrics().Snapshot()
	t.Logf("loss: dropped %d of %d packets (5%%), server saw %d NACKed packets, %d missing after recovery",
		loss.dropped.Load(), span, snap.NACKs, missing)
	if snap.NACKs == 0 {
		t.Error("the server counted no NACK")
	}
	if snap.Retransmits == 0 {
		t.Error("the server resent no packet from its history")
	}
	if missing > 0 {
		t.Errorf("%d packets were never recovered", missing)
	}
}

func TestWHEPOverICETCP(t *testing.T) {
	_, c, r := playLiveWHEP(t, "tcp1", clientOptions{tcpOnly: true})
	waitFor(t, 60*time.Second, "25 frames over TCP", func() bool { return r.frameCount() >= 25 })
	pair, err := c.pc.GetReceivers()[0].Transport().ICETransport().GetSelectedCandidatePair()
	if err != nil || pair == nil {
		t.Fatalf("no selected pair: %v", err)
	}
	t.Logf("selected pair: %s", pair)
	if pair.Local.Protocol != webrtc.ICEProtocolTCP {
		t.Fatalf("selected pair is %s, want TCP", pair.Local.Protocol)
	}
}

// A player that offers video only (no audio section) still gets video; the
// SFU used to add an audio track the offer never negotiated and wait for it
// to be bound before sending anything.
func TestWHEPVideoOnlyOffer(t *testing.T) {
	_, c, r := playLiveWHEP(t, "vo1", clientOptions{videoOnly: true})
	waitFor(t, 60*time.Second, "25 frames to a video-only offer", func() bool { return r.frameCount() >= 25 })
	if n := len(c.pc.GetTransceivers()); n != 1 {
		t.Fatalf("%d transceivers, want the offered video one only", n)
	}
}

func TestWHEPHTTPErrors(t *testing.T) {
	eng := enginetest.NewEngine(t)
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 320, Height: 240, FPS: 25, Seconds: 2, GOP: 25})
	enginetest.Publish(t, eng, "live1", clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	conf := testConfig()
	_, base := newTestSFU(t, eng, conf)
	big := bytes.Repeat([]byte("a"), conf.MaxSDPBytes+1)
	for _, tc := range []struct {
		name, method, path, ctype string
		body                      []byte
		status                    int
		says                      string
	}{
		{"broken sdp", "POST", "/whep/live1", "application/sdp", []byte("hello"), 400, "bad SDP"},
		{"empty sdp", "POST", "/whep/live1", "application/sdp", nil, 400, "empty body"},
		{"no media", "POST", "/whep/live1", "application/sdp", []byte("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"), 400, "no audio or video"},
		{"unknown stream", "POST", "/whep/nope", "application/sdp", []byte("v=0\r\n"), 404, "stream not found"},
		{"bad stream id", "POST", "/whep/a%20b", "application/sdp", []byte("v=0\r\n"), 404, "stream not found"},
		{"oversized", "POST", "/whep/live1", "application/sdp", big, 413, "too large"},
		{"wrong type", "POST", "/whep/live1", "text/plain", []byte("v=0\r\n"), 415, "content type"},
		{"unknown session", "DELETE", "/whep/session/deadbeef", "", nil, 404, "session not found"},
		{"get", "GET", "/whep/live1", "", nil, 405, "POST"},
		{"start bitrate not a number", "POST", "/whep/live1?start_bitrate=fast", "application/sdp", []byte("v=0\r\n"), 400, "start_bitrate"},
		{"start bitrate too low", "POST", "/whep/live1?start_bitrate=5000", "application/sdp", []byte("v=0\r\n"), 400, "from 100000"},
		{"start bitrate over the configured start", "POST", fmt.Sprintf("/whep/live1?start_bitrate=%d", conf.InitialBitrate+1), "application/sdp", []byte("v=0\r\n"), 400, "start_bitrate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := httpDo(t, tc.method, base+tc.path, tc.ctype, tc.body)
			if st != tc.status || !strings.Contains(body, tc.says) {
				t.Fatalf("%s %s: %d %q, want %d containing %q", tc.method, tc.path, st, body, tc.status, tc.says)
			}
		})
	}
}

// playLiveWHEP publishes a looping 640x360 25 fps clip with audio as stream
// key and plays /whep/KEY with o, up to its video track.
func playLiveWHEP(t *testing.T, key string, o clientOptions) (*SFU, *whepClient, *h264Receiver) {
	t.Helper()
	eng := enginetest.NewEngine(t)
	clip := enginetest.Clip(t, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 25, Seconds: 4, GOP: 25, Audio: true})
	enginetest.Publish(t, eng, key, clip, enginetest.PublishOptions{Realtime: true, Loop: true})
	x, base := newTestSFU(t, eng, testConfig())
	c := playWHEP(t, base, "/whep/"+key, o)
	return x, c, receiveH264(c.waitTrack(t, "video", 30*time.Second))
}
