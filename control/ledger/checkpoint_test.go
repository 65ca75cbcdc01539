package ledger

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestCheckpointOffWriter: the writer never checkpoints by itself, the
// checkpointer copies the WAL into the database file while transfers go on,
// and once the WAL is past the restart threshold the writer checkpoints the
// tail and the WAL starts over (its frame count falls back).
func TestCheckpointOffWriter(t *testing.T) {
	db := openDB(t, "sqlite")
	l := newLedger(t, db, DefaultConfig())
	if l.ckpt == nil {
		t.Fatal("no checkpointer on a WAL database")
	}
	var auto int
	if err := l.conn.QueryRowContext(context.Background(), "PRAGMA wal_autocheckpoint").Scan(&auto); err != nil || auto != 0 {
		t.Fatalf("writer wal_autocheckpoint = %d (%v), want 0", auto, err)
	}
	// Swap in a checkpointer with small thresholds.
	l.ckpt.close()
	c, err := l.db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp := &checkpointer{conn: c, every: 5 * time.Millisecond, restartFrames: 40, stop: make(chan struct{}), done: make(chan struct{}), log: l.log.Warn}
	l.ckpt = cp
	go cp.run()

	topup(t, l, "amy", 1_000_000)
	ctx := context.Background()
	var peak int64
	restarted := false
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; !restarted; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("WAL never restarted: %d checkpoints, %d by the writer, peak %d frames", cp.runs.Load(), cp.writerRuns.Load(), peak)
		}
		_, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: fmt.Sprint("g", i), Kind: TransferGift,
			Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}})
		if err != nil {
			t.Fatal(err)
		}
		f := cp.lastFrames.Load()
		peak = max(peak, f)
		restarted = cp.writerRuns.Load() > 0 && peak > int64(cp.restartFrames) && f > 0 && f < peak/2
	}
	mustInvariants(t, db)
}

// TestBalanceCacheSeesOtherWriters: the SQLite writer's cached balances are
// dropped when another connection commits, so a debit made elsewhere (here a
// naive-mode ledger on the same file) is seen before the next check.
func TestBalanceCacheSeesOtherWriters(t *testing.T) {
	db := openDB(t, "sqlite")
	l := newLedger(t, db, DefaultConfig())
	nconf := DefaultConfig()
	nconf.Naive = true
	other := newLedger(t, db, nconf)
	ctx := context.Background()
	gift := func(l *Ledger, key string, coins int64) error {
		_, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: key, Kind: TransferGift,
			Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: coins}}})
		return err
	}
	topup(t, l, "amy", 100)
	if err := gift(l, "a", 60); err != nil { // the writer caches amy = 40
		t.Fatal(err)
	}
	if err := gift(other, "b", 30); err != nil { // amy = 10, behind the writer's back
		t.Fatal(err)
	}
	if err := gift(l, "c", 20); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("a 20-coin gift from 10 coins: %v, want insufficient funds", err)
	}
	if err := gift(l, "d", 10); err != nil {
		t.Fatal(err)
	}
	if b := mustBalance(t, l, Wallet("amy")); b != 0 {
		t.Fatalf("amy %d, want 0", b)
	}
	if l.Stats().CacheDrops == 0 {
		t.Fatal("the cache was not dropped")
	}
	mustInvariants(t, db)
}

func mustBalance(t *testing.T, l *Ledger, a AccountID) int64 {
	t.Helper()
	b, err := l.Balance(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
