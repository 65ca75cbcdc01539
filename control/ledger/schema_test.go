package ledger

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/liveengine/liveengine/control/sqldb"
	"github.com/liveengine/liveengine/internal/testsvc"
)

// TestMigrate: Migrate runs again without harm; a new database keeps each
// transfer's legs in its row (no ledger_entries table), and on SQLite the
// transfers are a rowid table.
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
			if d == "sqlite" {
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(rowid) FROM ledger_transfers").Scan(&n); err != nil || n != 1 {
					t.Fatalf("transfers by rowid: %d, %v", n, err)
				}
			}
			if tableExists(t, db, "ledger_entries") {
				t.Fatal("a new database has a ledger_entries table")
			}
			var debit, credit, legs string
			if err := db.QueryRowContext(ctx, "SELECT debit, credit, legs FROM ledger_transfers").Scan(&debit, &credit, &legs); err != nil {
				t.Fatal(err)
			}
			if debit != "clearing:sandbox" || credit != "wallet:amy" || legs != `[["clearing:sandbox","wallet:amy",10]]` {
				t.Fatalf("stored %q %q %q", debit, credit, legs)
			}
			mustInvariants(t, db)
		})
	}
}

// TestMigrateEntriesIntoLegs: databases made while legs were rows of
// ledger_entries (the first SQLite layout, WITHOUT ROWID tables; the second,
// rowid tables; PostgreSQL's) get their legs moved into the transfers, keep
// working, and keep the old rows as ledger_entries_v1.
func TestMigrateEntriesIntoLegs(t *testing.T) {
	ctx := context.Background()
	old := map[string][]string{
		"sqlite-without-rowid": {
			`CREATE TABLE ledger_entries (transfer_id TEXT NOT NULL, seq INTEGER NOT NULL, debit TEXT NOT NULL, credit TEXT NOT NULL,
			amount BIGINT NOT NULL CHECK (amount > 0), kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '', stream_id TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL, PRIMARY KEY (transfer_id, seq)) WITHOUT ROWID`,
			`CREATE TABLE ledger_transfers (id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '',
			stream_id TEXT NOT NULL DEFAULT '', amount BIGINT NOT NULL, meta TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '',
			resp_status INTEGER NOT NULL DEFAULT 0, resp_body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL) WITHOUT ROWID`,
		},
		"sqlite-rowid": {
			`CREATE TABLE ledger_entries (transfer_id TEXT NOT NULL, seq INTEGER NOT NULL, debit TEXT NOT NULL, credit TEXT NOT NULL,
			amount BIGINT NOT NULL CHECK (amount > 0), kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '', stream_id TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL)`,
			`CREATE INDEX ledger_entries_credit ON ledger_entries (credit, created_at)`,
			`CREATE TABLE ledger_transfers (id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '',
			stream_id TEXT NOT NULL DEFAULT '', amount BIGINT NOT NULL, meta TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '',
			resp_status INTEGER NOT NULL DEFAULT 0, resp_body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL)`,
		},
		"postgres": {
			`CREATE TABLE ledger_entries (transfer_id TEXT NOT NULL, seq INTEGER NOT NULL, debit TEXT NOT NULL, credit TEXT NOT NULL,
			amount BIGINT NOT NULL CHECK (amount > 0), kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '', stream_id TEXT NOT NULL DEFAULT '',
			created_at BIGINT NOT NULL, PRIMARY KEY (transfer_id, seq))`,
			`CREATE TABLE ledger_transfers (id TEXT PRIMARY KEY, idem_key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL, actor TEXT NOT NULL DEFAULT '',
			stream_id TEXT NOT NULL DEFAULT '', amount BIGINT NOT NULL, meta TEXT NOT NULL DEFAULT '', fingerprint TEXT NOT NULL DEFAULT '',
			resp_status INTEGER NOT NULL DEFAULT 0, resp_body TEXT NOT NULL DEFAULT '', created_at BIGINT NOT NULL)`,
		},
	}
	for name, tables := range old {
		t.Run(name, func(t *testing.T) {
			var db *sqldb.DB
			if name == "postgres" {
				var err error
				if db, err = sqldb.Open(testsvc.Postgres(t)); err != nil {
					t.Fatal(err)
				}
			} else {
				var err error
				if db, err = sqldb.Open("sqlite://" + filepath.Join(t.TempDir(), "old.db")); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { db.Close() })
			for _, q := range tables {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			// What the old writer stored: balances, a top-up of 100 and
			// gifts of 7 + 3 (the first one's legs written in reverse order
			// of seq, as nothing kept rows in leg order), enough gifts that
			// the move takes several pages.
			const gifts = 70
			stmts := []string{
				`CREATE TABLE ledger_accounts (id TEXT PRIMARY KEY, balance BIGINT NOT NULL DEFAULT 0, allow_negative SMALLINT NOT NULL DEFAULT 0,
				created_at BIGINT NOT NULL DEFAULT 0, CHECK (allow_negative = 1 OR balance >= 0))`,
				`INSERT INTO ledger_accounts (id, balance, allow_negative) VALUES ('clearing:sandbox', -1000, 1), ('wallet:amy', 300, 0), ('earnings:star', 490, 0), ('platform:commission', 210, 0)`,
				`INSERT INTO ledger_transfers (id, idem_key, kind, amount, created_at) VALUES ('tr_0001', 'top', 'topup', 1000, 1)`,
				`INSERT INTO ledger_entries VALUES ('tr_0001', 0, 'clearing:sandbox', 'wallet:amy', 1000, 'topup', '', '', 1)`,
			}
			for _, q := range stmts {
				if _, err := db.ExecContext(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < gifts; i++ {
				id := "tr_1" + string(rune('a'+i/26)) + string(rune('a'+i%26))
				if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO ledger_transfers (id, idem_key, kind, actor, stream_id, amount, created_at) VALUES (?, ?, 'gift', 'amy', 'live', 10, 2)`), id, "g"+id); err != nil {
					t.Fatal(err)
				}
				for _, seq := range []int{1, 0} {
					to, amt := "earnings:star", 7
					if seq == 1 {
						to, amt = "platform:commission", 3
					}
					if _, err := db.ExecContext(ctx, db.Rebind(`INSERT INTO ledger_entries VALUES (?, ?, 'wallet:amy', ?, ?, 'gift', 'amy', 'live', 2)`), id, seq, to, amt); err != nil {
						t.Fatal(err)
					}
				}
			}
			defer func(p int) { entriesPageSize = p }(entriesPageSize)
			entriesPageSize = 16 // several pages, each ending inside a transfer
			if err := Migrate(ctx, db); err != nil {
				t.Fatal(err)
			}
			if tableExists(t, db, "ledger_entries") || !tableExists(t, db, "ledger_entries_v1") {
				t.Fatal("ledger_entries not renamed ledger_entries_v1")
			}
			var legs string
			if err := db.QueryRowContext(ctx, "SELECT legs FROM ledger_transfers WHERE id = 'tr_1aa'").Scan(&legs); err != nil {
				t.Fatal(err)
			}
			if legs != `[["wallet:amy","earnings:star",7],["wallet:amy","platform:commission",3]]` {
				t.Fatalf("legs %s", legs)
			}
			if r := mustInvariants(t, db); r.Entries != 1+2*gifts || r.Transfers != 1+gifts {
				t.Fatalf("%d legs, %d transfers; want %d, %d", r.Entries, r.Transfers, 1+2*gifts, 1+gifts)
			}
			if err := Migrate(ctx, db); err != nil {
				t.Fatalf("migrate again: %v", err)
			}
			l := newLedger(t, db, DefaultConfig())
			if _, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: "g", Kind: TransferGift,
				Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}}); err != nil {
				t.Fatal(err)
			}
			if r := mustInvariants(t, db); r.Transfers != 2+gifts {
				t.Fatalf("%d transfers", r.Transfers)
			}
		})
	}
}

func tableExists(t *testing.T, db *sqldb.DB, name string) bool {
	t.Helper()
	q := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
	if db.Dialect == sqldb.Postgres {
		q = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?"
	}
	var n int
	if err := db.QueryRowContext(context.Background(), db.Rebind(q), name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n > 0
}
