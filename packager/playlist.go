package packager

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
)

// hlsVersion is the EXT-X-VERSION of every playlist: 9 covers LL-HLS
// (parts, preload hints, rendition reports, blocking reload).
const hlsVersion = 9

func segmentURI(msn uint64) string { return "seg" + strconv.FormatUint(msn, 10) + ".mp4" }

func partURI(msn uint64, i int) string {
	return "part" + strconv.FormatUint(msn, 10) + "." + strconv.Itoa(i) + ".mp4"
}

// playlistLocked returns the media playlist, rebuilt when the group changed
// since the cached copy. siblings are the group's other renditions.
func (r *rendition) playlistLocked(siblings []*rendition) ([]byte, error) {
	gen := r.grp.gen.Load()
	if r.cache != nil && r.cacheGen == gen {
		return r.cache, nil
	}
	td := r.targetDur
	pt := r.partTarget
	hold := 3 * pt
	m := playlist.Media{
		Version:        hlsVersion,
		TargetDuration: td,
		ServerControl:  &playlist.MediaServerControl{CanBlockReload: true, PartHoldBack: &hold},
		PartInf:        &playlist.MediaPartInf{PartTarget: pt},
		Map:            &playlist.MediaMap{URI: "init.mp4"},
	}
	switch {
	case len(r.segs) > 0:
		m.MediaSequence = int(r.segs[0].msn)
	case r.cur != nil:
		m.MediaSequence = int(r.cur.msn)
	}

	// Parts are listed for the segments within three target durations of
	// the live edge, as the spec asks; older segments appear whole.
	edge := time.Duration(0)
	if r.cur != nil {
		edge = r.cur.start + r.cur.partsDur()
	} else if n := len(r.segs); n > 0 {
		edge = r.segs[n-1].start + r.segs[n-1].dur
	}
	partWindow := 3 * time.Duration(td) * time.Second
	for _, s := range r.segs {
		ms := &playlist.MediaSegment{Duration: s.dur, URI: segmentURI(s.msn)}
		if !s.ntp.IsZero() {
			t := s.ntp
			ms.DateTime = &t
		}
		if edge-(s.start+s.dur) < partWindow {
			ms.Parts = mediaParts(s)
		}
		m.Segments = append(m.Segments, ms)
	}
	head, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal media playlist: %w", err)
	}
	if r.cur != nil {
		m.Parts = mediaParts(r.cur)
		if !r.ended {
			m.PreloadHint = &playlist.MediaPreloadHint{URI: partURI(r.cur.msn, len(r.cur.parts))}
		}
	}
	for _, s := range siblings {
		if s == r || s.finished.Load() {
			continue
		}
		if msn, part, ok := s.lastReport(); ok {
			rep := &playlist.MediaRenditionReport{URI: "../" + s.name + "/stream.m3u8", LastMSN: int(msn)}
			rep.LastPart = &part
			m.RenditionReport = append(m.RenditionReport, rep)
		}
	}
	m.Endlist = r.ended
	full, err := m.Marshal()
	if err != nil {
		return nil, fmt.Errorf("marshal media playlist: %w", err)
	}
	// The library dates complete segments only; the in-progress segment,
	// whose parts follow the complete ones, gets its date here so a player
	// that starts before the first segment completes still has one.
	if r.cur != nil && len(r.cur.parts) > 0 && !r.cur.ntp.IsZero() && len(full) >= len(head) {
		date := "#EXT-X-PROGRAM-DATE-TIME:" + r.cur.ntp.UTC().Format("2006-01-02T15:04:05.999Z07:00") + "\n"
		out := make([]byte, 0, len(full)+len(date))
		out = append(out, full[:len(head)]...)
		out = append(out, date...)
		out = append(out, full[len(head):]...)
		full = out
	}
	r.cache, r.cacheGen = full, gen
	return full, nil
}

func mediaParts(s *segment) []*playlist.MediaPart {
	out := make([]*playlist.MediaPart, len(s.parts))
	for i, p := range s.parts {
		out[i] = &playlist.MediaPart{Duration: p.dur, URI: partURI(s.msn, i), Independent: p.indep}
	}
	return out
}

// variantLocked describes the rendition for the multivariant playlist;
// ok is false until the init segment exists (codecs are unknown before).
func (r *rendition) variantLocked() (v *playlist.MultivariantVariant, ok bool) {
	if r.init == nil {
		return nil, false
	}
	var bytes int
	var dur time.Duration
	peak := 0
	for _, s := range r.segs {
		bytes += len(s.data)
		dur += s.dur
		if s.dur > 0 {
			if b := int(float64(len(s.data)) * 8 / s.dur.Seconds()); b > peak {
				peak = b
			}
		}
	}
	if dur == 0 && r.cur != nil {
		// No complete segment yet: measure the parts so far.
		bytes, dur = r.cur.bytesLen(), r.cur.partsDur()
	}
	avg := 0
	if dur >= 500*time.Millisecond {
		avg = int(float64(bytes) * 8 / dur.Seconds())
	}
	if avg == 0 {
		avg = r.nominalBPS
	}
	if avg == 0 {
		avg = 2_000_000 // a guess a player can start with; measured values follow
	}
	if peak < avg {
		peak = avg
	}
	v = &playlist.MultivariantVariant{
		Bandwidth:        peak,
		AverageBandwidth: &avg,
		Codecs:           append([]string(nil), r.codecs...),
		URI:              r.name + "/stream.m3u8",
	}
	if r.width > 0 && r.height > 0 {
		v.Resolution = strconv.Itoa(r.width) + "x" + strconv.Itoa(r.height)
	}
	if fps := r.measuredFPSLocked(); fps > 0 {
		v.FrameRate = &fps
	} else if r.fps > 0 {
		f := r.fps
		v.FrameRate = &f
	}
	return v, true
}

// measuredFPSLocked is the frame rate the rendition delivered over its
// complete segments, or 0 before two exist or for audio-only. Close to
// the nominal rate it reports the nominal one, so jitter does not show.
func (r *rendition) measuredFPSLocked() float64 {
	if r.video == nil || len(r.segs) < 2 {
		return 0
	}
	frames, dur := 0, time.Duration(0)
	for _, s := range r.segs {
		frames, dur = frames+s.frames, dur+s.dur
	}
	if dur <= 0 {
		return 0
	}
	fps := float64(frames) / dur.Seconds()
	if r.fps > 0 && fps >= 0.95*r.fps {
		return r.fps
	}
	return math.Round(fps*1000) / 1000
}

// starvedFraction: a transcoder rendition that delivers under this
// fraction of the source's frame rate (an overloaded rung shedding frames,
// see transcode's overload policy) is left out of the multivariant
// playlist until it recovers, so new players do not start on a slide
// show. Players already on it keep its media playlist.
const starvedFraction = 0.5

// multivariant builds the multivariant playlist of renditions, highest
// bandwidth first; ok is false when none is ready.
func multivariant(renditions []*rendition) ([]byte, bool, error) {
	m := playlist.Multivariant{Version: hlsVersion}
	anyLive := false
	for _, r := range renditions {
		r.mu.Lock()
		if !r.ended {
			anyLive = true
		}
		r.mu.Unlock()
	}
	var srcFPS float64
	for _, r := range renditions {
		if r.name == sourceName {
			r.mu.Lock()
			if !r.ended {
				srcFPS = r.measuredFPSLocked()
			}
			r.mu.Unlock()
		}
	}
	for _, r := range renditions {
		r.mu.Lock()
		v, ok := r.variantLocked()
		skip := anyLive && r.ended // an ended rendition beside live ones is gone
		if r.name != sourceName && srcFPS > 0 {
			if fps := r.measuredFPSLocked(); fps > 0 && fps < starvedFraction*srcFPS {
				skip = true
			}
		}
		r.mu.Unlock()
		if ok && !skip {
			m.Variants = append(m.Variants, v)
		}
	}
	if len(m.Variants) == 0 {
		return nil, false, nil
	}
	sort.SliceStable(m.Variants, func(i, j int) bool { return m.Variants[i].Bandwidth > m.Variants[j].Bandwidth })
	b, err := m.Marshal()
	if err != nil {
		return nil, false, fmt.Errorf("marshal multivariant playlist: %w", err)
	}
	return b, true, nil
}
