package ledger

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestCollector: the ledger's metrics count what the writer did, including
// the time transfers spent from queueing to their durable answer.
func TestCollector(t *testing.T) {
	l := newLedger(t, openDB(t, "sqlite"), DefaultConfig())
	topup(t, l, "amy", 10)
	topup(t, l, "bob", 20)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(l.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if c := m.GetCounter(); c != nil {
				got[mf.GetName()] = c.GetValue()
			}
		}
	}
	if got["liveengine_ledger_transfers_total"] != 2 || got["liveengine_ledger_answered_total"] != 2 {
		t.Fatalf("counters %v", got)
	}
	if s := got["liveengine_ledger_answer_seconds_total"]; s <= 0 || s > 60 {
		t.Fatalf("answer seconds %v", s)
	}
}
