package ledger

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// BenchmarkSQLiteFloor is the least a durable gift can cost the SQLite
// writer, whatever the schema: per gift ONE row carrying everything (a
// random idempotency key under a unique index, the legs, the stored answer)
// and the sender's balance update; batches of 64 in one transaction, WAL,
// synchronous=NORMAL, checkpoints off the writer as the ledger runs them.
// No ledger code runs: it is the floor BenchmarkApply is measured against.
func BenchmarkSQLiteFloor(b *testing.B) {
	for _, size := range []int{64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			ctx := context.Background()
			db, err := sqldb.Open("sqlite://" + filepath.Join(b.TempDir(), "floor.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			for _, q := range []string{
				`CREATE TABLE acct (id TEXT PRIMARY KEY, balance BIGINT NOT NULL CHECK (balance >= 0)) WITHOUT ROWID`,
				`CREATE TABLE tr (id INTEGER PRIMARY KEY, idem TEXT NOT NULL UNIQUE, actor TEXT, stream TEXT, legs TEXT, body TEXT, at BIGINT)`,
			} {
				if _, err := db.ExecContext(ctx, q); err != nil {
					b.Fatal(err)
				}
			}
			c, err := db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ck, err := db.Conn(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer ck.Close()
			if _, err := c.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
				b.Fatal(err)
			}
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				t := time.NewTicker(checkpointEvery)
				defer t.Stop()
				for {
					select {
					case <-stop:
						return
					case <-t.C:
						_, _ = ck.ExecContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)")
					}
				}
			}()
			defer func() { close(stop); <-done }()
			const senders = 1000
			for i := 0; i < senders; i++ {
				if _, err := c.ExecContext(ctx, "INSERT INTO acct VALUES (?, ?)", fmt.Sprint("wallet:u", i), int64(1)<<40); err != nil {
					b.Fatal(err)
				}
			}
			ins, err := c.PrepareContext(ctx, "INSERT OR ROLLBACK INTO tr (idem, actor, stream, legs, body, at) VALUES "+strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?), ", size), ", "))
			if err != nil {
				b.Fatal(err)
			}
			upd, err := c.PrepareContext(ctx, "UPDATE OR ROLLBACK acct SET balance = balance - u.column2 FROM (VALUES "+strings.TrimSuffix(strings.Repeat("(?, CAST(? AS BIGINT)), ", size), ", ")+") AS u WHERE acct.id = u.column1")
			if err != nil {
				b.Fatal(err)
			}
			body := `{"transfer_id":"tr_019abc0123456789abcdef012345","stream_id":"live","streamer_id":"star","gift_id":"rose","quantity":1,"coins":10,"balance":1099511627766,"created_at":"2026-11-25T23:40:00.123456Z"}`
			args := make([]any, 0, size*6)
			uargs := make([]any, 0, size*2)
			b.ResetTimer()
			cpu0 := cpuTime()
			for i := 0; i+size <= b.N; i += size {
				args, uargs = args[:0], uargs[:0]
				now := time.Now().UnixMicro()
				for k := i; k < i+size; k++ {
					u := fmt.Sprint("wallet:u", (k*7919)%senders)
					args = append(args, fmt.Sprintf("u:%s:g%d", u, k), u, "live", u+">earnings:star=7;"+u+">platform=3", body, now)
					uargs = append(uargs, u, int64(10))
				}
				if _, err := c.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
					b.Fatal(err)
				}
				if _, err := ins.ExecContext(ctx, args...); err != nil {
					b.Fatal(err)
				}
				if _, err := upd.ExecContext(ctx, uargs...); err != nil {
					b.Fatal(err)
				}
				if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
