package ledger

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/liveengine/liveengine/control/sqldb"
)

// schema is the ledger's tables, in both dialects (BIGINT and TEXT mean the
// same to SQLite and PostgreSQL). Times are Unix microseconds. Users and
// streams are referenced by their string ids, without foreign keys, so the
// ledger can live beside any control store.
var schema = []string{
	`CREATE TABLE IF NOT EXISTS ledger_accounts (
		id TEXT PRIMARY KEY,
		balance BIGINT NOT NULL DEFAULT 0,
		allow_negative SMALLINT NOT NULL DEFAULT 0,
		created_at BIGINT NOT NULL DEFAULT 0,
		CHECK (allow_negative = 1 OR balance >= 0)
	)` + withoutRowID,
	// Transfers are a rowid table too (on SQLite the text primary key then
	// gets its own index). WITHOUT ROWID stored each ~400-byte row (the
	// stored answer included) in the id's B-tree, a few rows per page, and
	// made the idempotency index carry the text id: BenchmarkSQLiteFloor's
	// one-row-per-gift writer cost 36-48 µs of CPU per gift that way
	// against 29-31 as a rowid table. Databases created before keep their
	// WITHOUT ROWID table (same columns, same queries).
	`CREATE TABLE IF NOT EXISTS ledger_transfers (
		id TEXT PRIMARY KEY,
		idem_key TEXT NOT NULL UNIQUE,
		kind TEXT NOT NULL,
		actor TEXT NOT NULL DEFAULT '',
		stream_id TEXT NOT NULL DEFAULT '',
		amount BIGINT NOT NULL,
		meta TEXT NOT NULL DEFAULT '',
		fingerprint TEXT NOT NULL DEFAULT '',
		resp_status INTEGER NOT NULL DEFAULT 0,
		resp_body TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL
	)`,
	// On SQLite the entries are a rowid table: a new entry appends to the
	// rowid B-tree with an integer key, and the credit index carries an
	// 8-byte rowid instead of (transfer_id, seq). The writer spent 13% less
	// CPU per gift than with the (transfer_id, seq) primary key WITHOUT
	// ROWID (BenchmarkApply, batches of 45: 57-61 µs vs 67-70). Nothing
	// looks an entry up by (transfer_id, seq). Databases created before
	// keep their WITHOUT ROWID table (same columns, same queries).
	`CREATE TABLE IF NOT EXISTS ledger_entries (
		transfer_id TEXT NOT NULL,
		seq INTEGER NOT NULL,
		debit TEXT NOT NULL,
		credit TEXT NOT NULL,
		amount BIGINT NOT NULL CHECK (amount > 0),
		kind TEXT NOT NULL,
		actor TEXT NOT NULL DEFAULT '',
		stream_id TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL` + postgresPart(`,
		PRIMARY KEY (transfer_id, seq)`) + `
	)`,
	`CREATE INDEX IF NOT EXISTS ledger_entries_credit ON ledger_entries (credit, created_at)`,
	// The debit side of an account's history (GET /wallet/transactions), on
	// PostgreSQL only: every gift debits a different wallet, so on SQLite
	// this index dirties about one more random page per gift in the single
	// writer, +35% of its CPU per gift (BenchmarkApply: 80 vs 59 µs at
	// batches of 45). SQLite answers the debit side with a scan.
	`CREATE INDEX IF NOT EXISTS ledger_entries_debit ON ledger_entries (debit, created_at)` + postgresOnly,
	`CREATE TABLE IF NOT EXISTS ledger_gifts (
		id TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		price BIGINT NOT NULL CHECK (price > 0),
		animation_url TEXT NOT NULL DEFAULT '',
		tier INTEGER NOT NULL DEFAULT 1,
		active SMALLINT NOT NULL DEFAULT 1,
		updated_at BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS ledger_commissions (
		streamer_id TEXT PRIMARY KEY,
		percent INTEGER NOT NULL CHECK (percent >= 0 AND percent <= 100),
		updated_by TEXT NOT NULL DEFAULT '',
		updated_at BIGINT NOT NULL
	)`,
	`CREATE TABLE IF NOT EXISTS ledger_orders (
		id TEXT PRIMARY KEY,
		provider TEXT NOT NULL,
		user_id TEXT NOT NULL,
		coins BIGINT NOT NULL CHECK (coins > 0),
		amount_minor BIGINT NOT NULL,
		currency TEXT NOT NULL,
		status TEXT NOT NULL,
		provider_ref TEXT NOT NULL DEFAULT '',
		idem_key TEXT NOT NULL UNIQUE,
		fingerprint TEXT NOT NULL,
		resp_body TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		completed_at BIGINT NOT NULL DEFAULT 0
	)`,
	`CREATE TABLE IF NOT EXISTS ledger_withdrawals (
		id TEXT PRIMARY KEY,
		user_id TEXT NOT NULL,
		coins BIGINT NOT NULL CHECK (coins > 0),
		amount_minor BIGINT NOT NULL,
		currency TEXT NOT NULL,
		status TEXT NOT NULL,
		decided_by TEXT NOT NULL DEFAULT '',
		created_at BIGINT NOT NULL,
		decided_at BIGINT NOT NULL DEFAULT 0
	)`,
	// ledger_sync is written by the PostgreSQL syncer: its durable commit
	// flushes the WAL for the batches committed before it (one row per node).
	`CREATE TABLE IF NOT EXISTS ledger_sync (
		node TEXT PRIMARY KEY,
		n BIGINT NOT NULL DEFAULT 0
	)`,
	`CREATE INDEX IF NOT EXISTS ledger_withdrawals_user ON ledger_withdrawals (user_id, created_at)`,
}

// withoutRowID marks tables that SQLite stores WITHOUT ROWID.
const withoutRowID = " /*without-rowid*/"

// postgresOnly marks statements Migrate skips on SQLite.
const postgresOnly = " /*postgres-only*/"

// postgresPart marks a part of a statement Migrate drops on SQLite.
func postgresPart(s string) string { return "/*pg{*/" + s + "/*}pg*/" }

var postgresParts = regexp.MustCompile(`(?s)/\*pg\{\*/.*?/\*\}pg\*/`)

// Migrate creates the ledger's tables (all prefixed ledger_) when missing.
// It is idempotent and safe to run at every start.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	for _, q := range schema {
		if strings.HasSuffix(q, postgresOnly) {
			if db.Dialect != sqldb.Postgres {
				continue
			}
			q = strings.TrimSuffix(q, postgresOnly)
		}
		if db.Dialect == sqldb.SQLite {
			q = postgresParts.ReplaceAllString(q, "")
		} else {
			q = strings.NewReplacer("/*pg{*/", "", "/*}pg*/", "").Replace(q)
		}
		if db.Dialect == sqldb.SQLite {
			// Text-keyed tables stored in their primary key's B-tree: one
			// B-tree less to write per row.
			q = strings.ReplaceAll(q, withoutRowID, " WITHOUT ROWID")
		} else {
			q = strings.ReplaceAll(q, withoutRowID, "")
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("ledger migrate: %w", err)
		}
	}
	return nil
}
