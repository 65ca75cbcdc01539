package packager

import (
	"bytes"
	"errors"
	"strconv"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"

	"github.com/liveengine/liveengine/engine"
)

const (
	contentTypePlaylist = "application/vnd.apple.mpegurl"
	contentTypeMP4      = "video/mp4"
	// Playlists change with every part; blocking reloads make polling cheap.
	cacheControlPlaylist = "no-cache, no-store"
)

// Handle serves the /hls/ prefix. It is safe for concurrent use and may
// hold a request for a blocking reload or a preload-hinted part, at most
// three target durations.
func (p *Packager) Handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Response.Header
	h.Set("Access-Control-Allow-Origin", "*")
	switch {
	case ctx.IsGet(), ctx.IsHead():
	case ctx.IsOptions():
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
		h.Set("Access-Control-Allow-Headers", "Range, Origin, Accept, Content-Type")
		h.Set("Access-Control-Max-Age", "86400")
		ctx.SetStatusCode(fasthttp.StatusNoContent)
		return
	default:
		h.Set("Allow", "GET, HEAD, OPTIONS")
		p.fail(ctx, fasthttp.StatusMethodNotAllowed, "method not allowed")
		return
	}
	path := ctx.Path()
	res, err := parsePath(unsafe.String(unsafe.SliceData(path), len(path)))
	if err != nil {
		p.metrics.requests[0].Add(1)
		p.failErr(ctx, err)
		return
	}
	p.metrics.requests[res.kind].Add(1)
	g := p.group(res.group)
	if g == nil {
		if _, err := p.eng.Stream(res.group); err == nil {
			p.fail(ctx, fasthttp.StatusNotFound, "stream "+strconv.Quote(res.group)+" is live but has no track HLS can carry (H.264, AAC, Opus)")
			return
		}
		p.fail(ctx, fasthttp.StatusNotFound, "stream "+strconv.Quote(res.group)+" is not live")
		return
	}
	if res.kind == resMultivariant {
		p.serveMultivariant(ctx, g)
		return
	}
	r := g.rendition(res.rendition)
	if r == nil {
		p.fail(ctx, fasthttp.StatusNotFound, "rendition "+strconv.Quote(res.rendition)+" of stream "+strconv.Quote(res.group)+" is not live")
		return
	}
	switch res.kind {
	case resPlaylist:
		p.servePlaylist(ctx, g, r)
	case resInit:
		p.serveInit(ctx, r)
	case resSegment:
		p.serveSegment(ctx, r, res.msn)
	case resPart:
		p.servePart(ctx, r, res.msn, res.part)
	}
}

// fail answers with a plain-text error a person can act on.
func (p *Packager) fail(ctx *fasthttp.RequestCtx, status int, msg string) {
	p.metrics.errors.Add(1)
	ctx.Response.Header.Set("Cache-Control", "no-cache")
	ctx.SetContentType("text/plain; charset=utf-8")
	ctx.SetStatusCode(status)
	ctx.SetBodyString(msg + "\n")
}

func (p *Packager) failErr(ctx *fasthttp.RequestCtx, err error) {
	switch {
	case errors.Is(err, ErrBadRequest):
		p.fail(ctx, fasthttp.StatusBadRequest, err.Error())
	case errors.Is(err, ErrNotFound):
		p.fail(ctx, fasthttp.StatusNotFound, err.Error())
	default:
		p.fail(ctx, fasthttp.StatusInternalServerError, err.Error())
	}
}

// sendMedia sends an immutable byte slice without copying it.
func (p *Packager) sendMedia(ctx *fasthttp.RequestCtx, b []byte) {
	h := &ctx.Response.Header
	h.SetContentTypeBytes(mp4Type)
	h.SetBytesV("Cache-Control", p.mediaCacheControl())
	ctx.Response.SetBodyRaw(b)
	p.metrics.bytesServed.Add(uint64(len(b)))
}

var mp4Type = []byte(contentTypeMP4)

// mediaCacheControl lets caches keep media as long as an ended stream's
// playlists are served: URLs are reused only by a later publish of the same
// stream after it was forgotten.
func (p *Packager) mediaCacheControl() []byte {
	return p.cacheControl
}

func (p *Packager) sendPlaylist(ctx *fasthttp.RequestCtx, b []byte) {
	h := &ctx.Response.Header
	h.SetContentType(contentTypePlaylist)
	h.Set("Cache-Control", cacheControlPlaylist)
	ctx.Response.SetBodyRaw(b)
	p.metrics.bytesServed.Add(uint64(len(b)))
}

// viewer counts the client as a viewer of group g.
func (p *Packager) viewer(ctx *fasthttp.RequestCtx, g *group) {
	ip := ctx.RemoteIP()
	ip16 := ip.To16()
	p.sessions.seen(g.id, ip16, ctx.UserAgent(), time.Now(), func() *engine.Stream {
		s, err := p.eng.Stream(g.id)
		if err != nil {
			return nil
		}
		return s
	})
}

// startupHold is how long requests for a stream that is live but has not
// produced its first part yet are held: long enough for a keyframe.
// partsUnaware reports whether a User-Agent belongs to an HLS client that
// plays only whole segments: libavformat (ffmpeg, ffplay, mpv) and VLC.
func partsUnaware(ua []byte) bool {
	return bytes.HasPrefix(ua, []byte("Lavf/")) || bytes.Contains(ua, []byte("VLC/"))
}

func (p *Packager) startupHold() time.Duration {
	d := 3 * p.conf.SegmentDuration
	if d < 5*time.Second {
		d = 5 * time.Second
	}
	return d
}

func (p *Packager) serveMultivariant(ctx *fasthttp.RequestCtx, g *group) {
	p.viewer(ctx, g)
	deadline := time.Now().Add(p.startupHold())
	for {
		// Any change of any rendition bumps the generation; wait on one
		// rendition's broadcast at a time, bounded by a short tick, since
		// the multivariant playlist is asked once per player.
		list := g.list()
		b, ok, err := multivariant(list)
		if err != nil {
			p.fail(ctx, fasthttp.StatusInternalServerError, err.Error())
			return
		}
		if ok {
			p.sendPlaylist(ctx, b)
			return
		}
		if len(list) == 0 {
			p.fail(ctx, fasthttp.StatusNotFound, "stream "+strconv.Quote(g.id)+" is not live")
			return
		}
		r := list[0]
		r.mu.Lock()
		ready := r.waitLocked(func() bool { return r.init != nil }, deadline)
		ended := r.ended
		r.mu.Unlock()
		if !ready {
			if ended {
				p.fail(ctx, fasthttp.StatusNotFound, "stream "+strconv.Quote(g.id)+" ended before it produced media")
			} else {
				p.fail(ctx, fasthttp.StatusServiceUnavailable, "stream "+strconv.Quote(g.id)+" has not produced media yet; retry")
			}
			return
		}
	}
}

func (p *Packager) servePlaylist(ctx *fasthttp.RequestCtx, g *group, r *rendition) {
	br, err := parseBlocking(ctx.QueryArgs())
	if err != nil {
		p.failErr(ctx, err)
		return
	}
	p.viewer(ctx, g)
	siblings := g.list()
	r.mu.Lock()
	defer r.mu.Unlock()
	limit := p.startupHold()
	if r.fixed {
		limit = r.holdLimitLocked()
	}
	deadline := time.Now().Add(limit)
	// The first playlist waits until the targets are fixed, at the end of
	// the group's first segment (its first GOP): they must not change
	// afterwards. LL-HLS players then get it, with parts, as soon as a part
	// exists. Players that ignore EXT-X-PART (ffmpeg/ffplay/mpv, VLC) see a
	// playlist without segments as empty and give up, so they wait for the
	// rendition's first complete segment.
	hasMedia := func() bool { return r.fixed && (len(r.segs) > 0 || (r.cur != nil && len(r.cur.parts) > 0)) }
	if !br.active && partsUnaware(ctx.UserAgent()) {
		hasMedia = func() bool { return r.fixed && len(r.segs) > 0 }
		if d := time.Now().Add(p.startupHold()); d.After(deadline) {
			deadline = d
		}
	}
	if !r.waitLocked(hasMedia, deadline) {
		if r.ended {
			p.fail(ctx, fasthttp.StatusNotFound, "rendition ended before it produced media")
		} else {
			p.fail(ctx, fasthttp.StatusServiceUnavailable, "no media yet; retry")
		}
		return
	}
	if br.active {
		if r.cur != nil && br.msn > r.cur.msn+2 {
			p.fail(ctx, fasthttp.StatusBadRequest, "_HLS_msn="+strconv.FormatUint(br.msn, 10)+" is too far in the future (last is "+strconv.FormatUint(r.cur.msn, 10)+")")
			return
		}
		if br.part >= p.conf.MaxPartsPerSegment {
			p.fail(ctx, fasthttp.StatusBadRequest, "_HLS_part="+strconv.Itoa(br.part)+" exceeds the parts a segment can have")
			return
		}
		if !r.waitLocked(func() bool { return r.hasLocked(br.msn, br.part) }, deadline) && !r.ended {
			p.fail(ctx, fasthttp.StatusServiceUnavailable, "the requested part did not appear within three target durations")
			return
		}
	}
	b, err := r.playlistLocked(siblings)
	if err != nil {
		p.fail(ctx, fasthttp.StatusInternalServerError, err.Error())
		return
	}
	p.sendPlaylist(ctx, b)
}

// hasLocked reports whether the playlist contains part (msn, part), or
// segment msn complete when part < 0, or anything later.
func (r *rendition) hasLocked(msn uint64, part int) bool {
	if r.cur == nil {
		return len(r.segs) > 0 && r.segs[len(r.segs)-1].msn >= msn
	}
	if msn < r.cur.msn {
		// A part past the last one of a segment that is now complete
		// never comes: the next part there will be is the first of the
		// following segment, and the request holds until the playlist has
		// it (RFC 8216bis 6.2.5.2: the requested Partial Segment "or a
		// later one"). Answering at the segment's end sent a playlist
		// with no newer part than the client had.
		if s := r.segmentLocked(msn); part >= 0 && s != nil && len(s.parts) > 0 && part >= len(s.parts) {
			return r.hasLocked(msn+1, 0)
		}
		return true
	}
	return part >= 0 && msn == r.cur.msn && part < len(r.cur.parts)
}

// segmentLocked returns the complete segment msn, or nil.
func (r *rendition) segmentLocked(msn uint64) *segment {
	for i := len(r.segs) - 1; i >= 0; i-- {
		if s := r.segs[i]; s.msn == msn {
			return s
		} else if s.msn < msn {
			break
		}
	}
	return nil
}

func (p *Packager) serveInit(ctx *fasthttp.RequestCtx, r *rendition) {
	r.mu.Lock()
	ok := r.waitLocked(func() bool { return r.init != nil }, time.Now().Add(p.startupHold()))
	b := r.init
	r.mu.Unlock()
	if !ok {
		p.fail(ctx, fasthttp.StatusServiceUnavailable, "no init segment yet; retry")
		return
	}
	p.sendMedia(ctx, b)
}

func (p *Packager) serveSegment(ctx *fasthttp.RequestCtx, r *rendition, msn uint64) {
	r.mu.Lock()
	var b []byte
	find := func() bool {
		for _, s := range r.segs {
			if s.msn == msn {
				b = s.data
				return true
			}
		}
		return false
	}
	ok := find()
	if !ok && r.cur != nil && r.cur.msn == msn {
		// The segment in progress: hold until it is complete.
		ok = r.waitLocked(find, time.Now().Add(r.holdLimitLocked()))
	}
	r.mu.Unlock()
	if !ok {
		p.fail(ctx, fasthttp.StatusNotFound, "segment "+strconv.FormatUint(msn, 10)+" is not available")
		return
	}
	p.sendMedia(ctx, b)
}

func (p *Packager) servePart(ctx *fasthttp.RequestCtx, r *rendition, msn uint64, idx int) {
	r.mu.Lock()
	b, state := r.findPartLocked(msn, idx)
	if state == partNext {
		// The preload-hinted part: hold until it is complete.
		r.waitLocked(func() bool {
			b, state = r.findPartLocked(msn, idx)
			return state != partNext
		}, time.Now().Add(r.holdLimitLocked()))
	}
	r.mu.Unlock()
	switch state {
	case partReady:
		p.sendMedia(ctx, b)
	case partNext:
		p.fail(ctx, fasthttp.StatusServiceUnavailable, "part "+partURI(msn, idx)+" did not complete in time")
	default:
		p.fail(ctx, fasthttp.StatusNotFound, "part "+partURI(msn, idx)+" is not available")
	}
}

type partState uint8

const (
	partMissing partState = iota
	partReady
	partNext // the part being built: it will exist soon
)

func (r *rendition) findPartLocked(msn uint64, idx int) ([]byte, partState) {
	if c := r.cur; c != nil && c.msn == msn {
		switch {
		case idx < len(c.parts):
			return c.parts[idx].data, partReady
		case idx == len(c.parts) && !r.ended:
			return nil, partNext
		}
		return nil, partMissing
	}
	for i := len(r.segs) - 1; i >= 0; i-- {
		if s := r.segs[i]; s.msn == msn {
			if idx < len(s.parts) {
				return s.parts[idx].data, partReady
			}
			return nil, partMissing
		}
	}
	return nil, partMissing
}
