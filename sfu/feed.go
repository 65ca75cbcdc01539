package sfu

import (
	"sync"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/transcode"
)

// mtu is the largest RTP payload the SFU sends: 1200 bytes keep the SRTP
// packet inside any path MTU, TURN and TCP framing included.
const mtu = 1200

// gopCacheMax bounds the packets a feed keeps for viewers that join
// mid-GOP; a longer GOP makes new viewers wait for the next keyframe.
const gopCacheMax = 8192

// packet is one RTP payload packetized once per stream and shared, read
// only, by every viewer of the stream.
type packet struct {
	payload []byte
	ts      uint32
	marker  bool
	audio   bool
	key     bool // first packet of a video keyframe
	// ntp is the picture's wall-clock time (engine.Unit.NTP) in Unix
	// nanoseconds, 0 if unknown: renditions of one source share it (the
	// transcoder keeps the source's), so it says how far behind what a
	// viewer has seen another rendition's keyframe is.
	ntp int64
}

// feed reads one engine stream with a single engine reader, packetizes
// each unit once and hands the packets to every viewer of the stream.
// Packetizing once per stream instead of once per viewer is what keeps
// the per-viewer cost at a header rewrite and an SRTP write.
type feed struct {
	sfu      *SFU
	key      string
	stream   *engine.Stream
	video    *engine.Track
	videoIdx int
	audioIdx int // Opus track, -1 if none
	aacIdx   int // AAC track bridged to Opus when there is no Opus track, -1 if none
	reader   *engine.Reader
	// bridge converts AAC to Opus once per stream, shared by all viewers;
	// used on the reader's goroutine only.
	bridge     *transcode.AudioBridge
	emitOpus   func(*engine.Unit)
	bridgeErrs uint64

	mu      sync.Mutex // guards the fields below; held while fanning out a unit
	viewers []*viewer
	gop     []packet
	gopOK   bool
	refs    int
	closed  bool
	pkts    []packet     // scratch of one unit
	payload []rtpPayload // scratch of one unit
}

// feed returns the shared feed of s, creating it on first use; release it
// with releaseFeed.
func (x *SFU) feed(s *engine.Stream) (*feed, error) {
	x.feedsMu.Lock()
	defer x.feedsMu.Unlock()
	if f := x.feeds[s.ID()]; f != nil && f.stream == s {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		return f, nil
	}
	f := &feed{sfu: x, key: s.ID(), stream: s, videoIdx: -1, audioIdx: -1, aacIdx: -1, refs: 1}
	for i, t := range s.Tracks() {
		switch {
		case t.Codec == engine.CodecH264 && f.videoIdx < 0:
			f.videoIdx, f.video = i, t
		case t.Codec == engine.CodecOpus && f.audioIdx < 0:
			f.audioIdx = i
		case t.Codec == engine.CodecAAC && f.aacIdx < 0:
			f.aacIdx = i
		}
	}
	if f.audioIdx >= 0 {
		f.aacIdx = -1
	} else if f.aacIdx >= 0 {
		b, err := transcode.NewAudioBridge(s.Tracks()[f.aacIdx], engine.CodecOpus)
		if err != nil {
			x.log.Warn("webrtc viewers get no audio: aac bridge failed", "stream", s.ID(), "error", err)
			f.aacIdx = -1
		} else {
			f.bridge = b
			f.emitOpus = f.sendOpus
		}
	}
	r, err := s.AddReader(engine.ReaderOptions{Name: "webrtc feed " + s.ID(), Kind: "webrtc"}, f.onUnit, f.onEnd)
	if err != nil {
		return nil, err
	}
	f.reader = r
	x.feeds[s.ID()] = f
	return f, nil
}

func (x *SFU) releaseFeed(f *feed) {
	x.feedsMu.Lock()
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last && x.feeds[f.key] == f {
		delete(x.feeds, f.key)
	}
	x.feedsMu.Unlock()
	if last {
		f.reader.Close()
	}
}

// add attaches v. With replay, v first gets the cached GOP so it starts
// at once; a viewer switching renditions joins without replay and takes
// the next keyframe, so its timestamps never go back.
func (f *feed) add(v *viewer, replay bool) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	if replay && f.gopOK && len(f.gop) > 0 {
		// f.gop only grows in place or is replaced: the prefix is stable.
		v.startCatchUp(f, f.gop[:len(f.gop):len(f.gop)])
	}
	f.viewers = append(f.viewers, v)
	return true
}

func (f *feed) remove(v *viewer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, x := range f.viewers {
		if x == v {
			f.viewers = append(f.viewers[:i], f.viewers[i+1:]...)
			f.viewers[len(f.viewers):cap(f.viewers)][0] = nil
			return
		}
	}
}

func (f *feed) onUnit(u *engine.Unit) {
	switch u.Track {
	case f.videoIdx:
		f.onVideo(u)
	case f.audioIdx:
		f.sendOpus(u)
	case f.aacIdx:
		if err := f.bridge.Convert(u, f.emitOpus); err != nil {
			f.bridgeErrs++
			if f.bridgeErrs == 1 || f.bridgeErrs%1000 == 0 {
				f.sfu.log.Warn("aac to opus failed", "stream", f.key, "error", err, "count", f.bridgeErrs)
			}
		}
	}
}

func (f *feed) sendOpus(u *engine.Unit) {
	if len(u.Payload) == 0 {
		return
	}
	ts := uint32(u.PTS * 48000 / time.Second)
	f.mu.Lock()
	f.pkts = append(f.pkts[:0], packet{payload: u.Payload, ts: ts, marker: true, audio: true})
	f.fanOutLocked(u, false)
	f.mu.Unlock()
}

func (f *feed) onVideo(u *engine.Unit) {
	var sps, pps []byte
	if u.Key {
		sps, pps = f.video.SPS, f.video.PPS
		for _, n := range u.NALUs {
			if len(n) > 0 && n[0]&0x1f == naluSPS {
				sps, pps = nil, nil // in-band parameter sets come with the unit
				break
			}
		}
		if len(sps) == 0 || len(pps) == 0 {
			sps, pps = nil, nil
		}
	}
	// FU-A fragments need a copy with their headers; one allocation per
	// picture, shared by every viewer. Small NAL units alias the unit.
	var slab []byte
	if n := fuaSize(u.NALUs, mtu); n > 0 {
		slab = make([]byte, 0, n)
	}
	ts := uint32(u.PTS * 90000 / time.Second)
	var ntp int64
	if !u.NTP.IsZero() {
		ntp = u.NTP.UnixNano()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.payload, _ = packetizeH264(f.payload[:0], slab, u.NALUs, sps, pps, mtu)
	f.pkts = f.pkts[:0]
	for i, p := range f.payload {
		f.pkts = append(f.pkts, packet{payload: p.data, ts: ts, marker: p.marker, key: u.Key && i == 0, ntp: ntp})
	}
	f.fanOutLocked(u, u.Key)
}

func (f *feed) fanOutLocked(u *engine.Unit, key bool) {
	if len(f.pkts) == 0 {
		return
	}
	if f.videoIdx >= 0 {
		if key {
			// A fresh slice: viewers replaying the old GOP hold no
			// reference, the old one becomes garbage at once.
			f.gop = make([]packet, 0, max(len(f.gop), 256))
			f.gopOK = true
		}
		if f.gopOK {
			if len(f.gop)+len(f.pkts) > gopCacheMax {
				f.gopOK = false
				f.gop = nil
			} else {
				f.gop = append(f.gop, f.pkts...)
			}
		}
	}
	f.sfu.tr.hold()
	for _, v := range f.viewers {
		v.write(f, f.pkts)
	}
	f.sfu.tr.release()
}

func (f *feed) onEnd() {
	if f.bridge != nil {
		f.bridge.Close()
	}
	f.mu.Lock()
	f.closed = true
	viewers := append([]*viewer(nil), f.viewers...)
	f.viewers = nil
	f.gop = nil
	f.mu.Unlock()
	for _, v := range viewers {
		go v.feedEnded(f)
	}
}
