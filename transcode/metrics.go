package transcode

import "github.com/prometheus/client_golang/prometheus"

// metrics are the transcoder's Prometheus series. Rung labels are rung
// names ("720p"), never stream ids, so cardinality stays at the ladder size.
type metrics struct {
	jobs         prometheus.Gauge
	decoded      prometheus.Counter
	decodeErrors prometheus.Counter
	encoded      *prometheus.CounterVec
	dropped      *prometheus.CounterVec
	encodeTime   *prometheus.HistogramVec
	overloads    prometheus.Counter
}

func newMetrics() *metrics {
	return &metrics{
		jobs: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "liveengine_transcode_jobs",
			Help: "Source streams being transcoded.",
		}),
		decoded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveengine_transcode_frames_decoded_total",
			Help: "Source video frames decoded (once per source, shared by every rung).",
		}),
		decodeErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveengine_transcode_decode_errors_total",
			Help: "Source units the decoder rejected.",
		}),
		encoded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveengine_transcode_frames_encoded_total",
			Help: "Frames encoded per rung.",
		}, []string{"rung"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "liveengine_transcode_frames_dropped_total",
			Help: "Decoded frames a rung skipped because the transcoder was behind (lowest rungs first).",
		}, []string{"rung"}),
		encodeTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "liveengine_transcode_frame_encode_seconds",
			Help:    "Time to scale and encode one frame of a rung.",
			Buckets: []float64{.001, .002, .005, .01, .02, .033, .05, .1, .2},
		}, []string{"rung"}),
		overloads: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "liveengine_transcode_overload_episodes_total",
			Help: "Times a transcode job fell behind and started dropping rung frames.",
		}),
	}
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.jobs, m.decoded, m.decodeErrors, m.encoded, m.dropped, m.encodeTime, m.overloads}
}

// Describe implements prometheus.Collector.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}
