package redisbus

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// busMetrics are plain atomics updated where things happen and read by the
// Prometheus collector at scrape time.
type busMetrics struct {
	appended     atomic.Uint64
	handled      atomic.Uint64
	failed       atomic.Uint64
	claimed      atomic.Uint64
	deadLettered atomic.Uint64
	published    atomic.Uint64
	delivered    atomic.Uint64
	dropped      atomic.Uint64
	redisErrors  atomic.Uint64
}

type collector struct {
	b     *Bus
	descs []*prometheus.Desc
}

var (
	appendedDesc     = prometheus.NewDesc("liveengine_bus_events_appended_total", "Lifecycle events appended to the Redis events stream by this process.", nil, nil)
	handledDesc      = prometheus.NewDesc("liveengine_bus_events_handled_total", "Lifecycle events handled and acknowledged by this process's consumers.", nil, nil)
	failedDesc       = prometheus.NewDesc("liveengine_bus_event_handler_failures_total", "Event handler failures (the event is delivered again).", nil, nil)
	claimedDesc      = prometheus.NewDesc("liveengine_bus_events_claimed_total", "Events taken over from consumers idle longer than claim_idle.", nil, nil)
	deadLetteredDesc = prometheus.NewDesc("liveengine_bus_events_dead_lettered_total", "Undecodable events moved to the dead-letter stream.", nil, nil)
	publishedDesc    = prometheus.NewDesc("liveengine_bus_messages_published_total", "Pub/sub messages published by this process.", nil, nil)
	deliveredDesc    = prometheus.NewDesc("liveengine_bus_messages_delivered_total", "Pub/sub messages delivered to local subscribers.", nil, nil)
	droppedDesc      = prometheus.NewDesc("liveengine_bus_messages_dropped_total", "Pub/sub messages dropped because a local subscriber was too slow.", nil, nil)
	redisErrorsDesc  = prometheus.NewDesc("liveengine_bus_redis_errors_total", "Redis errors met while consuming events (each retried).", nil, nil)
	topicsDesc       = prometheus.NewDesc("liveengine_bus_subscribed_topics", "Topics this process is subscribed to.", nil, nil)
)

// Collector returns the bus's Prometheus collector, to register beside the
// engine's on /metrics.
func (b *Bus) Collector() prometheus.Collector {
	return &collector{b: b, descs: []*prometheus.Desc{
		appendedDesc, handledDesc, failedDesc, claimedDesc, deadLetteredDesc,
		publishedDesc, deliveredDesc, droppedDesc, redisErrorsDesc, topicsDesc,
	}}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	m := &c.b.metrics
	for _, v := range []struct {
		d *prometheus.Desc
		n uint64
	}{
		{appendedDesc, m.appended.Load()},
		{handledDesc, m.handled.Load()},
		{failedDesc, m.failed.Load()},
		{claimedDesc, m.claimed.Load()},
		{deadLetteredDesc, m.deadLettered.Load()},
		{publishedDesc, m.published.Load()},
		{deliveredDesc, m.delivered.Load()},
		{droppedDesc, m.dropped.Load()},
		{redisErrorsDesc, m.redisErrors.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(v.d, prometheus.CounterValue, float64(v.n))
	}
	c.b.mu.Lock()
	topics := len(c.b.topics)
	c.b.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(topicsDesc, prometheus.GaugeValue, float64(topics))
}
