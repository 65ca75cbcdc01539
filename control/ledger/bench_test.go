package ledger

import (
	"context"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// BenchmarkGifts measures gifts per second and latency through the HTTP API,
// every request answered after its transfer is durable, with group commit
// ("batch") and with the naive one-transaction-per-gift baseline ("naive"),
// on SQLite and PostgreSQL. Run with a fixed count, e.g.
//
//	go test ./control/ledger -run '^$' -bench BenchmarkGifts -benchtime 20000x
//
// Reported: gifts/s, p50-ms, p99-ms, failed (non-201 answers).
func BenchmarkGifts(b *testing.B) {
	for _, d := range dialects {
		for _, mode := range []string{"batch", "naive"} {
			for _, clients := range []int{16, 64} {
				b.Run(fmt.Sprintf("%s/%s/clients=%d", d, mode, clients), func(b *testing.B) {
					benchGifts(b, d, mode == "naive", clients)
				})
			}
		}
	}
}

func benchGifts(b *testing.B, dialect string, naive bool, clients int) {
	db := openDB(b, dialect)
	conf := DefaultConfig()
	conf.Naive = naive
	if v := os.Getenv("LEDGER_BENCH_LINGER"); v != "" { // tuning experiments
		d, err := time.ParseDuration(v)
		if err != nil {
			b.Fatal(err)
		}
		conf.Linger = d
	}
	s := startServer(b, db, conf, nil)
	s.addGift("rose", 10)
	s.streams.set("live", "star", true)
	const senders = 1000
	var wg sync.WaitGroup
	for u := 0; u < senders; u += 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := u; i < u+100; i++ {
				_, err := s.l.Transfer(context.Background(), TransferRequest{IdempotencyKey: fmt.Sprint("seed-", i), Kind: TransferTopup,
					Legs: []Leg{{From: Clearing("sandbox"), To: Wallet(fmt.Sprint("u", i)), Amount: 1 << 40}}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	client := &fasthttp.HostClient{Addr: s.addr, MaxConns: clients, ReadTimeout: 60 * time.Second, WriteTimeout: 60 * time.Second, MaxConnWaitTimeout: 60 * time.Second}
	var next, failed atomic.Int64
	lat := make([][]time.Duration, clients)
	body := []byte(`{"gift_id":"rose"}`)
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fasthttp.AcquireRequest()
			resp := fasthttp.AcquireResponse()
			req.Header.SetMethod("POST")
			req.SetRequestURI("http://" + s.addr + "/api/v1/streams/live/gifts")
			mine := make([]time.Duration, 0, b.N/clients+1)
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					break
				}
				req.Header.Set("Authorization", fmt.Sprint("Bearer u", i%senders))
				req.Header.Set(HeaderIdempotencyKey, fmt.Sprint("g", i))
				req.SetBody(body)
				t0 := time.Now()
				err := client.Do(req, resp)
				mine = append(mine, time.Since(t0))
				if err != nil || resp.StatusCode() != 201 {
					if failed.Add(1) <= 3 {
						b.Logf("gift %d: %v %d %s", i, err, resp.StatusCode(), resp.Body())
					}
				}
			}
			lat[c] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	b.StopTimer()
	// CPU of this process (server, ledger, SQLite and the HTTP clients; not
	// the PostgreSQL server) per gift: comparable even when the shared
	// machine is loaded.
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/gift")
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 { return float64(all[int(p*float64(len(all)-1))].Microseconds()) / 1000 }
	ok := int64(b.N) - failed.Load()
	b.ReportMetric(float64(ok)/elapsed.Seconds(), "gifts/s")
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(failed.Load()), "failed")
	st := s.l.Stats()
	if st.Batches > 0 {
		b.ReportMetric(float64(st.Transfers)/float64(st.Batches), "gifts/batch")
		b.ReportMetric(float64(st.ApplyTime.Microseconds())/float64(st.Batches)/1000, "tx-ms")
		b.ReportMetric(float64(st.CommitTime.Microseconds())/float64(st.Batches)/1000, "commit-ms")
		if st.Syncs > 0 {
			b.ReportMetric(float64(st.SyncTime.Microseconds())/float64(st.Syncs)/1000, "fsync-ms")
		}
	}
	if got, want := s.balance(Earnings("star")), ok*7; got != want {
		b.Fatalf("streamer earnings %d, want %d", got, want)
	}
	mustInvariants(b, db)
}

// BenchmarkLedgerTransfer measures the ledger alone (no HTTP): 64 goroutines
// sending 2-leg gifts from 1000 wallets, SQLite, durable (pipelined fsync).
func BenchmarkLedgerTransfer(b *testing.B) {
	for _, d := range dialects {
		b.Run(d, func(b *testing.B) {
			db := openDB(b, d)
			l := newLedger(b, db, DefaultConfig())
			ctx := context.Background()
			const senders = 1000
			for i := 0; i < senders; i++ {
				if _, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: fmt.Sprint("seed-", i), Legs: []Leg{{From: Clearing("x"), To: Wallet(fmt.Sprint("u", i)), Amount: 1 << 40}}}); err != nil {
					b.Fatal(err)
				}
			}
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			for c := 0; c < 64; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						u := Wallet(fmt.Sprint("u", i%senders))
						_, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: fmt.Sprint("g", i), Kind: TransferGift, Fingerprint: "f", Respond: func(Receipt) (int, []byte) { return 201, []byte(`{}`) },
							Legs: []Leg{{From: u, To: Earnings("star"), Amount: 7}, {From: u, To: Platform, Amount: 3}}})
						if err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "transfers/s")
			st := l.Stats()
			b.ReportMetric(float64(st.Transfers)/float64(st.Batches), "per-batch")
			b.ReportMetric(float64(st.ApplyTime.Microseconds())/float64(st.Transfers), "tx-us/transfer")
			mustInvariants(b, db)
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
