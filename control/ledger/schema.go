package ledger

import (
	"context"
	"fmt"
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
		created_at BIGINT NOT NULL,
		debit TEXT NOT NULL DEFAULT '',
		credit TEXT NOT NULL DEFAULT '',
		legs TEXT NOT NULL DEFAULT ''
	)`,
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

// dailyCreditsTable is the gift totals per credited account, UTC day (days
// since 1970-01-01) and stream: what the earnings and commission reports
// read. The writer adds each batch's gifts in the batch's transaction, so
// the totals are exactly the gift legs' (CheckInvariants compares them);
// before 2026-11-26 the reports summed every gift of their period, O(gifts)
// per report. Migrate creates it and fills it from the stored gifts once
// (addDailyCredits).
const dailyCreditsTable = `CREATE TABLE ledger_daily_credits (
		account TEXT NOT NULL,
		day BIGINT NOT NULL,
		stream_id TEXT NOT NULL,
		gifts BIGINT NOT NULL,
		coins BIGINT NOT NULL,
		PRIMARY KEY (account, day, stream_id)
	)` + withoutRowID

// A transfer carries its legs in its own row (legs, a JSON array of
// [debit, credit, amount]), and its first leg's accounts in debit and
// credit, indexed for an account's history and earnings. Until 2026-11-26
// the legs were rows of their own in ledger_entries; one row per transfer
// instead of three per gift took the SQLite writer from 55-59 to 38-41 µs of
// CPU per gift (BenchmarkApply, batches of 64), and on PostgreSQL the
// entries' insert was the writer's largest statement (42 µs per gift).
// Every transfer the ledger makes keeps the accounts a user sees (wallet,
// earnings, hold) in its first leg; the platform's commission legs are
// found by time (the commission report). Migrate moves an older
// database's entries into legs once and renames the old table
// ledger_entries_v1.
var transferIndexes = []string{
	`CREATE INDEX IF NOT EXISTS ledger_transfers_credit ON ledger_transfers (credit, created_at)`,
	// The debit side of an account's history (GET /wallet/transactions), on
	// PostgreSQL only: every gift debits a different wallet, so on SQLite
	// this index dirties about one more random page per gift in the single
	// writer (+35% of its CPU per gift when it indexed the entries,
	// BenchmarkApply: 80 vs 59 µs at batches of 45). SQLite answers the
	// debit side with a scan.
	`CREATE INDEX IF NOT EXISTS ledger_transfers_debit ON ledger_transfers (debit, created_at)` + postgresOnly,
}

// withoutRowID marks tables that SQLite stores WITHOUT ROWID.
const withoutRowID = " /*without-rowid*/"

// postgresOnly marks statements Migrate skips on SQLite.
const postgresOnly = " /*postgres-only*/"

// Migrate creates the ledger's tables (all prefixed ledger_) when missing
// and upgrades older ones. It is idempotent and safe to run at every start.
func Migrate(ctx context.Context, db *sqldb.DB) error {
	if err := runSchema(ctx, db, schema); err != nil {
		return err
	}
	if err := addTransferColumns(ctx, db); err != nil {
		return err
	}
	if err := runSchema(ctx, db, transferIndexes); err != nil {
		return err
	}
	if err := moveEntriesIntoLegs(ctx, db); err != nil {
		return err
	}
	return addDailyCredits(ctx, db)
}

func runSchema(ctx context.Context, db *sqldb.DB, stmts []string) error {
	for _, q := range stmts {
		if strings.HasSuffix(q, postgresOnly) {
			if db.Dialect != sqldb.Postgres {
				continue
			}
			q = strings.TrimSuffix(q, postgresOnly)
		}
		if _, err := db.ExecContext(ctx, dialectDDL(db.Dialect, q)); err != nil {
			return fmt.Errorf("ledger migrate: %w", err)
		}
	}
	return nil
}

// dialectDDL turns the schema's markers into d's syntax.
func dialectDDL(d sqldb.Dialect, q string) string {
	if d == sqldb.SQLite {
		// Text-keyed tables stored in their primary key's B-tree: one
		// B-tree less to write per row.
		return strings.ReplaceAll(q, withoutRowID, " WITHOUT ROWID")
	}
	return strings.ReplaceAll(q, withoutRowID, "")
}
