package control

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics reads the hub's counters at scrape time, so the hot paths only
// touch atomics.
type metrics struct {
	s           *Server
	connections *prometheus.Desc
	delivered   *prometheus.Desc
	dropped     *prometheus.Desc
	requests    *prometheus.Desc
}

// Collector exposes the control plane's metrics for the engine's /metrics:
// liveengine_control_ws_connections, _ws_delivered_total, _ws_dropped_total
// and _http_requests_total by status class.
func (s *Server) Collector() prometheus.Collector {
	return &metrics{
		s:           s,
		connections: prometheus.NewDesc("liveengine_control_ws_connections", "Open WebSocket connections.", nil, nil),
		delivered:   prometheus.NewDesc("liveengine_control_ws_delivered_total", "Messages queued to WebSocket clients.", nil, nil),
		dropped:     prometheus.NewDesc("liveengine_control_ws_dropped_total", "WebSocket clients disconnected for being too slow.", nil, nil),
		requests:    prometheus.NewDesc("liveengine_control_http_requests_total", "API requests by status class.", []string{"class"}, nil),
	}
}

func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.connections
	ch <- m.delivered
	ch <- m.dropped
	ch <- m.requests
}

func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	h := m.s.hub
	ch <- prometheus.MustNewConstMetric(m.connections, prometheus.GaugeValue, float64(h.Connections()))
	ch <- prometheus.MustNewConstMetric(m.delivered, prometheus.CounterValue, float64(h.Delivered()))
	ch <- prometheus.MustNewConstMetric(m.dropped, prometheus.CounterValue, float64(h.Dropped()))
	for i, class := range []string{"2xx", "3xx", "4xx", "5xx"} {
		ch <- prometheus.MustNewConstMetric(m.requests, prometheus.CounterValue, float64(m.s.requests[i].Load()), class)
	}
}
