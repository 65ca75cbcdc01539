package ledger

import (
	"context"
	"errors"
	"fmt"
	"github.com/liveengine/liveengine/control/sqldb"
	"strings"
	"sync"
	"testing"
)

func topup(t testing.TB, l *Ledger, user string, coins int64) {
	t.Helper()
	_, err := l.Transfer(context.Background(), TransferRequest{
		IdempotencyKey: "test-topup:" + user + fmt.Sprint(coins),
		Kind:           TransferTopup,
		Legs:           []Leg{{From: Clearing("sandbox"), To: Wallet(user), Amount: coins}},
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLedgerTransfers(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			l := newLedger(t, db, DefaultConfig())
			ctx := context.Background()
			topup(t, l, "alice", 100)

			gift := func(key string, price int64) (Receipt, error) {
				return l.Transfer(ctx, TransferRequest{
					IdempotencyKey: key, Kind: TransferGift, Actor: "alice", StreamID: "s1", Fingerprint: fmt.Sprint(price),
					Legs: []Leg{{From: Wallet("alice"), To: Earnings("bob"), Amount: price * 7 / 10}, {From: Wallet("alice"), To: Platform, Amount: price - price*7/10}},
				})
			}
			r, err := gift("g1", 60)
			if err != nil || r.Replayed || r.Balances[Wallet("alice")] != 40 {
				t.Fatalf("gift: %+v %v", r, err)
			}
			// Insufficient: moves nothing.
			if _, err := gift("g2", 50); !errors.Is(err, ErrInsufficientFunds) {
				t.Fatalf("want insufficient funds, got %v", err)
			}
			// Replay returns the first receipt.
			r2, err := gift("g1", 60)
			if err != nil || !r2.Replayed || r2.TransferID != r.TransferID {
				t.Fatalf("replay: %+v %v", r2, err)
			}
			if _, err := gift("g1", 10); !errors.Is(err, ErrIdempotencyConflict) {
				t.Fatalf("want conflict, got %v", err)
			}
			// Invalid requests.
			for _, bad := range []TransferRequest{
				{IdempotencyKey: "x"},
				{IdempotencyKey: "", Legs: []Leg{{From: Wallet("a"), To: Wallet("b"), Amount: 1}}},
				{IdempotencyKey: "x", Legs: []Leg{{From: Wallet("a"), To: Wallet("b"), Amount: 0}}},
				{IdempotencyKey: "x", Legs: []Leg{{From: Wallet("a"), To: Wallet("b"), Amount: MaxAmount + 1}}},
				{IdempotencyKey: "x", Legs: []Leg{{From: Wallet("a"), To: Wallet("a"), Amount: 1}}},
				{IdempotencyKey: "x", Legs: []Leg{{From: "bogus", To: Wallet("a"), Amount: 1}}},
			} {
				if _, err := l.Transfer(ctx, bad); !errors.Is(err, ErrInvalidTransfer) {
					t.Fatalf("%+v: want invalid, got %v", bad, err)
				}
			}
			want := map[AccountID]int64{Wallet("alice"): 40, Earnings("bob"): 42, Platform: 18, Clearing("sandbox"): -100}
			for a, w := range want {
				if b, err := l.Balance(ctx, a); err != nil || b != w {
					t.Fatalf("%s = %d (%v), want %d", a, b, err, w)
				}
			}
			mustInvariants(t, db)
		})
	}
}

// TestLedgerConcurrentBatches sends many transfers at once, with duplicate
// keys and overdrafts mixed in one batch.
// TestLedgerConcurrentBatches: concurrent gifts, each sent twice, some
// overdrawing, with group commit and in naive mode (each transfer its own
// transaction, run concurrently: `ledger.naive: true`).
func TestLedgerConcurrentBatches(t *testing.T) {
	for _, name := range []string{"sqlite", "postgres", "sqlite-naive", "postgres-naive"} {
		t.Run(name, func(t *testing.T) {
			d, naive := strings.CutSuffix(name, "-naive")
			db := openDB(t, d)
			conf := DefaultConfig()
			conf.Naive = naive
			l := newLedger(t, db, conf)
			ctx := context.Background()
			users, each := 50, 20
			if naive {
				users = 10 // a durable commit per transfer
			}
			for u := 0; u < users; u++ {
				topup(t, l, fmt.Sprint("u", u), int64(each*10-5)) // the last gift of each user overdraws
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			ok, insufficient := 0, 0
			for u := 0; u < users; u++ {
				for g := 0; g < each; g++ {
					for rep := 0; rep < 2; rep++ { // every gift sent twice
						wg.Add(1)
						go func() {
							defer wg.Done()
							user := fmt.Sprint("u", u)
							r, err := l.Transfer(ctx, TransferRequest{
								IdempotencyKey: fmt.Sprint(user, "-", g), Kind: TransferGift, Actor: user, StreamID: "s",
								Legs: []Leg{{From: Wallet(user), To: Earnings("star"), Amount: 7}, {From: Wallet(user), To: Platform, Amount: 3}},
							})
							mu.Lock()
							defer mu.Unlock()
							switch {
							case errors.Is(err, ErrInsufficientFunds):
								insufficient++
							case err != nil:
								t.Error(err)
							case !r.Replayed:
								ok++
							}
						}()
					}
				}
			}
			wg.Wait()
			if ok != users*(each-1) {
				t.Fatalf("applied %d gifts, want %d (insufficient %d)", ok, users*(each-1), insufficient)
			}
			if b, _ := l.Balance(ctx, Earnings("star")); b != int64(users*(each-1)*7) {
				t.Fatalf("earnings %d", b)
			}
			for u := 0; u < users; u++ {
				if b, _ := l.Balance(ctx, Wallet(fmt.Sprint("u", u))); b != 5 {
					t.Fatalf("u%d wallet %d, want 5", u, b)
				}
			}
			t.Logf("stats %+v", l.Stats())
			mustInvariants(t, db)
		})
	}
}

func TestFormatID(t *testing.T) {
	for _, c := range []struct {
		ms  int64
		seq uint64
	}{{0, 0}, {1764115200123, 1}, {1<<48 - 1, 0xffffff}, {1 << 52, 0xabc}} {
		want := fmt.Sprintf("%s%012x%s%06x", "tr_", c.ms, idNode, c.seq)
		if got := formatID("tr_", c.ms, c.seq); got != want {
			t.Errorf("formatID(%d, %d) = %s, want %s", c.ms, c.seq, got, want)
		}
	}
}

// TestReplayWithoutLookup: the SQLite writer applies a batch without
// looking its keys up; a replayed key found by the insert, or among the
// transfers it rejected, makes it apply the batch again with the lookup, so
// replays still get their first receipt and the others are decided on the
// true balances.
func TestReplayWithoutLookup(t *testing.T) {
	db := openDB(t, "sqlite")
	l := newBareWriter(t, db) // answers straight from process
	c := l.conn
	ctx := context.Background()
	run := func(reqs ...TransferRequest) []outcome {
		t.Helper()
		var jobs []*job
		for i := range reqs {
			jobs = append(jobs, &job{ctx: ctx, req: &reqs[i], done: make(chan outcome, 1)})
		}
		l.process(jobs)
		out := make([]outcome, len(jobs))
		for i, j := range jobs {
			out[i] = <-j.done
		}
		return out
	}
	gift := func(key string, coins int64) TransferRequest {
		return TransferRequest{IdempotencyKey: key, Kind: TransferGift, Fingerprint: fmt.Sprint(coins),
			Legs: []Leg{{From: Wallet("alice"), To: Earnings("bob"), Amount: coins}}}
	}
	run(TransferRequest{IdempotencyKey: "top", Legs: []Leg{{From: Clearing("x"), To: Wallet("alice"), Amount: 100}}})
	first := run(gift("g1", 30))[0]
	if first.err != nil || l.lookupKeys(c) {
		t.Fatalf("g1: %v, lookup %v", first.err, l.lookupKeys(c))
	}
	// g1 is a replay the insert finds; applied as new it would have left
	// 40 coins and rejected g2.
	out := run(gift("g1", 30), gift("g2", 50), gift("g3", 30))
	if out[0].err != nil || !out[0].r.Replayed || out[0].r.TransferID != first.r.TransferID {
		t.Fatalf("g1 replay: %+v", out[0])
	}
	if out[1].err != nil || !errors.Is(out[2].err, ErrInsufficientFunds) {
		t.Fatalf("g2, g3: %v, %v", out[1].err, out[2].err)
	}
	if s := l.Stats(); s.KeyRetries != 1 || !l.lookupKeys(c) {
		t.Fatalf("%d retries, lookup %v", s.KeyRetries, l.lookupKeys(c))
	}
	// g2 replayed when alice (20 coins) could no longer pay it: rejected
	// without the lookup, then found among the rejected keys.
	l.lookupBatches = 0
	out = run(gift("g2", 50))
	if out[0].err != nil || !out[0].r.Replayed {
		t.Fatalf("g2 replay: %+v", out[0])
	}
	if s := l.Stats(); s.KeyRetries != 2 {
		t.Fatalf("%d retries, want 2", s.KeyRetries)
	}
	if b := mustBalance(t, l, Wallet("alice")); b != 20 {
		t.Fatalf("alice %d, want 20", b)
	}
	mustInvariants(t, db)
}

// newBareWriter is a SQLite ledger whose writer connection is set up but
// whose goroutines are not started (synchronous=NORMAL, no syncer): tests
// and benchmarks drive apply or process on it directly.
func newBareWriter(tb testing.TB, db *sqldb.DB) *Ledger {
	tb.Helper()
	conf := DefaultConfig()
	conf.Synchronous = SyncNormal
	l, err := New(db, conf, testLog())
	if err != nil {
		tb.Fatal(err)
	}
	c, err := l.writerConn(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	l.conn = c
	tb.Cleanup(func() {
		if l.ckpt != nil {
			l.ckpt.close()
		}
		for _, st := range l.stmts {
			st.Close()
		}
		c.Close()
	})
	return l
}
