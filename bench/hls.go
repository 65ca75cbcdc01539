package bench

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"
	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	mp4codecs "github.com/bluenviron/mediacommon/v2/pkg/formats/mp4/codecs"

	"github.com/liveengine/liveengine/bench/stamp"
)

// ErrHLS means an HLS server answered something a player cannot use.
var ErrHLS = errors.New("bench: hls")

var errStatus404 = errors.New("status 404")

func init() {
	register("hls-viewers", scenario{
		summary: "M LL-HLS players: blocking playlist reloads, part fetches, stalls, live-edge delay, glass-to-glass latency from the stamp",
		flags: func(fs *flag.FlagSet) runner {
			v := &hlsViewers{
				url:     fs.String("url", "http://127.0.0.1:8888/hls/bench0/index.m3u8", "multivariant or media playlist URL"),
				n:       fs.Int("n", 1, "number of viewers"),
				variant: fs.String("variant", "0", "variant to play in a multivariant playlist: its index, or a substring of its URI (e.g. source, 720p)"),
				stagger: fs.Duration("stagger", 20*time.Millisecond, "delay between viewer starts"),
			}
			v.pub = publishFlag(fs)
			return v
		},
	})
}

type hlsViewers struct {
	url     *string
	n       *int
	variant *string
	stagger *time.Duration
	pub     *embeddedPublisher
}

func (v *hlsViewers) prepare(ctx context.Context) error {
	if _, err := url.Parse(*v.url); err != nil {
		return fmt.Errorf("%w: -url: %w", ErrUsage, err)
	}
	if *v.n < 1 {
		return fmt.Errorf("%w: -n must be at least 1", ErrUsage)
	}
	return v.pub.prepare()
}

func (v *hlsViewers) run(ctx context.Context, r *Run) error {
	v.pub.start(ctx, r)
	defer v.pub.wait()
	client := &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4 * *v.n, MaxConnsPerHost: 0, DisableCompression: true},
	}
	runClients(ctx, r, *v.n, *v.stagger, func() error {
		p := &HLSPlayer{Client: client, URL: *v.url, Variant: *v.variant, Run: r}
		return p.Play(ctx)
	})
	return nil
}

// HLSPlayer is one LL-HLS viewer that behaves like a low-latency player:
// it starts PART-HOLD-BACK behind the live edge at an independent part,
// then asks for each next part with a blocking playlist reload
// (_HLS_msn/_HLS_part) and fetches it. A simple playback clock turns
// arrivals into stalls and display-time latency.
type HLSPlayer struct {
	Client *http.Client
	URL    string
	// Variant picks the variant of a multivariant playlist: its index, or
	// a substring of its URI.
	Variant string
	Run     *Run

	media     *url.URL
	trackID   int
	timescale uint32

	// player clock
	started     bool
	target      float64 // start position, -1 until known
	wallStart   time.Time
	mediaStart  float64 // seconds on the track's clock shown at wallStart
	bufferedEnd float64
	stalled     time.Duration
	cur         partRef
}

type partRef struct {
	msn  int
	part int
}

type partEntry struct {
	partRef
	p   *playlist.MediaPart
	pdt time.Time // zero when the playlist has no PROGRAM-DATE-TIME
}

func (h *HLSPlayer) get(ctx context.Context, u string) ([]byte, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, time.Time{}, err
	}
	res, err := h.Client.Do(req)
	for try := 0; err != nil && try < 2 && ctx.Err() == nil; try++ {
		// Players retry a failed request at once (a keep-alive connection
		// the server just closed); the retry is counted, not the error.
		if h.Run != nil {
			h.Run.Retries.Add(1)
		}
		res, err = h.Client.Do(req)
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("hls get %s: %w", u, err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	at := time.Now()
	if err != nil {
		return nil, at, fmt.Errorf("hls get %s: %w", u, err)
	}
	if res.StatusCode == http.StatusNotFound {
		return nil, at, fmt.Errorf("%w: get %s: %w", ErrHLS, u, errStatus404)
	}
	if res.StatusCode != http.StatusOK {
		return nil, at, fmt.Errorf("%w: get %s: status %d", ErrHLS, u, res.StatusCode)
	}
	if h.Run != nil {
		h.Run.Bytes.Add(int64(len(body)))
	}
	return body, at, nil
}

func resolve(base *url.URL, ref string) (*url.URL, error) {
	u, err := url.Parse(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: bad URI %q: %w", ErrHLS, ref, err)
	}
	return base.ResolveReference(u), nil
}

// Play runs until ctx ends or the stream fails.
func (h *HLSPlayer) Play(ctx context.Context) error {
	pl, err := h.open(ctx)
	if err != nil {
		return err
	}
	if h.Run != nil {
		h.Run.Active.Add(1)
		defer h.Run.Active.Add(-1)
	}
	entries := flatten(pl)
	start := pickStart(pl, entries)
	if start < 0 {
		return fmt.Errorf("%w: %s: no independent part in the playlist", ErrHLS, h.media)
	}
	var edgeDur time.Duration
	for _, e := range entries[start:] {
		edgeDur += e.p.Duration
	}
	h.started, h.target = false, -1
	skip := max(0, edgeDur-holdBackOf(pl))
	pending := entries[start:]
	consumed := map[string]bool{}
	for {
		for _, e := range pending {
			if consumed[e.p.URI] {
				continue
			}
			if err := h.fetchPart(ctx, e, skip); err != nil {
				return err
			}
			skip = 0
			consumed[e.p.URI] = true
			h.cur = e.partRef
		}
		// Like hls.js, fetch the preload-hinted part at once (the server
		// answers when it is complete), then reload the playlist; without
		// a hint, block on the playlist for the next part.
		if hint := pl.PreloadHint; hint != nil && hint.ByteRangeLength == nil && !consumed[hint.URI] {
			e := partEntry{p: &playlist.MediaPart{URI: hint.URI, Duration: pl.PartInf.PartTarget}}
			if err := h.fetchPart(ctx, e, skip); err != nil {
				return err
			}
			skip = 0
			consumed[hint.URI] = true
			for try := 0; ; try++ {
				if pl, err = h.reload(ctx, nil); err != nil {
					return err
				}
				if listed(pl, hint.URI) || try == 20 {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(50 * time.Millisecond):
				}
			}
		} else if pl, err = h.reload(ctx, &partRef{h.cur.msn, h.cur.part + 1}); err != nil {
			return err
		}
		entries = flatten(pl)
		last := -1
		for i, e := range entries {
			if consumed[e.p.URI] {
				last = i
			}
		}
		if last < 0 {
			// Fell off the playlist: a player would jump to the edge.
			if h.Run != nil {
				h.Run.Stalls.Add(1)
			}
			i := pickStart(pl, entries)
			if i < 0 {
				return fmt.Errorf("%w: %s: lost the live edge", ErrHLS, h.media)
			}
			pending = entries[i:]
			h.started, h.target = false, -1
			continue
		}
		h.cur = entries[last].partRef
		pending = entries[last+1:]
		// Forget parts that left the playlist, keep the hint we fetched.
		for uri := range consumed {
			if !listed(pl, uri) && (pl.PreloadHint == nil || pl.PreloadHint.URI != uri) {
				delete(consumed, uri)
			}
		}
		for _, e := range entries[:last+1] {
			consumed[e.p.URI] = true
		}
	}
}

func listed(pl *playlist.Media, uri string) bool {
	for _, s := range pl.Segments {
		for _, p := range s.Parts {
			if p.URI == uri {
				return true
			}
		}
	}
	for _, p := range pl.Parts {
		if p.URI == uri {
			return true
		}
	}
	return false
}

// open fetches the playlist (following a multivariant playlist to its
// variant) and the init segment.
func (h *HLSPlayer) open(ctx context.Context) (*playlist.Media, error) {
	u, err := url.Parse(h.URL)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUsage, err)
	}
	for range 2 {
		body, _, err := h.get(ctx, u.String())
		if err != nil {
			if errors.Is(err, errStatus404) {
				// Not live yet: wait like a player on a scheduled stream.
				return nil, fmt.Errorf("%w: %w", errNotLive, err)
			}
			return nil, err
		}
		pl, err := playlist.Unmarshal(body)
		if errors.Is(err, io.EOF) {
			// gohlslib's parser stops at EOF on a playlist whose only
			// entries are parts after a PROGRAM-DATE-TIME (a stream's
			// first second): poll again like a player would.
			return nil, fmt.Errorf("%w: %s: %w", errNotLive, u, err)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrHLS, u, err)
		}
		switch pl := pl.(type) {
		case *playlist.Multivariant:
			v := pickVariant(pl, h.Variant)
			if v == nil {
				// Renditions appear one by one as a stream starts: wait.
				return nil, fmt.Errorf("%w: %s: no variant %q among %d", errNotLive, u, h.Variant, len(pl.Variants))
			}
			if u, err = resolve(u, v.URI); err != nil {
				return nil, err
			}
		case *playlist.Media:
			h.media = u
			if pl.Map == nil {
				return nil, fmt.Errorf("%w: %s: no EXT-X-MAP (not fMP4)", ErrHLS, u)
			}
			if pl.PartInf == nil {
				return nil, fmt.Errorf("%w: %s: not low-latency (no EXT-X-PART-INF)", ErrHLS, u)
			}
			mu, err := resolve(u, pl.Map.URI)
			if err != nil {
				return nil, err
			}
			initB, _, err := h.get(ctx, mu.String())
			if err != nil {
				return nil, err
			}
			var init fmp4.Init
			if err := init.Unmarshal(bytes.NewReader(initB)); err != nil {
				return nil, fmt.Errorf("%w: init %s: %w", ErrHLS, mu, err)
			}
			for _, t := range init.Tracks {
				if _, ok := t.Codec.(*mp4codecs.H264); ok {
					h.trackID, h.timescale = t.ID, t.TimeScale
				}
			}
			if h.trackID == 0 {
				return nil, fmt.Errorf("%w: init %s: no H.264 track", ErrHLS, mu)
			}
			return pl, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: nested multivariant playlists", ErrHLS, h.URL)
}

func pickVariant(pl *playlist.Multivariant, want string) *playlist.MultivariantVariant {
	if i, err := strconv.Atoi(want); err == nil {
		if i >= 0 && i < len(pl.Variants) {
			return pl.Variants[i]
		}
		return nil
	}
	for _, v := range pl.Variants {
		if strings.Contains(v.URI, want) {
			return v
		}
	}
	return nil
}

func holdBackOf(pl *playlist.Media) time.Duration {
	if pl.ServerControl != nil && pl.ServerControl.PartHoldBack != nil {
		return *pl.ServerControl.PartHoldBack
	}
	return 3 * pl.PartInf.PartTarget
}

// flatten lists the playlist's parts in order with their sequence numbers.
func flatten(pl *playlist.Media) []partEntry {
	var out []partEntry
	var pdt time.Time
	for i, s := range pl.Segments {
		if s.DateTime != nil {
			pdt = *s.DateTime
		}
		t := pdt
		for j, p := range s.Parts {
			out = append(out, partEntry{partRef{pl.MediaSequence + i, j}, p, t})
			if !t.IsZero() {
				t = t.Add(p.Duration)
			}
		}
		if !pdt.IsZero() {
			pdt = pdt.Add(s.Duration)
		}
	}
	t := pdt
	for j, p := range pl.Parts {
		out = append(out, partEntry{partRef{pl.MediaSequence + len(pl.Segments), j}, p, t})
		if !t.IsZero() {
			t = t.Add(p.Duration)
		}
	}
	return out
}

// pickStart returns the index of the part a player starts at: the latest
// independent part at least PART-HOLD-BACK from the edge, else the latest
// independent part; -1 when there is none.
func pickStart(pl *playlist.Media, e []partEntry) int {
	hold := holdBackOf(pl)
	var toEdge time.Duration
	latest := -1
	for i := len(e) - 1; i >= 0; i-- {
		toEdge += e[i].p.Duration
		if !e[i].p.Independent {
			continue
		}
		if latest < 0 {
			latest = i
		}
		if toEdge >= hold {
			return i
		}
	}
	return latest
}

// reload fetches the media playlist; with next, it asks for the playlist
// that holds that part, blocking on the server.
func (h *HLSPlayer) reload(ctx context.Context, next *partRef) (*playlist.Media, error) {
	u := *h.media
	if next != nil {
		q := u.Query()
		q.Set("_HLS_msn", strconv.Itoa(next.msn))
		q.Set("_HLS_part", strconv.Itoa(next.part))
		u.RawQuery = q.Encode()
	}
	body, at, err := h.get(ctx, u.String())
	if err != nil {
		return nil, err
	}
	pl, err := playlist.Unmarshal(body)
	for try := 0; errors.Is(err, io.EOF) && try < 20; try++ {
		// See open: a parts-only playlist; ask again without blocking.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if body, at, err = h.get(ctx, h.media.String()); err != nil {
			return nil, err
		}
		pl, err = playlist.Unmarshal(body)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %d-byte playlist: %w", ErrHLS, &u, len(body), err)
	}
	m, ok := pl.(*playlist.Media)
	if !ok {
		return nil, fmt.Errorf("%w: %s: not a media playlist", ErrHLS, &u)
	}
	if h.Run != nil {
		if e := flatten(m); len(e) > 0 && !e[len(e)-1].pdt.IsZero() {
			last := e[len(e)-1]
			h.Run.EdgeDelay(at.Sub(last.pdt.Add(last.p.Duration)))
		}
	}
	return m, nil
}

// fetchPart downloads one part, reads the stamps of its video samples and
// advances the playback clock. skip is how much of the stream, from this
// part's start, the player seeks over at start-up to sit PART-HOLD-BACK
// behind the edge.
func (h *HLSPlayer) fetchPart(ctx context.Context, e partEntry, skip time.Duration) error {
	pu, err := resolve(h.media, e.p.URI)
	if err != nil {
		return err
	}
	body, at, err := h.get(ctx, pu.String())
	if err != nil {
		return err
	}
	var parts fmp4.Parts
	if err := parts.Unmarshal(body); err != nil {
		return fmt.Errorf("%w: part %s: %w", ErrHLS, pu, err)
	}
	ts := float64(h.timescale)
	first, end := -1.0, 0.0
	type sample struct {
		pts float64
		at  time.Time
	}
	var stamps []sample
	for _, p := range parts {
		for _, t := range p.Tracks {
			if t.ID != h.trackID {
				continue
			}
			dts := t.BaseTime
			for _, s := range t.Samples {
				pts := float64(int64(dts)+int64(s.PTSOffset)) / ts
				if first < 0 {
					first = float64(dts) / ts
				}
				dts += uint64(s.Duration)
				end = float64(dts) / ts
				var au h264.AVCC
				if au.Unmarshal(s.Payload) != nil {
					continue
				}
				if h.Run != nil {
					h.Run.Frames.Add(1)
				}
				if st, err := stamp.Find(au); err == nil {
					stamps = append(stamps, sample{pts, st})
				}
			}
		}
	}
	if h.Run != nil {
		h.Run.Ops.Add(1)
	}
	if first < 0 {
		return nil // audio-only part
	}
	// The playback clock: position = mediaStart + (wall - wallStart - stalled).
	// Playback starts, PART-HOLD-BACK behind the edge, when the part that
	// holds that position arrives; earlier parts only feed the decoder.
	if !h.started {
		if h.target < 0 {
			h.target = first + skip.Seconds()
		}
		if end <= h.target {
			return nil
		}
		h.started = true
		h.wallStart = at
		h.mediaStart = max(h.target, first)
		h.bufferedEnd = end
		h.stalled = 0
	} else {
		pos := h.mediaStart + (at.Sub(h.wallStart) - h.stalled).Seconds()
		if short := pos - h.bufferedEnd; short > 0 {
			// The buffer ran dry at bufferedEnd: the picture froze until now.
			h.stalled += time.Duration(short * float64(time.Second))
			if short > 0.05 && h.Run != nil {
				h.Run.Stalls.Add(1)
			}
		}
		h.bufferedEnd = max(h.bufferedEnd, end)
	}
	if h.Run != nil {
		for _, s := range stamps {
			if s.pts < h.mediaStart {
				continue // decoded, never shown
			}
			h.Run.Latency(at.Sub(s.at))
			shown := h.wallStart.Add(time.Duration((s.pts-h.mediaStart)*float64(time.Second)) + h.stalled)
			if shown.Before(at) {
				shown = at
			}
			h.Run.DisplayLatency(shown.Sub(s.at))
		}
	}
	return nil
}
