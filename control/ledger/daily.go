package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// Gift totals per credited account, day and stream (ledger_daily_credits).

const microsPerDay = int64(24 * time.Hour / time.Microsecond)

// utcDay is the UTC day (days since 1970-01-01) of a time in Unix
// microseconds.
func utcDay(micros int64) int64 {
	d := micros / microsPerDay
	if micros < 0 && micros%microsPerDay != 0 {
		d--
	}
	return d
}

// dayString is a UTC day as YYYY-MM-DD.
func dayString(day int64) string {
	return time.Unix(day*86400, 0).UTC().Format("2006-01-02")
}

type dailyKey struct {
	account AccountID
	day     int64
	stream  string
}

type dailyTotal struct{ gifts, coins int64 }

// dailyTotals adds up gifts per credited account, day and stream.
type dailyTotals map[dailyKey]dailyTotal

// add counts one gift: once for each account its legs credit, with the sum
// of that account's legs.
func (t dailyTotals) add(legs []Leg, day int64, stream string) {
	for i, leg := range legs {
		seen := false
		for _, prev := range legs[:i] {
			if prev.To == leg.To {
				seen = true
				break
			}
		}
		if seen {
			continue
		}
		var coins int64
		for _, l := range legs[i:] {
			if l.To == leg.To {
				coins += l.Amount
			}
		}
		k := dailyKey{leg.To, day, stream}
		v := t[k]
		v.gifts++
		v.coins += coins
		t[k] = v
	}
}

// rows returns the totals as flattened (account, day, stream_id, gifts,
// coins) rows in key order: PostgreSQL nodes then lock the rows in the
// same order.
func (t dailyTotals) rows() []any {
	keys := make([]dailyKey, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.account != b.account {
			return a.account < b.account
		}
		if a.day != b.day {
			return a.day < b.day
		}
		return a.stream < b.stream
	})
	out := make([]any, 0, 5*len(keys))
	for _, k := range keys {
		v := t[k]
		out = append(out, string(k.account), k.day, k.stream, v.gifts, v.coins)
	}
	return out
}

const dailyCols = "ledger_daily_credits (account, day, stream_id, gifts, coins)"

// addDaily adds totals to ledger_daily_credits on c, inside the caller's
// transaction.
func (l *Ledger) addDaily(ctx context.Context, c *sql.Conn, t dailyTotals) error {
	if len(t) == 0 {
		return nil
	}
	rows := t.rows()
	if l.db.Dialect == sqldb.Postgres {
		q := "INSERT INTO " + dailyCols + " SELECT * FROM unnest(?::text[], ?::bigint[], ?::text[], ?::bigint[], ?::bigint[])" +
			" ON CONFLICT (account, day, stream_id) DO UPDATE SET gifts = ledger_daily_credits.gifts + excluded.gifts, coins = ledger_daily_credits.coins + excluded.coins"
		if _, err := l.exec(ctx, c, q, columns(rows, 5)...); err != nil {
			return fmt.Errorf("add daily credits: %w", err)
		}
		return nil
	}
	for _, part := range rowChunks(rows, 5) {
		if err := l.insertRowsSuffix(ctx, c, dailyCols, part, 5, dailyUpsert); err != nil {
			return fmt.Errorf("add daily credits: %w", err)
		}
	}
	return nil
}

// dailyUpsert makes insertRows add to existing totals (SQLite).
const dailyUpsert = " ON CONFLICT (account, day, stream_id) DO UPDATE SET gifts = gifts + excluded.gifts, coins = coins + excluded.coins"

// readDaily returns acct's totals from day since on, newest day first.
func readDaily(ctx context.Context, db *sqldb.DB, acct AccountID, since int64) ([]EarningsDay, error) {
	rows, err := db.QueryContext(ctx, db.Rebind("SELECT day, stream_id, gifts, coins FROM ledger_daily_credits WHERE account = ? AND day >= ? ORDER BY day DESC, stream_id"), string(acct), since)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []EarningsDay{}
	for rows.Next() {
		var day int64
		var d EarningsDay
		if err := rows.Scan(&day, &d.StreamID, &d.Gifts, &d.Coins); err != nil {
			return nil, err
		}
		d.Day = dayString(day)
		out = append(out, d)
	}
	return out, rows.Err()
}

// dailyLockID serialises addDailyCredits across PostgreSQL nodes
// (pg_advisory_xact_lock).
const dailyLockID = 0x6c65646461696c79 // "leddaily"

// addDailyCredits creates ledger_daily_credits when missing and fills it
// from the gifts stored before it existed, in one transaction: the table
// appears with its totals or not at all. Two nodes starting at once wait
// for each other (SQLite's write lock, an advisory lock on PostgreSQL), and
// the second finds the table made.
func addDailyCredits(ctx context.Context, db *sqldb.DB) error {
	c, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	defer c.Close()
	begin := "BEGIN"
	exists := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ledger_daily_credits'"
	if db.Dialect == sqldb.SQLite {
		begin = "BEGIN IMMEDIATE"
	} else {
		exists = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'ledger_daily_credits'"
	}
	if _, err := c.ExecContext(ctx, begin); err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	done := false
	defer func() {
		if !done {
			_, _ = c.ExecContext(context.Background(), "ROLLBACK")
		}
	}()
	if db.Dialect == sqldb.Postgres {
		if _, err := c.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(dailyLockID)); err != nil {
			return fmt.Errorf("ledger migrate: daily credits: %w", err)
		}
	}
	var n int
	if err := c.QueryRowContext(ctx, exists).Scan(&n); err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	if n > 0 {
		done = true
		_, err := c.ExecContext(ctx, "COMMIT")
		return err
	}
	if _, err := c.ExecContext(ctx, dialectDDL(db.Dialect, dailyCreditsTable)); err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	t, err := giftTotals(ctx, c, db.Dialect)
	if err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	rows := t.rows()
	for _, part := range rowChunks(rows, 5) {
		q := "INSERT INTO " + dailyCols + " VALUES " + tuples(len(part)/5, "?, ?, ?, ?, ?")
		if _, err := c.ExecContext(ctx, sqldb.Rebind(db.Dialect, q), part...); err != nil {
			return fmt.Errorf("ledger migrate: daily credits: %w", err)
		}
	}
	if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ledger migrate: daily credits: %w", err)
	}
	done = true
	return nil
}

// querier is what giftTotals reads through.
type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

// giftTotals adds up every stored gift's legs. A gift whose legs do not
// parse is an error here (CheckInvariants reports such transfers).
func giftTotals(ctx context.Context, q querier, d sqldb.Dialect) (dailyTotals, error) {
	rows, err := q.QueryContext(ctx, sqldb.Rebind(d, "SELECT id, stream_id, legs, created_at FROM ledger_transfers WHERE kind = ?"), TransferGift)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	t := dailyTotals{}
	for rows.Next() {
		var id, stream, raw string
		var at int64
		if err := rows.Scan(&id, &stream, &raw, &at); err != nil {
			return nil, err
		}
		legs, err := parseLegs(raw)
		if err != nil {
			return nil, fmt.Errorf("gift %s: %w", id, err)
		}
		t.add(legs, utcDay(at), stream)
	}
	return t, rows.Err()
}
