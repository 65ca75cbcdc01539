package ledger

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// chunkRows bounds the rows of one multi-row statement, far below both
// dialects' placeholder limits.
const chunkRows = 400

type storedTransfer struct {
	id, fingerprint, kind string
	status                int
	body                  string
	createdAt             int64
}

// apply runs jobs in ONE transaction on c and returns one outcome per job.
// An error means nothing was committed.
func (l *Ledger) apply(ctx context.Context, c *sql.Conn, jobs []*job) (out []outcome, err error) {
	d := l.db.Dialect
	pg := d == sqldb.Postgres
	begin := "BEGIN"
	if d == sqldb.SQLite {
		// Take the write lock now: balances read below cannot change
		// before COMMIT.
		begin = "BEGIN IMMEDIATE"
	}
	// BEGIN, COMMIT and ROLLBACK go through the writer's prepared
	// statements too: parsing them anew each batch showed in profiles.
	if _, err := l.exec(ctx, c, begin); err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			_, _ = l.exec(context.Background(), c, "ROLLBACK")
		}
	}()

	// 1. Keys already used: looked up first, or on the SQLite writer
	// (lookupKeys) found by the insert's unique index, which makes the
	// batch fail with errKeyUsed and run again with the lookup.
	lookup := l.lookupKeys(c)
	keys := make([]any, 0, len(jobs))
	seenKey := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		if !lookup {
			break
		}
		if !seenKey[j.req.IdempotencyKey] {
			seenKey[j.req.IdempotencyKey] = true
			keys = append(keys, j.req.IdempotencyKey)
		}
	}
	existing := make(map[string]storedTransfer)
	keyParts := chunks(keys, chunkRows)
	if pg {
		// One statement whatever the batch size: arrays, not IN lists.
		keyParts = [][]any{{columns(keys, 1)[0]}}
	}
	for _, part := range keyParts {
		q := "SELECT idem_key, id, fingerprint, kind, resp_status, resp_body, created_at FROM ledger_transfers WHERE idem_key = ANY(?)"
		if !pg {
			part = pad(part, 1)
			q = "SELECT idem_key, id, fingerprint, kind, resp_status, resp_body, created_at FROM ledger_transfers WHERE idem_key IN (" + placeholders(len(part)) + ")"
		}
		rows, err := l.query(ctx, c, q, part...)
		if err != nil {
			return nil, fmt.Errorf("lookup keys: %w", err)
		}
		for rows.Next() {
			var k string
			var s storedTransfer
			if err := rows.Scan(&k, &s.id, &s.fingerprint, &s.kind, &s.status, &s.body, &s.createdAt); err != nil {
				rows.Close()
				return nil, fmt.Errorf("lookup keys: %w", err)
			}
			existing[k] = s
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("lookup keys: %w", err)
		}
	}

	// 2. Accounts: create unknown ones, then read (and on PostgreSQL lock)
	// every touched balance inside the transaction.
	now := time.Now()
	nowMicro := now.UnixMicro()
	var accts []any
	seenAcct := make(map[AccountID]bool)
	for _, j := range jobs {
		if _, dup := existing[j.req.IdempotencyKey]; dup {
			continue
		}
		for _, leg := range j.req.Legs {
			for _, a := range [2]AccountID{leg.From, leg.To} {
				if !seenAcct[a] {
					seenAcct[a] = true
					accts = append(accts, string(a))
				}
			}
		}
	}
	// Sorted before they are created too: two transactions creating the
	// same new accounts in opposite orders (legs X->Y and Y->X, or two
	// nodes' batches) deadlocked on PostgreSQL's primary key.
	sort.Slice(accts, func(i, k int) bool { return accts[i].(string) < accts[k].(string) })
	var missing []any
	for _, a := range accts {
		if _, ok := l.known.Load(AccountID(a.(string))); !ok {
			allow := 0
			if AccountID(a.(string)).AllowsNegative() {
				allow = 1
			}
			missing = append(missing, a, allow, nowMicro)
		}
	}
	if pg && len(missing) > 0 {
		q := "INSERT INTO ledger_accounts (id, balance, allow_negative, created_at) SELECT u.id, 0, u.an, u.ca FROM unnest(?::text[], ?::int[], ?::bigint[]) AS u(id, an, ca) ON CONFLICT (id) DO NOTHING"
		if _, err := l.exec(ctx, c, q, columns(missing, 3)...); err != nil {
			return nil, fmt.Errorf("create accounts: %w", err)
		}
	}
	for _, part := range chunks(missing, chunkRows*3) {
		if pg {
			break // created above
		}
		q := "INSERT INTO ledger_accounts (id, balance, allow_negative, created_at) VALUES " + tuples(len(part)/3, "?, 0, ?, ?") + " ON CONFLICT (id) DO NOTHING"
		if _, err := c.ExecContext(ctx, sqldb.Rebind(d, q), part...); err != nil {
			return nil, fmt.Errorf("create accounts: %w", err)
		}
	}
	bal := make(map[AccountID]int64, len(accts))
	// On SQLite the writer knows the balances it committed itself (see
	// balanceCache); only the others are read.
	cache, err := l.balanceCache(ctx, c)
	if err != nil {
		return nil, err
	}
	toRead := accts
	if cache != nil {
		toRead = make([]any, 0, len(accts))
		for _, a := range accts {
			if b, ok := cache[AccountID(a.(string))]; ok {
				bal[AccountID(a.(string))] = b
			} else {
				toRead = append(toRead, a)
			}
		}
	}
	acctParts := chunks(toRead, chunkRows)
	if pg && len(toRead) > 0 {
		acctParts = [][]any{{columns(toRead, 1)[0]}}
	}
	for _, part := range acctParts {
		// Sorted ids and ORDER BY keep the PostgreSQL lock order fixed
		// across nodes.
		q := "SELECT id, balance FROM ledger_accounts WHERE id = ANY(?) ORDER BY id FOR UPDATE"
		if !pg {
			part = pad(part, 1)
			q = "SELECT id, balance FROM ledger_accounts WHERE id IN (" + placeholders(len(part)) + ")"
		}
		rows, err := l.query(ctx, c, q, part...)
		if err != nil {
			return nil, fmt.Errorf("read balances: %w", err)
		}
		for rows.Next() {
			var id string
			var b int64
			if err := rows.Scan(&id, &b); err != nil {
				rows.Close()
				return nil, fmt.Errorf("read balances: %w", err)
			}
			bal[AccountID(id)] = b
		}
		if err := rows.Close(); err != nil {
			return nil, fmt.Errorf("read balances: %w", err)
		}
	}
	for _, a := range accts {
		if _, ok := bal[AccountID(a.(string))]; !ok {
			return nil, fmt.Errorf("read balances: account %s missing after create", a)
		}
	}

	// 3. Apply in order, in memory; reject individually.
	out = make([]outcome, len(jobs))
	accepted := make(map[string]int, len(jobs))
	changed := make(map[AccountID]bool)
	var trRows []any
	if c == l.conn && l.conn != nil {
		// The writer reuses its row buffer: growing it anew each batch
		// was a third of its allocations.
		trRows = l.scratch.tr[:0]
		defer func() {
			clear(trRows)
			l.scratch.tr = trRows[:0]
		}()
	}
	delta := make(map[AccountID]int64, 4)
	// The batch's gifts per credited account and stream, for the reports'
	// daily totals; every transfer of a batch has the batch's time.
	var daily dailyTotals
	batchDay := utcDay(nowMicro)
	for i, j := range jobs {
		r := j.req
		if s, ok := existing[r.IdempotencyKey]; ok {
			if s.fingerprint != r.Fingerprint {
				out[i].err = fmt.Errorf("key %q: %w", r.IdempotencyKey, ErrIdempotencyConflict)
				continue
			}
			out[i].r = Receipt{TransferID: s.id, Kind: s.kind, CreatedAt: time.UnixMicro(s.createdAt), Replayed: true, Status: s.status, Body: []byte(s.body)}
			continue
		}
		if k, ok := accepted[r.IdempotencyKey]; ok {
			if jobs[k].req.Fingerprint != r.Fingerprint {
				out[i].err = fmt.Errorf("key %q: %w", r.IdempotencyKey, ErrIdempotencyConflict)
				continue
			}
			first := out[k].r
			out[i].r = Receipt{TransferID: first.TransferID, Kind: first.Kind, CreatedAt: first.CreatedAt, Replayed: true, Status: first.Status, Body: first.Body}
			continue
		}
		if err := j.ctx.Err(); err != nil {
			// Not applied yet: safe to drop, the caller has gone.
			out[i].err = err
			continue
		}
		clear(delta)
		for _, leg := range r.Legs {
			delta[leg.From] -= leg.Amount
			delta[leg.To] += leg.Amount
		}
		var ferr error
		for a, dv := range delta {
			if dv < 0 && !a.AllowsNegative() && bal[a]+dv < 0 {
				ferr = &FundsError{Account: a, Balance: bal[a], Requested: -dv}
				break
			}
		}
		if ferr != nil {
			out[i].err = ferr
			continue
		}
		if len(r.effects) > 0 {
			if err := runEffects(ctx, c, d, r.effects); err != nil {
				out[i].err = err
				continue
			}
		}
		rc := Receipt{Kind: r.Kind, CreatedAt: now, Balances: make(map[AccountID]int64, len(delta))}
		for a, dv := range delta {
			bal[a] += dv
			changed[a] = true
			rc.Balances[a] = bal[a]
		}
		rc.TransferID = newID("tr_", now)
		if r.Respond != nil {
			rc.Status, rc.Body = r.Respond(rc)
		}
		out[i].r = rc
		accepted[r.IdempotencyKey] = i
		if r.Kind == TransferGift {
			if daily == nil {
				daily = dailyTotals{}
			}
			daily.add(r.Legs, batchDay, r.StreamID)
		}
		trRows = append(trRows, rc.TransferID, r.IdempotencyKey, r.Kind, r.Actor, r.StreamID, r.amount(), r.Meta, r.Fingerprint, rc.Status, string(rc.Body), nowMicro,
			string(r.Legs[0].From), string(r.Legs[0].To), string(appendLegs(make([]byte, 0, 96), r.Legs)))
	}

	// A transfer rejected here (funds, a failed effect, a caller gone) may
	// be a replay, whose stored answer must win: without the lookup, ask
	// the database about the rejected keys (rare: the insert below finds
	// the replays that were not rejected). On PostgreSQL the lookup above
	// ran before this transaction waited for the balances' row locks: a
	// transaction with the same key (naive mode, another node) may have
	// committed meanwhile, and rejected this one only because it moved the
	// coins or settled the withdrawal first. READ COMMITTED shows each
	// statement what is committed by then, so ask again: the duplicate is
	// a replay (or a key conflict), not a 402 or a failed effect.
	if !lookup || pg {
		var rejected []any
		for i, o := range out {
			if _, known := existing[jobs[i].req.IdempotencyKey]; o.err != nil && !known {
				rejected = append(rejected, jobs[i].req.IdempotencyKey)
			}
		}
		for _, part := range chunks(rejected, chunkRows) {
			part = pad(part, 1)
			rows, err := l.query(ctx, c, "SELECT idem_key FROM ledger_transfers WHERE idem_key IN ("+placeholders(len(part))+") LIMIT 1", part...)
			if err != nil {
				return nil, fmt.Errorf("lookup rejected keys: %w", err)
			}
			used := rows.Next()
			if err := rows.Close(); err != nil {
				return nil, fmt.Errorf("lookup rejected keys: %w", err)
			}
			if used {
				return nil, fmt.Errorf("rejected transfer: %w", errKeyUsed)
			}
		}
	}

	// 4. Write everything, commit once.
	const trCols = "ledger_transfers (id, idem_key, kind, actor, stream_id, amount, meta, fingerprint, resp_status, resp_body, created_at, debit, credit, legs)"
	if pg {
		if len(trRows) > 0 {
			q := "INSERT INTO " + trCols + " SELECT * FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::int[], ?::text[], ?::bigint[], ?::text[], ?::text[], ?::text[])"
			if _, err := l.exec(ctx, c, q, columns(trRows, 14)...); err != nil {
				if isUnique(err) {
					// A key committed by another transaction since the
					// lookup (naive mode, another node): apply again,
					// and the lookup finds it.
					return nil, fmt.Errorf("insert transfers: %w: %v", errKeyUsed, err)
				}
				return nil, fmt.Errorf("insert transfers: %w", err)
			}
		}
	}
	for _, part := range rowChunks(trRows, 14) {
		if pg {
			break // written above
		}
		if err := l.insertRows(ctx, c, trCols, part, 14); err != nil {
			if !lookup && isUnique(err) {
				return nil, fmt.Errorf("insert transfers: %w: %v", errKeyUsed, err)
			}
			return nil, fmt.Errorf("insert transfers: %w", err)
		}
	}
	if pg && len(changed) > 0 {
		ids := make([]string, 0, len(changed))
		vals := make([]int64, 0, len(changed))
		for a := range changed {
			ids = append(ids, string(a))
			vals = append(vals, bal[a])
		}
		q := "UPDATE ledger_accounts AS a SET balance = u.b FROM unnest(?::text[], ?::bigint[]) AS u(id, b) WHERE a.id = u.id"
		if _, err := l.exec(ctx, c, q, ids, vals); err != nil {
			return nil, fmt.Errorf("update balances: %w", err)
		}
		clear(changed)
	}
	if len(changed) > 0 {
		ids := make([]AccountID, 0, len(changed))
		for a := range changed {
			ids = append(ids, a)
		}
		sort.Slice(ids, func(i, k int) bool { return ids[i] < ids[k] })
		for start := 0; start < len(ids); start += chunkRows {
			part := ids[start:min(start+chunkRows, len(ids))]
			// Pad to a bucket size (repeating the last account with the
			// same balance is harmless) so the statement text, hence the
			// prepared statement, repeats.
			n := padSize(len(part))
			args := l.scratchArgs(c)
			for i := 0; i < n; i++ {
				a := part[min(i, len(part)-1)]
				args = append(args, string(a), bal[a])
			}
			l.keepArgs(c, args)
			// One primary-key lookup per account (SQLite plans the VALUES
			// as the outer loop).
			q := "UPDATE OR ROLLBACK ledger_accounts SET balance = u.column2 FROM (VALUES " + tuples(n, "?, CAST(? AS BIGINT)") + ") AS u WHERE ledger_accounts.id = u.column1"
			if _, err := l.exec(ctx, c, q, args...); err != nil {
				return nil, fmt.Errorf("update balances: %w", err)
			}
		}
	}
	if err := l.addDaily(ctx, c, daily); err != nil {
		return nil, err
	}
	commitStart := time.Now()
	if _, err := l.exec(ctx, c, "COMMIT"); err != nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	committed = true
	l.commitNanos.Add(int64(time.Since(commitStart)))
	l.applyNanos.Add(int64(time.Since(now)))
	// Only the accounts this batch created are new to known (a Store of a
	// present key still allocates in sync.Map).
	for i := 0; i < len(missing); i += 3 {
		l.known.Store(AccountID(missing[i].(string)), struct{}{})
	}
	if cache != nil {
		if len(cache)+len(accts) > maxCachedBalances {
			clear(cache)
		}
		for _, a := range accts {
			cache[AccountID(a.(string))] = bal[AccountID(a.(string))]
		}
	}
	return out, nil
}

// errKeyUsed means a batch applied without looking its keys up met a key
// committed before, or (PostgreSQL) a key committed by another transaction
// after the batch looked it up; the writer runs the batch again with the
// lookup.
var errKeyUsed = errors.New("idempotency key used before")

// lookupAfterReplay is how many batches the writer looks keys up again
// after a batch met a used key: replays come in bursts (a client retrying
// after a timeout), and each batch that meets one is applied twice.
const lookupAfterReplay = 1000

// lookupKeys says whether apply looks the batch's idempotency keys up
// before applying it. The SQLite writer skips the lookup (a SELECT of every
// key, ~6 µs per gift in BenchmarkApply) unless a replay came lately: the
// unique index on idem_key is checked by the insert anyway, and a replayed
// key is rare (it needs a client retry). PostgreSQL, where several nodes
// may write, and naive mode always look up.
func (l *Ledger) lookupKeys(c *sql.Conn) bool {
	return l.db.Dialect != sqldb.SQLite || c != l.conn || l.conn == nil || l.lookupBatches > 0
}

// maxCachedBalances bounds the writer's balance cache (~100 bytes each).
const maxCachedBalances = 1 << 20

// balanceCache returns the balances the SQLite group-commit writer holds in
// memory, or nil for PostgreSQL and naive mode (whose transfers read every
// balance inside their transaction, PostgreSQL with FOR UPDATE).
//
// Why a cached balance is as good as one read inside the transaction: on
// SQLite the writer alone changes ledger_accounts, every batch runs inside
// BEGIN IMMEDIATE (the database's single write lock), and the cache holds
// exactly what the writer's own committed transactions wrote (it is updated
// after COMMIT only). It is called inside the transaction, after the lock
// is taken: if PRAGMA data_version says another connection committed
// anything since the writer's previous transaction (a second process on
// the same file, say), the cache is dropped and every balance read again.
// The batch then checks each debit against these balances and writes the
// new balances in the same transaction, and the table's CHECK constraint
// (balance >= 0) still stands behind it: no balance can go below zero
// without the whole batch rolling back.
func (l *Ledger) balanceCache(ctx context.Context, c *sql.Conn) (map[AccountID]int64, error) {
	if l.db.Dialect != sqldb.SQLite || c != l.conn || l.conn == nil {
		return nil, nil
	}
	rows, err := l.query(ctx, c, "PRAGMA data_version")
	if err != nil {
		return nil, fmt.Errorf("data version: %w", err)
	}
	var v int64
	if rows.Next() {
		err = rows.Scan(&v)
	}
	if cerr := rows.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("data version: %w", err)
	}
	if l.balances == nil || v != l.balancesVersion {
		if l.balances != nil {
			l.balanceDrops.Add(1)
		}
		l.balances = make(map[AccountID]int64)
		l.balancesVersion = v
	}
	return l.balances, nil
}

// runEffects applies a transfer's guarded statements inside a savepoint, so
// a failed guard undoes only that transfer's effects.
func runEffects(ctx context.Context, c *sql.Conn, d sqldb.Dialect, effs []effect) error {
	if _, err := c.ExecContext(ctx, "SAVEPOINT ledger_effect"); err != nil {
		return fmt.Errorf("savepoint: %w", err)
	}
	var ferr error
	for _, e := range effs {
		res, err := c.ExecContext(ctx, sqldb.Rebind(d, e.query), e.args...)
		if err != nil {
			ferr = fmt.Errorf("%w: %v", ErrEffectFailed, err)
			break
		}
		if e.mustAffect {
			if n, err := res.RowsAffected(); err != nil || n == 0 {
				ferr = ErrEffectFailed
				break
			}
		}
	}
	if ferr != nil {
		if _, err := c.ExecContext(ctx, "ROLLBACK TO SAVEPOINT ledger_effect"); err != nil {
			return fmt.Errorf("rollback to savepoint: %w", err)
		}
	}
	if _, err := c.ExecContext(ctx, "RELEASE SAVEPOINT ledger_effect"); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	return ferr
}

func placeholders(n int) string {
	if n <= 0 {
		return ""
	}
	return strings.Repeat("?, ", n-1) + "?"
}

func tuples(n int, tuple string) string {
	var b strings.Builder
	b.Grow(n * (len(tuple) + 4))
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		b.WriteString(tuple)
		b.WriteByte(')')
	}
	return b.String()
}

func chunks(xs []any, size int) [][]any {
	var out [][]any
	for len(xs) > size {
		out = append(out, xs[:size])
		xs = xs[size:]
	}
	if len(xs) > 0 {
		out = append(out, xs)
	}
	return out
}

// Statement sizes: variable-length statements are padded or split to these
// row counts, so the writer reuses a handful of prepared statements instead
// of parsing new SQL text for every batch.
var buckets = []int{1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 320, chunkRows}

func padSize(n int) int {
	for _, b := range buckets {
		if b >= n {
			return b
		}
	}
	return n
}

// pad repeats the last width-wide group of xs up to a bucket size (for IN
// lists, where duplicates change nothing).
func pad(xs []any, width int) []any {
	n := len(xs) / width
	want := padSize(n)
	if want == n || n == 0 {
		return xs
	}
	out := make([]any, 0, want*width)
	out = append(out, xs...)
	last := xs[len(xs)-width:]
	for i := n; i < want; i++ {
		out = append(out, last...)
	}
	return out
}

// rowChunks splits flattened rows (width values each) into groups of at
// most chunkRows rows.
func rowChunks(xs []any, width int) [][]any {
	var out [][]any
	for len(xs) > chunkRows*width {
		out = append(out, xs[:chunkRows*width])
		xs = xs[chunkRows*width:]
	}
	if len(xs) > 0 {
		out = append(out, xs)
	}
	return out
}

// insertRows inserts flattened rows (width values each, the first never
// NULL) into target ("table (columns)") with ONE statement, SQLite only.
// The rows are padded with NULL rows up to a bucket size, which the
// statement filters out, so the same few prepared statements serve every
// batch: a statement per power-of-two part of the batch cost more than
// the padding. OR ROLLBACK: a failed constraint aborts the whole
// transaction (the batch is then retried one transfer at a time), so SQLite
// keeps no statement journal; with the default ABORT it copies every page
// these statements touch into one, a tenth of the writer's time.
func (l *Ledger) insertRows(ctx context.Context, c *sql.Conn, target string, rows []any, width int) error {
	return l.insertRowsSuffix(ctx, c, target, rows, width, "")
}

// insertRowsSuffix is insertRows with an upsert clause after the rows.
func (l *Ledger) insertRowsSuffix(ctx context.Context, c *sql.Conn, target string, rows []any, width int, suffix string) error {
	n := len(rows) / width
	size := padSize(n)
	args := append(l.scratchArgs(c), rows...)
	for i := n * width; i < size*width; i++ {
		args = append(args, nil)
	}
	l.keepArgs(c, args)
	_, err := l.exec(ctx, c, l.sqlText(insertText{target, size, width, suffix}), args...)
	return err
}

// scratchArgs returns an empty argument slice for a statement on c: the
// writer's reused one on the writer's connection, a new one on others
// (naive mode runs transfers concurrently, each on its own connection).
func (l *Ledger) scratchArgs(c *sql.Conn) []any {
	if c == l.conn && l.conn != nil {
		return l.scratch.args[:0]
	}
	return nil
}

// keepArgs keeps args, grown by a statement on c, for the writer's next
// statement.
func (l *Ledger) keepArgs(c *sql.Conn, args []any) {
	if c == l.conn && l.conn != nil {
		l.scratch.args = args[:0]
	}
}

// insertText names one multi-row INSERT statement of insertRows.
type insertText struct {
	target      string
	rows, width int
	suffix      string
}

// sqlText returns the statement text for k, built once: the writer looked
// its prepared statement up by a text built anew for every batch.
func (l *Ledger) sqlText(k insertText) string {
	l.textMu.Lock()
	defer l.textMu.Unlock()
	if q, ok := l.texts[k]; ok {
		return q
	}
	q := "INSERT OR ROLLBACK INTO " + k.target + " SELECT * FROM (VALUES " + tuples(k.rows, placeholders(k.width)) + ") WHERE column1 IS NOT NULL" + k.suffix
	if l.texts == nil {
		l.texts = make(map[insertText]string)
	}
	l.texts[k] = q
	return q
}

// stmt returns the writer connection's prepared statement for q, or nil
// for other connections (naive mode), which run q directly.
func (l *Ledger) stmt(ctx context.Context, c *sql.Conn, q string) (*sql.Stmt, error) {
	if c != l.conn || l.conn == nil {
		return nil, nil
	}
	if st, ok := l.stmts[q]; ok {
		return st, nil
	}
	st, err := c.PrepareContext(ctx, sqldb.Rebind(l.db.Dialect, q))
	if err != nil {
		return nil, err
	}
	if l.stmts == nil {
		l.stmts = make(map[string]*sql.Stmt)
	}
	l.stmts[q] = st
	return st, nil
}

func (l *Ledger) exec(ctx context.Context, c *sql.Conn, q string, args ...any) (sql.Result, error) {
	st, err := l.stmt(ctx, c, q)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.ExecContext(ctx, sqldb.Rebind(l.db.Dialect, q), args...)
}

func (l *Ledger) query(ctx context.Context, c *sql.Conn, q string, args ...any) (*sql.Rows, error) {
	st, err := l.stmt(ctx, c, q)
	if err != nil {
		return nil, err
	}
	if st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.QueryContext(ctx, sqldb.Rebind(l.db.Dialect, q), args...)
}

// columns turns flattened rows (width values each) into one typed slice per
// column, for PostgreSQL's unnest: one statement and one round trip whatever
// the number of rows.
func columns(flat []any, width int) []any {
	rows := len(flat) / width
	out := make([]any, width)
	for col := 0; col < width; col++ {
		switch flat[col].(type) {
		case string:
			v := make([]string, rows)
			for r := 0; r < rows; r++ {
				v[r] = flat[r*width+col].(string)
			}
			out[col] = v
		default:
			v := make([]int64, rows)
			for r := 0; r < rows; r++ {
				switch x := flat[r*width+col].(type) {
				case int:
					v[r] = int64(x)
				case int64:
					v[r] = x
				}
			}
			out[col] = v
		}
	}
	return out
}
