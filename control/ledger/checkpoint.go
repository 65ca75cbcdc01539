package ledger

import (
	"context"
	"database/sql"
	"fmt"
	"sync/atomic"
	"time"
)

// WAL checkpoints off the writer's path (SQLite).
//
// With SQLite's automatic checkpoint the connection whose COMMIT pushes
// the WAL past 1000 pages copies the WAL into the database file and fsyncs
// both, inside that COMMIT: in the ledger that is the single writer, every
// ~20 batches, and BenchmarkApply showed the writer spending 85 µs of wall
// time per gift with it against 54 µs without (the fsyncs block it; ~8 µs
// of CPU per gift is the copy). So the writer's connection turns automatic
// checkpoints off and a checkpointer goroutine, on a connection of its
// own, runs a PASSIVE checkpoint every checkpointEvery: PASSIVE never
// blocks the writer, which keeps appending meanwhile.
//
// A PASSIVE checkpoint cannot copy frames appended while it runs, and SQLite
// starts the WAL over from its beginning only when every frame was copied,
// so under steady load the WAL would grow without end. When a checkpoint
// leaves more than walRestartFrames frames in the WAL, the checkpointer asks
// the writer for a final one: the writer runs it between two batches, with
// nothing appending, so it copies only the tail the last concurrent
// checkpoint missed, and its next transaction writes the WAL from the start.
//
// Durability is as with automatic checkpoints: both connections run with
// synchronous=NORMAL, under which a checkpoint fsyncs the WAL before
// copying and the database file after, before any frame may be overwritten.

// A longer interval copies fewer pages in all (a page written by several
// batches is copied once): at 250 ms BenchmarkApply spent 64-70 µs of CPU
// per gift against 74-79 at 25 ms.
const (
	checkpointEvery  = 250 * time.Millisecond
	walRestartFrames = 16384 // 64 MiB of 4 KiB pages
)

// checkpointer runs the concurrent checkpoints.
type checkpointer struct {
	conn *sql.Conn
	// every and restartFrames are checkpointEvery and walRestartFrames
	// (tests lower them).
	every         time.Duration
	restartFrames int
	// tail is set when the writer should checkpoint the WAL's tail.
	tail atomic.Bool
	stop chan struct{}
	done chan struct{}
	log  func(msg string, args ...any)

	runs, writerRuns, lastFrames atomic.Int64
}

// startCheckpointer turns the writer's automatic checkpoints off and starts
// checkpointing on a connection of its own.
func (l *Ledger) startCheckpointer(ctx context.Context) error {
	if _, err := l.conn.ExecContext(ctx, "PRAGMA wal_autocheckpoint=0"); err != nil {
		return fmt.Errorf("ledger writer: %w", err)
	}
	c, err := l.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("ledger checkpointer connection: %w", err)
	}
	cp := &checkpointer{conn: c, every: checkpointEvery, restartFrames: walRestartFrames, stop: make(chan struct{}), done: make(chan struct{}), log: l.log.Warn}
	l.ckpt = cp
	go cp.run()
	return nil
}

func (cp *checkpointer) run() {
	defer close(cp.done)
	t := time.NewTicker(cp.every)
	defer t.Stop()
	for {
		select {
		case <-cp.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		var busy, frames, copied int
		err := cp.conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied)
		cancel()
		cp.runs.Add(1)
		if err != nil {
			cp.log("ledger checkpoint failed", "err", err)
			continue
		}
		cp.lastFrames.Store(int64(frames))
		if frames > cp.restartFrames {
			cp.tail.Store(true)
		}
	}
}

// writerTail is called by the writer between batches: it checkpoints what
// the concurrent checkpoints left, so the next batch restarts the WAL.
func (l *Ledger) writerTail() {
	cp := l.ckpt
	if cp == nil || !cp.tail.Load() {
		return
	}
	cp.tail.Store(false)
	cp.writerRuns.Add(1)
	var busy, frames, copied int
	if err := l.conn.QueryRowContext(context.Background(), "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		l.log.Warn("ledger writer checkpoint failed", "err", err)
	}
}

func (cp *checkpointer) close() {
	close(cp.stop)
	<-cp.done
	cp.conn.Close()
}
