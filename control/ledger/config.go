package ledger

import (
	"fmt"
	"time"
)

// Config configures the ledger writer (YAML section "ledger").
type Config struct {
	// MaxBatch caps how many transfers one database transaction applies.
	MaxBatch int `yaml:"max_batch"`
	// Linger is how long the writer waits for more transfers after the
	// first of a batch arrived (until MaxBatch): a little latency buys
	// bigger batches, and per-batch costs (statements, WAL pages, fsync) are
	// shared by more transfers. The wait ends early once the queue stayed
	// empty for a third of Linger, so a lone transfer waits a third.
	// BenchmarkGifts on an idle 2-core box: 1ms beat 0, 0.5ms and 3ms at 64
	// clients (7.0k gifts/s vs 5.6k, 6.7k, 6.5k) and tied at 256; 0 takes
	// only what is already queued (batches of ~5 at 64 clients).
	Linger time.Duration `yaml:"linger"`
	// QueueLen bounds the writer's queue; senders wait when it is full.
	QueueLen int `yaml:"queue_len"`
	// Synchronous is the writer's durability: "pipelined" (the default:
	// SQLite commits with synchronous=NORMAL and the ledger fsyncs the WAL
	// itself before answering; PostgreSQL commits with
	// synchronous_commit=off and a durable commit on a second connection
	// flushes the WAL before answering; either way the next batch already
	// runs while the disk syncs), "full" (the database syncs inside every
	// COMMIT), or "normal" (SQLite only: no fsync before answering; survives
	// a process crash but may lose the last commits on power loss).
	Synchronous string `yaml:"synchronous"`
	// Naive disables group commit: every transfer runs in its own
	// transaction from the caller's goroutine. Only for the baseline
	// benchmark.
	Naive bool `yaml:"naive"`
	// BusyTimeout is how long SQLite waits for a lock (naive mode, readers).
	BusyTimeout time.Duration `yaml:"busy_timeout"`
}

// SQLite durability modes (Config.Synchronous).
const (
	SyncPipelined = "pipelined"
	SyncFull      = "full"
	SyncNormal    = "normal"
)

// DefaultConfig returns the ledger defaults.
func DefaultConfig() Config {
	return Config{MaxBatch: 1024, Linger: time.Millisecond, QueueLen: 8192, Synchronous: SyncPipelined, BusyTimeout: 10 * time.Second}
}

// Validate checks the configuration; errors name the key.
func (c Config) Validate() error {
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		return fmt.Errorf("ledger.max_batch: %d not in 1..10000", c.MaxBatch)
	}
	if c.Linger < 0 || c.Linger > time.Second {
		return fmt.Errorf("ledger.linger: %v not in 0..1s", c.Linger)
	}
	if c.QueueLen < 1 {
		return fmt.Errorf("ledger.queue_len: %d must be positive", c.QueueLen)
	}
	switch c.Synchronous {
	case SyncPipelined, SyncFull, SyncNormal:
	default:
		return fmt.Errorf("ledger.synchronous: %q is not %q, %q or %q", c.Synchronous, SyncPipelined, SyncFull, SyncNormal)
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("ledger.busy_timeout: %v is negative", c.BusyTimeout)
	}
	return nil
}
