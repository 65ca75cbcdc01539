package transcode

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asticode/go-astiav"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveengine/liveengine/engine"
)

// renditionClaimWait bounds how long a new job waits for the previous
// job of the same stream to release a rendition.
const renditionClaimWait = 3 * time.Second

// frameItem is a decoded frame on its way to one rung. f is the rung's own
// reference to the shared decoded picture; the rung frees it.
type frameItem struct {
	f   *astiav.Frame
	tm  timing
	key bool
}

// rung scales and encodes one rendition on its own goroutine and publishes
// it into the engine.
type rung struct {
	j    *job
	conf Rung
	w, h int

	enc    *astiav.CodecContext
	encPkt *astiav.Packet
	sws    *astiav.SoftwareScaleContext
	swsSrc [3]int // width, height, pixel format the scaler was built for
	scaled *astiav.Frame
	params [][]byte // SPS/PPS from the encoder's global header

	pub      *engine.Publisher
	writeMu  sync.Mutex // video (rung goroutine) and audio (reader goroutine)
	videoOut bool       // the first picture is out; guarded by writeMu
	pending  []*engine.Unit

	in    chan frameItem
	times timeRing
	nalus [][]byte

	// Decoding goroutine only.
	needKey  bool
	dropTick int

	dropped  atomic.Uint64
	encoded  atomic.Uint64
	encNanos atomic.Int64 // moving average of scale+encode time per frame

	encodedC prometheus.Counter
	droppedC prometheus.Counter
	encHist  prometheus.Observer

	done chan struct{}
}

// evenWidth keeps the source's aspect ratio at height h, rounded to even as
// 4:2:0 needs (the CLI's scale=-2:h).
func evenWidth(srcW, srcH, h int) int {
	w := int(float64(srcW)*float64(h)/float64(srcH)/2+0.5) * 2
	if w < 2 {
		w = 2
	}
	return w
}

// rungWidth is the width rung rc encodes for a srcW x srcH source.
func rungWidth(rc Rung, srcW, srcH int) int {
	if rc.Width != 0 {
		return rc.Width
	}
	return evenWidth(srcW, srcH, rc.Height)
}

// nearSize reports whether a rung dimension is within a few pixels of the
// source's (16, or 4 % for large pictures): encoders pad 360 to 368 and
// 1080 to 1088, and a rung that close to the source is no rendition of its
// own.
func nearSize(rung, src int) bool {
	d := src - rung
	if d < 0 {
		d = -d
	}
	return d <= max(16, src/25)
}

func newRung(j *job, rc Rung, srcW, srcH int, fps float64) (*rung, error) {
	r := &rung{
		j:        j,
		conf:     rc,
		w:        rc.Width,
		h:        rc.Height,
		in:       make(chan frameItem, j.t.conf.RungQueue),
		needKey:  true,
		done:     make(chan struct{}),
		encodedC: j.t.m.encoded.WithLabelValues(rc.Name),
		droppedC: j.t.m.dropped.WithLabelValues(rc.Name),
		encHist:  j.t.m.encodeTime.WithLabelValues(rc.Name),
	}
	r.w = rungWidth(rc, srcW, srcH)
	ok := false
	defer func() {
		if !ok {
			r.free()
		}
	}()
	if err := r.openEncoder(fps); err != nil {
		return nil, err
	}
	r.encPkt = astiav.AllocPacket()
	r.scaled = astiav.AllocFrame()
	r.scaled.SetWidth(r.w)
	r.scaled.SetHeight(r.h)
	r.scaled.SetPixelFormat(astiav.PixelFormatYuv420P)
	if err := r.scaled.AllocBuffer(0); err != nil {
		return nil, fmt.Errorf("rung %s: frame buffer: %w", rc.Name, err)
	}

	var sps, pps []byte
	for _, n := range splitAnnexB(r.enc.ExtraData(), nil) {
		switch n[0] & 0x1f {
		case 7:
			sps = n
		case 8:
			pps = n
		}
	}
	if sps == nil || pps == nil {
		return nil, fmt.Errorf("rung %s: encoder global header has no SPS/PPS", rc.Name)
	}
	r.params = [][]byte{sps, pps}
	tracks := []*engine.Track{{
		Codec: engine.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps,
		Width: r.w, Height: r.h, FrameRate: fps, Bitrate: int(rc.Bitrate),
	}}
	if j.audioOut != nil {
		tracks = append(tracks, j.audioOut)
	}
	pub, err := j.t.eng.PublishRendition(j.src.Group(), rc.Name)
	for wait := time.Now().Add(renditionClaimWait); errors.Is(err, engine.ErrStreamBusy) && time.Now().Before(wait); {
		// A source that reconnects at once finds its previous job still
		// flushing this rendition; that takes a few frames.
		time.Sleep(20 * time.Millisecond)
		pub, err = j.t.eng.PublishRendition(j.src.Group(), rc.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("rung %s: %w", rc.Name, err)
	}
	if _, err := pub.Start(tracks); err != nil {
		pub.Close()
		return nil, fmt.Errorf("rung %s: start rendition: %w", rc.Name, err)
	}
	r.pub = pub
	ok = true
	return r, nil
}

func (r *rung) openEncoder(fps float64) error {
	c := astiav.FindEncoderByName("libx264")
	if c == nil {
		return errors.New("no libx264 encoder in libavcodec")
	}
	r.enc = astiav.AllocCodecContext(c)
	if r.enc == nil {
		return errors.New("allocating encoder failed")
	}
	l, rc := r.j.ladder, r.conf
	r.enc.SetWidth(r.w)
	r.enc.SetHeight(r.h)
	r.enc.SetPixelFormat(astiav.PixelFormatYuv420P)
	r.enc.SetSampleAspectRatio(astiav.NewRational(1, 1))
	r.enc.SetTimeBase(astiav.NewRational(1, 90000))
	r.enc.SetFramerate(astiav.NewRational(int(fps*1000+0.5), 1000))
	r.enc.SetBitRate(int64(rc.Bitrate))
	// Global header: SPS/PPS come out of extradata at open, so the
	// rendition's track is complete before the first frame.
	r.enc.SetFlags(r.enc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	maxrate := rc.MaxRate
	if maxrate == 0 {
		maxrate = rc.Bitrate
	}
	bufsize := rc.BufSize
	if bufsize == 0 {
		bufsize = maxrate
	}
	d := astiav.NewDictionary()
	defer d.Free()
	opts := [][2]string{
		{"preset", l.Preset},
		{"profile", rc.Profile},
		{"maxrate", strconv.Itoa(int(maxrate))},
		{"bufsize", strconv.Itoa(int(bufsize))},
		{"bf", "0"},
		// Keyframes are ours to place (every source keyframe, at least
		// every GOP frames); x264's own interval is set past that so it
		// never cuts a GOP on one rung only.
		{"g", strconv.Itoa(2 * l.GOP)},
		{"sc_threshold", "0"},
		{"forced-idr", "1"},
		{"threads", strconv.Itoa(l.Threads)},
		{"x264-params", "scenecut=0:open-gop=0"},
	}
	if l.Tune != "" {
		opts = append(opts, [2]string{"tune", l.Tune})
	}
	for _, o := range opts {
		if err := d.Set(o[0], o[1], 0); err != nil {
			return fmt.Errorf("x264 option %s=%s: %w", o[0], o[1], err)
		}
	}
	if err := r.enc.Open(c, d); err != nil {
		return fmt.Errorf("opening libx264 for %dx%d: %w", r.w, r.h, err)
	}
	return nil
}

// drop counts a frame this rung did not encode.
func (r *rung) drop() {
	r.dropped.Add(1)
	r.droppedC.Inc()
}

func (r *rung) run() {
	defer close(r.done)
	for it := range r.in {
		r.encode(it)
	}
	// Flush: with zerolatency x264 holds nothing back, but a non-live
	// tune would, and those frames belong to the rendition.
	if err := r.enc.SendFrame(nil); err == nil {
		r.receive()
	}
	r.pub.Close()
	r.free()
}

func (r *rung) encode(it frameItem) {
	defer it.f.Free()
	start := time.Now()
	src := it.f
	frame := src
	if src.Width() != r.w || src.Height() != r.h || src.PixelFormat() != astiav.PixelFormatYuv420P {
		if err := r.scale(src); err != nil {
			r.drop()
			r.j.log.Warn("rung cannot scale", "rung", r.conf.Name, "error", err)
			return
		}
		frame = r.scaled
	}
	frame.SetPts(it.tm.ts)
	if it.key {
		frame.SetPictureType(astiav.PictureTypeI)
	} else {
		frame.SetPictureType(astiav.PictureTypeNone)
	}
	r.times.put(it.tm)
	if err := r.enc.SendFrame(frame); err != nil {
		r.drop()
		r.j.log.Warn("rung cannot encode", "rung", r.conf.Name, "error", err)
		return
	}
	r.receive()
	took := time.Since(start)
	r.encHist.Observe(took.Seconds())
	// Exponential moving average over ~8 frames.
	old := r.encNanos.Load()
	r.encNanos.Store(old + (int64(took)-old)/8)
}

func (r *rung) scale(src *astiav.Frame) error {
	key := [3]int{src.Width(), src.Height(), int(src.PixelFormat())}
	if r.sws == nil || key != r.swsSrc {
		if r.sws != nil {
			r.sws.Free()
			r.sws = nil
		}
		// Bicubic, as the ffmpeg CLI's scale filter uses by default.
		s, err := astiav.CreateSoftwareScaleContext(key[0], key[1], src.PixelFormat(), r.w, r.h,
			astiav.PixelFormatYuv420P, astiav.NewSoftwareScaleContextFlags(astiav.SoftwareScaleContextFlagBicubic))
		if err != nil {
			return fmt.Errorf("scaler %dx%d -> %dx%d: %w", key[0], key[1], r.w, r.h, err)
		}
		r.sws, r.swsSrc = s, key
	}
	return r.sws.ScaleFrame(src, r.scaled)
}

// receive turns every packet the encoder has ready into a unit.
func (r *rung) receive() {
	for {
		r.encPkt.Unref()
		if err := r.enc.ReceivePacket(r.encPkt); err != nil {
			if !errors.Is(err, astiav.ErrEagain) && !errors.Is(err, astiav.ErrEof) {
				r.j.log.Warn("rung encoder failed", "rung", r.conf.Name, "error", err)
			}
			return
		}
		data := r.encPkt.Data() // a Go copy: NAL units below alias it
		r.nalus = splitAnnexB(data, r.nalus[:0])
		if len(r.nalus) == 0 {
			continue
		}
		key := r.encPkt.Flags().Has(astiav.PacketFlagKey)
		nalus := make([][]byte, 0, len(r.nalus)+2)
		if key && !hasParams(engine.CodecH264, r.nalus) {
			// In-band parameter sets on every IDR: any reader can
			// start at any keyframe of any rendition.
			nalus = append(nalus, r.params...)
		}
		nalus = append(nalus, r.nalus...)
		tm, _ := r.times.get(r.encPkt.Pts())
		u := &engine.Unit{Track: 0, PTS: tm.pts, DTS: tm.pts, Key: key, NTP: tm.ntp, NALUs: withUserData(nalus, tm.userData)}
		r.write(u)
		r.encoded.Add(1)
		r.encodedC.Inc()
	}
}

// write publishes a unit of the rendition. Readers of a stream start at
// its first video keyframe and skip what came before, so audio that is
// ready before the rung's first picture waits for it.
func (r *rung) write(u *engine.Unit) {
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	if u.Track != 0 && !r.videoOut {
		if len(r.pending) < maxEarlyAudio {
			r.pending = append(r.pending, u)
		}
		return
	}
	r.pub.Write(u)
	if u.Track == 0 && !r.videoOut {
		r.videoOut = true
		for _, a := range r.pending {
			if a.PTS >= u.PTS-r.j.frameDur {
				r.pub.Write(a)
			}
		}
		r.pending = nil
	}
}

func (r *rung) free() {
	if r.enc != nil {
		r.enc.Free()
		r.enc = nil
	}
	if r.encPkt != nil {
		r.encPkt.Free()
		r.encPkt = nil
	}
	if r.sws != nil {
		r.sws.Free()
		r.sws = nil
	}
	if r.scaled != nil {
		r.scaled.Free()
		r.scaled = nil
	}
}
