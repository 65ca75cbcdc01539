package sfu

import (
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/transcode"
	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"
)

// Ingest turns the RTP of one H.264 track and one Opus track into an engine
// stream: WHIP publishers and the host of a live room go through it. The
// stream goes live at the first keyframe whose SPS and PPS are known;
// until then the keyframe requester (SetKeyframeRequester) is called at
// most every 500 ms.
//
// WriteVideo and WriteAudio may be called from two goroutines (one per
// track); each keeps the packets it is given.
type Ingest struct {
	pub      *engine.Publisher
	hasVideo bool
	hasAudio bool
	log      *slog.Logger

	sb    *samplebuilder.SampleBuilder // video reordering; video goroutine only
	nalus [][]byte                     // scratch; video goroutine only

	mu         sync.Mutex // guards what follows and Publisher.Write
	stream     *engine.Stream
	sps, pps   []byte
	epoch      time.Time // arrival of the first packet of any track
	video      rtpClock
	audio      rtpClock
	lastPLI    time.Time
	lastKey    time.Duration // PTS of the last keyframe
	pli        func()        // sends a PLI to the publisher
	videoIdx   int
	audioIdx   int
	aacIdx     int
	bridge     *transcode.AudioBridge // Opus -> AAC for HLS and the ladder
	emitAAC    func(*engine.Unit)
	closed     bool
	units      uint64
	keyframes  uint64
	bridgeErrs uint64
}

// rtpClock converts one track's 32-bit RTP timestamps into durations from
// the ingest's epoch, once, at the edge.
type rtpClock struct {
	rate    int64
	started bool
	offset  time.Duration // arrival of the track's first packet after epoch
	last    uint32
	ext     int64 // unwrapped ticks since the first packet
}

func (c *rtpClock) pts(ts uint32, epoch, now time.Time) time.Duration {
	if !c.started {
		c.started = true
		c.offset = now.Sub(epoch)
		c.last = ts
		return c.offset
	}
	c.ext += int64(int32(ts - c.last))
	c.last = ts
	return c.offset + time.Duration(c.ext*int64(time.Second)/c.rate)
}

// NewIngest prepares an ingest into pub, which must be authorized and not
// started; the stream's tracks are [H264, Opus] (either may be absent).
func NewIngest(pub *engine.Publisher, hasVideo, hasAudio bool, log *slog.Logger) *Ingest {
	if log == nil {
		log = slog.Default()
	}
	in := &Ingest{
		pub:      pub,
		hasVideo: hasVideo,
		hasAudio: hasAudio,
		log:      log,
		video:    rtpClock{rate: 90000},
		audio:    rtpClock{rate: 48000},
		videoIdx: -1,
		audioIdx: -1,
		aacIdx:   -1,
	}
	in.emitAAC = func(u *engine.Unit) {
		u.Track = in.aacIdx
		in.pub.Write(u)
	}
	in.sb = samplebuilder.New(512, &codecs.H264Packet{IsAVC: true}, 90000,
		samplebuilder.WithMaxTimeDelay(time.Second))
	return in
}

// Stream returns the live stream, nil before the first keyframe.
func (in *Ingest) Stream() *engine.Stream {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.stream
}

// WriteVideo takes one H.264 RTP packet. It keeps pkt.
func (in *Ingest) WriteVideo(pkt *rtp.Packet) {
	now := time.Now()
	in.sb.Push(pkt)
	for s := in.sb.Pop(); s != nil; s = in.sb.Pop() {
		var err error
		in.nalus, err = splitAVC(in.nalus[:0], s.Data)
		if err != nil || len(in.nalus) == 0 {
			continue
		}
		in.writeAccessUnit(in.nalus, s.PacketTimestamp, s.PrevDroppedPackets > 0, now)
	}
}

func (in *Ingest) writeAccessUnit(nalus [][]byte, ts uint32, lost bool, now time.Time) {
	key := false
	var sps, pps []byte
	for _, n := range nalus {
		switch n[0] & 0x1f {
		case naluIDR:
			key = true
		case naluSPS:
			sps = n
		case naluPPS:
			pps = n
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	if in.epoch.IsZero() {
		in.epoch = now
	}
	pts := in.video.pts(ts, in.epoch, now)
	if sps != nil {
		in.sps = append([]byte(nil), sps...)
	}
	if pps != nil {
		in.pps = append([]byte(nil), pps...)
	}
	if in.stream == nil {
		if !key || in.sps == nil || in.pps == nil {
			in.askKeyframeLocked(now)
			return
		}
		if err := in.startLocked(); err != nil {
			in.log.Error("stream start failed", "error", err)
			in.closed = true
			return
		}
	}
	if lost && !key {
		// A gap the NACKs did not fill: decoders need a fresh keyframe.
		in.askKeyframeLocked(now)
	}
	// Browsers send a keyframe only when asked or when their resolution
	// changes (Chromium: every 10+ s once steady), so HLS segments, which
	// end at keyframes, would grow as long and the playlists' target
	// duration with them. Ask at the default segment pace.
	if key {
		in.lastKey = pts
	} else if pts-in.lastKey >= keyframeInterval {
		in.askKeyframeLocked(now)
	}
	// The unit keeps the NAL units; they alias the sample, which is not
	// reused, so only the slice header is copied.
	u := &engine.Unit{
		Track: in.videoIdx,
		PTS:   pts,
		DTS:   pts,
		Key:   key,
		NTP:   now,
		NALUs: append([][]byte(nil), nalus...),
	}
	in.units++
	if key {
		in.keyframes++
	}
	in.pub.Write(u)
}

// SetKeyframeRequester sets how to send a PLI to the publisher: the ingest
// calls it while it waits for a keyframe or after an unrepaired loss.
func (in *Ingest) SetKeyframeRequester(pli func()) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.pli = pli
}

// KeyframeRequest asks the publisher for a keyframe, at most every 500 ms;
// register it with Transport.RegisterKeyframeSource so WHEP viewers' PLIs
// reach the publisher.
func (in *Ingest) KeyframeRequest() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.askKeyframeLocked(time.Now())
}

// keyframeInterval is the longest GOP the ingest lets a publisher send
// before it asks for a keyframe: hls.segment_duration's default.
const keyframeInterval = time.Second

func (in *Ingest) askKeyframeLocked(now time.Time) {
	if in.pli != nil && now.Sub(in.lastPLI) > 500*time.Millisecond {
		in.lastPLI = now
		in.pli()
	}
}

func (in *Ingest) startLocked() error {
	var tracks []*engine.Track
	if in.hasVideo {
		t := &engine.Track{Codec: engine.CodecH264, ClockRate: 90000, SPS: in.sps, PPS: in.pps}
		var sps h264.SPS
		if err := sps.Unmarshal(in.sps); err == nil {
			t.Width, t.Height, t.FrameRate = sps.Width(), sps.Height(), sps.FPS()
		}
		in.videoIdx = len(tracks)
		tracks = append(tracks, t)
	}
	if in.hasAudio {
		in.audioIdx = len(tracks)
		opus := &engine.Track{Codec: engine.CodecOpus, ClockRate: 48000, SampleRate: 48000, Channels: 2}
		tracks = append(tracks, opus)
		// The packager and the ladder take AAC: convert once here, while
		// WebRTC viewers keep the original Opus.
		b, err := transcode.NewAudioBridge(opus, engine.CodecAAC)
		if err != nil {
			in.log.Warn("no AAC for this stream: opus bridge failed", "error", err)
		} else {
			in.bridge = b
			in.aacIdx = len(tracks)
			tracks = append(tracks, b.OutputTrack())
		}
	}
	s, err := in.pub.Start(tracks)
	if err != nil {
		return fmt.Errorf("start stream %q: %w", in.pub.StreamID(), err)
	}
	in.stream = s
	return nil
}

// WriteAudio takes one Opus RTP packet. It keeps pkt's payload.
func (in *Ingest) WriteAudio(pkt *rtp.Packet) {
	if len(pkt.Payload) == 0 {
		return
	}
	now := time.Now()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return
	}
	if in.epoch.IsZero() {
		in.epoch = now
	}
	pts := in.audio.pts(pkt.Timestamp, in.epoch, now)
	if in.stream == nil {
		if in.hasVideo {
			return // audio waits for the first keyframe
		}
		if err := in.startLocked(); err != nil {
			in.log.Error("stream start failed", "error", err)
			in.closed = true
			return
		}
	}
	in.units++
	u := &engine.Unit{Track: in.audioIdx, PTS: pts, DTS: pts, Key: true, NTP: now, Payload: pkt.Payload}
	in.pub.Write(u)
	if in.bridge != nil {
		if err := in.bridge.Convert(u, in.emitAAC); err != nil {
			in.bridgeErrs++
			if in.bridgeErrs == 1 || in.bridgeErrs%1000 == 0 {
				in.log.Warn("opus to aac failed", "error", err, "count", in.bridgeErrs)
			}
		}
	}
}

// Close stops accepting packets; the caller closes the publisher.
func (in *Ingest) Close() (units, keyframes uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	if in.bridge != nil {
		in.bridge.Close()
		in.bridge = nil
	}
	return in.units, in.keyframes
}
