package rtmp

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"

	"github.com/liveengine/liveengine/engine"
)

// ErrNoSupportedTracks is returned when a publisher sends no H.264 or AAC
// sequence header within the start timeout.
var ErrNoSupportedTracks = errors.New("no H.264 or AAC track")

// Bounds of the units buffered while waiting for sequence headers: past
// them the stream goes live with the tracks it knows.
const (
	maxPendingUnits = 2048
	maxPendingBytes = 64 << 20
)

type trackKind uint8

const (
	kindVideo trackKind = iota
	kindAudio
)

func (k trackKind) String() string {
	if k == kindVideo {
		return "video"
	}
	return "audio"
}

// pendingUnit is a unit received before the stream went live, with its
// times still on the connection's clock (not yet rebased to the stream's
// start).
type pendingUnit struct {
	kind     trackKind
	dts, pts time.Duration
	u        *engine.Unit
}

// tsClock unwraps one track's 32-bit RTMP timestamps into a 64-bit
// millisecond clock shared by every track of the connection.
type tsClock struct {
	init bool
	last uint32
	ext  int64
}

// warnings logged at most once per publish.
const (
	warnVideoCodec = 1 << iota
	warnAudioCodec
	warnVideoBeforeConfig
	warnAudioBeforeConfig
	warnLateVideo
	warnLateAudio
	warnAudioConfigChange
	warnBadSPS
	warnMetadata
	warnAnnexB
)

func hasStartCode(b []byte) bool {
	return bytes.HasPrefix(b, []byte{0, 0, 0, 1}) || bytes.HasPrefix(b, []byte{0, 0, 1})
}

// session turns the FLV tags of one publish into engine units. All its
// methods run on the connection's read goroutine.
type session struct {
	conf    Config
	log     *slog.Logger
	pub     *engine.Publisher
	now     func() time.Time
	startAt time.Time

	live     bool
	videoIdx int
	audioIdx int

	meta       *streamMetadata
	vtrack     *engine.Track // configured video track, nil until a sequence header
	atrack     *engine.Track
	nalLen     int    // NAL length prefix size of the current AVC config
	inject     bool   // prepend the current SPS/PPS to the next keyframe
	curSPS     []byte // current parameter sets (may differ from the track's after a change)
	curPPS     []byte
	videoKeyed bool // a video keyframe was buffered, so later frames are decodable

	pending      []pendingUnit
	pendingBytes int

	anchored  bool
	anchorRaw uint32
	vclock    tsClock
	aclock    tsClock
	baseSet   bool
	base      time.Duration
	wallSet   bool
	wall      time.Time
	wallPTS   time.Duration
	aacNext   time.Duration // exact time of the next AAC frame
	aacFrame  time.Duration // duration of one AAC frame, 0 until configured
	aacSynced bool

	warned  uint32
	nalus   [][]byte // scratch for splitting
	dropped int      // frames dropped before their track was usable
}

func newSession(conf Config, pub *engine.Publisher, log *slog.Logger) *session {
	return &session{
		conf:     conf,
		log:      log,
		pub:      pub,
		now:      time.Now,
		startAt:  time.Now(),
		videoIdx: -1,
		audioIdx: -1,
	}
}

func (s *session) warnOnce(flag uint32, msg string, args ...any) {
	if s.warned&flag != 0 {
		return
	}
	s.warned |= flag
	s.log.Warn(msg, args...)
}

// unwrap extends a 32-bit millisecond timestamp and converts it to the
// connection's clock. Differences are taken as
// signed 32-bit values, so wraparound after 49.7 days and small backward
// steps both come out right; every track starts relative to the first
// timestamp seen on the connection so tracks stay aligned.
func (s *session) unwrap(c *tsClock, raw uint32) time.Duration {
	if !s.anchored {
		s.anchored, s.anchorRaw = true, raw
	}
	if !c.init {
		c.init, c.last = true, raw
		c.ext = int64(int32(raw - s.anchorRaw))
		return ms(c.ext)
	}
	c.ext += int64(int32(raw - c.last))
	c.last = raw
	return ms(c.ext)
}

// metadata records onMetaData; it only matters before the stream is live.
func (s *session) metadata(body []byte) error {
	m, err := parseMetadata(body)
	if err != nil {
		// Metadata is advisory: a broken one must not lose the stream.
		s.warnOnce(warnMetadata, "rtmp metadata ignored", "error", err)
		return nil
	}
	if s.live {
		return nil
	}
	s.meta = &m
	s.log.Debug("rtmp metadata", "video", m.HasVideo, "audio", m.HasAudio, "width", m.Width, "height", m.Height, "fps", m.FrameRate, "encoder", m.Encoder)
	return s.maybeGoLive()
}

// video handles one FLV video tag body. body is only valid during the call.
func (s *session) video(ts uint32, body []byte) error {
	tag, err := parseVideoTag(body)
	if errors.Is(err, ErrUnsupportedCodec) {
		s.warnOnce(warnVideoCodec, "rtmp video ignored", "error", err)
		return s.maybeGoLive()
	}
	if err != nil {
		return err
	}
	if tag.FrameType == flvFrameInfo {
		return nil
	}
	switch tag.PacketType {
	case avcPacketSequenceHeader:
		return s.videoConfig(tag.Data)
	case avcPacketEndOfSequence:
		return nil
	case avcPacketNALU:
	default:
		return fmt.Errorf("video tag: AVC packet type %d: %w", tag.PacketType, ErrMalformedTag)
	}
	if s.vtrack == nil || (s.live && s.videoIdx < 0) {
		if !s.live {
			s.dropped++
			s.warnOnce(warnVideoBeforeConfig, "rtmp video frame before its sequence header dropped")
		}
		return s.maybeGoLive()
	}
	dts := s.unwrap(&s.vclock, ts)
	nalus, err := splitNALUs(s.nalus[:0], tag.Data, s.nalLen)
	s.nalus = nalus[:0]
	if err != nil {
		// Some cameras put Annex-B start codes in FLV instead of length
		// prefixes; accept them rather than drop the publisher.
		var ab h264.AnnexB
		if !hasStartCode(tag.Data) || ab.Unmarshal(tag.Data) != nil {
			return err
		}
		s.warnOnce(warnAnnexB, "rtmp video uses Annex-B start codes instead of length prefixes")
		nalus = ab
	}
	u := s.videoUnit(nalus)
	clear(nalus)
	if u == nil {
		return nil
	}
	return s.emit(kindVideo, dts, dts+ms(int64(tag.CompositionTime)), u)
}

// videoUnit copies an access unit into one allocation, dropping access unit
// delimiters and filler data, and prepending the parameter sets after a
// configuration change. It returns nil for an empty access unit.
func (s *session) videoUnit(nalus [][]byte) *engine.Unit {
	size, count := 0, 0
	key, hasSPS := false, false
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeFillerData:
			continue
		case h264.NALUTypeIDR:
			key = true
		case h264.NALUTypeSPS:
			hasSPS = true
		}
		size += len(n)
		count++
	}
	if count == 0 {
		return nil
	}
	// The keyframe flag comes from the bitstream, not the FLV frame type:
	// a reader may only start where a decoder can.
	inject := key && s.inject && !hasSPS
	if inject {
		size += len(s.curSPS) + len(s.curPPS)
		count += 2
	}
	if key {
		s.inject = false
	}
	buf := make([]byte, 0, size)
	out := make([][]byte, 0, count)
	add := func(n []byte) {
		start := len(buf)
		buf = append(buf, n...)
		out = append(out, buf[start:len(buf):len(buf)])
	}
	if inject {
		add(s.curSPS)
		add(s.curPPS)
	}
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeAccessUnitDelimiter, h264.NALUTypeFillerData:
			continue
		}
		add(n)
	}
	return &engine.Unit{Key: key, NALUs: out}
}

func (s *session) videoConfig(data []byte) error {
	if len(data) == 0 {
		return nil // an empty header announces nothing; wait for a real one
	}
	c, err := parseAVCConfig(data)
	if err != nil {
		return err
	}
	sps := bytes.Clone(c.SPS[0])
	pps := bytes.Clone(c.PPS[0])
	if s.vtrack != nil && bytes.Equal(sps, s.curSPS) && bytes.Equal(pps, s.curPPS) {
		s.nalLen = c.LengthSize
		return nil // repeated sequence header
	}
	if s.live {
		if s.videoIdx < 0 {
			s.warnOnce(warnLateVideo, "rtmp video started after the stream went live; ignored")
			return nil
		}
		// The track is immutable once live: carry the new parameter
		// sets in-band on the next keyframe.
		s.log.Info("rtmp video configuration changed", "sps_bytes", len(sps))
		s.curSPS, s.curPPS, s.nalLen, s.inject = sps, pps, c.LengthSize, true
		return nil
	}
	t := &engine.Track{Codec: engine.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps}
	var p h264.SPS
	if err := p.Unmarshal(sps); err != nil {
		s.warnOnce(warnBadSPS, "rtmp SPS not understood; picture size taken from metadata", "error", err)
	} else {
		t.Width, t.Height = p.Width(), p.Height()
		t.FrameRate = p.FPS()
	}
	s.vtrack = t
	s.curSPS, s.curPPS, s.nalLen = sps, pps, c.LengthSize
	return s.maybeGoLive()
}

// audio handles one FLV audio tag body. body is only valid during the call.
func (s *session) audio(ts uint32, body []byte) error {
	tag, err := parseAudioTag(body)
	if errors.Is(err, ErrUnsupportedCodec) {
		s.warnOnce(warnAudioCodec, "rtmp audio ignored", "error", err)
		return s.maybeGoLive()
	}
	if err != nil {
		return err
	}
	switch tag.PacketType {
	case aacPacketSequenceHeader:
		return s.audioConfig(tag.Data)
	case aacPacketRaw:
	default:
		return fmt.Errorf("audio tag: AAC packet type %d: %w", tag.PacketType, ErrMalformedTag)
	}
	if s.atrack == nil || (s.live && s.audioIdx < 0) {
		if !s.live {
			s.dropped++
			s.warnOnce(warnAudioBeforeConfig, "rtmp audio frame before its sequence header dropped")
		}
		return s.maybeGoLive()
	}
	if len(tag.Data) == 0 {
		return nil
	}
	pts := s.audioTime(s.unwrap(&s.aclock, ts))
	u := &engine.Unit{Key: true, Payload: bytes.Clone(tag.Data)}
	return s.emit(kindAudio, pts, pts, u)
}

func (s *session) audioConfig(data []byte) error {
	if len(data) == 0 {
		// ffmpeg remuxing ADTS writes an empty sequence header first and
		// the real one once its bitstream filter has seen a frame.
		return nil
	}
	var asc mpeg4audio.AudioSpecificConfig
	if err := asc.Unmarshal(data); err != nil {
		return fmt.Errorf("audio tag: AudioSpecificConfig: %v: %w", err, ErrMalformedTag)
	}
	if s.atrack != nil && bytes.Equal(s.atrack.AACConfig, data) {
		return nil
	}
	if s.live {
		if s.audioIdx < 0 {
			s.warnOnce(warnLateAudio, "rtmp audio started after the stream went live; ignored")
		} else {
			s.warnOnce(warnAudioConfigChange, "rtmp audio configuration changed mid-stream; the track keeps its first configuration")
		}
		return nil
	}
	channels := int(asc.ChannelConfig)
	switch {
	case channels == 7:
		channels = 8
	case channels == 0 || channels > 7:
		channels = 2 // defined by a PCE; stereo is the usual case
	}
	samples := 1024
	if asc.FrameLengthFlag {
		samples = 960
	}
	if asc.SampleRate > 0 {
		s.aacFrame = time.Duration(samples) * time.Second / time.Duration(asc.SampleRate)
	}
	s.atrack = &engine.Track{
		Codec:      engine.CodecAAC,
		ClockRate:  asc.SampleRate,
		AACConfig:  bytes.Clone(data),
		SampleRate: asc.SampleRate,
		Channels:   channels,
	}
	return s.maybeGoLive()
}

// ms converts a millisecond count on the stream clock to a Duration.
func ms(v int64) time.Duration { return time.Duration(v) * time.Millisecond }

// audioTime replaces the millisecond-rounded FLV time of an AAC frame by
// the exact time implied by the frame before it (frames last 1024 samples),
// so audio time does not jitter by a fraction of a millisecond each frame.
// A gap or jump of more than a frame resynchronizes to the FLV time.
func (s *session) audioTime(flv time.Duration) time.Duration {
	if s.aacFrame == 0 {
		return flv
	}
	if s.aacSynced {
		if d := flv - s.aacNext; d > -s.aacFrame && d < s.aacFrame {
			flv = s.aacNext
		}
	}
	s.aacSynced = true
	s.aacNext = flv + s.aacFrame
	return flv
}

// emit hands a unit to the stream, or buffers it until the stream is live.
func (s *session) emit(kind trackKind, dts, pts time.Duration, u *engine.Unit) error {
	if !s.wallSet {
		s.wallSet, s.wall, s.wallPTS = true, s.now(), pts
	}
	u.NTP = s.wall.Add(pts - s.wallPTS)
	if !s.live {
		if kind == kindVideo {
			if !u.Key && !s.videoKeyed {
				s.dropped++ // undecodable without the keyframe before it
				return s.maybeGoLive()
			}
			s.videoKeyed = true
		}
		s.pending = append(s.pending, pendingUnit{kind: kind, dts: dts, pts: pts, u: u})
		s.pendingBytes += u.Size()
		return s.maybeGoLive()
	}
	s.write(kind, dts, pts, u)
	return nil
}

func (s *session) write(kind trackKind, dts, pts time.Duration, u *engine.Unit) {
	idx := s.videoIdx
	if kind == kindAudio {
		idx = s.audioIdx
	}
	if idx < 0 {
		return
	}
	if !s.baseSet {
		s.baseSet, s.base = true, dts
	}
	u.Track = idx
	u.DTS = dts - s.base
	u.PTS = pts - s.base
	s.pub.Write(u)
}

// maybeGoLive starts the stream once the tracks announced by metadata (or,
// without metadata, both tracks) are configured, or once waiting longer
// would only delay what is known.
func (s *session) maybeGoLive() error {
	if s.live {
		return nil
	}
	haveV, haveA := s.vtrack != nil, s.atrack != nil
	var ready bool
	if s.meta != nil {
		ready = (haveV || haveA) && (!s.meta.VideoAVC || haveV) && (!s.meta.AudioAAC || haveA)
	} else {
		ready = haveV && haveA
	}
	if !ready {
		waited := s.now().Sub(s.startAt)
		full := len(s.pending) >= maxPendingUnits || s.pendingBytes >= maxPendingBytes
		if waited < s.conf.StartTimeout && !full {
			return nil
		}
		if !haveV && !haveA {
			return fmt.Errorf("rtmp publish: %w after %s", ErrNoSupportedTracks, waited.Round(time.Millisecond))
		}
		s.log.Warn("rtmp going live without every announced track",
			"video", haveV, "audio", haveA, "waited", waited.Round(time.Millisecond).String(), "buffered", len(s.pending))
	}
	return s.goLive()
}

func (s *session) goLive() error {
	var tracks []*engine.Track
	if s.vtrack != nil {
		if s.meta != nil {
			if s.vtrack.Width == 0 {
				s.vtrack.Width, s.vtrack.Height = s.meta.Width, s.meta.Height
			}
			if s.meta.FrameRate > 0 {
				s.vtrack.FrameRate = s.meta.FrameRate
			}
			s.vtrack.Bitrate = s.meta.VideoBitrate
		}
		s.videoIdx = len(tracks)
		tracks = append(tracks, s.vtrack)
	}
	if s.atrack != nil {
		if s.meta != nil {
			s.atrack.Bitrate = s.meta.AudioBitrate
		}
		s.audioIdx = len(tracks)
		tracks = append(tracks, s.atrack)
	}
	if _, err := s.pub.Start(tracks); err != nil {
		return fmt.Errorf("rtmp publish: go live: %w", err)
	}
	s.live = true
	if len(s.pending) > 0 {
		s.baseSet, s.base = true, s.pending[0].dts
		for _, p := range s.pending {
			s.base = min(s.base, p.dts)
		}
	}
	for _, p := range s.pending {
		s.write(p.kind, p.dts, p.pts, p.u)
	}
	s.pending, s.pendingBytes = nil, 0
	if s.dropped > 0 {
		s.log.Info("rtmp frames dropped before their track was usable", "frames", s.dropped)
	}
	return nil
}
