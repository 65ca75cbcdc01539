package ledger

import "github.com/prometheus/client_golang/prometheus"

// Collector exposes the writer's counters to Prometheus
// (liveengine_ledger_*); register it on the /metrics registry.
func (l *Ledger) Collector() prometheus.Collector { return ledgerCollector{l} }

type ledgerCollector struct{ l *Ledger }

var (
	descTransfers = prometheus.NewDesc("liveengine_ledger_transfers_total", "Transfers committed.", nil, nil)
	descRejected  = prometheus.NewDesc("liveengine_ledger_rejected_total", "Transfers rejected (insufficient funds, key conflict, failed precondition, error).", nil, nil)
	descReplayed  = prometheus.NewDesc("liveengine_ledger_replayed_total", "Requests answered from a stored transfer (idempotent retries).", nil, nil)
	descBatches   = prometheus.NewDesc("liveengine_ledger_batches_total", "Group-commit transactions.", nil, nil)
	descFallbacks = prometheus.NewDesc("liveengine_ledger_batch_fallbacks_total", "Batches that failed as a whole and were retried one transfer per transaction.", nil, nil)
	descApply     = prometheus.NewDesc("liveengine_ledger_transaction_seconds_total", "Time in batch transactions, BEGIN to COMMIT.", nil, nil)
	descSyncs     = prometheus.NewDesc("liveengine_ledger_wal_fsyncs_total", "WAL fsyncs in pipelined mode.", nil, nil)
	descSyncTime  = prometheus.NewDesc("liveengine_ledger_wal_fsync_seconds_total", "Time in WAL fsyncs.", nil, nil)
	descQueue     = prometheus.NewDesc("liveengine_ledger_queue_length", "Transfers waiting for the writer.", nil, nil)
	descAnswered  = prometheus.NewDesc("liveengine_ledger_answered_total", "Group-commit transfers answered.", nil, nil)
	descAnswer    = prometheus.NewDesc("liveengine_ledger_answer_seconds_total", "Time of group-commit transfers from queueing to the durable answer (divide by answered_total for the mean).", nil, nil)
)

func (c ledgerCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descTransfers, descRejected, descReplayed, descBatches, descFallbacks, descApply, descSyncs, descSyncTime, descQueue, descAnswered, descAnswer} {
		ch <- d
	}
}

func (c ledgerCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.l.Stats()
	counter := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v)
	}
	counter(descTransfers, float64(s.Transfers))
	counter(descRejected, float64(s.Rejected))
	counter(descReplayed, float64(s.Replayed))
	counter(descBatches, float64(s.Batches))
	counter(descFallbacks, float64(s.Fallbacks))
	counter(descApply, s.ApplyTime.Seconds())
	counter(descSyncs, float64(s.Syncs))
	counter(descSyncTime, s.SyncTime.Seconds())
	counter(descAnswered, float64(s.Answered))
	counter(descAnswer, s.AnswerTime.Seconds())
	ch <- prometheus.MustNewConstMetric(descQueue, prometheus.GaugeValue, float64(len(c.l.queue)))
}
