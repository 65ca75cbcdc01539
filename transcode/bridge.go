package transcode

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/asticode/go-astiav"

	"github.com/liveengine/liveengine/engine"
)

// ErrUnsupportedBridge is returned by NewAudioBridge for a conversion it does
// not do: it bridges AAC -> Opus and Opus -> AAC only.
var ErrUnsupportedBridge = errors.New("unsupported audio bridge")

// Audio bridge output settings. Opus is always 48 kHz with 20 ms frames, as
// WebRTC expects; AAC keeps 48 kHz so an Opus source needs no rate change.
const (
	bridgeSampleRate = 48000
	opusFrameSamples = 960 // 20 ms at 48 kHz
	opusBitrate      = 96000
	aacBitrate       = 128000
	// bridgeGap is the input timestamp jump that counts as a discontinuity
	// (a lost stretch of audio) rather than jitter: the output clock is
	// moved by the jump so audio stays in sync with video.
	bridgeGap = 200 * time.Millisecond
)

// AudioBridge converts one audio track between AAC and Opus: decode, resample
// to 48 kHz and regroup samples into the target codec's frame size (a
// libavfilter graph), encode. WHIP sources (Opus) need AAC for HLS; RTMP
// sources (AAC) need Opus for WebRTC viewers.
//
// An AudioBridge is used from one goroutine at a time.
type AudioBridge struct {
	from *engine.Track
	out  *engine.Track

	dec      *astiav.CodecContext
	enc      *astiav.CodecContext
	frameLen int // samples per encoded frame

	graph     *astiav.FilterGraph
	graphIn   *astiav.FilterContext
	graphOut  *astiav.FilterContext
	graphDesc string // input format the graph was built for

	inPkt     *astiav.Packet
	decFrame  *astiav.Frame
	filtFrame *astiav.Frame
	encPkt    *astiav.Packet

	started    bool
	base       time.Duration // PTS of the first input unit
	next       time.Duration // expected PTS of the next input unit
	shift      time.Duration // accumulated input discontinuities
	samplesIn  int64         // samples handed to the encoder
	firstPkt   int64         // PTS (samples) of the first encoded packet
	havePkt    bool
	decodeErrs int
	scratch    []byte
}

// NewAudioBridge builds a bridge from the track from (AAC or Opus) to the
// codec to (Opus or AAC). The output track is known at once, before any unit
// is converted, so publishers can announce it.
func NewAudioBridge(from *engine.Track, to engine.Codec) (*AudioBridge, error) {
	if from == nil {
		return nil, fmt.Errorf("audio bridge: nil track: %w", ErrUnsupportedBridge)
	}
	var decID, encName string
	var encFmt astiav.SampleFormat
	switch {
	case from.Codec == engine.CodecAAC && to == engine.CodecOpus:
		decID, encName, encFmt = "aac", "libopus", astiav.SampleFormatFlt
	case from.Codec == engine.CodecOpus && to == engine.CodecAAC:
		decID, encName, encFmt = "opus", "aac", astiav.SampleFormatFltp
	default:
		return nil, fmt.Errorf("audio bridge %s -> %s: %w", from.Codec, to, ErrUnsupportedBridge)
	}
	channels := 2
	if from.Channels == 1 {
		channels = 1
	}
	layout := astiav.ChannelLayoutStereo
	if channels == 1 {
		layout = astiav.ChannelLayoutMono
	}

	b := &AudioBridge{from: from}
	ok := false
	defer func() {
		if !ok {
			b.Close()
		}
	}()

	dc := astiav.FindDecoderByName(decID)
	if dc == nil {
		return nil, fmt.Errorf("audio bridge: no %s decoder in libavcodec", decID)
	}
	b.dec = astiav.AllocCodecContext(dc)
	if b.dec == nil {
		return nil, errors.New("audio bridge: allocating decoder failed")
	}
	inRate := from.SampleRate
	if inRate <= 0 {
		inRate = from.ClockRate
	}
	if from.Codec == engine.CodecOpus || inRate <= 0 {
		inRate = bridgeSampleRate
	}
	b.dec.SetSampleRate(inRate)
	if from.Channels == 1 {
		b.dec.SetChannelLayout(astiav.ChannelLayoutMono)
	} else {
		b.dec.SetChannelLayout(astiav.ChannelLayoutStereo)
	}
	b.dec.SetTimeBase(astiav.NewRational(1, inRate))
	if from.Codec == engine.CodecAAC {
		if len(from.AACConfig) == 0 {
			return nil, fmt.Errorf("audio bridge: AAC track without AudioSpecificConfig: %w", ErrUnsupportedBridge)
		}
		if err := b.dec.SetExtraData(from.AACConfig); err != nil {
			return nil, fmt.Errorf("audio bridge: decoder extradata: %w", err)
		}
	}
	if err := b.dec.Open(dc, nil); err != nil {
		return nil, fmt.Errorf("audio bridge: opening %s decoder: %w", decID, err)
	}

	ec := astiav.FindEncoderByName(encName)
	if ec == nil {
		return nil, fmt.Errorf("audio bridge: no %s encoder in libavcodec", encName)
	}
	b.enc = astiav.AllocCodecContext(ec)
	if b.enc == nil {
		return nil, errors.New("audio bridge: allocating encoder failed")
	}
	b.enc.SetSampleRate(bridgeSampleRate)
	b.enc.SetChannelLayout(layout)
	b.enc.SetSampleFormat(encFmt)
	b.enc.SetTimeBase(astiav.NewRational(1, bridgeSampleRate))
	// Global header: the AAC AudioSpecificConfig lands in extradata, which
	// the output track carries; units then hold raw frames.
	b.enc.SetFlags(b.enc.Flags().Add(astiav.CodecContextFlagGlobalHeader))
	if to == engine.CodecOpus {
		b.enc.SetBitRate(opusBitrate)
	} else {
		b.enc.SetBitRate(aacBitrate)
	}
	if err := b.enc.Open(ec, nil); err != nil {
		return nil, fmt.Errorf("audio bridge: opening %s encoder: %w", encName, err)
	}
	b.frameLen = b.enc.FrameSize()
	if b.frameLen <= 0 {
		b.frameLen = opusFrameSamples
	}

	b.out = &engine.Track{Codec: to, ClockRate: bridgeSampleRate, SampleRate: bridgeSampleRate, Channels: channels}
	if to == engine.CodecAAC {
		b.out.AACConfig = append([]byte(nil), b.enc.ExtraData()...)
		b.out.Bitrate = aacBitrate
	} else {
		b.out.Bitrate = opusBitrate
	}

	b.inPkt = astiav.AllocPacket()
	b.decFrame = astiav.AllocFrame()
	b.filtFrame = astiav.AllocFrame()
	b.encPkt = astiav.AllocPacket()
	ok = true
	return b, nil
}

// OutputTrack returns the track the converted units belong to. Callers set
// Unit.Track themselves; the bridge leaves it as it was in the input.
func (b *AudioBridge) OutputTrack() *engine.Track { return b.out }

// Convert decodes u (an audio unit of the input track, Payload set) and calls
// emit for every output unit that became ready, with PTS on the input's
// stream clock. A unit that does not decode is reported as an error and
// skipped: the bridge keeps working with the next one.
func (b *AudioBridge) Convert(u *engine.Unit, emit func(*engine.Unit)) error {
	if len(u.Payload) == 0 {
		return nil
	}
	if !b.started {
		b.started = true
		b.base, b.next = u.PTS, u.PTS
	}
	if d := u.PTS - b.next; d > bridgeGap || d < -bridgeGap {
		b.shift += d
	}

	b.scratch = append(b.scratch[:0], u.Payload...)
	if err := packetFrom(b.inPkt, b.scratch, len(u.Payload)); err != nil {
		return fmt.Errorf("audio bridge: packet: %w", err)
	}
	rate := b.dec.SampleRate()
	b.inPkt.SetPts(int64(u.PTS) * int64(rate) / int64(time.Second))
	if err := b.dec.SendPacket(b.inPkt); err != nil {
		b.decodeErrs++
		return fmt.Errorf("audio bridge: decode %s unit at %s: %w", b.from.Codec, u.PTS, err)
	}
	for {
		b.decFrame.Unref()
		if err := b.dec.ReceiveFrame(b.decFrame); err != nil {
			if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
				break
			}
			return fmt.Errorf("audio bridge: decode: %w", err)
		}
		if n := b.decFrame.NbSamples(); n > 0 && b.decFrame.SampleRate() > 0 {
			b.next = u.PTS + time.Duration(n)*time.Second/time.Duration(b.decFrame.SampleRate())
		}
		if err := b.filter(b.decFrame, u, emit); err != nil {
			return err
		}
	}
	return nil
}

// filter pushes a decoded frame through the resample/regroup graph and
// encodes what comes out.
func (b *AudioBridge) filter(f *astiav.Frame, u *engine.Unit, emit func(*engine.Unit)) error {
	desc := f.SampleFormat().Name() + "/" + strconv.Itoa(f.SampleRate()) + "/" + strconv.Itoa(f.ChannelLayout().NbChannels())
	if b.graph == nil || desc != b.graphDesc {
		if err := b.buildGraph(f); err != nil {
			return err
		}
		b.graphDesc = desc
	}
	if err := b.graphIn.BuffersrcAddFrame(f, astiav.NewBuffersrcFlags(astiav.BuffersrcFlagKeepRef)); err != nil {
		return fmt.Errorf("audio bridge: filter input: %w", err)
	}
	for {
		b.filtFrame.Unref()
		if err := b.graphOut.BuffersinkGetFrame(b.filtFrame, astiav.NewBuffersinkFlags()); err != nil {
			if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
				return nil
			}
			return fmt.Errorf("audio bridge: filter output: %w", err)
		}
		// Our own sample counter is the encoder clock: continuous, so
		// the encoder never sees a timestamp jump.
		b.filtFrame.SetPts(b.samplesIn)
		b.samplesIn += int64(b.filtFrame.NbSamples())
		if err := b.enc.SendFrame(b.filtFrame); err != nil {
			return fmt.Errorf("audio bridge: encode: %w", err)
		}
		if err := b.drain(u, emit); err != nil {
			return err
		}
	}
}

func (b *AudioBridge) drain(u *engine.Unit, emit func(*engine.Unit)) error {
	for {
		b.encPkt.Unref()
		if err := b.enc.ReceivePacket(b.encPkt); err != nil {
			if errors.Is(err, astiav.ErrEagain) || errors.Is(err, astiav.ErrEof) {
				return nil
			}
			return fmt.Errorf("audio bridge: encode: %w", err)
		}
		if !b.havePkt {
			// The encoder's priming delay shows as a negative first
			// PTS; anchoring the first packet at the first input PTS
			// keeps the output clock non-negative and continuous.
			b.havePkt, b.firstPkt = true, b.encPkt.Pts()
		}
		pts := b.base + b.shift + time.Duration(b.encPkt.Pts()-b.firstPkt)*time.Second/bridgeSampleRate
		out := &engine.Unit{
			Track:   u.Track,
			PTS:     pts,
			DTS:     pts,
			Key:     true,
			Payload: b.encPkt.Data(), // a Go copy of the packet
		}
		if !u.NTP.IsZero() {
			out.NTP = u.NTP.Add(pts - u.PTS)
		}
		emit(out)
	}
}

func (b *AudioBridge) buildGraph(f *astiav.Frame) error {
	b.freeGraph()
	g := astiav.AllocFilterGraph()
	if g == nil {
		return errors.New("audio bridge: allocating filter graph failed")
	}
	b.graph = g
	g.SetThreadCount(1)
	layout := f.ChannelLayout()
	if !layout.Valid() || layout.NbChannels() == 0 {
		layout = astiav.ChannelLayoutStereo
	}
	args := astiav.FilterArgs{
		"channel_layout": layout.String(),
		"sample_fmt":     f.SampleFormat().Name(),
		"sample_rate":    strconv.Itoa(f.SampleRate()),
		"time_base":      "1/" + strconv.Itoa(f.SampleRate()),
	}
	var err error
	if b.graphIn, err = g.NewFilterContext(astiav.FindFilterByName("abuffer"), "in", args); err != nil {
		return fmt.Errorf("audio bridge: abuffer: %w", err)
	}
	if b.graphOut, err = g.NewFilterContext(astiav.FindFilterByName("abuffersink"), "out", nil); err != nil {
		return fmt.Errorf("audio bridge: abuffersink: %w", err)
	}
	outputs := astiav.AllocFilterInOut()
	defer outputs.Free()
	inputs := astiav.AllocFilterInOut()
	defer inputs.Free()
	outputs.SetName("in")
	outputs.SetFilterContext(b.graphIn)
	outputs.SetPadIdx(0)
	outputs.SetNext(nil)
	inputs.SetName("out")
	inputs.SetFilterContext(b.graphOut)
	inputs.SetPadIdx(0)
	inputs.SetNext(nil)
	desc := fmt.Sprintf("aresample=%d,aformat=sample_fmts=%s:channel_layouts=%s,asetnsamples=n=%d:p=0",
		bridgeSampleRate, b.enc.SampleFormat().Name(), b.enc.ChannelLayout().String(), b.frameLen)
	if err := g.Parse(desc, inputs, outputs); err != nil {
		return fmt.Errorf("audio bridge: filter %q: %w", desc, err)
	}
	if err := g.Configure(); err != nil {
		return fmt.Errorf("audio bridge: configure filter: %w", err)
	}
	return nil
}

func (b *AudioBridge) freeGraph() {
	if b.graph != nil {
		b.graph.Free() // frees its filter contexts too
		b.graph, b.graphIn, b.graphOut = nil, nil, nil
	}
}

// Close frees the bridge's codec contexts, filter graph, frames and packets.
func (b *AudioBridge) Close() {
	b.freeGraph()
	if b.dec != nil {
		b.dec.Free()
		b.dec = nil
	}
	if b.enc != nil {
		b.enc.Free()
		b.enc = nil
	}
	for _, f := range []**astiav.Frame{&b.decFrame, &b.filtFrame} {
		if *f != nil {
			(*f).Free()
			*f = nil
		}
	}
	for _, p := range []**astiav.Packet{&b.inPkt, &b.encPkt} {
		if *p != nil {
			(*p).Free()
			*p = nil
		}
	}
}
