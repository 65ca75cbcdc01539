package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/liveengine/liveengine/bench/stamp"
)

// ErrWebRTC means a WHIP/WHEP exchange failed.
var ErrWebRTC = errors.New("bench: webrtc")

func init() {
	register("whep-viewers", scenario{
		summary: "M WHEP subscribers (pion): received bitrate, RTP loss, freezes, glass-to-glass latency from the stamp",
		flags: func(fs *flag.FlagSet) runner {
			v := &whepViewers{
				url:     fs.String("url", "http://127.0.0.1:8888/whep/bench0", "WHEP endpoint URL"),
				n:       fs.Int("n", 1, "number of viewers"),
				stagger: fs.Duration("stagger", 50*time.Millisecond, "delay between viewer starts"),
				token:   fs.String("token", "", "bearer token for the WHEP endpoint"),
				settle:  fs.Duration("settle", 3*time.Second, "wait this long after the last viewer connects before the steady window (packets/s per server core, RSS per viewer) opens"),
				video:   fs.Bool("video-only", false, "offer a video transceiver only (like-for-like with servers that send no audio, e.g. MediaMTX with an AAC source)"),
			}
			v.pub = publishFlag(fs)
			return v
		},
	})
	register("whip-publish", scenario{
		summary: "N WHIP publishers (pion) sending the pre-encoded clip's H.264 in real time, every frame stamped",
		flags: func(fs *flag.FlagSet) runner {
			return &whipPublish{
				url:   fs.String("url", "http://127.0.0.1:8888/whip", "WHIP URL: .../whip (keys NAME0..), .../whip/KEY with -n 1, or a URL with {i} replaced by the publisher index"),
				n:     fs.Int("n", 1, "number of publishers"),
				clip:  fs.String("clip", "", "pre-encoded .ts or .flv clip; empty: generate the default 720p30 clip once"),
				name:  fs.String("name", "bench", "stream key prefix"),
				token: fs.String("token", "", "bearer token (the stream key, for servers that read it from Authorization)"),
			}
		},
	})
}

func newWebRTCAPI() (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, ir); err != nil {
		return nil, err
	}
	se := webrtc.SettingEngine{}
	// Benches run on one machine as often as not: loopback must work.
	se.SetIncludeLoopbackCandidate(true)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// exchangeSDP posts a gathered offer to a WHIP/WHEP endpoint and applies the
// answer. It returns the session URL (Location) for the final DELETE.
func exchangeSDP(ctx context.Context, pc *webrtc.PeerConnection, endpoint, token string) (string, error) {
	offer, err := pc.CreateOffer(nil)
	if err != nil {
		return "", fmt.Errorf("%w: offer: %w", ErrWebRTC, err)
	}
	gathered := webrtc.GatheringCompletePromise(pc)
	if err := pc.SetLocalDescription(offer); err != nil {
		return "", fmt.Errorf("%w: local description: %w", ErrWebRTC, err)
	}
	select {
	case <-gathered:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(pc.LocalDescription().SDP))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/sdp")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("%w: post %s: %w", ErrWebRTC, endpoint, err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if res.StatusCode == http.StatusNotFound {
		return "", fmt.Errorf("%w: post %s: %w", ErrWebRTC, endpoint, errNotLive)
	}
	if res.StatusCode != http.StatusCreated && res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%w: post %s: status %d: %s", ErrWebRTC, endpoint, res.StatusCode, bytes.TrimSpace(body))
	}
	if err := pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: string(body)}); err != nil {
		return "", fmt.Errorf("%w: answer from %s: %w", ErrWebRTC, endpoint, err)
	}
	loc := res.Header.Get("Location")
	if loc != "" {
		base, _ := url.Parse(endpoint)
		if u, err := url.Parse(loc); err == nil {
			loc = base.ResolveReference(u).String()
		}
	}
	return loc, nil
}

func hangUp(session string) {
	if session == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodDelete, session, nil)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
	}
}

// peerState follows a peer connection: connected closes on "connected",
// gone on "failed", "disconnected" or "closed".
type peerState struct {
	connected, gone chan struct{}
}

func watchState(pc *webrtc.PeerConnection) *peerState {
	p := &peerState{connected: make(chan struct{}), gone: make(chan struct{})}
	var once, goneOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(p.connected) })
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
			goneOnce.Do(func() { close(p.gone) })
		}
	})
	return p
}

// wait waits for ICE+DTLS to connect, then for ctx to end or the peer to
// go; it returns nil only when ctx ended.
func (p *peerState) wait(ctx context.Context) error {
	select {
	case <-p.connected:
	case <-p.gone:
		return fmt.Errorf("%w: connection failed", ErrWebRTC)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%w: not connected after 20s", ErrWebRTC)
	}
	select {
	case <-p.gone:
		return fmt.Errorf("%w: connection lost", ErrWebRTC)
	case <-ctx.Done():
		return ctx.Err()
	}
}

type whepViewers struct {
	url     *string
	n       *int
	stagger *time.Duration
	token   *string
	settle  *time.Duration
	video   *bool
	pub     *embeddedPublisher
	api     *webrtc.API
}

func (v *whepViewers) prepare(context.Context) error {
	if *v.n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", ErrUsage)
	}
	var err error
	if v.api, err = newWebRTCAPI(); err != nil {
		return err
	}
	return v.pub.prepare()
}

func (v *whepViewers) run(ctx context.Context, r *Run) error {
	v.pub.start(ctx, r)
	defer v.pub.wait()
	steady := make(chan struct{})
	go func() {
		defer close(steady)
		r.steadyWindow(ctx, *v.n, *v.settle)
	}()
	runClients(ctx, r, *v.n, *v.stagger, func() error { return WatchWHEP(ctx, v.api, *v.url, *v.token, *v.video, r) })
	<-steady
	return nil
}

// Steady is the forwarding figure of a fan-out run: from settle after the
// last viewer connected until just before the run ends, RTP packets the
// viewers received against the server's CPU time over the same window,
// read from /proc/PID/stat (user + system: kernel UDP work counts).
type Steady struct {
	Viewers        int     `json:"viewers"`
	WindowS        float64 `json:"window_s"`
	PacketsPerS    float64 `json:"packets_per_s"`
	ServerCPUPct   float64 `json:"server_cpu_pct"`
	PacketsPerCore float64 `json:"packets_per_s_per_core"`
	RSSStartMB     float64 `json:"server_rss_start_mb"`
	RSSMB          float64 `json:"server_rss_mb"`
	RSSPerViewerMB float64 `json:"server_rss_per_viewer_mb"`
}

// steadyWindow measures Steady once n clients are active; RSS at the start
// of the run (publisher on, no viewer yet) is the base of the per-viewer
// figure. Without a server process it reports the packet rate only.
func (r *Run) steadyWindow(ctx context.Context, n int, settle time.Duration) {
	pid := 0
	var rssStart float64
	if r.proc != nil {
		pid = r.proc.PID
		rssStart = procRSSMB(pid)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for r.Active.Load() < int64(n) {
		select {
		case <-ctx.Done():
			r.Note("steady window: only %d of %d viewers connected", r.Active.Load(), n)
			return
		case <-tick.C:
		}
	}
	var end <-chan time.Time // nil: the window closes with ctx
	if dl, ok := ctx.Deadline(); ok {
		// Close the window before the viewers hang up.
		t := time.NewTimer(time.Until(dl) - 500*time.Millisecond)
		defer t.Stop()
		end = t.C
	}
	select {
	case <-ctx.Done():
		return
	case <-end:
		r.Note("steady window: run too short for -settle %s", settle)
		return
	case <-time.After(settle):
	}
	t0, p0 := time.Now(), r.Packets.Load()
	var c0 uint64
	if pid != 0 {
		c0, _ = procTicks(pid)
	}
	select {
	case <-ctx.Done():
	case <-end:
	}
	dt := time.Since(t0).Seconds()
	if dt < 1 {
		r.Note("steady window shorter than 1 s: no figure")
		return
	}
	s := &Steady{Viewers: n, WindowS: dt, PacketsPerS: float64(r.Packets.Load()-p0) / dt}
	line := fmt.Sprintf("steady %.1f s, %d viewers: %.0f RTP packets/s received", dt, n, s.PacketsPerS)
	if pid != 0 {
		c1, _ := procTicks(pid)
		s.ServerCPUPct = float64(c1-c0) / clockTicks / dt * 100
		if s.ServerCPUPct > 0 {
			s.PacketsPerCore = s.PacketsPerS / (s.ServerCPUPct / 100)
		}
		s.RSSStartMB, s.RSSMB = rssStart, procRSSMB(pid)
		s.RSSPerViewerMB = (s.RSSMB - s.RSSStartMB) / float64(n)
		line += fmt.Sprintf(", server cpu %.1f%% of a core = %.0f packets/s per core; server rss %.0f MB -> %.0f MB (%+.2f MB per viewer)",
			s.ServerCPUPct, s.PacketsPerCore, s.RSSStartMB, s.RSSMB, s.RSSPerViewerMB)
	}
	r.mu.Lock()
	r.steady = s
	r.mu.Unlock()
	r.Note("%s", line)
}

// WatchWHEP subscribes to a WHEP endpoint until ctx ends, counting RTP
// packets, sequence gaps, bytes, frames and freezes into r, and reading the
// latency stamp of every video frame.
func WatchWHEP(ctx context.Context, api *webrtc.API, endpoint, token string, videoOnly bool, r *Run) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWebRTC, err)
	}
	defer pc.Close()
	kinds := []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio}
	if videoOnly {
		kinds = kinds[:1]
	}
	for _, k := range kinds {
		if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fmt.Errorf("%w: %w", ErrWebRTC, err)
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer pc.Close()
	pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			readTrack(tr, r)
		}()
	})
	st := watchState(pc)
	session, err := exchangeSDP(ctx, pc, endpoint, token)
	if err != nil {
		return err
	}
	defer hangUp(session)
	if r != nil {
		r.Active.Add(1)
		defer r.Active.Add(-1)
	}
	return st.wait(ctx)
}

// readTrack reads one remote track. Video is depacketized packet by packet
// (no jitter buffer: a frame completes on its marker bit) so the stamp is
// read the moment the last packet of the frame arrives.
func readTrack(tr *webrtc.TrackRemote, r *Run) {
	video := tr.Kind() == webrtc.RTPCodecTypeVideo
	isH264 := strings.EqualFold(tr.Codec().MimeType, webrtc.MimeTypeH264)
	var (
		dep       codecs.H264Packet
		au        []byte
		lastSeq   uint16
		haveSeq   bool
		lastFrame time.Time
		avgGap    time.Duration
		broken    bool
	)
	buf := make([]byte, 1600)
	missing := map[uint16]struct{}{}
	var pkt rtp.Packet
	for {
		n, _, err := tr.Read(buf)
		if err != nil {
			return
		}
		if pkt.Unmarshal(buf[:n]) != nil {
			continue
		}
		now := time.Now()
		if r != nil {
			r.Packets.Add(1)
			r.Bytes.Add(int64(len(pkt.Payload)))
		}
		if haveSeq {
			d := pkt.SequenceNumber - lastSeq
			if d == 0 || d > 0x8000 {
				// Duplicate or late: a late packet (reordered, or resent
				// after a NACK) fills its gap, so it is not lost after all.
				if _, ok := missing[pkt.SequenceNumber]; ok {
					delete(missing, pkt.SequenceNumber)
					if r != nil {
						r.Lost.Add(-1)
						if !video {
							r.LostAudio.Add(-1)
						}
					}
				}
				continue
			}
			if d > 1 {
				if r != nil {
					r.Lost.Add(int64(d - 1))
					if !video {
						r.LostAudio.Add(int64(d - 1))
					}
				}
				if len(missing) > 4096 {
					clear(missing)
				}
				for s := lastSeq + 1; s != pkt.SequenceNumber; s++ {
					missing[s] = struct{}{}
				}
				broken = true
			}
		}
		lastSeq, haveSeq = pkt.SequenceNumber, true
		if !video || !isH264 {
			continue
		}
		data, err := dep.Unmarshal(pkt.Payload)
		if err == nil {
			au = append(au, data...)
		}
		if !pkt.Marker {
			continue
		}
		frame := au
		au = au[:0]
		if broken {
			broken = false
			continue
		}
		if r == nil {
			continue
		}
		r.Frames.Add(1)
		// A freeze, as browsers count it: a frame interval above
		// max(3 x average, average + 150 ms).
		if !lastFrame.IsZero() {
			gap := now.Sub(lastFrame)
			if avgGap > 0 && gap > max(3*avgGap, avgGap+150*time.Millisecond) {
				r.Stalls.Add(1)
			}
			if avgGap == 0 {
				avgGap = gap
			} else {
				avgGap = (avgGap*15 + gap) / 16
			}
		}
		lastFrame = now
		var nalus h264.AnnexB
		if nalus.Unmarshal(frame) != nil {
			continue
		}
		if ts, err := stamp.Find(nalus); err == nil {
			r.Latency(now.Sub(ts))
		}
	}
}

type whipPublish struct {
	url   *string
	n     *int
	clip  *string
	name  *string
	token *string

	endpoints []string
	c         *Clip
	api       *webrtc.API
}

func (w *whipPublish) prepare(context.Context) error {
	if *w.n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", ErrUsage)
	}
	u, err := url.Parse(*w.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%w: -url %q is not an http(s) WHIP URL", ErrUsage, *w.url)
	}
	base := strings.TrimSuffix(*w.url, "/")
	if strings.Contains(base, "{i}") {
		// MediaMTX style: http://HOST/PATH{i}/whip.
		for i := 0; i < *w.n; i++ {
			w.endpoints = append(w.endpoints, strings.ReplaceAll(base, "{i}", fmt.Sprint(i)))
		}
	} else if *w.n == 1 && !strings.HasSuffix(u.Path, "/whip") {
		w.endpoints = []string{base}
	} else {
		for i := 0; i < *w.n; i++ {
			w.endpoints = append(w.endpoints, fmt.Sprintf("%s/%s%d", base, *w.name, i))
		}
	}
	path := *w.clip
	if path == "" {
		path = DefaultClipPath()
		if err := EnsureClip(path, 10); err != nil {
			return err
		}
	}
	if w.c, err = LoadClip(path); err != nil {
		return err
	}
	w.api, err = newWebRTCAPI()
	return err
}

func (w *whipPublish) run(ctx context.Context, r *Run) error {
	var wg sync.WaitGroup
	for i, ep := range w.endpoints {
		if i > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			retry(ctx, r, func() error { return PublishWHIP(ctx, w.api, ep, *w.token, w.c, r) })
		}()
	}
	wg.Wait()
	return nil
}

// PublishWHIP publishes the clip's video to a WHIP endpoint in real time,
// looping, until ctx ends; every frame carries a stamp SEI. The clip's AAC
// is not sent: WebRTC carries Opus, and the load generator never
// re-encodes.
func PublishWHIP(ctx context.Context, api *webrtc.API, endpoint, token string, clip *Clip, r *Run) error {
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWebRTC, err)
	}
	defer pc.Close()
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{
		MimeType: webrtc.MimeTypeH264, ClockRate: 90000,
		SDPFmtpLine: "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
	}, "video", "liveengine-bench")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWebRTC, err)
	}
	sender, err := pc.AddTransceiverFromTrack(track, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrWebRTC, err)
	}
	go func() {
		// Drain RTCP so the interceptors (NACK responder, reports) run.
		b := make([]byte, 1500)
		for {
			if _, _, err := sender.Sender().Read(b); err != nil {
				return
			}
		}
	}()
	st := watchState(pc)
	session, err := exchangeSDP(ctx, pc, endpoint, token)
	if err != nil {
		return err
	}
	defer hangUp(session)
	select {
	case <-st.connected:
	case <-st.gone:
		return fmt.Errorf("%w: %s: connection failed", ErrWebRTC, endpoint)
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(20 * time.Second):
		return fmt.Errorf("%w: %s: not connected after 20s", ErrWebRTC, endpoint)
	}
	if r != nil {
		r.Active.Add(1)
		defer r.Active.Add(-1)
	}
	var frames []*Frame
	for i := range clip.Frames {
		if clip.Frames[i].Video {
			frames = append(frames, &clip.Frames[i])
		}
	}
	var prefix []byte
	for _, n := range [][]byte{clip.SPS, clip.PPS} {
		prefix = append(append(prefix, 0, 0, 0, 1), n...)
	}
	start := time.Now()
	var buf []byte
	for loop := 0; ; loop++ {
		offset := time.Duration(loop) * clip.Duration
		for i, f := range frames {
			at := offset + f.DTS
			if wait := time.Until(start.Add(at)); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-st.gone:
					return fmt.Errorf("%w: %s: connection lost", ErrWebRTC, endpoint)
				case <-time.After(wait):
				}
			}
			dur := time.Second / 30
			if i+1 < len(frames) {
				dur = frames[i+1].DTS - f.DTS
			}
			buf = buf[:0]
			if f.Key {
				buf = append(buf, prefix...)
			}
			for _, n := range stamp.Insert(f.NALUs, stamp.Encode(time.Now())) {
				buf = append(append(buf, 0, 0, 0, 1), n...)
			}
			if err := track.WriteSample(media.Sample{Data: buf, Duration: dur}); err != nil {
				return fmt.Errorf("%w: %s: write: %w", ErrWebRTC, endpoint, err)
			}
			if r != nil {
				r.Bytes.Add(int64(len(buf)))
				r.Frames.Add(1)
			}
		}
	}
}
