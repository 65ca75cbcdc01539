package redisbus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/internal/testsvc"
)

func TestMetrics(t *testing.T) {
	b := newBus(t, testsvc.Redis(t), randomPrefix())
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(b.Collector()); err != nil {
		t.Fatalf("register: %v", err)
	}
	value := func(name string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		for _, mf := range mfs {
			if mf.GetName() == name {
				m := mf.GetMetric()[0]
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
		t.Fatalf("metric %s not exported", name)
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 3; i++ {
		if err := b.AppendEvent(ctx, engine.Event{Kind: engine.EventNodeUp}); err != nil {
			t.Fatal(err)
		}
	}
	var handled atomic.Int64
	cctx, ccancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.ConsumeEvents(cctx, "g", "c", func(engine.Event) error { handled.Add(1); return nil })
	}()
	s1, err := b.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := b.Subscribe(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if err := b.Publish(ctx, "t", []byte("x")); err != nil {
		t.Fatal(err)
	}
	<-s1.C()
	<-s2.C()
	waitFor(t, "events acknowledged", func() bool { return value("liveengine_bus_events_handled_total") == 3 })
	ccancel()
	<-done
	for name, want := range map[string]float64{
		"liveengine_bus_events_appended_total":        3,
		"liveengine_bus_messages_published_total":     1,
		"liveengine_bus_messages_delivered_total":     2,
		"liveengine_bus_messages_dropped_total":       0,
		"liveengine_bus_subscribed_topics":            1,
		"liveengine_bus_event_handler_failures_total": 0,
	} {
		if got := value(name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}
