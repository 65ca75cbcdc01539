package rtmp

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons a publish (or the connect before it) is refused, as metric labels.
const (
	refusedUnknownKey = "unknown_key"
	refusedRevokedKey = "revoked_key"
	refusedBusy       = "busy"
	refusedBadApp     = "bad_app"
	refusedClosed     = "shutting_down"
	refusedError      = "error"
)

var refusedReasons = []string{refusedUnknownKey, refusedRevokedKey, refusedBusy, refusedBadApp, refusedClosed, refusedError}

// metrics are plain atomics read by the collector at scrape time.
type metrics struct {
	connections atomic.Int64
	accepted    atomic.Uint64
	refused     [6]atomic.Uint64 // indexed like refusedReasons
	malformed   atomic.Uint64

	connectionsDesc *prometheus.Desc
	acceptedDesc    *prometheus.Desc
	refusedDesc     *prometheus.Desc
	malformedDesc   *prometheus.Desc
}

func newMetrics() *metrics {
	return &metrics{
		connectionsDesc: prometheus.NewDesc("liveengine_rtmp_connections", "RTMP connections currently open.", nil, nil),
		acceptedDesc:    prometheus.NewDesc("liveengine_rtmp_publishes_accepted_total", "RTMP publishes accepted.", nil, nil),
		refusedDesc:     prometheus.NewDesc("liveengine_rtmp_publishes_refused_total", "RTMP publishes refused, by reason.", []string{"reason"}, nil),
		malformedDesc:   prometheus.NewDesc("liveengine_rtmp_malformed_closed_total", "RTMP connections closed because they sent malformed data.", nil, nil),
	}
}

func (m *metrics) refuse(reason string) {
	for i, r := range refusedReasons {
		if r == reason {
			m.refused[i].Add(1)
			return
		}
	}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connectionsDesc
	ch <- m.acceptedDesc
	ch <- m.refusedDesc
	ch <- m.malformedDesc
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.connectionsDesc, prometheus.GaugeValue, float64(m.connections.Load()))
	ch <- prometheus.MustNewConstMetric(m.acceptedDesc, prometheus.CounterValue, float64(m.accepted.Load()))
	for i, r := range refusedReasons {
		ch <- prometheus.MustNewConstMetric(m.refusedDesc, prometheus.CounterValue, float64(m.refused[i].Load()), r)
	}
	ch <- prometheus.MustNewConstMetric(m.malformedDesc, prometheus.CounterValue, float64(m.malformed.Load()))
}
