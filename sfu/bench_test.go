package sfu

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// BenchmarkForward measures the per-packet forward path of WHEP: one video
// unit packetized once by the stream's feed and written to N connected
// viewers (header rewrite, interceptors, SRTP, UDP). The viewers are pion
// peers in the same process, so their decryption shares the CPU.
//
//	go test ./sfu -run '^$' -bench BenchmarkForward -benchmem
func BenchmarkForward(b *testing.B) {
	for _, n := range []int{1, 10, 50, 100} {
		b.Run(fmt.Sprintf("viewers=%d", n), func(b *testing.B) { benchForward(b, n) })
	}
}

func benchForward(b *testing.B, viewers int) {
	eng := enginetest.NewEngine(b)
	clip := enginetest.Clip(b, enginetest.ClipSpec{Width: 640, Height: 360, FPS: 25, Seconds: 4, GOP: 50, Bitrate: "1000k"})
	m, err := enginetest.ReadTS(clip)
	if err != nil {
		b.Fatal(err)
	}
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "bench", Protocol: "test"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pub.Close)
	s, err := pub.Start(m.Tracks)
	if err != nil {
		b.Fatal(err)
	}
	x, base := newTestSFU(b, eng, testConfig())
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	heapBefore := ms.HeapInuse
	var received atomic.Int64
	for i := 0; i < viewers; i++ {
		c := playWHEP(b, base, "/whep/bench", clientOptions{})
		go func() {
			tr := c.waitTrack(b, "video", 60*time.Second)
			buf := make([]byte, 1500)
			for {
				if _, _, err := tr.Read(buf); err != nil {
					return
				}
				received.Add(1)
			}
		}()
	}
	x.feedsMu.Lock()
	f := x.feeds[s.ID()]
	x.feedsMu.Unlock()
	waitFor(b, 60*time.Second, "viewers attached", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.viewers) == viewers
	})
	runtime.GC()
	runtime.ReadMemStats(&ms)
	// Both ends live in this process: this is server plus client heap.
	b.ReportMetric(float64(int64(ms.HeapInuse)-int64(heapBefore))/float64(viewers), "heapB/viewer-both-ends")
	var video []*engine.Unit
	for _, u := range m.Units {
		if u.Track == s.VideoTrack() {
			video = append(video, u)
		}
	}
	// One pass over the clip first, so the viewers start at a keyframe
	// and buffers reach their steady size.
	for _, u := range video {
		f.onUnit(u)
	}
	before := x.tr.metrics.packetsOut.Load()
	cpuBefore := processCPU()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; b.Loop(); i++ {
		f.onUnit(video[i%len(video)])
	}
	elapsed := time.Since(start)
	b.StopTimer()
	sent := x.tr.metrics.packetsOut.Load() - before
	cpu := processCPU() - cpuBefore
	// Per CPU-second of this process, so a loaded machine does not skew it;
	// the in-process viewers' SRTP decryption is included.
	b.ReportMetric(float64(sent)/cpu.Seconds(), "pkts/cpu-s")
	b.ReportMetric(float64(sent)/elapsed.Seconds(), "pkts/s")
	b.ReportMetric(float64(elapsed.Nanoseconds())/float64(max(sent, 1)), "ns/pkt")
}

// processCPU returns the user plus system CPU time of this process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
