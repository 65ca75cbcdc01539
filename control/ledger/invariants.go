package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/liveengine/liveengine/control/sqldb"
)

// ErrInvariant means the ledger check found a violation.
var ErrInvariant = errors.New("ledger invariant violated")

// Report is the result of CheckInvariants.
type Report struct {
	Accounts  int64 `json:"accounts"`
	Transfers int64 `json:"transfers"`
	// Entries counts the legs of the well-formed transfers.
	Entries int64 `json:"entries"`
	// Sum is the sum of all balances; it must be zero.
	Sum int64 `json:"sum"`
	// Negative lists accounts below zero that may not be.
	Negative []string `json:"negative,omitempty"`
	// Mismatched lists accounts whose balance differs from the sum of
	// their legs.
	Mismatched []string `json:"mismatched,omitempty"`
	// BadTransfers lists transfers whose legs are malformed or do not add
	// up (their legs are left out of the balance check).
	BadTransfers []string `json:"bad_transfers,omitempty"`
	// MismatchedDaily lists the reports' daily gift totals
	// (ledger_daily_credits, as account/day/stream) that differ from the
	// sum of the gifts' legs.
	MismatchedDaily []string `json:"mismatched_daily,omitempty"`
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
		p = append(p, "balance != legs: "+strings.Join(r.Mismatched, ", "))
	}
	if len(r.BadTransfers) > 0 {
		p = append(p, "unbalanced transfers: "+strings.Join(r.BadTransfers, ", "))
	}
	if len(r.MismatchedDaily) > 0 {
		p = append(p, "daily totals != gifts: "+strings.Join(r.MismatchedDaily, ", "))
	}
	return fmt.Errorf("%w: %s", ErrInvariant, strings.Join(p, "; "))
}

// CheckInvariants verifies the whole ledger: the sum of all balances is zero
// (coins are only moved, never made), no account is below zero unless it is
// an external clearing account, every balance equals its credits minus its
// debits over every transfer's legs, and every transfer's legs are well
// formed (positive amounts, no account paying itself, the first leg's
// accounts in its debit and credit columns) and add up to its amount, and
// the reports' daily gift totals equal the gifts' legs. The
// command `liveengine invariants` calls it; every money test ends with it.
// It reads one consistent snapshot; the legs are checked here, in Go, one
// transfer at a time.
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
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(balance), 0) FROM ledger_accounts").Scan(&r.Accounts, &r.Sum); err != nil {
		return r, fmt.Errorf("ledger invariants: accounts: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT id FROM ledger_accounts WHERE balance < 0 AND (allow_negative = 0 OR id NOT LIKE 'clearing:%') LIMIT 100`)
	if err != nil {
		return r, fmt.Errorf("ledger invariants: %w", err)
	}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return r, fmt.Errorf("ledger invariants: %w", err)
		}
		r.Negative = append(r.Negative, id)
	}
	if err := rows.Close(); err != nil {
		return r, fmt.Errorf("ledger invariants: %w", err)
	}

	// Every transfer's legs: checked, and summed per account.
	net := make(map[AccountID]int64)
	gifts := dailyTotals{}
	rows, err = tx.QueryContext(ctx, "SELECT id, kind, stream_id, created_at, amount, debit, credit, legs FROM ledger_transfers")
	if err != nil {
		return r, fmt.Errorf("ledger invariants: transfers: %w", err)
	}
	for rows.Next() {
		var id, kind, stream, debit, credit, raw string
		var at, amount int64
		if err := rows.Scan(&id, &kind, &stream, &at, &amount, &debit, &credit, &raw); err != nil {
			rows.Close()
			return r, fmt.Errorf("ledger invariants: transfers: %w", err)
		}
		r.Transfers++
		legs, err := parseLegs(raw)
		if err == nil {
			err = checkLegs(legs, amount, debit, credit)
		}
		if err != nil {
			if len(r.BadTransfers) < 100 {
				r.BadTransfers = append(r.BadTransfers, id)
			}
			continue
		}
		r.Entries += int64(len(legs))
		if kind == TransferGift {
			gifts.add(legs, utcDay(at), stream)
		}
		for _, l := range legs {
			net[l.From] -= l.Amount
			net[l.To] += l.Amount
		}
	}
	if err := rows.Close(); err != nil {
		return r, fmt.Errorf("ledger invariants: transfers: %w", err)
	}

	// Every balance against its legs.
	rows, err = tx.QueryContext(ctx, "SELECT id, balance FROM ledger_accounts")
	if err != nil {
		return r, fmt.Errorf("ledger invariants: balances: %w", err)
	}
	for rows.Next() {
		var id string
		var bal int64
		if err := rows.Scan(&id, &bal); err != nil {
			rows.Close()
			return r, fmt.Errorf("ledger invariants: balances: %w", err)
		}
		if bal != net[AccountID(id)] && len(r.Mismatched) < 100 {
			r.Mismatched = append(r.Mismatched, id)
		}
		delete(net, AccountID(id))
	}
	if err := rows.Close(); err != nil {
		return r, fmt.Errorf("ledger invariants: balances: %w", err)
	}
	// Legs that moved coins of an account the ledger has no row for.
	for a, v := range net {
		if v != 0 && len(r.Mismatched) < 100 {
			r.Mismatched = append(r.Mismatched, string(a))
		}
	}
	sort.Strings(r.Mismatched)

	// The daily totals against the gifts.
	rows, err = tx.QueryContext(ctx, "SELECT account, day, stream_id, gifts, coins FROM ledger_daily_credits")
	if err != nil {
		return r, fmt.Errorf("ledger invariants: daily credits: %w", err)
	}
	mismatch := func(k dailyKey) {
		if len(r.MismatchedDaily) < 100 {
			r.MismatchedDaily = append(r.MismatchedDaily, string(k.account)+"/"+dayString(k.day)+"/"+k.stream)
		}
	}
	for rows.Next() {
		var k dailyKey
		var v dailyTotal
		if err := rows.Scan(&k.account, &k.day, &k.stream, &v.gifts, &v.coins); err != nil {
			rows.Close()
			return r, fmt.Errorf("ledger invariants: daily credits: %w", err)
		}
		if gifts[k] != v {
			mismatch(k)
		}
		delete(gifts, k)
	}
	if err := rows.Close(); err != nil {
		return r, fmt.Errorf("ledger invariants: daily credits: %w", err)
	}
	for k := range gifts { // gifts missing from the totals
		mismatch(k)
	}
	sort.Strings(r.MismatchedDaily)
	r.OK = r.Sum == 0 && len(r.Negative) == 0 && len(r.Mismatched) == 0 && len(r.BadTransfers) == 0 && len(r.MismatchedDaily) == 0
	return r, nil
}

// checkLegs is the rule every stored transfer keeps.
func checkLegs(legs []Leg, amount int64, debit, credit string) error {
	if len(legs) == 0 {
		return errors.New("no legs")
	}
	if string(legs[0].From) != debit || string(legs[0].To) != credit {
		return errors.New("first leg is not the transfer's debit and credit")
	}
	var sum int64
	for _, l := range legs {
		if l.Amount <= 0 || l.From == l.To {
			return fmt.Errorf("leg %s -> %s of %d", l.From, l.To, l.Amount)
		}
		sum += l.Amount
	}
	if sum != amount {
		return fmt.Errorf("legs sum to %d, transfer says %d", sum, amount)
	}
	return nil
}
