package packager

import (
	"crypto/rand"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// benchPart is the size of the part the benchmarks serve: a 200 ms part of
// a ~2.5 Mbit/s rendition.
const benchPart = 62 * 1024

// newBenchPackager returns a packager holding one rendition ("b/source")
// whose in-progress segment has one part of benchPart bytes.
func newBenchPackager(b *testing.B) *Packager {
	b.Helper()
	eng := enginetest.NewEngine(b)
	pk, err := New(DefaultConfig(), eng, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pk.Close)
	pub, err := eng.Authorize(b.Context(), engine.PublishRequest{Key: "b", Protocol: "test"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pub.Close)
	s, err := pub.Start([]*engine.Track{{Codec: engine.CodecH264, ClockRate: 90000}})
	if err != nil {
		b.Fatal(err)
	}
	g := newGroup("b")
	r, err := newRendition(pk, g, "source", s)
	if err != nil {
		b.Fatal(err)
	}
	data := make([]byte, benchPart)
	_, _ = rand.Read(data)
	r.init = []byte("init")
	r.fixed = true // as after the first segment
	r.cur = &segment{msn: 0, parts: []part{{dur: 200 * time.Millisecond, indep: true, data: data}}}
	g.setLocked("source", r)
	pk.groups["b"] = g
	return pk
}

// BenchmarkServePart measures the handler path for one part: URL parsing,
// lookups and handing the immutable slice to fasthttp.
func BenchmarkServePart(b *testing.B) {
	pk := newBenchPackager(b)
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	ctx.Request.SetRequestURI("/hls/b/source/part0.0.mp4")
	b.ReportAllocs()
	b.SetBytes(benchPart)
	for b.Loop() {
		ctx.Response.Reset()
		pk.Handle(&ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK || len(ctx.Response.Body()) != benchPart {
			b.Fatalf("status %d, %d bytes", ctx.Response.StatusCode(), len(ctx.Response.Body()))
		}
	}
}

// BenchmarkServePartLoopback serves the part from a real fasthttp server to
// parallel fasthttp clients over loopback.
func BenchmarkServePartLoopback(b *testing.B) {
	pk := newBenchPackager(b)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: pk.Handle}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown() })
	url := "http://" + ln.Addr().String() + "/hls/b/source/part0.0.mp4"
	client := &fasthttp.Client{MaxConnsPerHost: 64}
	var failed atomic.Int64
	b.ReportAllocs()
	b.SetBytes(benchPart)
	b.RunParallel(func(pb *testing.PB) {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI(url)
		for pb.Next() {
			if err := client.Do(req, res); err != nil || res.StatusCode() != 200 || len(res.Body()) != benchPart {
				failed.Add(1)
			}
		}
	})
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
}

// BenchmarkServePlaylist measures a media playlist request that finds the
// playlist cached (the common case: many viewers, one rebuild per part).
func BenchmarkServePlaylist(b *testing.B) {
	pk := newBenchPackager(b)
	var ctx fasthttp.RequestCtx
	ctx.Init(&fasthttp.Request{}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5000}, nil)
	ctx.Request.SetRequestURI("/hls/b/source/stream.m3u8")
	ctx.Request.Header.SetUserAgent("bench")
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		pk.Handle(&ctx)
		if ctx.Response.StatusCode() != fasthttp.StatusOK {
			b.Fatalf("status %d: %s", ctx.Response.StatusCode(), ctx.Response.Body())
		}
	}
}
