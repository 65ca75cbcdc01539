package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/liveengine/liveengine/control/sqldb"
)

// ErrInvariant means the ledger check found a violation.
var ErrInvariant = errors.New("ledger invariant violated")

// Report is the result of CheckInvariants.
type Report struct {
	Accounts  int64 `json:"accounts"`
	Transfers int64 `json:"transfers"`
	Entries   int64 `json:"entries"`
	// Sum is the sum of all balances; it must be zero.
	Sum int64 `json:"sum"`
	// Negative lists accounts below zero that may not be.
	Negative []string `json:"negative,omitempty"`
	// Mismatched lists accounts whose balance differs from the sum of
	// their entries.
	Mismatched []string `json:"mismatched,omitempty"`
	// BadTransfers lists transfers whose legs do not add up.
	BadTransfers []string `json:"bad_transfers,omitempty"`
	// OK is true when every check passed.
	OK bool `json:"ok"`
}

// Err returns nil for a clean report, or ErrInvariant with the details.
func (r Report) Err() error {
	if r.OK {
		return nil
	}
	var p []string
	if r.Sum != 0 {
		p = append(p, fmt.Sprintf("sum of balances %d != 0", r.Sum))
	}
	if len(r.Negative) > 0 {
		p = append(p, "negative: "+strings.Join(r.Negative, ", "))
	}
	if len(r.Mismatched) > 0 {
		p = append(p, "balance != entries: "+strings.Join(r.Mismatched, ", "))
	}
	if len(r.BadTransfers) > 0 {
		p = append(p, "unbalanced transfers: "+strings.Join(r.BadTransfers, ", "))
	}
	return fmt.Errorf("%w: %s", ErrInvariant, strings.Join(p, "; "))
}

// CheckInvariants verifies the whole ledger: the sum of all balances is zero
// (coins are only moved, never made), no account is below zero unless it is
// an external clearing account, every balance equals its credits minus its
// debits, and every transfer's legs add up to its amount with positive
// amounts. The command `liveengine invariants` calls it; every money test
// ends with it. It reads one consistent snapshot.
func CheckInvariants(ctx context.Context, db *sqldb.DB) (Report, error) {
	var r Report
	opts := sql.TxOptions{ReadOnly: true}
	if db.Dialect == sqldb.Postgres {
		// One snapshot for every query below, not one per statement.
		opts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := db.BeginTx(ctx, &opts)
	if err != nil {
		return r, fmt.Errorf("ledger invariants: %w", err)
	}
	defer tx.Rollback()
	q := func(query string, dst ...any) error {
		if err := tx.QueryRowContext(ctx, query).Scan(dst...); err != nil {
			return fmt.Errorf("ledger invariants: %s: %w", query, err)
		}
		return nil
	}
	if err := q("SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM ledger_accounts", &r.Accounts, &r.Sum); err != nil {
		return r, err
	}
	if err := q("SELECT COUNT(*) FROM ledger_transfers", &r.Transfers); err != nil {
		return r, err
	}
	if err := q("SELECT COUNT(*) FROM ledger_entries", &r.Entries); err != nil {
		return r, err
	}
	list := func(query string) ([]string, error) {
		rows, err := tx.QueryContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("ledger invariants: %w", err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				return nil, fmt.Errorf("ledger invariants: %w", err)
			}
			out = append(out, s)
		}
		return out, rows.Err()
	}
	if r.Negative, err = list(`SELECT id FROM ledger_accounts WHERE balance < 0 AND (allow_negative = 0 OR id NOT LIKE 'clearing:%') LIMIT 100`); err != nil {
		return r, err
	}
	if r.Mismatched, err = list(`SELECT a.id FROM ledger_accounts a
		LEFT JOIN (SELECT credit AS id, SUM(amount) AS s FROM ledger_entries GROUP BY credit) c ON c.id = a.id
		LEFT JOIN (SELECT debit AS id, SUM(amount) AS s FROM ledger_entries GROUP BY debit) d ON d.id = a.id
		WHERE a.balance <> COALESCE(c.s, 0) - COALESCE(d.s, 0) LIMIT 100`); err != nil {
		return r, err
	}
	if r.BadTransfers, err = list(`SELECT t.id FROM ledger_transfers t
		LEFT JOIN (SELECT transfer_id, SUM(amount) AS s, MIN(amount) AS m, SUM(CASE WHEN debit = credit THEN 1 ELSE 0 END) AS self
			FROM ledger_entries GROUP BY transfer_id) e ON e.transfer_id = t.id
		WHERE e.s IS NULL OR e.s <> t.amount OR e.m <= 0 OR e.self > 0 LIMIT 100`); err != nil {
		return r, err
	}
	orphans, err := list(`SELECT DISTINCT e.transfer_id FROM ledger_entries e LEFT JOIN ledger_transfers t ON t.id = e.transfer_id WHERE t.id IS NULL LIMIT 100`)
	if err != nil {
		return r, err
	}
	r.BadTransfers = append(r.BadTransfers, orphans...)
	r.OK = r.Sum == 0 && len(r.Negative) == 0 && len(r.Mismatched) == 0 && len(r.BadTransfers) == 0
	return r, nil
}
