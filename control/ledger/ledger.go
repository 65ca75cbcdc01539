package ledger

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// Leg moves Amount coins from one account to another.
type Leg struct {
	From   AccountID `json:"from"`
	To     AccountID `json:"to"`
	Amount int64     `json:"amount"`
}

// Transfer kinds written by this package.
const (
	TransferGift             = "gift"
	TransferTopup            = "topup"
	TransferWithdrawal       = "withdrawal"
	TransferWithdrawalPost   = "withdrawal_post"
	TransferWithdrawalVoid   = "withdrawal_void"
	TransferAdminAdjustment  = "adjustment"
	maxLegs                  = 16
	maxKeyLen                = 300
	defaultTransferKindOther = "transfer"
)

// MaxAmount bounds one leg, so no sum of balances can overflow int64.
const MaxAmount = 1e15

// TransferRequest asks the ledger to move coins. All legs commit together or
// none does.
type TransferRequest struct {
	// IdempotencyKey is unique per transfer; repeating it returns the first
	// transfer's receipt instead of moving coins again.
	IdempotencyKey string
	// Legs are the movements; each debits From and credits To.
	Legs []Leg
	// Kind classifies the transfer for reports ("gift", "topup", ...).
	Kind string
	// Meta is free text (JSON by convention) stored with the transfer.
	Meta string
	// Actor is the user who caused the transfer (a gift's sender).
	Actor string
	// StreamID is the stream a gift was sent to.
	StreamID string
	// Fingerprint identifies the originating request (a hash of its body);
	// a key repeated with another fingerprint fails with
	// ErrIdempotencyConflict.
	Fingerprint string
	// Respond renders the response stored with the transfer, so a replay
	// can return the same status and body. It runs on the writer goroutine
	// before commit and must be quick and pure.
	Respond func(Receipt) (status int, body []byte)

	// effects run inside the transfer's database transaction.
	effects []effect
}

// effect is a guarded SQL statement applied atomically with a transfer.
type effect struct {
	query string
	args  []any
	// mustAffect rejects the transfer when the statement changes no row.
	mustAffect bool
}

// Receipt is the result of a committed (or replayed) transfer.
type Receipt struct {
	// TransferID is the ledger's id of the transfer.
	TransferID string
	// Kind is the transfer's kind.
	Kind string
	// CreatedAt is when the transfer was committed.
	CreatedAt time.Time
	// Balances are the balances right after the transfer of the accounts
	// it touched; nil on a replay.
	Balances map[AccountID]int64
	// Replayed is true when the key had been used before and nothing moved.
	Replayed bool
	// Status and Body are the stored response (see TransferRequest.Respond).
	Status int
	Body   []byte
}

// Stats counts the writer's work.
type Stats struct {
	Transfers int64
	Rejected  int64
	Replayed  int64
	Batches   int64
	MaxBatch  int64
	Fallbacks int64
	// CommitTime and ApplyTime add up the time spent in COMMIT and in whole
	// batch transactions (BEGIN to COMMIT).
	CommitTime, ApplyTime time.Duration
	// Syncs and SyncTime count the WAL fsyncs of pipelined mode.
	Syncs    int64
	SyncTime time.Duration
	// CacheDrops counts how often the SQLite writer dropped its balance
	// cache because another connection had committed (see balanceCache).
	CacheDrops int64
	// KeyRetries counts batches applied twice because they met an
	// idempotency key committed before (see lookupKeys).
	KeyRetries int64
	// Answered counts the group-commit transfers answered, and AnswerTime
	// adds up their time from queueing to the durable answer (queue wait,
	// batch, fsync, hand-back).
	Answered   int64
	AnswerTime time.Duration
}

// Ledger is the coin ledger with its single group-committing writer.
type Ledger struct {
	db   *sqldb.DB
	conf Config
	log  *slog.Logger

	mu     sync.RWMutex
	closed bool
	queue  chan *job
	conn   *sql.Conn
	wg     sync.WaitGroup
	known  sync.Map // AccountID -> struct{}: accounts known to exist (never deleted)

	// walPath and syncQ are set in pipelined mode: committed batches wait
	// in syncQ for the fsync of the WAL file that makes them durable.
	walPath  string
	syncQ    chan syncItem
	flush    func() error
	syncConn *sql.Conn

	// poolWAL is the WAL file SyncCommitted fsyncs ("" when there is none),
	// known once poolWALKnown (poolWALMu).
	poolWALMu    sync.Mutex
	poolWAL      string
	poolWALKnown bool
	// ckpt checkpoints the WAL off the writer's path (SQLite).
	ckpt *checkpointer

	// stmts are the writer connection's prepared statements (writer
	// goroutine only).
	stmts map[string]*sql.Stmt
	// scratch is reused by every batch of the writer (writer goroutine
	// only), so a batch allocates little.
	scratch struct {
		args, tr, en []any
	}
	// texts caches insertRows' statement texts (textMu: naive mode runs
	// transfers concurrently).
	textMu sync.Mutex
	texts  map[insertText]string
	// balances are the committed balances of accounts the SQLite writer
	// touched, valid while PRAGMA data_version stays balancesVersion
	// (writer goroutine only; see balanceCache).
	balances        map[AccountID]int64
	balancesVersion int64
	balanceDrops    atomic.Int64
	// lookupBatches counts down the batches that look their keys up
	// before applying (writer goroutine only; see lookupKeys).
	lookupBatches int
	keyRetries    atomic.Int64
	// waited and waitNanos: group-commit transfers answered, and their
	// time from queueing to answer (Stats.Answered, AnswerTime).
	waited, waitNanos atomic.Int64

	transfers, rejected, replayed, batches, maxBatch, fallbacks atomic.Int64
	commitNanos, applyNanos, syncNanos, syncs                   atomic.Int64
}

type job struct {
	ctx  context.Context
	req  *TransferRequest
	done chan outcome
}

type outcome struct {
	r   Receipt
	err error
}

// New builds a ledger on the control database. Run Migrate first.
func New(db *sqldb.DB, conf Config, log *slog.Logger) (*Ledger, error) {
	if err := conf.Validate(); err != nil {
		return nil, err
	}
	if db == nil {
		return nil, errors.New("ledger: nil database")
	}
	if log == nil {
		log = slog.Default()
	}
	return &Ledger{db: db, conf: conf, log: log.With("component", "ledger"), queue: make(chan *job, conf.QueueLen)}, nil
}

// Start opens the writer's dedicated connection and starts the writer.
func (l *Ledger) Start() error {
	if l.conf.Naive {
		l.log.Info("ledger started", "mode", "naive", "dialect", l.db.Dialect)
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := l.writerConn(ctx)
	if err != nil {
		return err
	}
	l.conn = c
	if l.db.Dialect == sqldb.SQLite {
		var mode string
		if err := c.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
			c.Close()
			return fmt.Errorf("ledger: journal mode: %w", err)
		}
		if mode == "wal" {
			if err := l.startCheckpointer(ctx); err != nil {
				c.Close()
				return err
			}
		}
	}
	if l.conf.Synchronous == SyncPipelined {
		start := l.startSyncer
		if l.db.Dialect == sqldb.Postgres {
			start = l.startPGSyncer
		}
		if err := start(ctx); err != nil {
			if l.ckpt != nil {
				l.ckpt.close()
			}
			c.Close()
			return err
		}
	}
	l.wg.Add(1)
	go l.run()
	l.log.Info("ledger started", "mode", "group-commit", "dialect", l.db.Dialect, "max_batch", l.conf.MaxBatch, "synchronous", l.conf.Synchronous)
	return nil
}

// writerConn takes a connection from the pool and sets its durability.
func (l *Ledger) writerConn(ctx context.Context) (*sql.Conn, error) {
	c, err := l.db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("ledger writer connection: %w", err)
	}
	if l.db.Dialect == sqldb.SQLite {
		sync := l.conf.Synchronous
		if sync == SyncPipelined {
			sync = SyncNormal // the ledger fsyncs the WAL itself
			if l.conf.Naive {
				sync = SyncFull
			}
		}
		for _, p := range []string{
			"PRAGMA synchronous=" + sync,
			"PRAGMA busy_timeout=" + strconv.FormatInt(l.conf.BusyTimeout.Milliseconds(), 10),
		} {
			if _, err := c.ExecContext(ctx, p); err != nil {
				c.Close()
				return nil, fmt.Errorf("ledger writer %s: %w", p, err)
			}
		}
	}
	if l.db.Dialect == sqldb.Postgres {
		// The writer prepares its statements once, while the tables are
		// small. After five runs PostgreSQL may switch a prepared statement
		// to a generic plan costed on those small tables and keep it: the
		// idempotency lookup (idem_key = ANY($1)) then scanned the whole
		// transfers table in every batch, 339 µs per gift at 20k transfers
		// (BenchmarkApply on PostgreSQL) against 10 with a custom plan, and
		// BenchmarkGifts at 256 clients fell to 1.3k gifts/s as the table
		// grew. A custom plan per statement costs the planner once per
		// batch, not per gift.
		if _, err := c.ExecContext(ctx, "SET plan_cache_mode = force_custom_plan"); err != nil {
			c.Close()
			return nil, fmt.Errorf("ledger writer plan_cache_mode: %w", err)
		}
	}
	return c, nil
}

// Close stops accepting transfers, answers every accepted one, and waits for
// the writer to finish.
func (l *Ledger) Close() {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	l.wg.Wait()
	if l.ckpt != nil {
		l.ckpt.close()
	}
	for _, st := range l.stmts {
		st.Close()
	}
	if l.syncConn != nil {
		l.syncConn.Close()
	}
	if l.conn != nil {
		l.conn.Close()
	}
	s := l.Stats()
	l.log.Info("ledger closed", "transfers", s.Transfers, "rejected", s.Rejected, "replayed", s.Replayed, "batches", s.Batches, "max_batch", s.MaxBatch)
}

// Stats returns the writer's counters.
func (l *Ledger) Stats() Stats {
	return Stats{
		Transfers: l.transfers.Load(), Rejected: l.rejected.Load(), Replayed: l.replayed.Load(),
		Batches: l.batches.Load(), MaxBatch: l.maxBatch.Load(), Fallbacks: l.fallbacks.Load(),
		CommitTime: time.Duration(l.commitNanos.Load()), ApplyTime: time.Duration(l.applyNanos.Load()),
		Syncs: l.syncs.Load(), SyncTime: time.Duration(l.syncNanos.Load()),
		CacheDrops: l.balanceDrops.Load(), KeyRetries: l.keyRetries.Load(),
		Answered: l.waited.Load(), AnswerTime: time.Duration(l.waitNanos.Load()),
	}
}

// Transfer applies req durably and returns its receipt, or the receipt of the
// earlier transfer with the same key. It returns after the commit.
func (l *Ledger) Transfer(ctx context.Context, req TransferRequest) (Receipt, error) {
	if err := req.validate(); err != nil {
		return Receipt{}, err
	}
	start := time.Now()
	j := &job{ctx: ctx, req: &req, done: make(chan outcome, 1)}
	if l.conf.Naive {
		return l.transferNaive(ctx, j)
	}
	l.mu.RLock()
	if l.closed {
		l.mu.RUnlock()
		return Receipt{}, ErrClosed
	}
	select {
	case l.queue <- j:
		l.mu.RUnlock()
	case <-ctx.Done():
		l.mu.RUnlock()
		return Receipt{}, fmt.Errorf("ledger transfer %q: queue: %w", req.IdempotencyKey, ctx.Err())
	}
	select {
	case o := <-j.done:
		l.waitNanos.Add(int64(time.Since(start)))
		l.waited.Add(1)
		return o.r, o.err
	case <-ctx.Done():
		// The transfer may still commit; a retry with the same key tells.
		return Receipt{}, fmt.Errorf("ledger transfer %q: %w", req.IdempotencyKey, ctx.Err())
	}
}

func (l *Ledger) transferNaive(ctx context.Context, j *job) (Receipt, error) {
	c, err := l.writerConn(ctx)
	if err != nil {
		return Receipt{}, err
	}
	defer c.Close()
	out, err := l.apply(ctx, c, []*job{j})
	if err != nil && (isUnique(err) || errors.Is(err, errKeyUsed)) {
		// The same key in a transaction running beside this one (on
		// PostgreSQL nothing serialises naive transactions): it has
		// committed now, and the lookup finds its answer.
		out, err = l.apply(ctx, c, []*job{j})
	}
	if err != nil {
		return Receipt{}, fmt.Errorf("ledger transfer %q: %w", j.req.IdempotencyKey, err)
	}
	l.count(out)
	return out[0].r, out[0].err
}

func (r *TransferRequest) validate() error {
	if r.IdempotencyKey == "" || len(r.IdempotencyKey) > maxKeyLen {
		return fmt.Errorf("%w: idempotency key must be 1..%d bytes", ErrInvalidTransfer, maxKeyLen)
	}
	if len(r.Legs) == 0 || len(r.Legs) > maxLegs {
		return fmt.Errorf("%w: %d legs (want 1..%d)", ErrInvalidTransfer, len(r.Legs), maxLegs)
	}
	for i, leg := range r.Legs {
		if leg.Amount <= 0 || leg.Amount > MaxAmount {
			return fmt.Errorf("%w: leg %d amount %d not in 1..%d", ErrInvalidTransfer, i, leg.Amount, int64(MaxAmount))
		}
		if !leg.From.valid() || !leg.To.valid() {
			return fmt.Errorf("%w: leg %d: bad account %q -> %q", ErrInvalidTransfer, i, leg.From, leg.To)
		}
		if leg.From == leg.To {
			return fmt.Errorf("%w: leg %d moves %s to itself", ErrInvalidTransfer, i, leg.From)
		}
	}
	if r.Kind == "" {
		r.Kind = defaultTransferKindOther
	}
	return nil
}

// amount is the sum of the legs (overflow-checked by the caller's limits).
func (r *TransferRequest) amount() int64 {
	var s int64
	for _, l := range r.Legs {
		s += l.Amount
	}
	return s
}

// run is the writer: it takes everything queued, applies it in one
// transaction and answers after the commit.
func (l *Ledger) run() {
	defer l.wg.Done()
	if l.syncQ != nil {
		defer close(l.syncQ)
	}
	batch := make([]*job, 0, l.conf.MaxBatch)
	linger := time.NewTimer(time.Hour)
	linger.Stop()
	for {
		j, ok := <-l.queue
		if !ok {
			return
		}
		batch = append(batch[:0], j)
		open := true
	fill:
		for len(batch) < l.conf.MaxBatch {
			select {
			case j, ok := <-l.queue:
				if !ok {
					open = false
					break fill
				}
				batch = append(batch, j)
			default:
				break fill
			}
		}
		if open && l.conf.Linger > 0 && len(batch) < l.conf.MaxBatch {
			// Wait up to Linger for more, but stop once no transfer came
			// for a quiet gap: under load the queue keeps filling and the
			// batch grows (per-batch costs shared by more gifts: a batch of
			// ~45 costs a sixth less server CPU per gift than one of ~25),
			// while a lone transfer waits only the gap.
			deadline := time.Now().Add(l.conf.Linger)
			gap := quietGap(l.conf.Linger)
			linger.Reset(gap)
		wait:
			for len(batch) < l.conf.MaxBatch {
				select {
				case j, ok := <-l.queue:
					if !ok {
						break wait
					}
					batch = append(batch, j)
					rest := time.Until(deadline)
					if rest <= 0 {
						break wait
					}
					linger.Reset(min(gap, rest))
				case <-linger.C:
					break wait
				}
			}
			linger.Stop()
		}
		l.writerTail()
		l.process(batch)
	}
}

// quietGap is how long the writer's queue may stay empty before a
// lingering batch starts anyway: a third of linger, at least 100µs.
func quietGap(linger time.Duration) time.Duration {
	return min(linger, max(linger/3, 100*time.Microsecond))
}

func (l *Ledger) process(batch []*job) {
	ctx := context.Background()
	if l.lookupBatches > 0 {
		l.lookupBatches--
	}
	out, err := l.apply(ctx, l.conn, batch)
	if errors.Is(err, errKeyUsed) {
		// A key was used before (a replay): nothing was committed; look
		// the keys up, this batch and the next ones.
		l.keyRetries.Add(1)
		l.lookupBatches = lookupAfterReplay
		out, err = l.apply(ctx, l.conn, batch)
	}
	if err == nil {
		l.batches.Add(1)
		if n := int64(len(batch)); n > l.maxBatch.Load() {
			l.maxBatch.Store(n)
		}
		l.count(out)
		if l.syncQ != nil {
			l.syncQ <- syncItem{jobs: append([]*job(nil), batch...), out: out}
			return
		}
		for i, j := range batch {
			j.done <- out[i]
		}
		return
	}
	if len(batch) == 1 {
		l.log.Error("ledger transfer failed", "key", batch[0].req.IdempotencyKey, "err", err)
		batch[0].done <- outcome{err: fmt.Errorf("ledger transfer %q: %w", batch[0].req.IdempotencyKey, err)}
		return
	}
	// The batch failed as a whole: retry its transfers one by one so one
	// bad transfer cannot sink the others.
	l.fallbacks.Add(1)
	l.log.Warn("ledger batch failed, retrying one by one", "size", len(batch), "err", err)
	for _, j := range batch {
		l.process([]*job{j})
	}
}

func (l *Ledger) count(out []outcome) {
	for _, o := range out {
		switch {
		case o.err != nil:
			l.rejected.Add(1)
		case o.r.Replayed:
			l.replayed.Add(1)
		default:
			l.transfers.Add(1)
		}
	}
}

// Balance returns the committed balance of an account (0 if it never moved).
func (l *Ledger) Balance(ctx context.Context, a AccountID) (int64, error) {
	return balance(ctx, l.db, a)
}

func balance(ctx context.Context, db *sqldb.DB, a AccountID) (int64, error) {
	var b int64
	err := db.QueryRowContext(ctx, db.Rebind("SELECT balance FROM ledger_accounts WHERE id = ?"), string(a)).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("ledger balance %s: %w", a, err)
	}
	return b, nil
}

// Invariants checks the ledger (see CheckInvariants).
func (l *Ledger) Invariants(ctx context.Context) (Report, error) { return CheckInvariants(ctx, l.db) }

// DB returns the ledger's database.
func (l *Ledger) DB() *sqldb.DB { return l.db }

var (
	idNode = func() string {
		b := make([]byte, 3)
		_, _ = rand.Read(b)
		return hex.EncodeToString(b)
	}()
	idSeq atomic.Uint64
)

// newID returns a time-ordered id (so B-tree inserts append) that is unique
// across nodes with overwhelming probability.
func newID(prefix string, t time.Time) string {
	return formatID(prefix, t.UnixMilli(), idSeq.Add(1)&0xffffff)
}

// formatID is fmt.Sprintf("%s%012x%s%06x", prefix, ms, idNode, seq) without
// fmt (one per transfer on the writer).
func formatID(prefix string, ms int64, seq uint64) string {
	var buf [64]byte
	b := append(buf[:0], prefix...)
	b = appendHex(b, uint64(ms), 12)
	b = append(b, idNode...)
	b = appendHex(b, seq, 6)
	return string(b)
}

// appendHex appends v in lowercase hex, zero-padded to at least width digits.
func appendHex(b []byte, v uint64, width int) []byte {
	var d [16]byte
	i := len(d)
	for v > 0 || len(d)-i < width {
		i--
		d[i] = "0123456789abcdef"[v&0xf]
		v >>= 4
	}
	return append(b, d[i:]...)
}

func isUnique(err error) bool { return sqldb.IsUniqueViolation(err) }
