package ledger

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/liveengine/liveengine/control/sqldb"
)

// appendLegs appends legs as the JSON stored in ledger_transfers.legs:
// [["wallet:amy","earnings:star",7],["wallet:amy","platform:main",3]].
// SQLite's json_each and PostgreSQL's json_array_elements read it too.
func appendLegs(b []byte, legs []Leg) []byte {
	b = append(b, '[')
	for i, l := range legs {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = appendJSONString(b, string(l.From))
		b = append(b, ',')
		b = appendJSONString(b, string(l.To))
		b = append(b, ',')
		b = strconv.AppendInt(b, l.Amount, 10)
		b = append(b, ']')
	}
	return append(b, ']')
}

// errBadLegs means a stored legs value is not a list of [debit, credit, amount].
var errBadLegs = errors.New("ledger: malformed legs")

// parseLegs reads a ledger_transfers.legs value. What appendLegs writes
// for plain ASCII account ids is read by hand (an earnings report parses
// every gift of its period: encoding/json cost ~7 µs per gift, 1 s for a
// streamer's 150k gifts); anything else goes through encoding/json.
func parseLegs(s string) ([]Leg, error) {
	if legs, ok := parseLegsFast(s); ok {
		return legs, nil
	}
	return parseLegsJSON(s)
}

// parseLegsFast reads [["debit","credit",amount],...] with no spaces, no
// escapes and ASCII strings; ok is false for anything else.
func parseLegsFast(s string) ([]Leg, bool) {
	p := legsScanner{s: s}
	if !p.next('[') {
		return nil, false
	}
	legs := make([]Leg, 0, 2)
	if p.next(']') {
		return legs, p.i == len(s)
	}
	for {
		var l Leg
		var from, to string
		ok := p.next('[')
		ok = ok && p.str(&from) && p.next(',')
		ok = ok && p.str(&to) && p.next(',')
		ok = ok && p.int(&l.Amount) && p.next(']')
		if !ok {
			return nil, false
		}
		l.From, l.To = AccountID(from), AccountID(to)
		legs = append(legs, l)
		if p.next(']') {
			return legs, p.i == len(s)
		}
		if !p.next(',') {
			return nil, false
		}
	}
}

type legsScanner struct {
	s string
	i int
}

func (p *legsScanner) next(c byte) bool {
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a JSON string without escapes or non-ASCII bytes.
func (p *legsScanner) str(out *string) bool {
	if !p.next('"') {
		return false
	}
	for start := p.i; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '"':
			*out = p.s[start:p.i]
			p.i++
			return true
		case c < 0x20 || c >= 0x80 || c == '\\':
			return false
		}
	}
	return false
}

// int reads a JSON integer that fits an int64 (as encoding/json would:
// no leading zeros, no fraction or exponent).
func (p *legsScanner) int(out *int64) bool {
	start := p.i
	p.next('-')
	digits := p.i
	for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		p.i++
	}
	n := p.i - digits
	if n == 0 || n > 18 || (n > 1 && p.s[digits] == '0') {
		return false // none, maybe too large, or a leading zero: encoding/json decides
	}
	v, err := strconv.ParseInt(p.s[start:p.i], 10, 64)
	*out = v
	return err == nil
}

// parseLegsJSON is parseLegs through encoding/json.
func parseLegsJSON(s string) ([]Leg, error) {
	var raw [][]json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadLegs, err)
	}
	out := make([]Leg, len(raw))
	for i, r := range raw {
		if len(r) != 3 {
			return nil, fmt.Errorf("%w: leg %d has %d fields, want [debit, credit, amount]", errBadLegs, i, len(r))
		}
		var from, to string
		if err := json.Unmarshal(r[0], &from); err != nil {
			return nil, fmt.Errorf("%w: leg %d debit: %v", errBadLegs, i, err)
		}
		if err := json.Unmarshal(r[1], &to); err != nil {
			return nil, fmt.Errorf("%w: leg %d credit: %v", errBadLegs, i, err)
		}
		if err := json.Unmarshal(r[2], &out[i].Amount); err != nil {
			return nil, fmt.Errorf("%w: leg %d amount: %v", errBadLegs, i, err)
		}
		out[i].From, out[i].To = AccountID(from), AccountID(to)
	}
	return out, nil
}

// addTransferColumns gives a ledger_transfers table made before legs moved
// into it its debit, credit and legs columns.
func addTransferColumns(ctx context.Context, db *sqldb.DB) error {
	have := map[string]bool{}
	q := "SELECT name FROM pragma_table_info('ledger_transfers')"
	if db.Dialect == sqldb.Postgres {
		q = "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'ledger_transfers'"
	}
	rows, err := db.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("ledger migrate: columns: %w", err)
	}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return fmt.Errorf("ledger migrate: columns: %w", err)
		}
		have[name] = true
	}
	if err := rows.Close(); err != nil {
		return fmt.Errorf("ledger migrate: columns: %w", err)
	}
	for _, col := range []string{"debit", "credit", "legs"} {
		if have[col] {
			continue
		}
		if _, err := db.ExecContext(ctx, "ALTER TABLE ledger_transfers ADD COLUMN "+col+" TEXT NOT NULL DEFAULT ''"); err != nil {
			return fmt.Errorf("ledger migrate: add column %s: %w", col, err)
		}
	}
	return nil
}

// entriesPageSize bounds the entries read per step of moveEntriesIntoLegs
// (a variable for the test).
var entriesPageSize = 20000

// moveEntriesIntoLegs fills the legs of transfers written while legs were
// rows of ledger_entries, in one transaction, then renames that table
// ledger_entries_v1 (kept for audit, read by nothing), which also marks the
// move done. A database without ledger_entries has nothing to move.
func moveEntriesIntoLegs(ctx context.Context, db *sqldb.DB) error {
	q := "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'ledger_entries'"
	if db.Dialect == sqldb.Postgres {
		q = "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'ledger_entries'"
	}
	var n int
	if err := db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return fmt.Errorf("ledger migrate: find entries: %w", err)
	}
	if n == 0 {
		return nil
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("ledger migrate: entries: %w", err)
	}
	defer tx.Rollback()
	if db.Dialect == sqldb.SQLite {
		// The rowid entries table had no index by transfer (PostgreSQL's
		// primary key is one): without it every page below sorts the table.
		if _, err := tx.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS ledger_entries_transfer ON ledger_entries (transfer_id, seq)"); err != nil {
			return fmt.Errorf("ledger migrate: entries: %w", err)
		}
	}
	upd, err := tx.PrepareContext(ctx, db.Rebind("UPDATE ledger_transfers SET debit = ?, credit = ?, legs = ? WHERE id = ? AND legs = ''"))
	if err != nil {
		return fmt.Errorf("ledger migrate: entries: %w", err)
	}
	defer upd.Close()
	after, moved := "", 0
	for {
		// A page ends inside a transfer's legs at most once: that transfer
		// is left for the next page, which starts at it.
		legs, last, full, err := readEntries(ctx, tx, db, after)
		if err != nil {
			return err
		}
		for _, id := range last.order {
			if full && id == last.tail {
				break
			}
			l := legs[id]
			if _, err := upd.ExecContext(ctx, string(l[0].From), string(l[0].To), string(appendLegs(nil, l)), id); err != nil {
				return fmt.Errorf("ledger migrate: legs of %s: %w", id, err)
			}
			moved++
			after = id
		}
		if !full {
			break
		}
		if len(last.order) == 1 {
			return fmt.Errorf("ledger migrate: transfer %s has over %d entries", last.tail, entriesPageSize)
		}
	}
	if _, err := tx.ExecContext(ctx, "ALTER TABLE ledger_entries RENAME TO ledger_entries_v1"); err != nil {
		return fmt.Errorf("ledger migrate: rename entries: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("ledger migrate: entries: %w", err)
	}
	return nil
}

type entriesOrder struct {
	order []string // transfer ids in the page, in order
	tail  string   // the page's last transfer id
}

// readEntries reads up to entriesPageSize entries of transfers after the given
// id, grouped by transfer in leg order; full says the page was full.
func readEntries(ctx context.Context, tx *sql.Tx, db *sqldb.DB, after string) (map[string][]Leg, entriesOrder, bool, error) {
	rows, err := tx.QueryContext(ctx, db.Rebind("SELECT transfer_id, debit, credit, amount FROM ledger_entries WHERE transfer_id > ? ORDER BY transfer_id, seq LIMIT ?"), after, entriesPageSize)
	if err != nil {
		return nil, entriesOrder{}, false, fmt.Errorf("ledger migrate: read entries: %w", err)
	}
	defer rows.Close()
	legs := map[string][]Leg{}
	var o entriesOrder
	count := 0
	for rows.Next() {
		var id, debit, credit string
		var amount int64
		if err := rows.Scan(&id, &debit, &credit, &amount); err != nil {
			return nil, o, false, fmt.Errorf("ledger migrate: read entries: %w", err)
		}
		if _, ok := legs[id]; !ok {
			o.order = append(o.order, id)
		}
		legs[id] = append(legs[id], Leg{From: AccountID(debit), To: AccountID(credit), Amount: amount})
		o.tail = id
		count++
	}
	if err := rows.Err(); err != nil {
		return nil, o, false, fmt.Errorf("ledger migrate: read entries: %w", err)
	}
	return legs, o, count == entriesPageSize, nil
}
