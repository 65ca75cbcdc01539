package sfu

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/websocket"
	"github.com/liveengine/liveengine/engine"
	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// ErrRoomFull is returned when a room has reached its participant limit.
var ErrRoomFull = errors.New("room is full")

// Room is a set of participants that publish tracks and subscribe to each
// other's. Kind "live" also makes the first host's video and audio an
// engine stream ("room-NAME"); kind "call" is a 1:1 or group call.
type Room struct {
	x    *SFU
	name string
	kind string
	log  *slog.Logger

	mu     sync.Mutex
	parts  map[string]*participant
	tracks []*roomTrack // in publish order
	live   *liveOutput
	closed bool
}

// participant is one peer of a room with its signalling WebSocket and its
// one peer connection (publishing and subscribing).
type participant struct {
	room *Room
	info ParticipantInfo
	conn *websocket.Conn
	pc   *webrtc.PeerConnection
	log  *slog.Logger

	writeMu sync.Mutex // one writer at a time on the WebSocket
	// connDone is set (under writeMu) when the handler returns: fasthttp
	// then recycles the hijacked connection, so nobody may touch it.
	connDone bool

	negMu           sync.Mutex // serializes offer/answer work
	needNegotiation bool
	joined          time.Time // when the participant joined
	offered         bool      // the participant has sent an offer of its own
	pendingCands    []webrtc.ICECandidateInit
	sources         map[string]string // track id (msid) -> source, from offers

	mu     sync.Mutex
	subs   map[*roomTrack]*webrtc.RTPSender
	gone   bool
	leftCh chan struct{}
}

// roomTrack is a published track forwarded to the other participants: one
// local track with a binding per subscriber, so one Write reaches them all.
type roomTrack struct {
	info   TrackInfo
	owner  *participant
	remote *webrtc.TrackRemote
	local  *webrtc.TrackLocalStaticRTP
	muted  atomic.Bool
	subs   atomic.Int64
	// lastPLI rate-limits keyframe requests to the publisher.
	lastPLI atomic.Int64
}

func (x *SFU) room(name, kind string) (*Room, error) {
	x.roomsMu.Lock()
	defer x.roomsMu.Unlock()
	if r := x.rooms[name]; r != nil {
		if r.kind != kind {
			return nil, fmt.Errorf("room %q is a %s room, token says %s", name, r.kind, kind)
		}
		return r, nil
	}
	r := &Room{x: x, name: name, kind: kind, parts: map[string]*participant{}, log: x.log.With("room", name, "kind", kind)}
	x.rooms[name] = r
	r.log.Info("room opened")
	return r, nil
}

// handleWS upgrades /rtc/ws and runs the participant's signalling loop.
func (x *SFU) handleWS(ctx *fasthttp.RequestCtx) {
	up := websocket.FastHTTPUpgrader{
		ReadBufferSize: 16 << 10, WriteBufferSize: 16 << 10,
		// Join tokens, not origins, authorize participants.
		CheckOrigin: func(*fasthttp.RequestCtx) bool { return true },
	}
	remote := ctx.RemoteAddr().String()
	x.goMu.Lock()
	if x.closed {
		x.goMu.Unlock()
		HTTPError(ctx, fasthttp.StatusServiceUnavailable, engine.ErrClosed)
		return
	}
	x.wg.Add(1)
	x.goMu.Unlock()
	err := up.Upgrade(ctx, func(c *websocket.Conn) {
		defer x.wg.Done()
		x.serveParticipant(c, remote)
	})
	if err != nil {
		x.wg.Done()
	}
}

func sendMsg(c *websocket.Conn, mu *sync.Mutex, m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	mu.Lock()
	defer mu.Unlock()
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return c.WriteMessage(websocket.TextMessage, b)
}

func (x *SFU) serveParticipant(c *websocket.Conn, remote string) {
	defer c.Close()
	c.SetReadLimit(maxMessageBytes)
	var wmu sync.Mutex
	fail := func(code string, err error) {
		_ = sendMsg(c, &wmu, &Message{Type: MsgError, Code: code, Message: err.Error()})
	}
	// The first message must be a join, within 10 s.
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := c.ReadMessage()
	if err != nil {
		return
	}
	_ = c.SetReadDeadline(time.Time{})
	m, err := ParseClientMessage(b)
	if err != nil {
		fail("bad_message", err)
		return
	}
	if m.Type != MsgJoin {
		fail("not_joined", errors.New("the first message must be a join"))
		return
	}
	claims, err := ParseJoinToken(x.conf.RoomSecret, m.Token)
	if err != nil {
		fail("bad_token", err)
		return
	}
	r, err := x.room(claims.Room, claims.Kind)
	if err != nil {
		fail("room_kind", err)
		return
	}
	pc, _, err := x.tr.NewPeerConnection(false)
	if err != nil {
		fail("internal", err)
		return
	}
	p := &participant{
		room: r, conn: c, pc: pc,
		info:    ParticipantInfo{Identity: claims.Identity, Name: claims.Name, CanPublish: claims.CanPublish},
		log:     r.log.With("participant", claims.Identity, "remote", remote),
		subs:    map[*roomTrack]*webrtc.RTPSender{},
		sources: map[string]string{},
		leftCh:  make(chan struct{}),
		joined:  time.Now(),
	}
	defer func() {
		p.writeMu.Lock()
		p.connDone = true
		p.writeMu.Unlock()
	}()
	if err := r.join(p); err != nil {
		_ = pc.Close()
		code := "join_refused"
		if errors.Is(err, ErrRoomFull) {
			code = "room_full"
		}
		fail(code, err)
		return
	}
	defer r.leave(p, "disconnected")
	p.run()
}

// join admits p, tells it who is there and subscribes it to every track.
func (r *Room) join(p *participant) error {
	max := r.x.conf.MaxRoomParticipants
	if r.kind == RoomCall {
		max = r.x.conf.MaxCallParticipants
	}
	pc := p.pc
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		if c == nil {
			return
		}
		ci := c.ToJSON()
		_ = p.send(&Message{Type: MsgCandidate, Candidate: &ci})
	})
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) { r.publish(p, t) })
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		p.log.Debug("room peer state", "state", s.String())
		if s == webrtc.PeerConnectionStateFailed {
			go r.leave(p, "ice failed")
		}
	})

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return engine.ErrClosed
	}
	if old := r.parts[p.info.Identity]; old != nil {
		r.mu.Unlock()
		return fmt.Errorf("identity %q is already in room %q", p.info.Identity, r.name)
	}
	if len(r.parts) >= max {
		r.mu.Unlock()
		return fmt.Errorf("%w: %d participants", ErrRoomFull, max)
	}
	others := make([]*participant, 0, len(r.parts))
	infos := make([]ParticipantInfo, 0, len(r.parts))
	for _, o := range r.parts {
		others = append(others, o)
		infos = append(infos, o.info)
	}
	r.parts[p.info.Identity] = p
	tracks := append([]*roomTrack(nil), r.tracks...)
	r.mu.Unlock()

	r.x.tr.metrics.PeerOpened(PeerRoom)
	infoCopy := p.info
	tinfos := make([]TrackInfo, 0, len(tracks))
	for _, t := range tracks {
		ti := t.info
		ti.Muted = t.muted.Load()
		tinfos = append(tinfos, ti)
	}
	_ = p.send(&Message{Type: MsgJoined, Room: r.name, Kind: r.kind, Participant: &infoCopy,
		Participants: infos, Tracks: tinfos, ICEServers: r.x.tr.ICEServers()})
	for _, o := range others {
		_ = o.send(&Message{Type: MsgParticipantJoined, Participant: &infoCopy})
	}
	p.log.Info("participant joined", "participants", len(others)+1)
	for _, t := range tracks {
		p.subscribe(t)
	}
	if len(tracks) > 0 {
		p.negotiate()
	}
	return nil
}

// run reads the participant's messages until it leaves.
func (p *participant) run() {
	for {
		_, b, err := p.conn.ReadMessage()
		if err != nil {
			return
		}
		m, err := ParseClientMessage(b)
		if err != nil {
			_ = p.send(&Message{Type: MsgError, Code: "bad_message", Message: err.Error()})
			continue
		}
		switch m.Type {
		case MsgOffer:
			if !p.info.CanPublish {
				// A subscriber may still offer (e.g. to start ICE), but
				// its tracks are refused in publish.
				p.log.Debug("offer from a participant that cannot publish")
			}
			if err := p.onOffer(m); err != nil {
				_ = p.send(&Message{Type: MsgError, Code: "bad_sdp", Message: err.Error()})
			}
		case MsgAnswer:
			if err := p.onAnswer(m); err != nil {
				_ = p.send(&Message{Type: MsgError, Code: "bad_sdp", Message: err.Error()})
			}
		case MsgCandidate:
			p.onCandidate(*m.Candidate)
		case MsgMute:
			p.room.mute(p, m.TrackID, *m.Muted)
		case MsgLeave:
			return
		case MsgJoin:
			_ = p.send(&Message{Type: MsgError, Code: "already_joined", Message: "already joined"})
		}
	}
}

func (p *participant) send(m *Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if p.connDone {
		return net.ErrClosed
	}
	_ = p.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	return p.conn.WriteMessage(websocket.TextMessage, b)
}

// wake ends the handler's blocked read: fasthttp closes hijacked
// connections only when the handler returns, so closing does not.
func (p *participant) wake() {
	p.writeMu.Lock()
	defer p.writeMu.Unlock()
	if !p.connDone {
		_ = p.conn.SetReadDeadline(time.Now())
	}
}

// clientOfferGrace is how long the server holds its first offer to a
// participant that may publish, waiting for that participant's own offer.
const clientOfferGrace = 2 * time.Second

// negotiate sends the participant a new offer, now or, while an exchange
// is under way, once it ends.
func (p *participant) negotiate() {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	p.negotiateLocked()
}

func (p *participant) negotiateLocked() {
	if p.pc.ConnectionState() == webrtc.PeerConnectionStateClosed {
		return
	}
	if p.pc.SignalingState() != webrtc.SignalingStateStable {
		p.needNegotiation = true
		return
	}
	// A participant that may publish usually offers its camera right
	// after joining. Our offer of the others' tracks at the same moment
	// is glare, and pion cannot roll back a local offer, so both sides
	// would wait for an answer forever. Wait for its first offer (its
	// answer is followed by ours) or a grace period.
	if p.info.CanPublish && !p.offered {
		if wait := clientOfferGrace - time.Since(p.joined); wait > 0 {
			if !p.needNegotiation {
				time.AfterFunc(wait, p.negotiate)
			}
			p.needNegotiation = true
			return
		}
	}
	p.needNegotiation = false
	offer, err := p.pc.CreateOffer(nil)
	if err != nil {
		p.log.Warn("create offer", "error", err)
		return
	}
	if err := p.pc.SetLocalDescription(offer); err != nil {
		p.log.Warn("set local offer", "error", err)
		return
	}
	_ = p.send(&Message{Type: MsgOffer, SDP: offer.SDP})
}

// onOffer answers a client offer. The server is the impolite peer (see the
// glare note in PROTOCOL.md).
func (p *participant) onOffer(m *Message) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if _, _, _, err := ParseOffer([]byte(m.SDP)); err != nil {
		return err
	}
	p.offered = true
	if p.pc.SignalingState() == webrtc.SignalingStateHaveLocalOffer {
		// Glare. pion cannot roll back a local offer, so the server is the
		// impolite peer: it keeps its offer, and the client (polite: a
		// browser rolls back) answers it and offers again.
		p.needNegotiation = false
		return p.send(&Message{Type: MsgError, Code: "offer_collision",
			Message: "the server has an offer in flight: answer it, then send your offer again"})
	}
	p.mu.Lock()
	for id, src := range m.Sources {
		p.sources[id] = src
	}
	p.mu.Unlock()
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.flushCandidatesLocked()
	answer, err := p.pc.CreateAnswer(nil)
	if err != nil {
		return fmt.Errorf("create answer: %w", err)
	}
	if err := p.pc.SetLocalDescription(answer); err != nil {
		return fmt.Errorf("set local answer: %w", err)
	}
	if err := p.send(&Message{Type: MsgAnswer, SDP: answer.SDP}); err != nil {
		return err
	}
	if p.needNegotiation {
		p.negotiateLocked()
	}
	return nil
}

func (p *participant) onAnswer(m *Message) error {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.SignalingState() != webrtc.SignalingStateHaveLocalOffer {
		return errors.New("answer without an offer in flight (ignored)")
	}
	if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
		return fmt.Errorf("%w: %v", ErrBadSDP, err)
	}
	p.flushCandidatesLocked()
	if p.needNegotiation {
		p.negotiateLocked()
	}
	return nil
}

func (p *participant) onCandidate(c webrtc.ICECandidateInit) {
	p.negMu.Lock()
	defer p.negMu.Unlock()
	if p.pc.RemoteDescription() == nil {
		p.pendingCands = append(p.pendingCands, c)
		return
	}
	if err := p.pc.AddICECandidate(c); err != nil {
		p.log.Debug("candidate refused", "error", err)
	}
}

func (p *participant) flushCandidatesLocked() {
	for _, c := range p.pendingCands {
		_ = p.pc.AddICECandidate(c)
	}
	p.pendingCands = nil
}

// publish takes a new remote track of p and forwards it to the others.
func (r *Room) publish(p *participant, remote *webrtc.TrackRemote) {
	if !p.info.CanPublish {
		p.log.Warn("track refused: participant cannot publish", "track", remote.ID())
		return
	}
	p.mu.Lock()
	src := p.sources[remote.ID()]
	p.mu.Unlock()
	kind := remote.Kind().String()
	if src == "" {
		src = SourceCamera
		if remote.Kind() == webrtc.RTPCodecTypeAudio {
			src = SourceMicrophone
		}
	}
	id := p.info.Identity + "-" + NewSessionID()[:8]
	local, err := webrtc.NewTrackLocalStaticRTP(remote.Codec().RTPCodecCapability, id, p.info.Identity)
	if err != nil {
		p.log.Warn("track refused", "error", err)
		return
	}
	t := &roomTrack{
		info:  TrackInfo{ID: id, Participant: p.info.Identity, Kind: kind, Source: src},
		owner: p, remote: remote, local: local,
	}
	r.mu.Lock()
	if r.closed || r.parts[p.info.Identity] != p {
		r.mu.Unlock()
		return
	}
	r.tracks = append(r.tracks, t)
	others := r.othersLocked(p)
	r.mu.Unlock()
	p.log.Info("track published", "track", id, "kind", kind, "source", src, "codec", remote.Codec().MimeType)
	ti := t.info
	for _, o := range append(others, p) {
		_ = o.send(&Message{Type: MsgTrackPublished, Track: &ti})
	}
	for _, o := range others {
		o.subscribe(t)
		o.negotiate()
	}
	if r.kind == RoomLive {
		r.feedLive(t)
	}
	t.forward(r)
}

func (r *Room) othersLocked(p *participant) []*participant {
	out := make([]*participant, 0, len(r.parts))
	for _, o := range r.parts {
		if o != p {
			out = append(out, o)
		}
	}
	return out
}

// forward copies the publisher's RTP to every subscriber until the track
// ends. The read buffer is reused and the packet header is unmarshalled in
// place: nothing is allocated per packet.
func (t *roomTrack) forward(r *Room) {
	m := &r.x.tr.metrics
	buf := make([]byte, 1500)
	var pkt rtp.Packet
	for {
		n, _, err := t.remote.Read(buf)
		if err != nil {
			break
		}
		m.Received(1, n)
		if t.muted.Load() {
			continue
		}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		if lo := r.liveFor(t); lo != nil {
			lo.write(t, &pkt, buf[:n])
		}
		subs := t.subs.Load()
		if subs == 0 {
			continue
		}
		// Header extension ids are negotiated per peer connection: the
		// publisher's mean nothing to a subscriber.
		pkt.Extension = false
		pkt.Extensions = pkt.Extensions[:0]
		r.x.tr.hold()
		_ = t.local.WriteRTP(&pkt)
		r.x.tr.release()
		m.packetsOut.Add(uint64(subs))
		m.bytesOut.Add(uint64(subs) * uint64(len(pkt.Payload)))
	}
	r.unpublish(t)
}

// subscribe adds t to p's peer connection; the caller negotiates.
func (p *participant) subscribe(t *roomTrack) {
	p.mu.Lock()
	if p.gone || p.subs[t] != nil {
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	snd, err := p.pc.AddTrack(t.local)
	if err != nil {
		p.log.Warn("subscribe failed", "track", t.info.ID, "error", err)
		return
	}
	p.mu.Lock()
	p.subs[t] = snd
	p.mu.Unlock()
	t.subs.Add(1)
	p.room.x.tr.metrics.tracks.Add(1)
	p.room.x.spawn(func() { p.readSubscriberRTCP(t, snd) })
	t.requestKeyframe()
}

// readSubscriberRTCP drains a subscription's RTCP and forwards keyframe
// requests to the publisher.
func (p *participant) readSubscriberRTCP(t *roomTrack, snd *webrtc.RTPSender) {
	m := &p.room.x.tr.metrics
	for {
		pkts, _, err := snd.ReadRTCP()
		if err != nil {
			return
		}
		nacked, plis := countFeedback(pkts)
		if nacked+plis > 0 {
			m.Feedback(nacked, plis)
		}
		if plis > 0 {
			t.requestKeyframe()
		}
	}
}

// requestKeyframe sends a PLI to the publisher, at most every 500 ms.
func (t *roomTrack) requestKeyframe() {
	if t.remote.Kind() != webrtc.RTPCodecTypeVideo {
		return
	}
	now := time.Now().UnixNano()
	last := t.lastPLI.Load()
	if now-last < int64(500*time.Millisecond) || !t.lastPLI.CompareAndSwap(last, now) {
		return
	}
	_ = t.owner.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(t.remote.SSRC())}})
}

// unpublish removes an ended track from every subscriber.
func (r *Room) unpublish(t *roomTrack) {
	r.mu.Lock()
	found := false
	for i, x := range r.tracks {
		if x == t {
			r.tracks = append(r.tracks[:i], r.tracks[i+1:]...)
			found = true
			break
		}
	}
	parts := make([]*participant, 0, len(r.parts))
	for _, o := range r.parts {
		parts = append(parts, o)
	}
	r.mu.Unlock()
	if !found {
		return
	}
	r.stopLive(t)
	ti := t.info
	for _, o := range parts {
		if o == t.owner {
			_ = o.send(&Message{Type: MsgTrackUnpublished, Track: &ti})
			continue
		}
		o.mu.Lock()
		snd := o.subs[t]
		delete(o.subs, t)
		o.mu.Unlock()
		_ = o.send(&Message{Type: MsgTrackUnpublished, Track: &ti})
		if snd != nil {
			t.subs.Add(-1)
			r.x.tr.metrics.tracks.Add(-1)
			if err := o.pc.RemoveTrack(snd); err == nil {
				o.negotiate()
			}
		}
	}
	t.owner.log.Info("track unpublished", "track", t.info.ID)
}

// mute stops (or resumes) forwarding one of p's tracks and tells everyone.
func (r *Room) mute(p *participant, trackID string, muted bool) {
	r.mu.Lock()
	var t *roomTrack
	for _, x := range r.tracks {
		if x.info.ID == trackID || (x.owner == p && x.remote.ID() == trackID) {
			t = x
			break
		}
	}
	parts := make([]*participant, 0, len(r.parts))
	for _, o := range r.parts {
		parts = append(parts, o)
	}
	r.mu.Unlock()
	if t == nil || (p != nil && t.owner != p) {
		if p != nil {
			_ = p.send(&Message{Type: MsgError, Code: "unknown_track", Message: fmt.Sprintf("no track %q of yours", trackID)})
		}
		return
	}
	t.muted.Store(muted)
	if !muted {
		t.lastPLI.Store(0)
		t.requestKeyframe()
	}
	ti := t.info
	ti.Muted = muted
	for _, o := range parts {
		_ = o.send(&Message{Type: MsgTrackMuted, Track: &ti})
	}
}

// muteCommand obeys the engine bus command "mute": stream_id names the room
// ("NAME" or "room-NAME") and participant the identity whose tracks are
// muted.
func (x *SFU) muteCommand(c engine.Command) {
	name := strings.TrimPrefix(c.StreamID, "room-")
	x.roomsMu.Lock()
	r := x.rooms[name]
	x.roomsMu.Unlock()
	if r == nil {
		return
	}
	r.mu.Lock()
	var ids []string
	for _, t := range r.tracks {
		if t.owner.info.Identity == c.Participant {
			ids = append(ids, t.info.ID)
		}
	}
	r.mu.Unlock()
	for _, id := range ids {
		r.mute(nil, id, true)
	}
	r.log.Info("participant muted by command", "participant", c.Participant, "tracks", len(ids), "reason", c.Reason)
}

// leave removes p: its tracks are unpublished, the others are told.
func (r *Room) leave(p *participant, reason string) {
	r.mu.Lock()
	if r.parts[p.info.Identity] != p {
		r.mu.Unlock()
		return
	}
	delete(r.parts, p.info.Identity)
	var own []*roomTrack
	for _, t := range r.tracks {
		if t.owner == p {
			own = append(own, t)
		}
	}
	empty := len(r.parts) == 0
	r.mu.Unlock()

	p.mu.Lock()
	p.gone = true
	subs := len(p.subs)
	for t := range p.subs {
		t.subs.Add(-1)
	}
	p.subs = nil
	p.mu.Unlock()
	r.x.tr.metrics.tracks.Add(-int64(subs))
	for _, t := range own {
		r.unpublish(t)
	}
	_ = p.pc.Close()
	r.x.tr.metrics.PeerClosed(PeerRoom)
	info := p.info
	r.mu.Lock()
	others := r.othersLocked(p)
	r.mu.Unlock()
	for _, o := range others {
		_ = o.send(&Message{Type: MsgParticipantLeft, Participant: &info})
	}
	p.log.Info("participant left", "reason", reason)
	p.wake()
	if empty {
		r.x.roomsMu.Lock()
		r.mu.Lock()
		if len(r.parts) == 0 && r.x.rooms[r.name] == r {
			delete(r.x.rooms, r.name)
			r.closed = true
		}
		r.mu.Unlock()
		r.x.roomsMu.Unlock()
		r.log.Info("room closed")
	}
}

// close ends the room: every participant is disconnected.
func (r *Room) close() {
	r.mu.Lock()
	parts := make([]*participant, 0, len(r.parts))
	for _, p := range r.parts {
		parts = append(parts, p)
	}
	r.mu.Unlock()
	for _, p := range parts {
		r.leave(p, "server closing")
	}
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}
