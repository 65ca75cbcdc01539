package sfu

import (
	"strings"
	"sync"

	"github.com/liveengine/liveengine/engine"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// liveOutput makes a live room an engine stream: the first host's H.264
// camera (or screen) and first audio track go through an Ingest into the
// stream "room-NAME/source" (group "room-NAME"), so the room plays over
// WHEP at /whep/room-NAME and gets HLS and the ladder. There is no
// compositing: other hosts are seen only by room participants.
type liveOutput struct {
	mu     sync.Mutex
	pub    *engine.Publisher
	ingest *Ingest
	video  *roomTrack
	audio  *roomTrack
	// unregister removes the ingest from the keyframe sources.
	unregister func()
}

// feedLive picks t for the room's engine stream when the slot of its kind
// is free and it comes from the host already chosen (or no host yet).
func (r *Room) feedLive(t *roomTrack) {
	isVideo := t.remote.Kind() == webrtc.RTPCodecTypeVideo
	if isVideo && !strings.EqualFold(t.remote.Codec().MimeType, webrtc.MimeTypeH264) {
		return
	}
	if !isVideo && !strings.EqualFold(t.remote.Codec().MimeType, webrtc.MimeTypeOpus) {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		r.live = &liveOutput{}
	}
	lo := r.live
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.video != nil && lo.video.owner != t.owner || lo.audio != nil && lo.audio.owner != t.owner {
		return
	}
	if isVideo && lo.video == nil {
		lo.video = t
	} else if !isVideo && lo.audio == nil {
		lo.audio = t
	} else {
		return
	}
	if lo.pub == nil {
		pub, err := r.x.eng.PublishRendition("room-"+r.name, "source")
		if err != nil {
			r.log.Warn("room stream not published", "error", err)
			lo.video, lo.audio = nil, nil
			return
		}
		lo.pub = pub
		// The stream goes live at the host's first keyframe; a host that
		// sends audio only does not make a room stream.
		lo.ingest = NewIngest(pub, true, true, r.log.With("stream", pub.StreamID()))
		lo.unregister = r.x.tr.RegisterKeyframeSource(pub.StreamID(), lo.ingest.KeyframeRequest)
		r.log.Info("room stream started", "stream", pub.StreamID(), "host", t.owner.info.Identity)
	}
	if isVideo {
		tr := t
		lo.ingest.SetKeyframeRequester(func() {
			tr.lastPLI.Store(0)
			tr.requestKeyframe()
		})
	}
}

// liveFor returns the room's live output if t feeds it.
func (r *Room) liveFor(t *roomTrack) *liveOutput {
	if r.kind != RoomLive {
		return nil
	}
	r.mu.Lock()
	lo := r.live
	r.mu.Unlock()
	if lo == nil {
		return nil
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.video == t || lo.audio == t {
		return lo
	}
	return nil
}

// write hands one packet to the ingest; the ingest keeps packets, so this
// is the one place a room packet is copied.
func (lo *liveOutput) write(t *roomTrack, pkt *rtp.Packet, raw []byte) {
	cp := &rtp.Packet{}
	if err := cp.Unmarshal(append([]byte(nil), raw...)); err != nil {
		return
	}
	if t.remote.Kind() == webrtc.RTPCodecTypeVideo {
		lo.ingest.WriteVideo(cp)
	} else {
		lo.ingest.WriteAudio(cp)
	}
}

// stopLive ends the room stream when one of its tracks ends.
func (r *Room) stopLive(t *roomTrack) {
	r.mu.Lock()
	lo := r.live
	if lo != nil && (lo.video == t || lo.audio == t) {
		r.live = nil
	} else {
		lo = nil
	}
	r.mu.Unlock()
	if lo == nil {
		return
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.unregister != nil {
		lo.unregister()
	}
	if lo.ingest != nil {
		lo.ingest.Close()
	}
	if lo.pub != nil {
		lo.pub.Close()
		r.log.Info("room stream stopped", "stream", lo.pub.StreamID())
	}
}
