package sfu

import (
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// nackHistory is how many sent video packets a WHEP viewer can have
// resent: ≈ 3 s at 2.5 Mbit/s. An entry points at the feed's shared
// packet, so the history costs ≈ 40 bytes per entry per viewer instead of
// a copy of every packet (pion's NACK responder keeps 1024 copies of up to
// 1.5 KB per stream and viewer).
const nackHistory = 1024

// outTrack is one outgoing track of a WHEP viewer. It writes the feed's
// shared payloads with the viewer's own header straight to the bound
// RTP writer (interceptors, SRTP, UDP): no per-packet copy or allocation,
// and it answers NACKs from its history of those shared packets.
//
// The embedded TrackLocalStaticRTP only does codec matching in Bind and
// names the track; its own write path is not used.
type outTrack struct {
	*webrtc.TrackLocalStaticRTP
	bound chan struct{} // closed once Bind succeeded
	once  sync.Once

	// Set by Bind before bound is closed; read by writers after.
	w    webrtc.TrackLocalWriter
	ssrc uint32
	pt   uint8

	// Guarded by the viewer's mu, like every write.
	hdr  rtp.Header
	seq  uint16
	hist []sentPacket // nil: no NACK answers (audio)
	// Timestamps go out as the source's plus tsOffset, which splice moves
	// when the viewer changes renditions so they never step back; lastTS
	// is the last one sent, frameTicks the step between the last two
	// pictures.
	tsOffset, lastTS, frameTicks uint32
	sentAny                      bool

	resent uint64
}

// sentPacket is one history entry: a packet as sent under seq.
type sentPacket struct {
	seq     uint16
	ok      bool
	resends uint8
	last    time.Time // of the last resend
	p       packet
}

// A packet is resent at most nackMaxResends times, nackMinInterval apart.
// A peer that keeps asking (its SRTP replay window refuses a resend that
// arrives too late, or it is overloaded) would otherwise turn its NACKs
// into a retransmission storm that starves every viewer.
const (
	nackMaxResends  = 2
	nackMinInterval = 20 * time.Millisecond
)

func newOutTrack(c webrtc.RTPCodecCapability, id, streamID string, nack bool) (*outTrack, error) {
	t, err := webrtc.NewTrackLocalStaticRTP(c, id, streamID)
	if err != nil {
		return nil, err
	}
	o := &outTrack{TrackLocalStaticRTP: t, bound: make(chan struct{})}
	if nack {
		o.hist = make([]sentPacket, nackHistory)
	}
	return o, nil
}

// Bind implements webrtc.TrackLocal. A WHEP peer connection binds each
// track once.
func (o *outTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	p, err := o.TrackLocalStaticRTP.Bind(ctx)
	if err != nil {
		return p, err
	}
	o.once.Do(func() {
		o.w = ctx.WriteStream()
		o.ssrc = uint32(ctx.SSRC())
		o.pt = uint8(p.PayloadType)
		close(o.bound)
	})
	return p, nil
}

func (o *outTrack) isBound() bool {
	select {
	case <-o.bound:
		return true
	default:
		return false
	}
}

// write sends p as the next packet of the track. Caller holds the
// viewer's mu.
func (o *outTrack) write(p *packet) {
	if !o.isBound() {
		return
	}
	o.seq++
	q := *p
	q.ts += o.tsOffset
	if o.sentAny && q.ts != o.lastTS {
		o.frameTicks = q.ts - o.lastTS
	}
	o.lastTS, o.sentAny = q.ts, true
	if o.hist != nil {
		// As sent: a resend keeps the timestamp the peer saw.
		o.hist[o.seq%nackHistory] = sentPacket{seq: o.seq, ok: true, p: q}
	}
	o.send(o.seq, &q)
}

// maxTSJump is the largest forward step of the timestamps a rendition
// switch may make (1 s at 90 kHz): renditions of one source share its
// clock, a rung lagging by its encode time, but a rendition published
// apart may count from anywhere.
const maxTSJump = 90000

// splice makes the next packet, whose source timestamp is ts, follow the
// last one sent: a rendition switch. A timestamp at or before the last
// sent, or more than maxTSJump after it, moves the offset so the picture
// comes one picture step after the last. Caller holds the viewer's mu.
func (o *outTrack) splice(ts uint32) {
	if !o.sentAny {
		return
	}
	if d := int32(ts + o.tsOffset - o.lastTS); d > 0 && d <= maxTSJump {
		return
	}
	step := o.frameTicks
	if step == 0 || step > maxTSJump {
		step = 90000 / 30
	}
	o.tsOffset = o.lastTS + step - ts
}

func (o *outTrack) send(seq uint16, p *packet) {
	h := &o.hdr
	h.Version = 2
	h.PayloadType = o.pt
	h.SSRC = o.ssrc
	h.SequenceNumber = seq
	h.Timestamp = p.ts
	h.Marker = p.marker
	// An interceptor may have added an extension (TWCC) last time; it adds
	// it again with the new value.
	h.Extension = false
	h.Extensions = h.Extensions[:0]
	_, _ = o.w.WriteRTP(h, p.payload)
}

// resend answers a NACK from the history: each lost packet still held is
// sent again under its sequence number. It returns how many were sent.
// Caller holds the viewer's mu.
func (o *outTrack) resend(n *rtcp.TransportLayerNack) int {
	if o.hist == nil || n.MediaSSRC != o.ssrc || !o.isBound() {
		return 0
	}
	sent := 0
	now := time.Now()
	for _, pair := range n.Nacks {
		pair.Range(func(seq uint16) bool {
			e := &o.hist[seq%nackHistory]
			if e.ok && e.seq == seq && e.resends < nackMaxResends && now.Sub(e.last) >= nackMinInterval {
				e.resends++
				e.last = now
				o.send(seq, &e.p)
				sent++
			}
			return true
		})
	}
	o.resent += uint64(sent)
	return sent
}
