package transcode

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/asticode/go-astiav"

	"github.com/liveengine/liveengine/engine"
)

// Overload policy timing: one more rung starts losing frames per second of
// being behind, one rung recovers per calm period.
const (
	overloadStep = time.Second
	calmStep     = 5 * time.Second
	// maxLag is how far behind the source's clock decoding may fall before
	// the job counts as overloaded.
	maxLag = time.Second
	// backlogFrames is how many frames in a row must find a rung queue
	// half full before that counts as overload (about 0.5 s at 30 fps).
	backlogFrames = 15
	// maxEarlyAudio bounds the audio held before the first picture decodes.
	maxEarlyAudio = 256
)

// timing is what a frame keeps of its source unit across libav.
type timing struct {
	ts  int64 // 90 kHz, the libav timestamp
	pts time.Duration
	ntp time.Time
	// userData holds the source picture's user_data_unregistered SEI NAL
	// units (timecodes, captions, latency stamps): libx264 drops them, so
	// each rung puts them back into its picture of the same PTS.
	userData [][]byte
}

// timeRing maps libav timestamps back to the source unit's exact PTS and
// wall-clock stamp, for the frames in flight in a codec.
type timeRing struct {
	e [128]timing
	n int
}

func (r *timeRing) put(t timing) {
	r.e[r.n%len(r.e)] = t
	r.n++
}

func (r *timeRing) get(ts int64) (timing, bool) {
	for i := 1; i <= len(r.e) && i <= r.n; i++ {
		if e := r.e[(r.n-i)%len(r.e)]; e.ts == ts {
			return e, true
		}
	}
	return timing{ts: ts, pts: fromTS(ts)}, false
}

// userDataSEI returns the H.264 SEI NAL units of an access unit whose first
// message is user_data_unregistered (payload type 5). The slices alias the
// source unit, which is immutable.
func userDataSEI(nalus [][]byte) [][]byte {
	var out [][]byte
	for _, n := range nalus {
		if len(n) >= 2 && n[0]&0x1f == 6 && n[1] == 5 {
			out = append(out, n)
		}
	}
	return out
}

// withUserData inserts sei before the first slice NAL unit of an access unit.
func withUserData(nalus, sei [][]byte) [][]byte {
	if len(sei) == 0 {
		return nalus
	}
	i := 0
	for i < len(nalus) {
		if t := nalus[i][0] & 0x1f; t >= 1 && t <= 5 {
			break
		}
		i++
	}
	out := make([][]byte, 0, len(nalus)+len(sei))
	out = append(out, nalus[:i]...)
	out = append(out, sei...)
	return append(out, nalus[i:]...)
}

func toTS(d time.Duration) int64    { return int64(d) * 9 / 100000 }
func fromTS(ts int64) time.Duration { return time.Duration(ts) * 100000 / 9 }

// job transcodes one source stream. Decoding runs on the source reader's
// goroutine; each rung encodes on its own goroutine.
type job struct {
	t        *Transcoder
	src      *engine.Stream
	ladder   Ladder
	log      *slog.Logger
	blocking bool // never drop: the benchmark feeds as fast as rungs take

	videoIdx, audioIdx int
	video              *engine.Track
	audioOut           *engine.Track
	bridge             *AudioBridge

	dec    *astiav.CodecContext
	pkt    *astiav.Packet
	frame  *astiav.Frame
	buf    []byte
	times  timeRing
	errs   int
	lastTS int64 // last timestamp given to the encoders (90 kHz)

	tsShift         int64 // added to source timestamps on the encoders' side
	discontinuities int

	setup    bool // rungs built from the first decoded frame
	early    []*engine.Unit
	idle     bool // no rung fits the source: stop decoding
	rungs    []*rung
	sinceKey int
	frameDur time.Duration

	// Overload state, touched by the decoding goroutine only.
	level      int
	lastChange time.Time
	lastBusy   time.Time
	backlogRun int // frames in a row that found a rung queue half full
	wallBase   time.Time
	ptsBase    time.Duration
	episode    int
	epDropped  uint64

	reader   *engine.Reader
	stopOnce sync.Once
	stopping chan struct{}
	done     chan struct{}
}

func newJob(t *Transcoder, s *engine.Stream, l Ladder, blocking bool) (*job, error) {
	j := &job{
		t:        t,
		src:      s,
		ladder:   l,
		log:      t.log.With("stream", s.ID()),
		blocking: blocking,
		videoIdx: s.VideoTrack(),
		audioIdx: -1,
		lastTS:   astiav.NoPtsValue,
		stopping: make(chan struct{}),
		done:     make(chan struct{}),
	}
	j.video = s.Tracks()[j.videoIdx]
	for i, tr := range s.Tracks() {
		if tr.Codec == engine.CodecAAC || tr.Codec == engine.CodecOpus {
			j.audioIdx = i
			break
		}
	}
	ok := false
	defer func() {
		if !ok {
			j.free()
		}
	}()
	if j.audioIdx >= 0 {
		at := s.Tracks()[j.audioIdx]
		if at.Codec == engine.CodecAAC {
			// The cheapest correct choice: AAC passes through untouched
			// and every rendition shares the source's units.
			j.audioOut = at
		} else {
			b, err := NewAudioBridge(at, engine.CodecAAC)
			if err != nil {
				return nil, fmt.Errorf("transcode %s: audio: %w", s.ID(), err)
			}
			j.bridge, j.audioOut = b, b.OutputTrack()
		}
	}
	if err := j.openDecoder(); err != nil {
		return nil, fmt.Errorf("transcode %s: %w", s.ID(), err)
	}
	ok = true
	return j, nil
}

func (j *job) openDecoder() error {
	name := "h264"
	if j.video.Codec == engine.CodecH265 {
		name = "hevc"
	}
	c := astiav.FindDecoderByName(name)
	if c == nil {
		return fmt.Errorf("no %s decoder in libavcodec", name)
	}
	j.dec = astiav.AllocCodecContext(c)
	if j.dec == nil {
		return errors.New("allocating decoder failed")
	}
	j.dec.SetTimeBase(astiav.NewRational(1, 90000))
	j.dec.SetThreadType(astiav.ThreadTypeFrame)
	j.dec.SetThreadCount(j.t.conf.DecodeThreads)
	if err := j.dec.Open(c, nil); err != nil {
		return fmt.Errorf("opening %s decoder: %w", name, err)
	}
	j.pkt = astiav.AllocPacket()
	j.frame = astiav.AllocFrame()
	return nil
}

// attach adds the job's reader on the source stream.
func (j *job) attach() error {
	r, err := j.src.AddReader(engine.ReaderOptions{
		Name:     "transcode " + j.src.ID(),
		Kind:     "transcode",
		QueueLen: j.t.conf.ReaderQueue,
	}, j.handle, j.finish)
	if err != nil {
		return fmt.Errorf("transcode %s: reader: %w", j.src.ID(), err)
	}
	j.reader = r
	j.log.Info("transcode job started", "rungs", len(j.ladder.Rungs), "audio", j.audioOut != nil, "audio_bridge", j.bridge != nil)
	return nil
}

// stop detaches the reader; its goroutine then runs finish.
func (j *job) stop() {
	j.stopOnce.Do(func() { close(j.stopping) })
	if j.reader != nil {
		j.reader.Close()
	} else {
		j.finish()
	}
	<-j.done
}

// handle processes one source unit on the reader's goroutine.
func (j *job) handle(u *engine.Unit) {
	switch u.Track {
	case j.videoIdx:
		if !j.idle {
			j.decode(u)
		}
	case j.audioIdx:
		j.audio(u)
	}
}

func hasParams(c engine.Codec, nalus [][]byte) bool {
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		if c == engine.CodecH264 && n[0]&0x1f == 7 {
			return true
		}
		if c == engine.CodecH265 && (n[0]>>1)&0x3f == 33 {
			return true
		}
	}
	return false
}

func (j *job) decode(u *engine.Unit) {
	j.buf = j.buf[:0]
	if u.Key && !hasParams(j.video.Codec, u.NALUs) {
		// Publishers that send parameter sets out of band (RTMP's
		// sequence header, SDP) still decode: prepend the track's.
		j.buf = appendAnnexB(j.buf, j.video.VPS, j.video.SPS, j.video.PPS)
	}
	j.buf = appendAnnexB(j.buf, u.NALUs...)
	if len(j.buf) == 0 {
		return
	}
	n := len(j.buf)
	if err := packetFrom(j.pkt, j.buf, n); err != nil {
		j.decodeError(u, err)
		return
	}
	ts := toTS(u.PTS)
	j.pkt.SetPts(ts)
	j.pkt.SetDts(toTS(u.DTS))
	if u.Key {
		j.pkt.SetFlags(j.pkt.Flags().Add(astiav.PacketFlagKey))
	}
	j.times.put(timing{ts: ts, pts: u.PTS, ntp: u.NTP, userData: userDataSEI(u.NALUs)})
	err := j.dec.SendPacket(j.pkt)
	j.pkt.Unref()
	if err != nil {
		j.decodeError(u, err)
		return
	}
	j.receiveFrames()
}

func (j *job) receiveFrames() {
	for {
		j.frame.Unref()
		if err := j.dec.ReceiveFrame(j.frame); err != nil {
			if !errors.Is(err, astiav.ErrEagain) && !errors.Is(err, astiav.ErrEof) {
				j.decodeError(nil, err)
			}
			return
		}
		j.t.m.decoded.Inc()
		j.onFrame(j.frame)
	}
}

func (j *job) decodeError(u *engine.Unit, err error) {
	j.errs++
	j.t.m.decodeErrors.Inc()
	// The first error says what is wrong; then one line per hundred, so
	// a broken source cannot flood the log.
	if j.errs == 1 || j.errs%100 == 0 {
		var at time.Duration
		if u != nil {
			at = u.PTS
		}
		j.log.Warn("source video does not decode", "pts", at, "errors", j.errs, "error", err)
	}
}

func (j *job) onFrame(f *astiav.Frame) {
	ts := f.Pts()
	if ts == astiav.NoPtsValue {
		ts = f.PktDts()
	}
	tm, _ := j.times.get(ts)
	// x264 needs increasing timestamps. A source clock that repeats or
	// steps back (an encoder restarted behind the same connection) is
	// shifted on the encoders' side only: renditions still carry the
	// source's own PTS, as the source stream does.
	ets := ts + j.tsShift
	if j.lastTS != astiav.NoPtsValue && ets <= j.lastTS {
		step := max(toTS(j.frameDur), 1)
		j.tsShift += j.lastTS + step - ets
		ets = j.lastTS + step
		j.discontinuities++
		if j.discontinuities == 1 || j.discontinuities%100 == 0 {
			j.log.Warn("source video timestamps went back", "pts", tm.pts, "count", j.discontinuities)
		}
	}
	j.lastTS = ets
	tm.ts = ets
	if !j.setup {
		j.setup = true
		j.setupRungs(f)
		early := j.early
		j.early = nil
		if len(j.rungs) == 0 {
			j.idle = true
			return
		}
		for _, u := range early {
			if u.PTS >= tm.pts-j.frameDur {
				j.audio(u)
			}
		}
	}
	if len(j.rungs) == 0 {
		return
	}
	key := f.KeyFrame() || f.PictureType() == astiav.PictureTypeI || j.sinceKey >= j.ladder.GOP
	if key {
		j.sinceKey = 0
	}
	j.sinceKey++
	if !j.blocking {
		j.updateLoad(fromTS(ets))
	}
	for i, r := range j.rungs {
		fk := key || r.needKey
		if !fk && j.policyDrops(i) {
			r.drop()
			continue
		}
		nf := astiav.AllocFrame()
		if err := nf.Ref(f); err != nil {
			nf.Free()
			r.drop()
			continue
		}
		it := frameItem{f: nf, tm: tm, key: fk}
		// Keyframes are never dropped: they keep every rung's GOPs
		// aligned. Neither are frames of rungs the overload level has
		// not reached yet: for those, waiting for a slot backs up into
		// the reader's queue (bounded by the engine), the lag grows,
		// and the level rises until lower rungs shed enough work. So the
		// lowest rungs lose frames first, the top rung last.
		protected := j.level <= len(j.rungs)-1-i
		if j.blocking || fk || protected {
			if !j.blocking && len(r.in) == cap(r.in) {
				j.lastBusy = time.Now()
			}
			r.in <- it
			r.needKey = false
			continue
		}
		select {
		case r.in <- it:
		default:
			// The rung is a queue behind: it loses this frame.
			nf.Free()
			r.drop()
			j.lastBusy = time.Now()
		}
	}
}

// policyDrops says whether rung i skips this frame at the current overload
// level. Rungs are ordered best first; the lowest rung is the first to
// halve its frame rate, then the next; past that, the lowest rungs keep
// only keyframes. Keyframes are never dropped by policy, so every rung
// still cuts at the same PTS.
func (j *job) policyDrops(i int) bool {
	if j.level == 0 {
		return false
	}
	n := len(j.rungs)
	pos := n - 1 - i // 0 is the lowest rung
	r := j.rungs[i]
	if j.level-n > pos {
		return true
	}
	if j.level > pos {
		r.dropTick++
		return r.dropTick%2 == 0
	}
	return false
}

// updateLoad raises or lowers the overload level from three signals: a
// rung queue half full (or overflowing), decoding lagging the source's
// clock, and a rung's encode time above the frame interval.
func (j *job) updateLoad(pts time.Duration) {
	now := time.Now()
	if j.wallBase.IsZero() {
		j.wallBase, j.ptsBase = now, pts
	}
	lag := now.Sub(j.wallBase) - (pts - j.ptsBase)
	if lag < 0 {
		// A publisher that bursts ahead moves the baseline: lag counts
		// only how far we fall behind the fastest pace seen.
		j.wallBase, j.ptsBase, lag = now, pts, 0
	}
	busy := lag > maxLag || now.Sub(j.lastBusy) < overloadStep
	n := len(j.rungs)
	backlog := false
	for _, r := range j.rungs {
		if len(r.in)*2 >= cap(r.in) {
			backlog = true
		}
	}
	// A rung queue half full counts once it stays so for backlogFrames
	// frames in a row: x264's first frames, a GOP cache burst or a moment
	// without CPU fill a queue briefly, and each such blip used to start an
	// episode that then took 5 s per level to end, so a busy machine kept
	// the lowest rung at keyframes only most of the time (the browser
	// check saw a 240p rung lose 633 of its 741 frames on a box busy with
	// Chromium).
	if backlog {
		j.backlogRun++
	} else {
		j.backlogRun = 0
	}
	if j.backlogRun >= backlogFrames {
		busy = true
	}
	for i, r := range j.rungs {
		// Encode time only speaks for a rung that encodes every frame: a
		// shedding rung encodes mostly keyframes, the dearest frames, and
		// its average would keep the job "busy" forever.
		if shedding := j.level > n-1-i; !shedding && time.Duration(r.encNanos.Load()) > j.frameDur {
			busy = true
		}
	}
	if busy {
		j.lastBusy = now
	}
	max := 2 * len(j.rungs)
	switch {
	case busy && j.level < max && now.Sub(j.lastChange) >= overloadStep:
		if j.level == 0 {
			j.episode++
			j.epDropped = j.dropped()
			j.t.m.overloads.Inc()
			j.log.Warn("transcoder behind the source, dropping frames of the lowest rungs",
				"episode", j.episode, "lag", lag.Round(time.Millisecond), "queue", j.queueFill())
		}
		j.level++
		j.lastChange = now
		j.resetEncodeTimes()
	case !busy && j.level > 0 && now.Sub(j.lastChange) >= calmStep && now.Sub(j.lastBusy) >= calmStep:
		j.level--
		j.lastChange = now
		j.resetEncodeTimes()
		if j.level == 0 {
			j.log.Info("transcoder caught up", "episode", j.episode, "frames_dropped", j.dropped()-j.epDropped)
		}
	}
}

// resetEncodeTimes starts the encode-time averages afresh after the
// overload level changed: what a rung cost while shedding says nothing about
// what it costs at full rate.
func (j *job) resetEncodeTimes() {
	for _, r := range j.rungs {
		r.encNanos.Store(0)
	}
}

func (j *job) dropped() uint64 {
	var n uint64
	for _, r := range j.rungs {
		n += r.dropped.Load()
	}
	return n
}

func (j *job) queueFill() []int {
	out := make([]int, len(j.rungs))
	for i, r := range j.rungs {
		out[i] = len(r.in)
	}
	return out
}

func (j *job) setupRungs(f *astiav.Frame) {
	w, h := f.Width(), f.Height()
	fps := j.video.FrameRate
	if fps <= 0 || fps > 240 {
		if fr := j.dec.Framerate(); fr.Num() > 0 && fr.Den() > 0 {
			fps = fr.Float64()
		}
	}
	if fps <= 0 || fps > 240 {
		fps = 30
	}
	j.frameDur = time.Duration(float64(time.Second) / fps)
	for _, rc := range j.ladder.Rungs {
		if rc.Height > h {
			j.log.Info("rung skipped: taller than the source", "rung", rc.Name, "height", rc.Height, "source_height", h)
			continue
		}
		if rw := rungWidth(rc, w, h); nearSize(rw, w) && nearSize(rc.Height, h) {
			// Re-encoding the source at its own size only adds a
			// worse copy of it: the source is this rendition.
			j.log.Info("rung skipped: the source is that size", "rung", rc.Name, "size", fmt.Sprintf("%dx%d", rw, rc.Height), "source", fmt.Sprintf("%dx%d", w, h))
			continue
		}
		r, err := newRung(j, rc, w, h, fps)
		if err != nil {
			j.log.Error("rung not started", "rung", rc.Name, "error", err)
			continue
		}
		j.rungs = append(j.rungs, r)
	}
	names := make([]string, len(j.rungs))
	for i, r := range j.rungs {
		names[i] = fmt.Sprintf("%s %dx%d", r.conf.Name, r.w, r.h)
		go r.run()
	}
	j.log.Info("ladder running", "source", fmt.Sprintf("%dx%d@%.3g", w, h, fps), "rungs", names)
}

// audio shares one audio unit with every rendition.
func (j *job) audio(u *engine.Unit) {
	if !j.setup {
		// The renditions start with the first decoded picture, a few
		// frames (decoder threads) after its packet went in; audio of
		// that stretch waits here so renditions start with both.
		if len(j.early) < maxEarlyAudio {
			j.early = append(j.early, u)
		}
		return
	}
	if len(j.rungs) == 0 {
		return
	}
	if j.bridge != nil {
		err := j.bridge.Convert(u, func(o *engine.Unit) {
			o.Track = 1
			j.writeAudio(o)
		})
		if err != nil {
			j.decodeError(u, err)
		}
		return
	}
	if u.Track != 1 {
		// Renditions carry audio as track 1; units are immutable, so
		// one shallow copy is shared by every rung.
		c := *u
		c.Track = 1
		u = &c
	}
	j.writeAudio(u)
}

func (j *job) writeAudio(u *engine.Unit) {
	for _, r := range j.rungs {
		r.write(u)
	}
}

// finish runs once, on the reader's goroutine when the source ends or the
// reader is closed: it flushes the decoder, lets every rung drain and
// close its rendition, and frees the C state.
func (j *job) finish() {
	select {
	case <-j.done:
		return
	default:
	}
	defer func() {
		close(j.done)
		j.t.jobDone(j)
	}()
	select {
	case <-j.stopping:
	default:
		if j.dec != nil && !j.idle && len(j.rungs) > 0 {
			// The source ended: the frames the decoder's threads
			// still hold belong to the renditions too.
			if err := j.dec.SendPacket(nil); err == nil {
				j.receiveFrames()
			}
		}
	}
	for _, r := range j.rungs {
		close(r.in)
	}
	for _, r := range j.rungs {
		<-r.done
	}
	j.free()
	releaseCMemory()
	drops := make([]string, len(j.rungs))
	for i, r := range j.rungs {
		drops[i] = fmt.Sprintf("%s:%d/%d", r.conf.Name, r.dropped.Load(), r.dropped.Load()+r.encoded.Load())
	}
	j.log.Info("transcode job ended", "frames_dropped", drops, "decode_errors", j.errs)
}

func (j *job) free() {
	if j.dec != nil {
		j.dec.Free()
		j.dec = nil
	}
	if j.pkt != nil {
		j.pkt.Free()
		j.pkt = nil
	}
	if j.frame != nil {
		j.frame.Free()
		j.frame = nil
	}
	if j.bridge != nil {
		j.bridge.Close()
		j.bridge = nil
	}
}
