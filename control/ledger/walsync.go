package ledger

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// Pipelined durability on SQLite.
//
// With journal_mode=WAL and synchronous=NORMAL a COMMIT appends the
// transaction's frames to the -wal file with write() and returns without
// fsync. The ledger then hands the committed batch to the syncer goroutine
// and starts the next batch at once; the syncer fsyncs the WAL file and only
// then answers the batch's requests. So every answered transfer is on stable
// storage, exactly as with synchronous=FULL, but the writer never waits for
// the disk and one fsync covers every batch committed since the previous
// one. Why this is sound:
//   - fsync works on the file (inode), not on the descriptor: our fsync
//     flushes frames written through SQLite's descriptor.
//   - A committed transaction is either still in the WAL, which our fsync
//     made durable (recovery replays every frame up to the last valid commit
//     frame), or was checkpointed into the database file, and with NORMAL
//     SQLite fsyncs the WAL before a checkpoint and the database after it,
//     and syncs the WAL header when it starts reusing the file.
//   - The WAL file is only deleted when the last connection closes; the
//     writer holds its connection for the ledger's lifetime, and the path is
//     opened afresh for each fsync anyway.
// If an fsync fails, the batch is answered with an error (outcome unknown to
// the client, who retries with the same key).

type syncItem struct {
	jobs []*job
	out  []outcome
}

func (l *Ledger) startSyncer(ctx context.Context) error {
	var seq int
	var name, file string
	if err := l.conn.QueryRowContext(ctx, "PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		return fmt.Errorf("ledger: locate database file: %w", err)
	}
	if file == "" {
		return fmt.Errorf("ledger.synchronous: %q needs a file database (use \"full\" for :memory:)", SyncPipelined)
	}
	var mode string
	if err := l.conn.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		return fmt.Errorf("ledger.synchronous: %q needs journal_mode=WAL (have %q, %v)", SyncPipelined, mode, err)
	}
	l.walPath = file + "-wal"
	// Make sure the WAL file exists and its directory entry is durable.
	if _, err := l.conn.ExecContext(ctx, "BEGIN IMMEDIATE; COMMIT"); err != nil {
		return fmt.Errorf("ledger: touch wal: %w", err)
	}
	if err := fsyncPath(filepath.Dir(file)); err != nil {
		return fmt.Errorf("ledger: sync database directory: %w", err)
	}
	l.flush = func() error { return fsyncPath(l.walPath) }
	l.syncQ = make(chan syncItem, 4096)
	l.wg.Add(1)
	go l.runSyncer()
	return nil
}

// startPGSyncer is pipelined durability on PostgreSQL: the writer commits
// with synchronous_commit=off (COMMIT returns before the WAL flush), and the
// syncer, on its own connection with synchronous_commit=on, commits a tiny
// write (one row per node in ledger_sync). That commit returns only after the
// WAL is flushed up to its commit record, and the WAL is one sequential
// stream: every batch whose COMMIT returned before the syncer's transaction
// began has its commit record earlier, so it is durable too. Only then are
// those batches answered. A crash can lose only unanswered batches, and
// always a suffix of them (later batches sit later in the WAL).
func (l *Ledger) startPGSyncer(ctx context.Context) error {
	if _, err := l.conn.ExecContext(ctx, "SET synchronous_commit = off"); err != nil {
		return fmt.Errorf("ledger writer: %w", err)
	}
	sc, err := l.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ledger syncer connection: %w", err)
	}
	if _, err := sc.ExecContext(ctx, "SET synchronous_commit = on"); err != nil {
		sc.Close()
		return fmt.Errorf("ledger syncer: %w", err)
	}
	node := "node-" + idNode
	if _, err := sc.ExecContext(ctx, "INSERT INTO ledger_sync (node, n) VALUES ($1, 0) ON CONFLICT (node) DO NOTHING", node); err != nil {
		sc.Close()
		return fmt.Errorf("ledger syncer: %w", err)
	}
	st, err := sc.PrepareContext(ctx, "UPDATE ledger_sync SET n = n + 1 WHERE node = $1")
	if err != nil {
		sc.Close()
		return fmt.Errorf("ledger syncer: %w", err)
	}
	l.syncConn = sc
	l.flush = func() error {
		fctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, err := st.ExecContext(fctx, node)
		return err
	}
	l.syncQ = make(chan syncItem, 4096)
	l.wg.Add(1)
	go l.runSyncer()
	return nil
}

func (l *Ledger) runSyncer() {
	defer l.wg.Done()
	items := make([]syncItem, 0, 64)
	for it := range l.syncQ {
		items = append(items[:0], it)
	drain:
		for {
			select {
			case it, ok := <-l.syncQ:
				if !ok {
					break drain
				}
				items = append(items, it)
			default:
				break drain
			}
		}
		start := time.Now()
		err := l.flush()
		l.syncNanos.Add(int64(time.Since(start)))
		l.syncs.Add(1)
		if err != nil {
			l.log.Error("ledger durability flush failed; answering batches with an error", "err", err, "batches", len(items))
		}
		for _, it := range items {
			for i, j := range it.jobs {
				if err != nil {
					j.done <- outcome{err: fmt.Errorf("ledger: durability flush: %w", err)}
					continue
				}
				j.done <- it.out[i]
			}
		}
	}
}

// SyncCommitted makes every transaction committed so far on the ledger's
// database durable. Writes outside the writer (a top-up order, the gift
// catalog, a commission override) commit through the pool, which on SQLite
// runs synchronous=NORMAL: COMMIT writes the WAL but does not fsync it, so
// a power cut could lose a top-up order after its 201, and the user would
// then pay a checkout whose webhook names an order that no longer exists.
// The fsync covers the WAL as walsync's syncer does (a checkpoint fsyncs
// what it copies). PostgreSQL's pool commits are durable already.
//
// A replay answered from the stored row outside the writer needs it too:
// in pipelined mode the writer's commits are visible before the syncer
// made them durable. On PostgreSQL that takes the syncer's durable commit
// (the WAL is one stream: it flushes every commit before it).
func (l *Ledger) SyncCommitted(ctx context.Context) error {
	if l.db.Dialect == sqldb.Postgres {
		if l.syncConn != nil { // pipelined: the writer commits with synchronous_commit=off
			return l.flush()
		}
		return nil
	}
	wal, err := l.poolWALPath(ctx)
	if err != nil || wal == "" { // :memory: has nothing to sync
		return err
	}
	err = syncFile(wal)
	if errors.Is(err, fs.ErrNotExist) {
		// No WAL: the last connection closed and checkpointed it into the
		// database file, fsynced.
		return nil
	}
	return err
}

// poolWALPath finds the WAL file SyncCommitted fsyncs ("" when there is
// none) once; a failed lookup (a request's deadline) is tried again next
// time rather than remembered.
func (l *Ledger) poolWALPath(ctx context.Context) (string, error) {
	l.poolWALMu.Lock()
	defer l.poolWALMu.Unlock()
	if l.poolWALKnown {
		return l.poolWAL, nil
	}
	var seq int
	var name, file, mode string
	if err := l.db.QueryRowContext(ctx, "PRAGMA database_list").Scan(&seq, &name, &file); err != nil {
		return "", fmt.Errorf("ledger: locate database file: %w", err)
	}
	if err := l.db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return "", fmt.Errorf("ledger: journal mode: %w", err)
	}
	if file != "" && mode == "wal" {
		l.poolWAL = file + "-wal"
	}
	l.poolWALKnown = true
	return l.poolWAL, nil
}

// syncFile is fsyncPath; tests wrap it to see what was synced.
var syncFile = fsyncPath

func fsyncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
