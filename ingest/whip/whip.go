// Package whip is LiveEngine's WHIP ingest (RFC 9725): OBS 30+ and
// browsers publish H.264 and Opus over WebRTC with one HTTP POST, and the
// stream enters the engine like an RTMP one.
//
//	POST   /whip/STREAM_KEY        (or /whip/ with "Authorization: Bearer STREAM_KEY")
//	       Content-Type: application/sdp, body: the offer
//	       → 201 Created, Location: /whip/session/ID, body: the answer
//	PATCH  /whip/session/ID        trickle ICE (application/trickle-ice-sdpfrag) → 204
//	DELETE /whip/session/ID        ends the publish → 200
//
// An unknown or revoked key gets 403 before any SDP is looked at; a stream
// already live gets 409; a broken offer 400; a body over max_sdp_bytes 413.
package whip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/sfu"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// Config configures WHIP ingest; it is the `whip:` section of the YAML file.
type Config struct {
	// MaxSDPBytes bounds the offer and trickle bodies; larger ones get 413.
	MaxSDPBytes int `yaml:"max_sdp_bytes"`
	// ConnectTimeout ends a session whose ICE does not connect in time, so
	// a claimed stream key is not held by a peer that never arrives.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{MaxSDPBytes: 64 << 10, ConnectTimeout: 30 * time.Second}
}

// Validate checks the configuration; errors name the offending key.
func (c Config) Validate() error {
	if c.MaxSDPBytes < 4096 {
		return fmt.Errorf("whip.max_sdp_bytes: %d is below 4096", c.MaxSDPBytes)
	}
	if c.ConnectTimeout <= 0 {
		return fmt.Errorf("whip.connect_timeout: must be positive")
	}
	return nil
}

// Server is the WHIP endpoint.
type Server struct {
	conf Config
	eng  *engine.Engine
	tr   *sfu.Transport
	log  *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	wg       sync.WaitGroup
}

// New builds the WHIP endpoint on the SFU's transport (tr is
// (*sfu.SFU).Transport()), so WHIP shares the one ICE port.
func New(conf Config, eng *engine.Engine, tr *sfu.Transport, log *slog.Logger) (*Server, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if eng == nil || tr == nil {
		return nil, errors.New("whip: nil engine or transport")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Server{conf: conf, eng: eng, tr: tr, log: log.With("component", "whip"), sessions: map[string]*session{}}, nil
}

// Start does nothing yet: WHIP has no background work of its own. It is
// there for the component lifecycle.
func (s *Server) Start() error { return nil }

// Close ends every publish and waits for the sessions' goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	all := make([]*session, 0, len(s.sessions))
	for _, x := range s.sessions {
		all = append(all, x)
	}
	s.mu.Unlock()
	for _, x := range all {
		x.close("server closing")
	}
	s.wg.Wait()
}

// Handle serves /whip/.
func (s *Server) Handle(ctx *fasthttp.RequestCtx) {
	if sfu.CORS(ctx) {
		return
	}
	rest := strings.TrimPrefix(strings.TrimPrefix(string(ctx.Path()), "/whip"), "/")
	if id, ok := strings.CutPrefix(rest, "session/"); ok {
		s.handleSession(ctx, id)
		return
	}
	if !ctx.IsPost() {
		sfu.HTTPError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("POST an SDP offer to /whip/STREAM_KEY"))
		return
	}
	key := rest
	if key == "" {
		auth := string(ctx.Request.Header.Peek("Authorization"))
		if tok, ok := strings.CutPrefix(auth, "Bearer "); ok {
			key = strings.TrimSpace(tok)
		}
	}
	if key == "" {
		sfu.HTTPError(ctx, fasthttp.StatusUnauthorized, errors.New("no stream key: POST to /whip/STREAM_KEY or send Authorization: Bearer STREAM_KEY"))
		return
	}
	remote := ctx.RemoteAddr().String()
	// Authorization comes first: nothing of an unknown publisher's
	// request is parsed.
	pub, err := s.eng.Authorize(ctx, engine.PublishRequest{Key: key, Protocol: "whip", Remote: remote})
	if err != nil {
		status := fasthttp.StatusInternalServerError
		switch {
		case errors.Is(err, engine.ErrUnknownKey), errors.Is(err, engine.ErrKeyRevoked):
			status = fasthttp.StatusForbidden
		case errors.Is(err, engine.ErrStreamBusy):
			status = fasthttp.StatusConflict
		case errors.Is(err, engine.ErrClosed):
			status = fasthttp.StatusServiceUnavailable
		}
		sfu.HTTPError(ctx, status, err)
		return
	}
	body, ok := sfu.ReadSDPBody(ctx, s.conf.MaxSDPBytes, "application/sdp")
	if !ok {
		pub.Close()
		return
	}
	offer, hasVideo, hasAudio, err := sfu.ParseOffer(body)
	if err != nil {
		pub.Close()
		sfu.HTTPError(ctx, fasthttp.StatusBadRequest, err)
		return
	}
	x, answer, err := s.newSession(pub, offer, hasVideo, hasAudio, remote)
	if err != nil {
		status := fasthttp.StatusInternalServerError
		if errors.Is(err, sfu.ErrBadSDP) {
			status = fasthttp.StatusBadRequest
		}
		sfu.HTTPError(ctx, status, err)
		return
	}
	sfu.WriteAnswer(ctx, "/whip/session/"+x.id, answer, s.tr.ICEServers())
}

func (s *Server) handleSession(ctx *fasthttp.RequestCtx, id string) {
	s.mu.Lock()
	x := s.sessions[id]
	s.mu.Unlock()
	if x == nil {
		sfu.HTTPError(ctx, fasthttp.StatusNotFound, fmt.Errorf("whip session %q: %w", id, sfu.ErrSessionNotFound))
		return
	}
	switch {
	case ctx.IsDelete():
		x.close("deleted by the publisher")
		ctx.SetStatusCode(fasthttp.StatusOK)
	case string(ctx.Method()) == fasthttp.MethodPatch:
		body, ok := sfu.ReadSDPBody(ctx, s.conf.MaxSDPBytes, "application/trickle-ice-sdpfrag")
		if !ok {
			return
		}
		if err := sfu.Trickle(x.pc, body); err != nil {
			sfu.HTTPError(ctx, fasthttp.StatusBadRequest, err)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		sfu.HTTPError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("PATCH (trickle ICE) or DELETE a session"))
	}
}

// session is one WHIP publish.
type session struct {
	srv     *Server
	id      string
	pub     *engine.Publisher
	pc      *webrtc.PeerConnection
	ingest  *sfu.Ingest
	log     *slog.Logger
	created time.Time
	once    sync.Once
	done    chan struct{}
	// unregister removes the session from the transport's keyframe sources.
	unregister func()
}

func (s *Server) newSession(pub *engine.Publisher, offer webrtc.SessionDescription, hasVideo, hasAudio bool, remote string) (*session, *webrtc.SessionDescription, error) {
	pc, _, err := s.tr.NewPeerConnection(false)
	if err != nil {
		pub.Close()
		return nil, nil, err
	}
	id := sfu.NewSessionID()
	x := &session{
		srv: s, id: id, pub: pub, pc: pc,
		log:     s.log.With("whip", id, "stream", pub.StreamID(), "remote", remote),
		created: time.Now(),
		done:    make(chan struct{}),
	}
	x.ingest = sfu.NewIngest(pub, hasVideo, hasAudio, x.log)
	// WHEP viewers that lose a picture ask this publisher for a keyframe.
	x.unregister = s.tr.RegisterKeyframeSource(pub.StreamID(), x.ingest.KeyframeRequest)
	fail := func(err error) (*session, *webrtc.SessionDescription, error) {
		x.unregister()
		_ = pc.Close()
		pub.Close()
		return nil, nil, err
	}
	for _, k := range []struct {
		has  bool
		kind webrtc.RTPCodecType
	}{{hasVideo, webrtc.RTPCodecTypeVideo}, {hasAudio, webrtc.RTPCodecTypeAudio}} {
		if !k.has {
			continue
		}
		if _, err := pc.AddTransceiverFromKind(k.kind, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
			return fail(fmt.Errorf("add %s transceiver: %w", k.kind, err))
		}
	}
	pc.OnTrack(x.onTrack)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			x.log.Info("whip connected")
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go x.close("connection " + st.String())
		}
	})
	answer, err := sfu.Answer(pc, offer)
	if err != nil {
		return fail(err)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fail(engine.ErrClosed)
	}
	s.sessions[id] = x
	s.wg.Add(1)
	s.mu.Unlock()
	s.tr.Metrics().PeerOpened(sfu.PeerWHIP)
	go x.watch()
	x.log.Info("whip session started", "video", hasVideo, "audio", hasAudio)
	return x, answer, nil
}

// watch ends the session when the engine kicks the publisher or ICE never
// connects.
func (x *session) watch() {
	defer x.srv.wg.Done()
	timer := time.NewTimer(x.srv.conf.ConnectTimeout)
	defer timer.Stop()
	for {
		select {
		case <-x.done:
			return
		case <-x.pub.Context().Done():
			x.close(fmt.Sprint("publisher stopped: ", context.Cause(x.pub.Context())))
			return
		case <-timer.C:
			if x.pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
				x.close("ICE did not connect")
				return
			}
		}
	}
}

func (x *session) onTrack(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
	mime := strings.ToLower(t.Codec().MimeType)
	m := x.srv.tr.Metrics()
	switch mime {
	case strings.ToLower(webrtc.MimeTypeH264):
		x.ingest.SetKeyframeRequester(func() {
			_ = x.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.SSRC())}})
		})
		for {
			pkt, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			m.Received(1, len(pkt.Payload))
			x.ingest.WriteVideo(pkt)
		}
	case strings.ToLower(webrtc.MimeTypeOpus):
		for {
			pkt, _, err := t.ReadRTP()
			if err != nil {
				return
			}
			m.Received(1, len(pkt.Payload))
			x.ingest.WriteAudio(pkt)
		}
	default:
		x.log.Warn("whip track ignored: only H.264 and Opus are taken", "codec", t.Codec().MimeType)
	}
}

func (x *session) close(reason string) {
	x.once.Do(func() {
		close(x.done)
		x.unregister()
		units, keys := x.ingest.Close()
		_ = x.pc.Close()
		x.pub.Close()
		s := x.srv
		s.mu.Lock()
		delete(s.sessions, x.id)
		s.mu.Unlock()
		s.tr.Metrics().PeerClosed(sfu.PeerWHIP)
		x.log.Info("whip session closed", "reason", reason, "units", units, "keyframes", keys,
			"duration", time.Since(x.created).Round(time.Millisecond).String())
	})
}
