package packager

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/liveengine/liveengine/engine"
)

// errNoParameterSets is logged when an H.264 keyframe arrives before any
// SPS/PPS is known; the packager waits for one that carries them.
var errNoParameterSets = errors.New("h264 keyframe without SPS/PPS")

// track is one elementary stream being packaged.
type track struct {
	id     int // fMP4 track id
	index  int // engine track index
	codec  engine.Codec
	rate   uint32 // fMP4 timescale
	initTr *fmp4.InitTrack

	// pending is the last sample received: its duration is known only
	// when the next one arrives.
	pending      *fmp4.Sample
	pendingTicks int64
	pendingDTS   time.Duration
	pendingNTP   time.Time
	lastDur      int64

	samples []*fmp4.Sample // committed to the part being built
	base    uint64         // decode time of samples[0]
}

// part is one published fMP4 part: immutable once published.
type part struct {
	dur   time.Duration
	indep bool
	data  []byte
}

// segment is a published segment. Its parts grow while it is in progress;
// dur and data are set once it is complete.
type segment struct {
	msn    uint64
	start  time.Duration
	ntp    time.Time
	parts  []part
	dur    time.Duration
	data   []byte
	frames int // video samples, set once complete
}

func (s *segment) bytesLen() int {
	if s.data != nil {
		return len(s.data)
	}
	n := 0
	for _, p := range s.parts {
		n += len(p.data)
	}
	return n
}

func (s *segment) partsDur() time.Duration {
	var d time.Duration
	for _, p := range s.parts {
		d += p.dur
	}
	return d
}

// rendition packages one engine stream (a source or a transcoder
// rendition) into LL-HLS.
type rendition struct {
	pk     *Packager
	grp    *group
	name   string
	stream *engine.Stream
	conf   Config
	log    *slog.Logger
	reader *engine.Reader

	// Segmenter state, touched only on the reader goroutine.
	video, audio *track
	leader       *track
	tracks       []*track
	started      bool
	seq          uint32
	msn          uint64
	segStart     time.Duration
	partStart    time.Duration
	nextCut      time.Duration
	partIndex    int
	partIndep    bool
	buf          []byte
	lastSegSize  int
	badUnits     int
	sb           seekablebuffer.Buffer
	// limits are the group's fixed targets once limited is set: parts and
	// segments are cut so that they never outgrow them.
	limits  targets
	limited bool
	ending  bool // onEnd flushes the last part: it takes every sample
	// held is a video sample that cuts a part, waiting for the audio to
	// reach its timestamp (holdForAudio); releasing is set while it is
	// processed.
	held      *engine.Unit
	releasing bool
	segFrames int // video samples committed to the segment in progress
	// lastKey is the DTS of the last video keyframe, and gop the interval
	// that ended at it.
	lastKey time.Duration
	gop     time.Duration
	seenKey bool

	// Published state.
	mu         sync.Mutex
	init       []byte
	codecs     []string
	width      int
	height     int
	fps        float64
	nominalBPS int
	segs       []*segment // complete, oldest first
	cur        *segment   // in progress; nil before the first keyframe and after the end
	ended      bool
	endedAt    time.Time
	changed    chan struct{}
	partTarget time.Duration // advertised PART-TARGET, once fixed
	targetDur  int           // advertised EXT-X-TARGETDURATION, once fixed
	fixed      bool          // the targets are fixed: playlists may be served
	cacheGen   uint64
	cache      []byte

	// progress is the DTS of the last leader sample processed, and live
	// is set from the first keyframe to the end: a sibling that starts late
	// waits for live siblings to reach its start before numbering it.
	progress atomic.Int64
	live     atomic.Bool
	finished atomic.Bool
	// order is the packager-wide order in which streams started: a
	// rendition also waits for siblings that went live before it but have
	// not seen a keyframe yet (the source, when a rendition is quicker).
	order uint64

	// report packs LAST-MSN<<16 | LAST-PART+1 for sibling playlists;
	// 0 before the first part.
	report atomic.Uint64
}

// newRendition picks the stream's tracks: the first H.264 video track and
// the first AAC track, or the first Opus track when there is no AAC.
func newRendition(pk *Packager, g *group, name string, s *engine.Stream) (*rendition, error) {
	r := &rendition{
		pk:         pk,
		grp:        g,
		name:       name,
		stream:     s,
		conf:       pk.conf,
		log:        pk.log.With("stream", s.ID()),
		changed:    make(chan struct{}),
		partTarget: pk.conf.PartTarget,
		targetDur:  roundSeconds(pk.conf.SegmentDuration),
	}
	var aac, opus int = -1, -1
	for i, t := range s.Tracks() {
		switch t.Codec {
		case engine.CodecH264:
			if r.video == nil {
				r.video = &track{index: i, codec: t.Codec, rate: 90000}
				r.width, r.height, r.fps, r.nominalBPS = t.Width, t.Height, t.FrameRate, t.Bitrate
			}
		case engine.CodecAAC:
			if aac < 0 {
				aac = i
			}
		case engine.CodecOpus:
			if opus < 0 {
				opus = i
			}
		}
	}
	switch {
	case aac >= 0:
		t := s.Tracks()[aac]
		var asc mpeg4audio.AudioSpecificConfig
		if len(t.AACConfig) > 0 {
			if err := asc.Unmarshal(t.AACConfig); err != nil {
				return nil, fmt.Errorf("aac config of track %d: %w", aac, err)
			}
		} else {
			if t.SampleRate <= 0 || t.Channels <= 0 || t.Channels > 7 {
				return nil, fmt.Errorf("aac track %d has neither a config nor a sample rate and channel count", aac)
			}
			asc = mpeg4audio.AudioSpecificConfig{Type: mpeg4audio.ObjectTypeAACLC, SampleRate: t.SampleRate, ChannelConfig: uint8(t.Channels), ChannelCount: t.Channels}
		}
		if asc.SampleRate <= 0 {
			return nil, fmt.Errorf("aac track %d: invalid sample rate %d", aac, asc.SampleRate)
		}
		r.audio = &track{index: aac, codec: engine.CodecAAC, rate: uint32(asc.SampleRate),
			initTr: &fmp4.InitTrack{TimeScale: uint32(asc.SampleRate), Codec: &codecs.MPEG4Audio{Config: asc}, AvgBitrate: uint32(t.Bitrate), MaxBitrate: uint32(t.Bitrate)}}
		r.codecs = append(r.codecs, fmt.Sprintf("mp4a.40.%d", int(asc.Type)))
		r.nominalBPS += t.Bitrate
	case opus >= 0:
		t := s.Tracks()[opus]
		ch := t.Channels
		if ch <= 0 {
			ch = 2
		}
		r.audio = &track{index: opus, codec: engine.CodecOpus, rate: 48000,
			initTr: &fmp4.InitTrack{TimeScale: 48000, Codec: &codecs.Opus{ChannelCount: ch}, AvgBitrate: uint32(t.Bitrate), MaxBitrate: uint32(t.Bitrate)}}
		r.codecs = append(r.codecs, "opus")
		r.nominalBPS += t.Bitrate
	}
	if r.video == nil && r.audio == nil {
		return nil, ErrNoCompatibleTrack
	}
	id := 1
	for _, t := range []*track{r.video, r.audio} {
		if t != nil {
			t.id = id
			id++
			r.tracks = append(r.tracks, t)
		}
	}
	if r.video != nil {
		r.leader = r.video
	} else {
		r.leader = r.audio
	}
	return r, nil
}

// buildInit writes the init segment; for video it needs the SPS and PPS,
// from the track or in-band in the first keyframe.
func (r *rendition) buildInit(first *engine.Unit) error {
	var tracks []*fmp4.InitTrack
	codecList := r.codecs
	w, h, fps := r.width, r.height, r.fps
	if r.video != nil {
		t := r.stream.Tracks()[r.video.index]
		sps, pps := t.SPS, t.PPS
		if first != nil && (len(sps) == 0 || len(pps) == 0) {
			for _, n := range first.NALUs {
				if len(n) == 0 {
					continue
				}
				switch h264.NALUType(n[0] & 0x1f) {
				case h264.NALUTypeSPS:
					sps = n
				case h264.NALUTypePPS:
					pps = n
				}
			}
		}
		if len(sps) < 4 || len(pps) == 0 {
			return errNoParameterSets
		}
		var info h264.SPS
		if err := info.Unmarshal(sps); err == nil {
			if w == 0 || h == 0 {
				w, h = info.Width(), info.Height()
			}
			if fps == 0 {
				fps = info.FPS()
			}
		}
		tracks = append(tracks, &fmp4.InitTrack{ID: r.video.id, TimeScale: 90000, AvgBitrate: uint32(t.Bitrate), MaxBitrate: uint32(t.Bitrate),
			Codec: &codecs.H264{SPS: bytes.Clone(sps), PPS: bytes.Clone(pps)}})
		codecList = append([]string{fmt.Sprintf("avc1.%02x%02x%02x", sps[1], sps[2], sps[3])}, codecList...)
	}
	if r.audio != nil {
		it := *r.audio.initTr
		it.ID = r.audio.id
		tracks = append(tracks, &it)
	}
	var sb seekablebuffer.Buffer
	if err := (&fmp4.Init{Tracks: tracks}).Marshal(&sb); err != nil {
		return fmt.Errorf("marshal init segment: %w", err)
	}
	r.mu.Lock()
	r.init = sb.Bytes()
	r.codecs = codecList
	r.width, r.height, r.fps = w, h, fps
	r.mu.Unlock()
	return nil
}

// cutSlack lets a sample a hair before a boundary start the next part or
// segment: timestamps rounded to milliseconds by a protocol (RTMP) or a clock
// conversion would otherwise push every cut one frame late.
const cutSlack = time.Millisecond

// toTicks converts a stream time to a timescale without overflowing for
// streams that run for years.
func toTicks(d time.Duration, rate uint32) int64 {
	return int64(d/time.Second)*int64(rate) + int64(d%time.Second)*int64(rate)/int64(time.Second)
}

func fromTicks(t int64, rate uint32) time.Duration {
	return time.Duration(t/int64(rate))*time.Second + time.Duration(t%int64(rate))*time.Second/time.Duration(rate)
}

// onUnit is the engine reader callback.
func (r *rendition) onUnit(u *engine.Unit) {
	var t *track
	switch {
	case r.video != nil && u.Track == r.video.index:
		t = r.video
	case r.audio != nil && u.Track == r.audio.index:
		t = r.audio
	default:
		return // a track HLS does not carry (the Opus twin of an AAC track)
	}
	if t == r.leader {
		r.releaseHeld()
		r.onLeader(t, u)
	} else {
		r.onFollower(t, u)
		if r.held != nil && t.pending != nil && t.pendingDTS >= r.held.DTS {
			r.releaseHeld()
		}
	}
}

// releaseHeld processes the leader sample held back for the audio.
func (r *rendition) releaseHeld() {
	if h := r.held; h != nil {
		r.held = nil
		r.releasing = true
		r.onLeader(r.leader, h)
		r.releasing = false
	}
}

// holdForAudio reports whether the leader sample u, which cuts a part,
// waits until the audio reaches it: audio that arrives a little behind its
// video (an RTMP publisher's interleaving) then still lands in the part its
// timestamps belong to, as in the sibling renditions. It waits at most
// until the next video sample.
func (r *rendition) holdForAudio(u *engine.Unit) bool {
	f := r.audio
	if r.releasing || f == nil || f == r.leader || f.pending == nil || f.pendingDTS >= u.DTS {
		return false
	}
	r.held = u
	return true
}

// onLeader handles a sample of the track that decides boundaries (video,
// or audio in an audio-only stream).
func (r *rendition) onLeader(t *track, u *engine.Unit) {
	key := u.Key || t != r.video
	if !r.started {
		if !key || u.DTS < 0 {
			return
		}
		if err := r.buildInit(u); err != nil {
			r.bad(u, err)
			return
		}
		r.started = true
		r.awaitSiblings(u.DTS)
		r.msn = r.grp.firstMSN(u.DTS)
		r.startSegment(u.DTS, u.NTP, true)
		if tg, ok := r.grp.fixedTargets(); ok {
			r.adopt(tg) // a sibling measured the first GOP already
		}
		r.live.Store(true)
		r.log.Info("hls rendition started", "rendition", r.name, "msn", r.msn, "codecs", r.codecs)
	} else if t.pending != nil {
		ticks := toTicks(u.DTS, t.rate)
		if ticks <= t.pendingTicks {
			r.bad(u, fmt.Errorf("dts %v does not increase", u.DTS))
			return
		}
		early := r.limited && u.DTS-r.partStart > r.limits.part
		if (early || (key && r.segmentDue(u.DTS)) || u.DTS >= r.nextCut-cutSlack) && r.holdForAudio(u) {
			return
		}
		if early && t.pendingDTS > r.partStart && len(t.samples) > 0 {
			// Ending the part at u would outgrow PART-TARGET (variable
			// frame timing): end it before the pending sample instead.
			r.cutPart(t.pendingDTS, t.pendingNTP, !t.pending.IsNonSyncSample, true)
		}
		r.commit(t, ticks)
		switch {
		case key && r.segmentDue(u.DTS):
			r.finishPart(u.DTS)
			r.nextSegment(u.DTS, u.NTP, true)
		case u.DTS >= r.nextCut-cutSlack:
			r.cutPart(u.DTS, u.NTP, key, false)
		}
	}
	if key && t == r.video {
		if r.seenKey {
			r.gop = u.DTS - r.lastKey
		}
		r.lastKey, r.seenKey = u.DTS, true
	}
	r.setPending(t, u, key)
	r.progress.Store(int64(u.DTS))
}

// cutPart ends the part at the leader sample at, and with it the segment
// when keyframes are too rare for the segment to reach the next one within
// the target duration. A segment cut there starts without a keyframe: the
// playlists never carry EXT-X-INDEPENDENT-SEGMENTS, and only parts that
// start with a keyframe are INDEPENDENT=YES. early re-anchors the part grid
// at at, so that the part after an early cut is not a sliver.
func (r *rendition) cutPart(at time.Duration, ntp time.Time, key, early bool) {
	r.finishPart(at)
	if r.partIndex >= r.conf.MaxPartsPerSegment || r.segmentFull(at) {
		r.nextSegment(at, ntp, key)
		return
	}
	r.partIndep = key
	pt := r.conf.PartTarget
	if early {
		r.nextCut = at + pt
	} else {
		r.nextCut = r.segStart + ((at-r.segStart+cutSlack)/pt+1)*pt
	}
}

// segmentFull reports whether the segment must end at the part boundary
// at: one more part could take it past what the target duration allows.
// While the GOP is longer than that (the last one was), segments end once
// they reach the target, so a long GOP splits into even segments rather
// than into two long ones and a sliver.
func (r *rendition) segmentFull(at time.Duration) bool {
	if !r.limited {
		return false
	}
	d, max := at-r.segStart, r.limits.maxSegment()
	return d+r.limits.part > max ||
		(r.gop > max && d+cutSlack >= time.Duration(r.limits.segment)*time.Second)
}

// adopt fixes the rendition's targets; playlists are served from then on.
func (r *rendition) adopt(tg targets) {
	r.limits, r.limited = tg, true
	r.mu.Lock()
	r.targetDur, r.partTarget, r.fixed = tg.segment, tg.part, true
	r.grp.gen.Add(1)
	r.broadcastLocked()
	r.mu.Unlock()
}

// siblingWait bounds how long a starting rendition waits for its siblings
// to reach its first keyframe; a stalled sibling must not stall it.
const siblingWait = 3 * time.Second

// awaitSiblings waits until every live (or earlier) sibling has processed its media up
// to dts, so that the group's segment clock knows every segment start up to
// dts and firstMSN numbers this rendition like its siblings. Siblings are
// usually ahead (the transcoder publishes after the source), so this rarely
// waits; it runs once per rendition, on its reader goroutine.
func (r *rendition) awaitSiblings(dts time.Duration) {
	deadline := time.Now().Add(siblingWait)
	for {
		behind := false
		for _, s := range r.grp.list() {
			if s == r || s.finished.Load() || !(s.live.Load() || s.order < r.order) {
				continue
			}
			if s.progress.Load() < int64(dts) {
				behind = true
				break
			}
		}
		if !behind || time.Now().After(deadline) {
			return
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-r.pk.closing:
			return
		}
	}
}

// onFollower handles a sample of the audio track of a video stream.
func (r *rendition) onFollower(t *track, u *engine.Unit) {
	if !r.started || u.DTS < 0 {
		return // audio before the first keyframe cannot be played anyway
	}
	if t.pending != nil {
		ticks := toTicks(u.DTS, t.rate)
		if ticks <= t.pendingTicks {
			r.bad(u, fmt.Errorf("dts %v does not increase", u.DTS))
			return
		}
		r.commit(t, ticks)
	}
	r.setPending(t, u, true)
}

func (r *rendition) setPending(t *track, u *engine.Unit, key bool) {
	s := &fmp4.Sample{IsNonSyncSample: !key}
	if t == r.video {
		avcc, err := h264.AVCC(u.NALUs).Marshal()
		if err != nil {
			r.bad(u, err)
			return
		}
		s.Payload = avcc
		s.PTSOffset = int32(toTicks(u.PTS, t.rate) - toTicks(u.DTS, t.rate))
	} else {
		s.Payload = u.Payload
	}
	t.pending, t.pendingTicks, t.pendingDTS, t.pendingNTP = s, toTicks(u.DTS, t.rate), u.DTS, u.NTP
}

// bad counts a unit the packager cannot use; it logs the first few, not
// every packet.
func (r *rendition) bad(u *engine.Unit, err error) {
	r.badUnits++
	r.pk.metrics.badUnits.Add(1)
	if r.badUnits <= 3 || r.badUnits%1000 == 0 {
		r.log.Warn("hls dropped unit", "rendition", r.name, "track", u.Track, "dropped", r.badUnits, "error", err)
	}
}

// commit moves t's pending sample into the part being built, now that the
// next sample's decode time gives its duration.
func (r *rendition) commit(t *track, nextTicks int64) {
	d := nextTicks - t.pendingTicks
	if d > 1<<31 {
		d = 1 << 31
	}
	t.pending.Duration = uint32(d)
	t.lastDur = d
	if len(t.samples) == 0 {
		t.base = uint64(t.pendingTicks)
	}
	t.samples = append(t.samples, t.pending)
	t.pending = nil
	if t == r.video {
		r.segFrames++
	}
}

// segmentDue reports whether a keyframe at dts starts a new segment: it
// does when a multiple of the segment duration lies after the current
// segment's start and at or before dts. The grid is absolute, so renditions
// cut at the same keyframes even when one of them joined late.
func (r *rendition) segmentDue(dts time.Duration) bool {
	sd := r.conf.SegmentDuration
	return (dts+cutSlack)/sd > (r.segStart+cutSlack)/sd
}

// startSegment begins segment r.msn at dts.
func (r *rendition) startSegment(dts time.Duration, ntp time.Time, indep bool) *segment {
	r.segStart, r.partStart, r.partIndex, r.partIndep = dts, dts, 0, indep
	r.segFrames = 0
	r.nextCut = dts + r.conf.PartTarget
	r.buf = make([]byte, 0, r.lastSegSize+r.lastSegSize/4+4096)
	r.grp.recordStart(dts, r.msn)
	seg := &segment{msn: r.msn, start: dts, ntp: ntp}
	r.mu.Lock()
	r.cur = seg
	r.mu.Unlock()
	return seg
}

// finishPart marshals the committed samples into a part ending at end and
// publishes it. Audio samples that start at or after end stay for the next
// part: a stream whose audio runs ahead of its video (a transcoder
// rendition, whose pictures wait for the encoder while the shared audio
// does not) would otherwise start every segment later in audio than its
// siblings, and a player switching renditions meets a hole. Audio is placed
// by its timestamps, not by when it arrived. The last part (onEnd) takes
// everything.
func (r *rendition) finishPart(end time.Duration) {
	pts := make([]*fmp4.PartTrack, 0, len(r.tracks))
	for _, t := range r.tracks {
		if len(t.samples) == 0 {
			continue
		}
		n, next := len(t.samples), t.base
		if t != r.leader && !r.ending {
			endTicks := uint64(toTicks(end, t.rate))
			n = 0
			for n < len(t.samples) && next < endTicks {
				next += uint64(t.samples[n].Duration)
				n++
			}
		}
		if n > 0 {
			pts = append(pts, &fmp4.PartTrack{ID: t.id, BaseTime: t.base, Samples: t.samples[:n]})
		}
		if n == len(t.samples) {
			t.samples = nil
		} else {
			// The part is marshaled below, before anything appends to
			// the kept samples, so they may share the array.
			t.samples, t.base = t.samples[n:], next
		}
	}
	if len(pts) == 0 {
		return
	}
	r.seq++
	r.sb.Reset()
	if err := (fmp4.Part{SequenceNumber: r.seq, Tracks: pts}).Marshal(&r.sb); err != nil {
		r.log.Error("hls part not written", "rendition", r.name, "error", err)
		return
	}
	// Parts are sub-slices of the segment buffer: appending later parts
	// never writes inside a published range, and the cap limit keeps
	// anyone else from appending into it.
	off := len(r.buf)
	r.buf = append(r.buf, r.sb.Bytes()...)
	p := part{dur: end - r.partStart, indep: r.partIndep, data: r.buf[off:len(r.buf):len(r.buf)]}

	r.mu.Lock()
	r.cur.parts = append(r.cur.parts, p)
	r.report.Store(r.cur.msn<<16 | uint64(len(r.cur.parts)))
	// The generation moves before waiters wake: a woken blocking reload
	// must not be answered from the playlist cached before this change.
	r.grp.gen.Add(1)
	r.broadcastLocked()
	r.mu.Unlock()

	r.partIndex++
	r.partStart = end
	r.pk.metrics.parts.Add(1)
}

// nextSegment completes the current segment at end and starts the next.
func (r *rendition) nextSegment(end time.Duration, ntp time.Time, indep bool) {
	proposed := r.completeSegment(end)
	r.msn++
	r.startSegment(end, ntp, indep)
	r.fixTargets(proposed)
}

// fixTargets fixes the group's targets, unless a sibling did, after the
// rendition's first segment; proposed is zero after later ones. It runs
// once the next segment started, so the first playlist a woken request
// gets already hints the next part.
func (r *rendition) fixTargets(proposed targets) {
	if proposed.segment > 0 {
		r.adopt(r.grp.fixTargets(proposed))
	}
}

// completeSegment publishes the current segment as complete; the first
// time, it returns the targets it proposes for the group.
func (r *rendition) completeSegment(end time.Duration) targets {
	var proposed targets
	r.mu.Lock()
	seg := r.cur
	r.cur = nil
	if seg != nil && len(seg.parts) > 0 {
		seg.dur = end - seg.start
		seg.data = r.buf[:len(r.buf):len(r.buf)]
		seg.frames = r.segFrames
		if !r.limited {
			proposed = firstTargets(r.conf, seg)
		}
		if len(r.segs) >= r.conf.SegmentCount {
			n := copy(r.segs, r.segs[len(r.segs)-r.conf.SegmentCount+1:])
			clear(r.segs[n:])
			r.segs = r.segs[:n]
		}
		r.segs = append(r.segs, seg)
		r.pk.metrics.segments.Add(1)
	}
	// The generation moves before waiters wake: a woken blocking reload
	// must not be answered from the playlist cached before this change.
	r.grp.gen.Add(1)
	r.broadcastLocked()
	r.mu.Unlock()
	r.lastSegSize = len(r.buf)
	r.buf = nil
	return proposed
}

// firstTargets proposes the group's targets from the first complete
// segment, which spans the first GOP: the configured durations, raised to
// what that segment and its parts needed. They never change afterwards, so
// a later, longer GOP is split into segments that start without a keyframe
// rather than growing the target, which players (Safari, hls.js) do not
// expect within a playlist.
func firstTargets(conf Config, seg *segment) targets {
	tg := targets{segment: max(roundSeconds(conf.SegmentDuration), roundSeconds(seg.dur)), part: conf.PartTarget}
	for _, p := range seg.parts {
		if d := p.dur.Round(time.Millisecond); d > tg.part {
			tg.part = d
			if d < p.dur {
				tg.part += time.Millisecond
			}
		}
	}
	return tg
}

// onEnd runs on the reader goroutine once the stream ended (or the reader
// was closed): it flushes the last samples and marks the playlist ended.
func (r *rendition) onEnd() {
	r.releaseHeld()
	if r.started {
		end := r.partStart
		for _, t := range r.tracks {
			if t.pending == nil {
				continue
			}
			d := t.lastDur
			if d <= 0 {
				d = int64(t.rate) / 30 // one frame at 30 fps, or ~1024 AAC samples
			}
			endTicks := t.pendingTicks + d
			r.commit(t, endTicks)
			if t == r.leader {
				end = fromTicks(endTicks, t.rate)
			}
		}
		if end > r.partStart {
			r.ending = true
			r.finishPart(end)
		}
		r.fixTargets(r.completeSegment(end))
	}
	r.live.Store(false)
	r.finished.Store(true)
	r.mu.Lock()
	r.ended = true
	r.endedAt = time.Now()
	r.cur = nil
	// The generation moves before waiters wake: a woken blocking reload
	// must not be answered from the playlist cached before this change.
	r.grp.gen.Add(1)
	r.broadcastLocked()
	r.mu.Unlock()
	r.log.Info("hls rendition ended", "rendition", r.name, "last_msn", r.msn, "dropped_units", r.badUnits)
}

// broadcastLocked wakes every request waiting for a change.
func (r *rendition) broadcastLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// waitLocked waits, with r.mu held, until cond holds, the rendition ends,
// the packager closes or the deadline passes; it reports whether cond
// holds. r.mu is held again on return. Waiters sleep on the rendition's
// broadcast channel, which is closed at every change: no polling.
func (r *rendition) waitLocked(cond func() bool, deadline time.Time) bool {
	if cond() {
		return true
	}
	r.pk.metrics.blocked.Add(1)
	defer r.pk.metrics.blocked.Add(-1)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for !cond() {
		if r.ended {
			return false
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			return false
		}
		if timer == nil {
			timer = time.NewTimer(wait)
		}
		ch := r.changed
		r.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
			r.mu.Lock()
			return cond()
		case <-r.pk.closing:
			r.mu.Lock()
			return cond()
		}
		r.mu.Lock()
	}
	return true
}

// holdLimit is the longest a request may be held: three target durations.
func (r *rendition) holdLimitLocked() time.Duration {
	return 3 * time.Duration(r.targetDur) * time.Second
}

// lastReport returns LAST-MSN and LAST-PART for rendition reports.
func (r *rendition) lastReport() (msn uint64, part int, ok bool) {
	v := r.report.Load()
	if v == 0 {
		return 0, 0, false
	}
	return v >> 16, int(v&0xffff) - 1, true
}

func roundSeconds(d time.Duration) int {
	s := int((d + time.Second/2) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

func (r *rendition) getReader() *engine.Reader {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reader
}
