package ledger

import (
	"fmt"
	"time"
)

// Config configures the ledger writer (YAML section "ledger").
type Config struct {
	// MaxBatch caps how many transfers one database transaction applies.
	MaxBatch int `yaml:"max_batch"`
	// QueueLen bounds the writer's queue; senders wait when it is full.
	QueueLen int `yaml:"queue_len"`
	// Synchronous is SQLite's durability for the writer connection: "full"
	// (fsync at every commit; the default) or "normal" (survives a process
	// crash, may lose the last commits on power loss). Ignored on PostgreSQL.
	Synchronous string `yaml:"synchronous"`
	// Naive disables group commit: every transfer runs in its own
	// transaction from the caller's goroutine. Only for the baseline
	// benchmark.
	Naive bool `yaml:"naive"`
	// BusyTimeout is how long SQLite waits for a lock (naive mode, readers).
	BusyTimeout time.Duration `yaml:"busy_timeout"`
}

// DefaultConfig returns the ledger defaults.
func DefaultConfig() Config {
	return Config{MaxBatch: 1024, QueueLen: 8192, Synchronous: "full", BusyTimeout: 10 * time.Second}
}

// Validate checks the configuration; errors name the key.
func (c Config) Validate() error {
	if c.MaxBatch < 1 || c.MaxBatch > 10000 {
		return fmt.Errorf("ledger.max_batch: %d not in 1..10000", c.MaxBatch)
	}
	if c.QueueLen < 1 {
		return fmt.Errorf("ledger.queue_len: %d must be positive", c.QueueLen)
	}
	if c.Synchronous != "full" && c.Synchronous != "normal" {
		return fmt.Errorf("ledger.synchronous: %q is neither \"full\" nor \"normal\"", c.Synchronous)
	}
	if c.BusyTimeout < 0 {
		return fmt.Errorf("ledger.busy_timeout: %v is negative", c.BusyTimeout)
	}
	return nil
}
