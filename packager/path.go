package packager

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/valyala/fasthttp"
)

// resourceKind says what an /hls/ URL names.
type resourceKind uint8

const (
	resMultivariant resourceKind = iota + 1
	resPlaylist
	resInit
	resSegment
	resPart
)

// String names the kind in metrics.
func (k resourceKind) String() string {
	switch k {
	case resMultivariant:
		return "multivariant"
	case resPlaylist:
		return "playlist"
	case resInit:
		return "init"
	case resSegment:
		return "segment"
	case resPart:
		return "part"
	}
	return "other"
}

// maxPartIndex bounds part indexes in URLs and queries; config validation
// keeps max_parts_per_segment below it.
const maxPartIndex = 9999

// maxMSN keeps sequence numbers well inside int range on every platform
// and inside the 48 bits the rendition report packs them in.
const maxMSN = 1<<47 - 1

// resource is a parsed /hls/ URL path. group and rendition may alias the
// request's path bytes: they must not outlive the request.
type resource struct {
	kind      resourceKind
	group     string
	rendition string
	msn       uint64
	part      int
}

const hlsPrefix = "/hls/"

// parsePath parses an /hls/ URL path (see the package doc for the layout).
func parsePath(p string) (resource, error) {
	var r resource
	if !strings.HasPrefix(p, hlsPrefix) {
		return r, fmt.Errorf("path %q is outside %s: %w", p, hlsPrefix, ErrNotFound)
	}
	rest := p[len(hlsPrefix):]
	i := strings.IndexByte(rest, '/')
	if i < 0 {
		return r, fmt.Errorf("path %q names no playlist; try %sSTREAM/index.m3u8: %w", p, hlsPrefix, ErrNotFound)
	}
	r.group, rest = rest[:i], rest[i+1:]
	if !validName(r.group) {
		return r, fmt.Errorf("stream id %q is malformed: %w", r.group, ErrBadRequest)
	}
	i = strings.IndexByte(rest, '/')
	if i < 0 {
		if rest != "index.m3u8" {
			return r, fmt.Errorf("file %q not found; the multivariant playlist is index.m3u8: %w", rest, ErrNotFound)
		}
		r.kind = resMultivariant
		return r, nil
	}
	r.rendition, rest = rest[:i], rest[i+1:]
	if !validName(r.rendition) {
		return r, fmt.Errorf("rendition %q is malformed: %w", r.rendition, ErrBadRequest)
	}
	switch {
	case rest == "stream.m3u8":
		r.kind = resPlaylist
	case rest == "init.mp4":
		r.kind = resInit
	case strings.HasPrefix(rest, "seg") && strings.HasSuffix(rest, ".mp4"):
		n, ok := parseIndex(rest[3:len(rest)-4], maxMSN)
		if !ok {
			return r, fmt.Errorf("segment name %q is malformed (want seg<MSN>.mp4): %w", rest, ErrBadRequest)
		}
		r.kind, r.msn = resSegment, n
	case strings.HasPrefix(rest, "part") && strings.HasSuffix(rest, ".mp4"):
		mid := rest[4 : len(rest)-4]
		dot := strings.IndexByte(mid, '.')
		if dot < 0 {
			return r, fmt.Errorf("part name %q is malformed (want part<MSN>.<INDEX>.mp4): %w", rest, ErrBadRequest)
		}
		n, ok1 := parseIndex(mid[:dot], maxMSN)
		k, ok2 := parseIndex(mid[dot+1:], maxPartIndex)
		if !ok1 || !ok2 {
			return r, fmt.Errorf("part name %q is malformed (want part<MSN>.<INDEX>.mp4): %w", rest, ErrBadRequest)
		}
		r.kind, r.msn, r.part = resPart, n, int(k)
	default:
		return r, fmt.Errorf("file %q not found: %w", rest, ErrNotFound)
	}
	return r, nil
}

// validName reports whether s is a stream id or rendition name: the
// characters engine.ValidKey allows, without "." and "..".
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 || s == "." || s == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// parseIndex parses a canonical decimal number (no sign, no leading zero)
// no larger than max, so that every resource has exactly one URL.
func parseIndex(s string, max uint64) (uint64, bool) {
	if len(s) == 0 || len(s) > 15 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if n > max {
		return 0, false
	}
	return n, true
}

// blockRequest is the blocking-reload part of a playlist request.
type blockRequest struct {
	// active is set when _HLS_msn is present.
	active bool
	msn    uint64
	// part is -1 when _HLS_part is absent.
	part int
}

// parseBlocking reads _HLS_msn and _HLS_part. _HLS_part without _HLS_msn,
// and values that are not plain non-negative integers, are bad requests.
func parseBlocking(args *fasthttp.Args) (blockRequest, error) {
	b := blockRequest{part: -1}
	msn := args.Peek("_HLS_msn")
	hasMSN := args.Has("_HLS_msn")
	part := args.Peek("_HLS_part")
	hasPart := args.Has("_HLS_part")
	if hasPart && !hasMSN {
		return b, fmt.Errorf("_HLS_part without _HLS_msn: %w", ErrBadRequest)
	}
	if !hasMSN {
		return b, nil
	}
	n, err := strconv.ParseUint(string(msn), 10, 64)
	if err != nil || n > maxMSN {
		return b, fmt.Errorf("_HLS_msn=%q is not a media sequence number: %w", msn, ErrBadRequest)
	}
	b.active, b.msn = true, n
	if hasPart {
		k, err := strconv.ParseUint(string(part), 10, 32)
		if err != nil || k > maxPartIndex {
			return b, fmt.Errorf("_HLS_part=%q is not a part index: %w", part, ErrBadRequest)
		}
		b.part = int(k)
	}
	return b, nil
}
