package packager

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are plain atomics read by the collector at scrape time, so the
// request path costs no metric allocation.
type metrics struct {
	p *Packager

	segments    atomic.Uint64
	parts       atomic.Uint64
	badUnits    atomic.Uint64
	bytesServed atomic.Uint64
	blocked     atomic.Int64
	requests    [resPart + 1]atomic.Uint64 // by resourceKind; 0 counts unparsable URLs
	errors      atomic.Uint64

	segmentsDesc *prometheus.Desc
	partsDesc    *prometheus.Desc
	badDesc      *prometheus.Desc
	bytesDesc    *prometheus.Desc
	blockedDesc  *prometheus.Desc
	requestsDesc *prometheus.Desc
	errorsDesc   *prometheus.Desc
	sessionsDesc *prometheus.Desc
	streamsDesc  *prometheus.Desc
}

func newMetrics(p *Packager) *metrics {
	return &metrics{
		p:            p,
		segmentsDesc: prometheus.NewDesc("liveengine_hls_segments_total", "LL-HLS segments completed.", nil, nil),
		partsDesc:    prometheus.NewDesc("liveengine_hls_parts_total", "LL-HLS parts produced.", nil, nil),
		badDesc:      prometheus.NewDesc("liveengine_hls_units_dropped_total", "Units the packager could not use (bad timestamps, missing parameter sets).", nil, nil),
		bytesDesc:    prometheus.NewDesc("liveengine_hls_bytes_served_total", "Response body bytes served under /hls/.", nil, nil),
		blockedDesc:  prometheus.NewDesc("liveengine_hls_blocked_requests", "Requests currently held by blocking playlist reload or preload hints.", nil, nil),
		requestsDesc: prometheus.NewDesc("liveengine_hls_requests_total", "Requests under /hls/ by kind.", []string{"kind"}, nil),
		errorsDesc:   prometheus.NewDesc("liveengine_hls_request_errors_total", "Requests under /hls/ answered with a 4xx or 5xx status.", nil, nil),
		sessionsDesc: prometheus.NewDesc("liveengine_hls_sessions", "HLS viewer sessions (client address and User-Agent seen recently).", nil, nil),
		streamsDesc:  prometheus.NewDesc("liveengine_hls_renditions", "Renditions packaged, ended ones still retained included.", nil, nil),
	}
}

// Collector returns the packager's Prometheus collector.
func (p *Packager) Collector() prometheus.Collector { return p.metrics }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.segmentsDesc, m.partsDesc, m.badDesc, m.bytesDesc, m.blockedDesc, m.requestsDesc, m.errorsDesc, m.sessionsDesc, m.streamsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(m.segmentsDesc, prometheus.CounterValue, float64(m.segments.Load()))
	ch <- prometheus.MustNewConstMetric(m.partsDesc, prometheus.CounterValue, float64(m.parts.Load()))
	ch <- prometheus.MustNewConstMetric(m.badDesc, prometheus.CounterValue, float64(m.badUnits.Load()))
	ch <- prometheus.MustNewConstMetric(m.bytesDesc, prometheus.CounterValue, float64(m.bytesServed.Load()))
	ch <- prometheus.MustNewConstMetric(m.blockedDesc, prometheus.GaugeValue, float64(m.blocked.Load()))
	ch <- prometheus.MustNewConstMetric(m.errorsDesc, prometheus.CounterValue, float64(m.errors.Load()))
	for k := range m.requests {
		name := "invalid"
		if k > 0 {
			name = resourceKind(k).String()
		}
		ch <- prometheus.MustNewConstMetric(m.requestsDesc, prometheus.CounterValue, float64(m.requests[k].Load()), name)
	}
	ch <- prometheus.MustNewConstMetric(m.sessionsDesc, prometheus.GaugeValue, float64(m.p.sessions.count()))
	n := 0
	m.p.mu.RLock()
	for _, g := range m.p.groups {
		g.mu.RLock()
		n += len(g.renditions)
		g.mu.RUnlock()
	}
	m.p.mu.RUnlock()
	ch <- prometheus.MustNewConstMetric(m.streamsDesc, prometheus.GaugeValue, float64(n))
}
