package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/interceptor/pkg/gcc"
	"github.com/pion/logging"
	"github.com/pion/turn/v4"
	"github.com/pion/webrtc/v4"
)

// Transport owns what every peer connection of the process shares: the one
// UDP and one TCP ICE port (muxed), the codecs, the interceptors and the
// optional embedded TURN server. WHIP ingest, WHEP playback and rooms all
// make their peer connections here, so one firewall rule covers them all.
type Transport struct {
	conf Config
	log  *slog.Logger

	udpConn net.PacketConn
	batch   *batchConn // udpConn with batched writes; nil if not a UDPConn
	tcpLn   net.Listener
	udpMux  ice.UDPMux
	tcpMux  ice.TCPMux
	turn    *turn.Server

	// api has NACK, RTCP reports and TWCC feedback (WHIP, rooms).
	// apiViewer is for WHEP viewers: no pion NACK responder, the viewer's
	// outTrack answers NACKs from the feed's shared packets. apiBWE adds
	// the send-side congestion controller (GCC) to it for viewers that
	// can switch renditions, because the estimator costs CPU per packet.
	api       *webrtc.API
	apiViewer *webrtc.API
	apiBWE    *webrtc.API

	bweMu      sync.Mutex // serializes NewPeerConnection on apiBWE
	pendingBWE cc.BandwidthEstimator
	// startBitrate is the next estimator's starting estimate (bweMu);
	// 0 takes conf.InitialBitrate.
	startBitrate int

	iceServers []webrtc.ICEServer

	metrics Metrics

	kfMu      sync.Mutex
	keyframes map[string]func() // stream id -> PLI to its WebRTC publisher
}

// RegisterKeyframeSource lets WHEP viewers of a WebRTC-published stream
// (WHIP, live room) ask its publisher for a keyframe when they lose one.
// The returned function unregisters.
func (t *Transport) RegisterKeyframeSource(streamID string, request func()) (unregister func()) {
	t.kfMu.Lock()
	defer t.kfMu.Unlock()
	if t.keyframes == nil {
		t.keyframes = map[string]func(){}
	}
	t.keyframes[streamID] = request
	return func() {
		t.kfMu.Lock()
		defer t.kfMu.Unlock()
		delete(t.keyframes, streamID)
	}
}

// requestKeyframe forwards a viewer's PLI to the stream's publisher, if it
// is a WebRTC one; others (RTMP) start viewers at the GOP cache instead.
func (t *Transport) requestKeyframe(streamID string) {
	t.kfMu.Lock()
	fn := t.keyframes[streamID]
	t.kfMu.Unlock()
	if fn != nil {
		fn()
	}
}

// socketBuffer is the send and receive buffer asked for the ICE UDP socket.
const socketBuffer = 4 << 20

// hold starts a fan-out on the shared UDP socket: the packets written until
// the matching release leave in sendmmsg batches.
func (t *Transport) hold() {
	if t.batch != nil {
		t.batch.hold()
	}
}

// release ends a fan-out started with hold and sends what it queued.
func (t *Transport) release() {
	if t.batch != nil {
		t.batch.release()
	}
}

// Metrics returns the counters shared by every WebRTC component.
func (t *Transport) Metrics() *Metrics { return &t.metrics }

// NewTransport binds the ICE ports and builds the WebRTC APIs.
func NewTransport(conf Config, log *slog.Logger) (*Transport, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	t := &Transport{conf: conf, log: log}
	host := conf.ICEHost
	udpAddr := net.JoinHostPort(host, strconv.Itoa(conf.ICEUDPPort))
	pc, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		return nil, fmt.Errorf("webrtc.ice_udp_port: listen %s: %w", udpAddr, err)
	}
	t.udpConn = pc
	muxConn := pc
	if uc, ok := pc.(*net.UDPConn); ok {
		// One socket carries every peer: bigger buffers absorb a fan-out
		// burst (the kernel caps them at net.core.[rw]mem_max).
		_ = uc.SetWriteBuffer(socketBuffer)
		_ = uc.SetReadBuffer(socketBuffer)
		t.batch = newBatchConn(uc)
		muxConn = t.batch
	}
	lf := logging.NewDefaultLoggerFactory()
	lf.DefaultLogLevel = logging.LogLevelError
	t.udpMux = webrtc.NewICEUDPMux(lf.NewLogger("ice-udp"), muxConn)
	if conf.ICETCPPort >= 0 {
		tcpAddr := net.JoinHostPort(host, strconv.Itoa(conf.ICETCPPort))
		ln, err := net.Listen("tcp", tcpAddr)
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("webrtc.ice_tcp_port: listen %s: %w", tcpAddr, err)
		}
		t.tcpLn = ln
		t.tcpMux = ice.NewTCPMuxDefault(ice.TCPMuxParams{
			Listener:       ln,
			Logger:         lf.NewLogger("ice-tcp"),
			ReadBufferSize: 64,
			// No write buffer: its writer goroutine can outlive Close
			// (pion/ice v4.4.8), and ICE-TCP is only the fallback path.
			// A connection that sends no STUN binding in time is dropped;
			// Close waits for such connections, so this also bounds it.
			FirstStunBindTimeout: 5 * time.Second,
			// A connection whose STUN names a ufrag no agent holds (a peer
			// still checking a connection we just closed) gets a packet
			// conn of its own that only this timer closes, and Close waits
			// for it: with pion's 30 s default, a peer racing a shutdown
			// held Close for 30 s (TestCloseWithParticipants, fresh-clone
			// CI). Our agents register their ufrags when they gather, so a
			// live peer's connection never waits on this.
			AliveDurationForConnFromStun: 5 * time.Second,
		})
	}
	if conf.TURN.Enabled {
		if err := t.startTURN(lf); err != nil {
			t.Close()
			return nil, err
		}
	}

	for _, s := range conf.STUNServers {
		t.iceServers = append(t.iceServers, webrtc.ICEServer{URLs: []string{s}})
	}
	for _, s := range conf.TURNServers {
		t.iceServers = append(t.iceServers, webrtc.ICEServer{URLs: []string{s.URL}, Username: s.Username, Credential: s.Credential})
	}

	se := webrtc.SettingEngine{LoggerFactory: lf}
	se.SetICEUDPMux(t.udpMux)
	types := []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6}
	if t.tcpMux != nil {
		se.SetICETCPMux(t.tcpMux)
		types = append(types, webrtc.NetworkTypeTCP4, webrtc.NetworkTypeTCP6)
	}
	se.SetNetworkTypes(types)
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		se.SetIncludeLoopbackCandidate(true)
	}
	if len(conf.PublicIPs) > 0 {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        conf.PublicIPs,
			AsCandidateType: webrtc.ICECandidateTypeHost,
		}); err != nil {
			t.Close()
			return nil, fmt.Errorf("webrtc.public_ips: %w", err)
		}
	}

	if t.api, err = buildAPI(se, nil, true); err != nil {
		t.Close()
		return nil, err
	}
	if t.apiViewer, err = buildAPI(se, nil, false); err != nil {
		t.Close()
		return nil, err
	}
	ccf, err := cc.NewInterceptor(func() (cc.BandwidthEstimator, error) {
		// No pacer: packets leave as they come (the GOP burst of a new
		// viewer included); the estimate alone drives rendition choice.
		initial := conf.InitialBitrate
		if t.startBitrate > 0 { // called inside newViewerPeerConnection, under bweMu
			initial = t.startBitrate
		}
		return gcc.NewSendSideBWE(
			gcc.SendSideBWEInitialBitrate(initial),
			gcc.SendSideBWEMaxBitrate(50_000_000),
			gcc.SendSideBWEPacer(gcc.NewNoOpPacer()),
		)
	})
	if err != nil {
		t.Close()
		return nil, fmt.Errorf("webrtc: congestion controller: %w", err)
	}
	ccf.OnNewPeerConnection(func(_ string, e cc.BandwidthEstimator) { t.pendingBWE = e })
	if t.apiBWE, err = buildAPI(se, ccf, false); err != nil {
		t.Close()
		return nil, err
	}
	log.Info("webrtc transport ready", "udp", t.UDPAddr(), "tcp", t.TCPAddr(), "public_ips", conf.PublicIPs)
	return t, nil
}

func (t *Transport) startTURN(lf logging.LoggerFactory) error {
	c := t.conf.TURN
	conn, err := net.ListenPacket("udp4", c.Addr)
	if err != nil {
		return fmt.Errorf("webrtc.turn.addr: listen %s: %w", c.Addr, err)
	}
	key := turn.GenerateAuthKey(c.Username, c.Realm, c.Password)
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:         c.Realm,
		LoggerFactory: lf,
		AuthHandler: func(username, realm string, _ net.Addr) ([]byte, bool) {
			if username == c.Username && realm == c.Realm {
				return key, true
			}
			return nil, false
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: conn,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: net.ParseIP(c.PublicIP),
				Address:      "0.0.0.0",
			},
		}},
	})
	if err != nil {
		conn.Close()
		return fmt.Errorf("webrtc.turn: %w", err)
	}
	t.turn = srv
	_, port, _ := net.SplitHostPort(conn.LocalAddr().String())
	t.iceServers = append(t.iceServers, webrtc.ICEServer{
		URLs:     []string{"turn:" + net.JoinHostPort(c.PublicIP, port)},
		Username: c.Username, Credential: c.Password,
	})
	return nil
}

// Codec capabilities the SFU speaks: H.264 (constrained baseline, baseline,
// main and high, packetization mode 1) and Opus. Fixed payload types keep
// SDP answers predictable for WHIP clients.
var videoFeedback = []webrtc.RTCPFeedback{
	{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"},
}

func h264Codec(pt webrtc.PayloadType, profile string) webrtc.RTPCodecParameters {
	return webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{
			MimeType:     webrtc.MimeTypeH264,
			ClockRate:    90000,
			SDPFmtpLine:  "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=" + profile,
			RTCPFeedback: videoFeedback,
		},
		PayloadType: pt,
	}
}

// OpusCapability is the Opus codec of every audio track.
var OpusCapability = webrtc.RTPCodecCapability{
	MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1",
}

// H264Capability is the H.264 codec of the SFU's outgoing video tracks.
var H264Capability = h264Codec(102, "42e01f").RTPCodecCapability

// buildAPI makes a WebRTC API. Without nackResponder, the API still
// advertises NACK (the codecs carry the feedback) but leaves answering
// to the caller.
func buildAPI(se webrtc.SettingEngine, ccf interceptor.Factory, nackResponder bool) (*webrtc.API, error) {
	m := &webrtc.MediaEngine{}
	for _, c := range []webrtc.RTPCodecParameters{
		h264Codec(102, "42e01f"), h264Codec(104, "42001f"), h264Codec(106, "4d001f"),
		h264Codec(108, "640c1f"), h264Codec(112, "64001f"), h264Codec(127, "4d0032"), h264Codec(123, "640032"),
	} {
		if err := m.RegisterCodec(c, webrtc.RTPCodecTypeVideo); err != nil {
			return nil, fmt.Errorf("webrtc: register h264: %w", err)
		}
	}
	if err := m.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: OpusCapability, PayloadType: 111}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("webrtc: register opus: %w", err)
	}
	ir := &interceptor.Registry{}
	if ccf != nil {
		// The congestion controller goes before the NACK responder so that
		// retransmissions are limited by the target bitrate.
		ir.Add(ccf)
		if err := webrtc.ConfigureTWCCHeaderExtensionSender(m, ir); err != nil {
			return nil, fmt.Errorf("webrtc: twcc header extension: %w", err)
		}
	}
	if nackResponder {
		if err := webrtc.ConfigureNack(m, ir); err != nil {
			return nil, fmt.Errorf("webrtc: nack: %w", err)
		}
	}
	if err := webrtc.ConfigureRTCPReports(ir); err != nil {
		return nil, fmt.Errorf("webrtc: rtcp reports: %w", err)
	}
	if err := webrtc.ConfigureTWCCSender(m, ir); err != nil {
		return nil, fmt.Errorf("webrtc: twcc: %w", err)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// NewPeerConnection makes a peer connection on the shared ports, with
// pion's NACK generator and responder. bwe is kept for callers; a
// congestion-controlled connection is a WHEP viewer's only
// (newViewerPeerConnection).
func (t *Transport) NewPeerConnection(bwe bool) (*webrtc.PeerConnection, cc.BandwidthEstimator, error) {
	if bwe {
		return t.newViewerPeerConnection(true, 0)
	}
	pc, err := t.api.NewPeerConnection(webrtc.Configuration{ICEServers: t.serverICEServers()})
	if err != nil {
		return nil, nil, fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	return pc, nil, nil
}

// newViewerPeerConnection makes a WHEP viewer's peer connection: the
// viewer answers NACKs itself. With bwe, the connection runs the
// send-side congestion controller and its estimator is returned, starting
// at start bit/s (0: the configured initial bitrate).
func (t *Transport) newViewerPeerConnection(bwe bool, start int) (*webrtc.PeerConnection, cc.BandwidthEstimator, error) {
	conf := webrtc.Configuration{ICEServers: t.serverICEServers()}
	if !bwe {
		pc, err := t.apiViewer.NewPeerConnection(conf)
		if err != nil {
			return nil, nil, fmt.Errorf("webrtc: new peer connection: %w", err)
		}
		return pc, nil, nil
	}
	// The cc factory reports the estimator through a callback during
	// NewPeerConnection; the lock pairs the two.
	t.bweMu.Lock()
	defer t.bweMu.Unlock()
	t.pendingBWE, t.startBitrate = nil, start
	pc, err := t.apiBWE.NewPeerConnection(conf)
	t.startBitrate = 0
	if err != nil {
		return nil, nil, fmt.Errorf("webrtc: new peer connection: %w", err)
	}
	e := t.pendingBWE
	t.pendingBWE = nil
	return pc, e, nil
}

// serverICEServers are the servers the SFU's own agent uses: STUN only
// (for a server-reflexive candidate); TURN is for peers.
func (t *Transport) serverICEServers() []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range t.conf.STUNServers {
		out = append(out, webrtc.ICEServer{URLs: []string{s}})
	}
	return out
}

// ICEServers returns the STUN and TURN servers peers should use, for WHIP
// Link headers and room join replies.
func (t *Transport) ICEServers() []webrtc.ICEServer { return t.iceServers }

// UDPAddr returns the ICE UDP address.
func (t *Transport) UDPAddr() net.Addr { return t.udpConn.LocalAddr() }

// TCPAddr returns the ICE TCP address, nil when ICE-TCP is off.
func (t *Transport) TCPAddr() net.Addr {
	if t.tcpLn == nil {
		return nil
	}
	return t.tcpLn.Addr()
}

// Close releases the ports. Peer connections must be closed first.
func (t *Transport) Close() error {
	var errs []error
	if t.turn != nil {
		errs = append(errs, t.turn.Close())
	}
	if t.tcpMux != nil {
		errs = append(errs, t.tcpMux.Close())
	} else if t.tcpLn != nil {
		errs = append(errs, t.tcpLn.Close())
	}
	if t.udpMux != nil {
		errs = append(errs, t.udpMux.Close())
	} else if t.udpConn != nil {
		errs = append(errs, t.udpConn.Close())
	}
	return errors.Join(errs...)
}
