package ledger

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/liveengine/liveengine/control/sqldb"
)

// TestMigrate: Migrate runs again without harm; on PostgreSQL the entries
// keep their (transfer_id, seq) primary key, on SQLite entries and
// transfers are rowid tables; a SQLite database made with the earlier
// WITHOUT ROWID entries and transfers migrates and works unchanged.
func TestMigrate(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			for i := 0; i < 2; i++ {
				if err := Migrate(ctx, db); err != nil {
					t.Fatalf("migrate again: %v", err)
				}
			}
			l := newLedger(t, db, DefaultConfig())
			topup(t, l, "amy", 10)
			var n int
			q := "SELECT COUNT(*) FROM pg_constraint WHERE conrelid = 'ledger_entries'::regclass AND contype = 'p'"
			if d == "sqlite" {
				q = "SELECT COUNT(rowid) FROM ledger_entries"
			}
			if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil || n != 1 {
				t.Fatalf("%s: %d, %v", q, n, err)
			}
			if d == "sqlite" {
				if err := db.QueryRowContext(ctx, "SELECT COUNT(rowid) FROM ledger_transfers").Scan(&n); err != nil || n != 1 {
					t.Fatalf("transfers by rowid: %d, %v", n, err)
				}
			}
			mustInvariants(t, db)
		})
	}
	t.Run("sqlite-without-rowid-tables", func(t *testing.T) {
		db, err := sqldb.Open("sqlite://" + filepath.Join(t.TempDir(), "old.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		if _, err := db.ExecContext(ctx, `CREATE TABLE ledger_entries (transfer_id TEXT NOT NULL, seq INTEGER NOT NULL,
			debit TEXT NOT NULL, credit TEXT NOT NULL, amount BIGINT NOT NULL CHECK (amount > 0), kind TEXT NOT NULL,
			actor TEXT NOT NULL DEFAULT '', stream_id TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL,
			PRIMARY KEY (transfer_id, seq)) WITHOUT ROWID`); err != nil {
			t.Fatal(err)
		}
		if _, err := db.ExecContext(ctx, `CREATE TABLE ledger_transfers (id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE,
			kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '', stream_id TEXT NOT NULL DEFAULT '', amount BIGINT NOT NULL,
			meta TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '', resp_status INTEGER NOT NULL DEFAULT 0,
			resp_body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL) WITHOUT ROWID`); err != nil {
			t.Fatal(err)
		}
		if err := Migrate(ctx, db); err != nil {
			t.Fatal(err)
		}
		l := newLedger(t, db, DefaultConfig())
		topup(t, l, "amy", 100)
		if _, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: "g", Kind: TransferGift,
			Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: "g", Kind: TransferGift,
			Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}}); err != nil {
			t.Fatalf("replay: %v", err)
		}
		if r := mustInvariants(t, db); r.Entries != 3 || r.Transfers != 2 {
			t.Fatalf("%d entries, %d transfers; want 3, 2", r.Entries, r.Transfers)
		}
	})
}
