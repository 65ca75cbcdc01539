package sfu

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/pion/interceptor/pkg/cc"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
	"github.com/valyala/fasthttp"
)

// viewer is one WHEP playback session: a peer connection with a video and
// an audio track, fed by the feed of the rendition it watches (video) and
// the feed of the source (Opus audio).
type viewer struct {
	x       *SFU
	id      string
	group   string
	stream  *engine.Stream // counted as a viewer of this stream
	pc      *webrtc.PeerConnection
	video   *outTrack
	audio   *outTrack
	bwe     cc.BandwidthEstimator
	pinned  bool
	log     *slog.Logger
	created time.Time

	mu           sync.Mutex
	cur          *feed // video comes from here
	pending      *feed // rendition switched to at its next keyframe
	pendingSince time.Time
	audioFeed    *feed
	subs         []*feed // feeds this viewer holds a reference on
	started      bool
	closed       bool
	lastBWE      int64
	// catchUp holds what the viewer still has to get, in order, while the
	// cached GOP is replayed at a bounded rate (see startCatchUp); live
	// packets queue behind it. catchingUp is false in the steady state.
	catchUp    []queued
	catchingUp bool
	lastVTS    uint32 // source timestamp of the last video packet sent
	lastNTP    int64  // its wall-clock time (packet.ntp)

	done      chan struct{}
	closeOnce sync.Once
	firstRTCP chan struct{}
	rtcpOnce  sync.Once
}

// write sends the packets of one unit that came from feed f. Called with
// f.mu held. Nothing is allocated here: the payloads are the feed's.
func (v *viewer) write(f *feed, pkts []packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	if v.catchingUp {
		if len(v.catchUp)+len(pkts) > catchUpMax {
			// The viewer cannot catch up (a very long GOP, or it
			// stalls): drop the backlog and start at the next keyframe.
			v.catchUp, v.catchingUp, v.started = nil, false, false
		} else {
			for i := range pkts {
				v.catchUp = append(v.catchUp, queued{f: f, p: pkts[i]})
			}
			return
		}
	}
	var n, bytes int
	for i := range pkts {
		if v.sendLocked(f, &pkts[i]) {
			n++
			bytes += len(pkts[i].payload)
		}
	}
	v.count(n, bytes)
}

func (v *viewer) count(n, bytes int) {
	if n > 0 {
		m := &v.x.tr.metrics
		m.packetsOut.Add(uint64(n))
		m.bytesOut.Add(uint64(bytes))
	}
}

// sendLocked sends one packet of feed f if the viewer takes it from f, and
// reports whether it did.
func (v *viewer) sendLocked(f *feed, p *packet) bool {
	if p.audio {
		if f != v.audioFeed || v.audio == nil {
			return false
		}
		v.audio.write(p)
		return true
	}
	if v.video == nil {
		return false
	}
	if f == v.pending && p.key {
		if ok, forced := v.switchPoint(p); ok {
			old := v.cur
			v.cur, v.pending, v.started = f, nil, true
			v.video.splice(p.ts)
			m := &v.x.tr.metrics
			if forced {
				m.switchesForced.Add(1)
			} else {
				m.switches.Add(1)
			}
			v.log.Info("whep rendition switched", "from", old.key, "to", f.key, "bwe", v.lastBWE, "forced", forced)
			go v.unsubscribe(old)
		}
	}
	if f != v.cur {
		return false
	}
	if !v.started {
		if !p.key {
			return false
		}
		v.started = true
	}
	v.lastVTS, v.lastNTP = p.ts, p.ntp
	v.video.write(p)
	return true
}

// switchLag is how far behind what a viewer has seen a keyframe of the
// rendition it switches to may be: a transcoded rung's pictures come its
// encode time after the source's (~64 ms here), while a new feed starts
// with its engine GOP cache, whose keyframe may be a GOP old (switching
// there would show that GOP again). switchWait is the longest a switch
// waits for such a keyframe; then it takes the next one anyway.
const (
	switchLag  = 250 * time.Millisecond
	switchWait = 5 * time.Second
)

// switchPoint says whether p, a keyframe of the pending rendition, is where
// the viewer switches, and whether only switchWait made it one. Renditions
// with wall-clock times (the source's, kept by the transcoder) compare
// those; others their timestamps, which then must be newer.
func (v *viewer) switchPoint(p *packet) (ok, forced bool) {
	if !v.started {
		return true, false
	}
	if p.ntp != 0 && v.lastNTP != 0 {
		if p.ntp >= v.lastNTP-int64(switchLag) {
			return true, false
		}
	} else if int32(p.ts-v.lastVTS) > 0 {
		return true, false
	}
	if time.Since(v.pendingSince) > switchWait {
		return true, true
	}
	return false, false
}

// queued is a packet waiting in a viewer's catch-up backlog.
type queued struct {
	f *feed
	p packet
}

// Catch-up pacing: a new viewer gets the cached GOP (up to a few seconds
// of video) at catchUpBurst packets per catchUpTick, not in one burst. A
// burst of hundreds of packets overflows the receive buffer of a peer on
// the same host (RcvbufErrors) and the loss cannot be repaired: by the
// time the NACK comes, the peer's SRTP replay window (64 packets in pion)
// has moved past them. 16 packets per ms is still ≈ 150 Mbit/s.
const (
	catchUpBurst = 16
	catchUpTick  = time.Millisecond
	catchUpMax   = gopCacheMax + 1024
)

// startCatchUp queues gop (a feed's cached packets, shared read only) for
// a paced replay. Called with f.mu held, before the viewer is attached to
// f, so the live packets that follow queue behind the replay.
func (v *viewer) startCatchUp(f *feed, gop []packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	if !v.catchingUp {
		v.catchingUp = true
		v.catchUp = make([]queued, 0, len(gop)+64)
		v.x.spawn(v.drainCatchUp)
	}
	for i := range gop {
		v.catchUp = append(v.catchUp, queued{f: f, p: gop[i]})
	}
}

// drainCatchUp sends the backlog at the paced rate until it is empty,
// then the viewer goes live.
func (v *viewer) drainCatchUp() {
	t := time.NewTicker(catchUpTick)
	defer t.Stop()
	for {
		v.mu.Lock()
		if v.closed || !v.catchingUp {
			v.mu.Unlock()
			return
		}
		k := min(catchUpBurst, len(v.catchUp))
		var n, bytes int
		v.x.tr.hold()
		for i := range v.catchUp[:k] {
			q := &v.catchUp[i]
			if v.sendLocked(q.f, &q.p) {
				n++
				bytes += len(q.p.payload)
			}
		}
		v.x.tr.release()
		v.count(n, bytes)
		v.catchUp = v.catchUp[k:]
		if len(v.catchUp) == 0 {
			v.catchUp, v.catchingUp = nil, false
			v.mu.Unlock()
			return
		}
		v.mu.Unlock()
		select {
		case <-t.C:
		case <-v.done:
			return
		}
	}
}

// subscribe takes a reference on the feed of s and attaches the viewer.
func (v *viewer) subscribe(s *engine.Stream, replay bool) (*feed, error) {
	v.mu.Lock()
	for _, f := range v.subs {
		if f.stream == s {
			v.mu.Unlock()
			return f, nil
		}
	}
	v.mu.Unlock()
	f, err := v.x.feed(s)
	if err != nil {
		return nil, err
	}
	v.mu.Lock()
	v.subs = append(v.subs, f)
	v.mu.Unlock()
	if !f.add(v, replay) {
		return nil, fmt.Errorf("stream %q: %w", s.ID(), engine.ErrStreamNotFound)
	}
	return f, nil
}

// unsubscribe drops the viewer's reference on f unless f still feeds it.
func (v *viewer) unsubscribe(f *feed) {
	v.mu.Lock()
	if f == v.cur || f == v.audioFeed || f == v.pending {
		v.mu.Unlock()
		return
	}
	found := false
	for i, x := range v.subs {
		if x == f {
			v.subs = append(v.subs[:i], v.subs[i+1:]...)
			found = true
			break
		}
	}
	v.mu.Unlock()
	if found {
		f.remove(v)
		v.x.releaseFeed(f)
	}
}

func (v *viewer) feedEnded(f *feed) {
	v.mu.Lock()
	needed := f == v.cur || f == v.audioFeed
	if f == v.pending {
		v.pending = nil
	}
	v.mu.Unlock()
	if needed {
		v.log.Info("whep stream ended", "stream", f.key)
		v.close()
		return
	}
	v.unsubscribe(f)
}

func (v *viewer) close() {
	v.closeOnce.Do(func() {
		v.mu.Lock()
		v.closed = true
		subs := v.subs
		v.subs = nil
		v.mu.Unlock()
		close(v.done)
		for _, f := range subs {
			f.remove(v)
			v.x.releaseFeed(f)
		}
		_ = v.pc.Close()
		v.stream.AddViewers(-1)
		m := &v.x.tr.metrics
		m.PeerClosed(PeerWHEP)
		m.tracks.Add(-int64(v.trackCount()))
		m.bwe.Add(-v.lastBWE)
		v.x.sessMu.Lock()
		delete(v.x.sessions, v.id)
		v.x.sessMu.Unlock()
		v.log.Info("whep session closed", "duration", time.Since(v.created).Round(time.Millisecond).String())
	})
}

func (v *viewer) trackCount() int {
	n := 0
	if v.video != nil {
		n++
	}
	if v.audio != nil {
		n++
	}
	return n
}

// readRTCP drains a sender's RTCP (the interceptors answer NACKs from it)
// and counts the feedback.
func (v *viewer) readRTCP(s *webrtc.RTPSender) {
	m := &v.x.tr.metrics
	for {
		pkts, _, err := s.ReadRTCP()
		if err != nil {
			return
		}
		v.rtcpOnce.Do(func() { close(v.firstRTCP) })
		nacked, plis := countFeedback(pkts)
		if nacked+plis > 0 {
			m.Feedback(nacked, plis)
		}
		if nacked > 0 {
			v.answerNACKs(pkts)
		}
		if plis > 0 {
			v.mu.Lock()
			cur := v.cur
			v.mu.Unlock()
			if cur != nil {
				v.x.tr.requestKeyframe(cur.key)
			}
		}
	}
}

// answerNACKs resends the video packets the viewer reports lost (the WHEP
// API has no pion NACK responder: see outTrack).
func (v *viewer) answerNACKs(pkts []rtcp.Packet) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed || v.video == nil {
		return
	}
	v.x.tr.hold()
	n := 0
	for _, p := range pkts {
		if nack, ok := p.(*rtcp.TransportLayerNack); ok {
			n += v.video.resend(nack)
		}
	}
	v.x.tr.release()
	if n > 0 {
		v.x.tr.metrics.retransmits.Add(uint64(n))
	}
}

func countFeedback(pkts []rtcp.Packet) (nacked, plis int) {
	for _, p := range pkts {
		switch p := p.(type) {
		case *rtcp.TransportLayerNack:
			for _, pair := range p.Nacks {
				nacked += len(pair.PacketList())
			}
		case *rtcp.PictureLossIndication, *rtcp.FullIntraRequest:
			plis++
		}
	}
	return nacked, plis
}

// fpsWindow is how many ABR ticks a rendition's frame rate is measured
// over.
const fpsWindow = 3

// abr moves the viewer between the group's renditions from the congestion
// controller's estimate: the best rendition whose bitrate fits in 80 % of
// the estimate, switched at the rendition's next keyframe. A rendition's
// bitrate is the declared one, else measured over the last tick; no
// decision is taken until every rendition has one (a source without a
// declared bitrate would otherwise lose to any declared rung on the first
// tick). A starved rendition, one delivering under half the frames of the
// group's best (a transcoder shedding frames), is no candidate.
func (v *viewer) abr() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	type sample struct {
		bytes, frames uint64
		at            time.Time
	}
	type candidate struct {
		s         *engine.Stream
		rate, fps int64
	}
	last := map[*engine.Stream][]sample{}
	var cands []candidate
	for {
		select {
		case <-v.done:
			return
		case <-t.C:
		}
		est := int64(v.bwe.GetTargetBitrate())
		v.x.tr.metrics.bwe.Add(est - v.lastBWE)
		v.mu.Lock()
		v.lastBWE = est
		cur, pending := v.cur, v.pending
		v.mu.Unlock()
		if pending != nil || cur == nil {
			continue
		}
		now := time.Now()
		cands = cands[:0]
		unknown := false
		var maxFPS int64
		for _, s := range v.x.eng.Renditions(v.group) {
			if s.VideoTrack() < 0 {
				continue
			}
			c := candidate{s: s, rate: int64(s.Tracks()[s.VideoTrack()].Bitrate)}
			h := last[s]
			x := sample{bytes: s.BytesIn(), frames: s.FramesIn(), at: now}
			if len(h) == 0 {
				last[s] = append(h, x)
				unknown = true
				continue
			}
			p, oldest := h[len(h)-1], h[0]
			if len(h) == fpsWindow {
				h = append(h[:0], h[1:]...)
			}
			last[s] = append(h, x)
			dt, span := now.Sub(p.at).Seconds(), now.Sub(oldest.at).Seconds()
			if dt <= 0 || span <= 0 {
				unknown = true
				continue
			}
			if c.rate == 0 {
				c.rate = int64(float64(x.bytes-p.bytes) * 8 / dt)
			}
			// Frame rates over the last few ticks: one second of a
			// jittery source must not make it look starved beside a rung.
			c.fps = int64(float64(x.frames-oldest.frames) / span)
			maxFPS = max(maxFPS, c.fps)
			cands = append(cands, c)
		}
		if unknown {
			continue
		}
		var best, lowest *engine.Stream
		var bestRate, lowRate int64
		for _, c := range cands {
			if c.rate == 0 || c.fps*2 < maxFPS {
				continue
			}
			if lowest == nil || c.rate < lowRate {
				lowest, lowRate = c.s, c.rate
			}
			if c.rate*10 <= est*8 && c.rate > bestRate {
				best, bestRate = c.s, c.rate
			}
		}
		if best == nil {
			best = lowest
		}
		if best == nil || best == cur.stream {
			continue
		}
		f, err := v.subscribe(best, false)
		if err != nil {
			continue
		}
		v.mu.Lock()
		if v.pending == nil && v.cur != f {
			v.pending, v.pendingSince = f, time.Now()
		}
		v.mu.Unlock()
		v.log.Info("whep rendition switch requested", "to", best.ID(), "bwe", est)
	}
}

// resolveStream finds what /whep/ID[/RENDITION] plays. A stream id that is
// not live but names a group (a room, a transcoded source) plays the
// group's first rendition.
func (x *SFU) resolveStream(id, rendition string) (*engine.Stream, bool, error) {
	if rendition != "" {
		s, err := x.eng.Stream(id + "/" + rendition)
		if err != nil && rendition == "source" {
			s, err = x.eng.Stream(id)
		}
		return s, true, err
	}
	s, err := x.eng.Stream(id)
	if err == nil {
		return s, false, nil
	}
	if rs := x.eng.Renditions(id); len(rs) > 0 {
		return rs[0], false, nil
	}
	return nil, false, err
}

// handleWHEP serves POST /whep/STREAM_ID[/RENDITION] and PATCH/DELETE
// /whep/session/ID.
func (x *SFU) handleWHEP(ctx *fasthttp.RequestCtx, rest string) {
	if id, ok := strings.CutPrefix(rest, "session/"); ok {
		x.handleWHEPSession(ctx, id)
		return
	}
	if !ctx.IsPost() {
		HTTPError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("POST an SDP offer to /whep/STREAM_ID"))
		return
	}
	id, rendition, _ := strings.Cut(rest, "/")
	if r := string(ctx.QueryArgs().Peek("rendition")); r != "" {
		rendition = r
	}
	if !engine.ValidKey(id) || (rendition != "" && !engine.ValidKey(rendition)) {
		HTTPError(ctx, fasthttp.StatusNotFound, fmt.Errorf("stream %q: %w", rest, engine.ErrStreamNotFound))
		return
	}
	s, pinned, err := x.resolveStream(id, rendition)
	if err != nil {
		HTTPError(ctx, fasthttp.StatusNotFound, err)
		return
	}
	start, err := x.startBitrate(ctx.QueryArgs().Peek("start_bitrate"))
	if err != nil {
		HTTPError(ctx, fasthttp.StatusBadRequest, err)
		return
	}
	body, ok := ReadSDPBody(ctx, x.conf.MaxSDPBytes, "application/sdp")
	if !ok {
		return
	}
	offer, wantVideo, wantAudio, err := ParseOffer(body)
	if err != nil {
		HTTPError(ctx, fasthttp.StatusBadRequest, err)
		return
	}
	v, answer, err := x.newViewer(s, pinned, offer, wantVideo, wantAudio, start, ctx.RemoteAddr().String())
	if err != nil {
		status := fasthttp.StatusInternalServerError
		switch {
		case errors.Is(err, ErrBadSDP):
			status = fasthttp.StatusBadRequest
		case errors.Is(err, engine.ErrStreamNotFound):
			status = fasthttp.StatusNotFound
		}
		HTTPError(ctx, status, err)
		return
	}
	WriteAnswer(ctx, "/whep/session/"+v.id, answer, x.tr.ICEServers())
}

// startBitrate reads a WHEP request's start_bitrate: where the viewer's
// bandwidth estimate starts (a player that knows its link is slow starts
// low, on a low rendition, instead of learning it from losses). It may be
// 100000 up to webrtc.initial_bitrate; absent, 0 (the configured start).
func (x *SFU) startBitrate(v []byte) (int, error) {
	if len(v) == 0 {
		return 0, nil
	}
	n, err := strconv.Atoi(string(v))
	if err != nil || n < 100_000 || n > x.conf.InitialBitrate {
		return 0, fmt.Errorf("start_bitrate: %q is not a bitrate from 100000 to %d bit/s", v, x.conf.InitialBitrate)
	}
	return n, nil
}

// newViewer sends only the kinds the offer asks for: a track the offer has
// no section for is never negotiated, so it would never be bound and the
// viewer would wait for it forever.
func (x *SFU) newViewer(s *engine.Stream, pinned bool, offer webrtc.SessionDescription, wantVideo, wantAudio bool, startBitrate int, remote string) (*viewer, *webrtc.SessionDescription, error) {
	group := s.Group()
	src := s
	if s.Rendition() != "source" {
		if g, err := x.eng.Stream(group); err == nil {
			src = g
		}
	}
	hasOpus := false
	for _, t := range src.Tracks() {
		// AAC plays as Opus through the stream's shared bridge.
		hasOpus = hasOpus || t.Codec == engine.CodecOpus || t.Codec == engine.CodecAAC
	}
	hasOpus = hasOpus && wantAudio
	useBWE := x.conf.ABR && !pinned && len(x.eng.Renditions(group)) > 1
	pc, bwe, err := x.tr.newViewerPeerConnection(useBWE, startBitrate)
	if err != nil {
		return nil, nil, err
	}
	id := NewSessionID()
	v := &viewer{
		x: x, id: id, group: group, stream: s, pc: pc, bwe: bwe, pinned: pinned,
		log:       x.log.With("whep", id, "stream", s.ID(), "remote", remote),
		created:   time.Now(),
		done:      make(chan struct{}),
		firstRTCP: make(chan struct{}),
	}
	fail := func(err error) (*viewer, *webrtc.SessionDescription, error) {
		_ = pc.Close()
		return nil, nil, err
	}
	var senders []*webrtc.RTPSender
	var bound []*outTrack
	if wantVideo && s.VideoTrack() >= 0 && s.Tracks()[s.VideoTrack()].Codec == engine.CodecH264 {
		v.video, err = newOutTrack(H264Capability, "video", "liveengine-"+group, true)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, v.video)
		snd, err := pc.AddTrack(v.video)
		if err != nil {
			return fail(fmt.Errorf("add video track: %w", err))
		}
		senders = append(senders, snd)
	}
	if hasOpus {
		v.audio, err = newOutTrack(OpusCapability, "audio", "liveengine-"+group, false)
		if err != nil {
			return fail(err)
		}
		bound = append(bound, v.audio)
		snd, err := pc.AddTrack(v.audio)
		if err != nil {
			return fail(fmt.Errorf("add audio track: %w", err))
		}
		senders = append(senders, snd)
	}
	if len(senders) == 0 {
		return fail(fmt.Errorf("%w: stream %q has nothing the offer asks for (offer: video %v, audio %v; the stream plays H.264 video and Opus/AAC audio over WebRTC)", ErrBadSDP, s.ID(), wantVideo, wantAudio))
	}
	answer, err := Answer(pc, offer)
	if err != nil {
		return fail(err)
	}
	for _, snd := range senders {
		x.spawn(func() { v.readRTCP(snd) })
	}
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		v.log.Debug("whep connection state", "state", st.String())
		switch st {
		case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed:
			go v.close()
		case webrtc.PeerConnectionStateConnected:
			v.log.Info("whep connected")
		}
	})

	x.sessMu.Lock()
	x.sessions[id] = v
	x.sessMu.Unlock()
	s.AddViewers(1)
	m := &x.tr.metrics
	m.PeerOpened(PeerWHEP)
	m.tracks.Add(int64(v.trackCount()))

	// Take the feeds and set what they feed before attaching, so the
	// cached GOP replayed on attach is taken by the right track.
	var feeds []*feed
	if v.video != nil {
		f, err := x.feed(s)
		if err != nil {
			v.close()
			return nil, nil, err
		}
		feeds = append(feeds, f)
		v.cur = f
	}
	if hasOpus {
		f := v.cur
		if f == nil || f.stream != src {
			if f, err = x.feed(src); err != nil {
				v.close()
				for _, f := range feeds {
					x.releaseFeed(f)
				}
				return nil, nil, err
			}
			feeds = append(feeds, f)
		}
		v.audioFeed = f
	}
	v.mu.Lock()
	v.subs = append(v.subs, feeds...)
	v.mu.Unlock()
	// Attach once the tracks are bound (DTLS is up): a packet written
	// before goes nowhere, and the replayed keyframe must not be lost.
	x.spawn(func() {
		for _, b := range bound {
			select {
			case <-b.bound:
			case <-v.done:
				return
			}
		}
		// Our side of DTLS finishes a flight before the viewer's: SRTP
		// sent at once can reach a peer not yet able to decrypt it, and a
		// lost keyframe means a frozen picture until the next one. The
		// viewer's first RTCP proves its side is up; a short wait covers
		// peers that send none.
		select {
		case <-v.firstRTCP:
		case <-time.After(500 * time.Millisecond):
		case <-v.done:
			return
		}
		for _, f := range feeds {
			if !f.add(v, true) {
				v.close()
				return
			}
		}
	})
	if bwe != nil {
		x.spawn(v.abr)
	}
	x.spawn(func() {
		select {
		case <-v.done:
		case <-time.After(x.conf.SessionTimeout):
			if pc.ConnectionState() != webrtc.PeerConnectionStateConnected {
				v.log.Warn("whep session never connected, closing")
				v.close()
			}
		}
	})
	v.log.Info("whep session started", "pinned", pinned, "abr", bwe != nil, "audio", v.audio != nil)
	return v, answer, nil
}

func (x *SFU) handleWHEPSession(ctx *fasthttp.RequestCtx, id string) {
	x.sessMu.Lock()
	v := x.sessions[id]
	x.sessMu.Unlock()
	if v == nil {
		HTTPError(ctx, fasthttp.StatusNotFound, fmt.Errorf("whep session %q: %w", id, ErrSessionNotFound))
		return
	}
	switch {
	case ctx.IsDelete():
		v.close()
		ctx.SetStatusCode(fasthttp.StatusOK)
	case string(ctx.Method()) == fasthttp.MethodPatch:
		body, ok := ReadSDPBody(ctx, x.conf.MaxSDPBytes, "application/trickle-ice-sdpfrag")
		if !ok {
			return
		}
		if err := Trickle(v.pc, body); err != nil {
			HTTPError(ctx, fasthttp.StatusBadRequest, err)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusNoContent)
	default:
		HTTPError(ctx, fasthttp.StatusMethodNotAllowed, errors.New("PATCH (trickle ICE) or DELETE a session"))
	}
}

// Trickle adds the candidates of a trickle ICE fragment to pc.
func Trickle(pc *webrtc.PeerConnection, body []byte) error {
	cands, _, err := ParseTrickleFragment(body)
	if err != nil {
		return err
	}
	for _, c := range cands {
		if err := pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("%w: %v", ErrBadTrickle, err)
		}
	}
	return nil
}
