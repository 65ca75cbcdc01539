package redisbus_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// BenchmarkEventAppend measures one durable event append (one XADD round
// trip) on a real redis-server over loopback.
func BenchmarkEventAppend(b *testing.B) {
	bus := newBus(b, testsvc.Redis(b), randomPrefix())
	ctx := context.Background()
	ev := engine.Event{Kind: engine.EventPublishStarted, StreamID: "bench", NodeID: "engine-1", Protocol: "rtmp"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := bus.AppendEvent(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventAppendConsume measures events appended by one node and
// handled (read, decoded, acknowledged) by a consumer group on another:
// ns/op is the time per event until the consumer has handled all of them.
func BenchmarkEventAppendConsume(b *testing.B) {
	url := testsvc.Redis(b)
	prefix := randomPrefix()
	producer, consumer := newBus(b, url, prefix), newBus(b, url, prefix)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var handled atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		consumer.ConsumeEvents(ctx, "bench", "c1", func(engine.Event) error {
			handled.Add(1)
			return nil
		})
	}()
	ev := engine.Event{Kind: engine.EventPublishStarted, StreamID: "bench", NodeID: "engine-1"}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := producer.AppendEvent(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "every event handled", func() bool { return handled.Load() >= int64(b.N) })
	b.StopTimer()
	cancel()
	<-done
}

// BenchmarkPublishFanout measures pub/sub fan-out: one publisher, four
// subscribers on another node (one shared connection), 256-byte payloads.
// ns/op is per published message until every subscriber has it; messages
// lost to full subscriber queues are reported as dropped/op.
func BenchmarkPublishFanout(b *testing.B) {
	const subscribers = 4
	url := testsvc.Redis(b)
	prefix := randomPrefix()
	pub, sub := newBus(b, url, prefix), newBus(b, url, prefix)
	ctx := context.Background()
	var received atomic.Int64
	var wg sync.WaitGroup
	var subs []engine.Subscription
	for i := 0; i < subscribers; i++ {
		s, err := sub.Subscribe(ctx, engine.TopicStats)
		if err != nil {
			b.Fatal(err)
		}
		subs = append(subs, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range s.C() {
				received.Add(1)
			}
		}()
	}
	payload := make([]byte, 256)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := pub.Publish(ctx, engine.TopicStats, payload); err != nil {
			b.Fatal(err)
		}
	}
	// Wait for every copy, or for delivery to stall (dropped messages).
	want := int64(b.N * subscribers)
	last, lastChange := received.Load(), time.Now()
	for received.Load() < want && time.Since(lastChange) < 5*time.Second {
		time.Sleep(time.Millisecond) // poll interval
		if n := received.Load(); n != last {
			last, lastChange = n, time.Now()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(want-received.Load())/float64(b.N), "dropped/op")
	for _, s := range subs {
		s.Close()
	}
	wg.Wait()
}
