package engine

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkFanout measures the publisher's side of fan-out: one Write
// delivered to N readers' queues, with readers consuming on their own
// goroutines. Units are prepared beforehand (the ingest allocates them), so
// allocs/op is the fan-out path's own cost and must be 0.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("readers=%d", n), func(b *testing.B) {
			e := newTestEngine(b)
			p, s := startStream(b, e, "bench")
			var got atomic.Int64
			for i := 0; i < n; i++ {
				if _, err := s.AddReader(ReaderOptions{Kind: "bench", QueueLen: 8192}, func(*Unit) { got.Add(1) }, nil); err != nil {
					b.Fatal(err)
				}
			}
			// A ring of GOPs: 60 video units per GOP plus audio.
			var units []*Unit
			for g := 0; g < 4; g++ {
				units = append(units, gop(time.Duration(g)*2*time.Second, 60)...)
			}
			// Warm the GOP cache and the queues so steady state is measured.
			for _, u := range units {
				p.Write(u)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				p.Write(units[i%len(units)])
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "units/s")
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
