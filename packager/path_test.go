package packager

import (
	"errors"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want resource
		err  error
	}{
		{"/hls/g/index.m3u8", resource{kind: resMultivariant, group: "g"}, nil},
		{"/hls/g/source/stream.m3u8", resource{kind: resPlaylist, group: "g", rendition: "source"}, nil},
		{"/hls/g/720p/init.mp4", resource{kind: resInit, group: "g", rendition: "720p"}, nil},
		{"/hls/g/source/seg0.mp4", resource{kind: resSegment, group: "g", rendition: "source"}, nil},
		{"/hls/g/source/seg123.mp4", resource{kind: resSegment, group: "g", rendition: "source", msn: 123}, nil},
		{"/hls/g/source/part7.3.mp4", resource{kind: resPart, group: "g", rendition: "source", msn: 7, part: 3}, nil},
		{"/hls/g/source/seg01.mp4", resource{}, ErrBadRequest},
		{"/hls/g/source/seg.mp4", resource{}, ErrBadRequest},
		{"/hls/g/source/seg-1.mp4", resource{}, ErrBadRequest},
		{"/hls/g/source/part7.mp4", resource{}, ErrBadRequest},
		{"/hls/g/source/part7.10000.mp4", resource{}, ErrBadRequest},
		{"/hls/g/source/seg999999999999999.mp4", resource{}, ErrBadRequest},
		{"/hls/g/../index.m3u8", resource{}, ErrBadRequest},
		{"/hls/g h/index.m3u8", resource{}, ErrBadRequest},
		{"/hls/g/source/x.ts", resource{}, ErrNotFound},
		{"/hls/g", resource{}, ErrNotFound},
		{"/hls/g/a/b/c", resource{}, ErrNotFound},
		{"/other/g/index.m3u8", resource{}, ErrNotFound},
		{"/hls//index.m3u8", resource{}, ErrBadRequest},
	}
	for _, tt := range tests {
		got, err := parsePath(tt.path)
		if tt.err != nil {
			if !errors.Is(err, tt.err) {
				t.Errorf("%s: error %v, want %v", tt.path, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %+v, %v; want %+v", tt.path, got, err, tt.want)
		}
	}
}

func TestParseBlocking(t *testing.T) {
	t.Parallel()
	tests := []struct {
		query string
		want  blockRequest
		bad   bool
	}{
		{"", blockRequest{part: -1}, false},
		{"_HLS_msn=5", blockRequest{active: true, msn: 5, part: -1}, false},
		{"_HLS_msn=5&_HLS_part=2", blockRequest{active: true, msn: 5, part: 2}, false},
		{"_HLS_msn=5&_HLS_skip=YES", blockRequest{active: true, msn: 5, part: -1}, false},
		{"_HLS_part=2", blockRequest{}, true},
		{"_HLS_msn=", blockRequest{}, true},
		{"_HLS_msn=x", blockRequest{}, true},
		{"_HLS_msn=-3", blockRequest{}, true},
		{"_HLS_msn=1&_HLS_part=-1", blockRequest{}, true},
		{"_HLS_msn=1&_HLS_part=99999", blockRequest{}, true},
		{"_HLS_msn=18446744073709551616", blockRequest{}, true},
	}
	for _, tt := range tests {
		var a fasthttp.Args
		a.Parse(tt.query)
		got, err := parseBlocking(&a)
		if tt.bad {
			if !errors.Is(err, ErrBadRequest) {
				t.Errorf("%q: error %v, want ErrBadRequest", tt.query, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q: %+v, %v; want %+v", tt.query, got, err, tt.want)
		}
	}
}

// FuzzParsePath checks that the URL parser never panics, classifies every
// error, and accepts only canonical names: a parsed path prints back to
// itself.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		"/hls/g/index.m3u8", "/hls/g/source/stream.m3u8", "/hls/g/720p/init.mp4",
		"/hls/g/source/seg12.mp4", "/hls/g/source/part12.3.mp4", "/hls/g/source/part.mp4",
		"/hls/g/source/seg00.mp4", "/hls/../x", "/hls/", "/hls/a/b/c/d", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := parsePath(p)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, ErrNotFound) {
				t.Fatalf("%q: unclassified error %v", p, err)
			}
			return
		}
		var back string
		switch r.kind {
		case resMultivariant:
			back = hlsPrefix + r.group + "/index.m3u8"
		case resPlaylist:
			back = hlsPrefix + r.group + "/" + r.rendition + "/stream.m3u8"
		case resInit:
			back = hlsPrefix + r.group + "/" + r.rendition + "/init.mp4"
		case resSegment:
			back = hlsPrefix + r.group + "/" + r.rendition + "/" + segmentURI(r.msn)
		case resPart:
			back = hlsPrefix + r.group + "/" + r.rendition + "/" + partURI(r.msn, r.part)
		default:
			t.Fatalf("%q: parsed to kind %d", p, r.kind)
		}
		if back != p {
			t.Fatalf("%q parsed to %+v, which prints as %q", p, r, back)
		}
		if strings.Contains(r.group, "/") || strings.Contains(r.rendition, "/") {
			t.Fatalf("%q: name with a slash", p)
		}
	})
}

// FuzzParseBlocking checks the blocking-reload query parser: no panics,
// only ErrBadRequest, and accepted values within bounds.
func FuzzParseBlocking(f *testing.F) {
	for _, s := range []string{"", "_HLS_msn=1", "_HLS_msn=1&_HLS_part=0", "_HLS_part=3", "_HLS_msn=a", "_HLS_msn=1&_HLS_part=1&_HLS_skip=v2", "_HLS_msn=%31"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		var a fasthttp.Args
		a.Parse(q)
		b, err := parseBlocking(&a)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) {
				t.Fatalf("%q: unclassified error %v", q, err)
			}
			return
		}
		if !b.active && b.part != -1 {
			t.Fatalf("%q: part %d without msn", q, b.part)
		}
		if b.msn > maxMSN || b.part > maxPartIndex || b.part < -1 {
			t.Fatalf("%q: out of bounds %+v", q, b)
		}
	})
}
