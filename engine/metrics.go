package engine

import (
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// kindStats aggregates the readers of one kind. Counters are plain atomics
// updated on the hot path and read by the Prometheus collector at scrape
// time, so fan-out costs no metric allocation.
type kindStats struct {
	readers atomic.Int64
	units   atomic.Uint64
	bytes   atomic.Uint64
	dropped atomic.Uint64
}

type metrics struct {
	eng   *Engine
	mu    sync.Mutex
	kinds map[string]*kindStats

	streamsDesc    *prometheus.Desc
	publishersDesc *prometheus.Desc
	readersDesc    *prometheus.Desc
	bytesInDesc    *prometheus.Desc
	unitsInDesc    *prometheus.Desc
	bytesOutDesc   *prometheus.Desc
	unitsOutDesc   *prometheus.Desc
	droppedDesc    *prometheus.Desc

	// Totals of streams that ended, so counters never go backwards.
	endedBytesIn atomic.Uint64
	endedUnitsIn atomic.Uint64
}

func newMetrics(e *Engine) *metrics {
	return &metrics{
		eng:            e,
		kinds:          map[string]*kindStats{},
		streamsDesc:    prometheus.NewDesc("liveengine_streams_live", "Live streams, renditions included.", []string{"protocol"}, nil),
		publishersDesc: prometheus.NewDesc("liveengine_publishers", "Publishers currently claiming a stream (external and internal).", nil, nil),
		readersDesc:    prometheus.NewDesc("liveengine_readers", "Readers attached to streams.", []string{"kind"}, nil),
		bytesInDesc:    prometheus.NewDesc("liveengine_bytes_in_total", "Payload bytes written by publishers.", nil, nil),
		unitsInDesc:    prometheus.NewDesc("liveengine_units_in_total", "Units written by publishers.", nil, nil),
		bytesOutDesc:   prometheus.NewDesc("liveengine_bytes_out_total", "Payload bytes delivered to readers.", []string{"kind"}, nil),
		unitsOutDesc:   prometheus.NewDesc("liveengine_units_out_total", "Units delivered to readers.", []string{"kind"}, nil),
		droppedDesc:    prometheus.NewDesc("liveengine_units_dropped_total", "Units dropped because a reader was too slow.", []string{"kind"}, nil),
	}
}

func (m *metrics) kind(k string) *kindStats {
	if k == "" {
		k = "other"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ks := m.kinds[k]
	if ks == nil {
		ks = &kindStats{}
		m.kinds[k] = ks
	}
	return ks
}

// Collector returns the engine's Prometheus collector.
func (e *Engine) Collector() prometheus.Collector { return e.metrics }

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.streamsDesc, m.publishersDesc, m.readersDesc, m.bytesInDesc, m.unitsInDesc, m.bytesOutDesc, m.unitsOutDesc, m.droppedDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	e := m.eng
	e.mu.Lock()
	byProto := map[string]int{}
	var bytesIn, unitsIn uint64
	for _, s := range e.streams {
		byProto[s.protocol]++
		bytesIn += s.bytesIn.Load()
		unitsIn += s.unitsIn.Load()
	}
	pubs := len(e.publishers)
	e.mu.Unlock()
	for _, p := range []string{"rtmp", "whip", "rtsp", "transcode"} {
		if _, ok := byProto[p]; !ok {
			byProto[p] = 0
		}
	}
	for p, n := range byProto {
		ch <- prometheus.MustNewConstMetric(m.streamsDesc, prometheus.GaugeValue, float64(n), p)
	}
	ch <- prometheus.MustNewConstMetric(m.publishersDesc, prometheus.GaugeValue, float64(pubs))
	ch <- prometheus.MustNewConstMetric(m.bytesInDesc, prometheus.CounterValue, float64(bytesIn+m.endedBytesIn.Load()))
	ch <- prometheus.MustNewConstMetric(m.unitsInDesc, prometheus.CounterValue, float64(unitsIn+m.endedUnitsIn.Load()))
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, ks := range m.kinds {
		ch <- prometheus.MustNewConstMetric(m.readersDesc, prometheus.GaugeValue, float64(ks.readers.Load()), k)
		ch <- prometheus.MustNewConstMetric(m.bytesOutDesc, prometheus.CounterValue, float64(ks.bytes.Load()), k)
		ch <- prometheus.MustNewConstMetric(m.unitsOutDesc, prometheus.CounterValue, float64(ks.units.Load()), k)
		ch <- prometheus.MustNewConstMetric(m.droppedDesc, prometheus.CounterValue, float64(ks.dropped.Load()), k)
	}
}
