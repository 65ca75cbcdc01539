// Package ledger is LiveEngine's money: a double-entry coin ledger stored in
// the control plane's SQL database (SQLite or PostgreSQL), the HTTP API for
// wallets, top-ups, paid gifts, earnings, withdrawals and admin reports, and
// the leaderboards derived from it.
//
// # Model
//
// Coins are int64, never floats. Every movement is a Transfer with a unique
// idempotency key and one or more legs; a leg debits one account and credits
// another by a positive amount, so every transfer balances by construction
// and the sum of all balances is always zero. Accounts are named by string
// (see Wallet, Earnings, Platform, Clearing, Hold): no account may go below
// zero except external clearing accounts ("clearing:PROVIDER"), which stand
// for money outside the system: a top-up moves coins from clearing:paypal
// (which goes negative by what was bought) into a wallet, and a paid-out
// withdrawal moves coins from a hold into clearing:payout.
//
// # Speed and durability: one writer, group commit
//
// All transfers go through one writer goroutine. Requests are queued; the
// writer takes everything queued (up to Config.MaxBatch), opens ONE database
// transaction, reads the balances of the touched accounts inside it (SQLite
// BEGIN IMMEDIATE holds the write lock; PostgreSQL SELECT ... FOR UPDATE
// locks the rows, so several control nodes stay correct), applies the
// transfers in order in memory, rejecting individually any that would take a
// balance below zero or reuse a key with a different request, inserts the
// transfers and their entries with multi-row INSERTs, writes each changed
// balance once (the platform account row is updated once per batch, not once
// per gift), commits once, and only then answers every request of the batch.
//
// Durability: on SQLite the writer's dedicated connection runs in WAL mode
// with synchronous=FULL, so the WAL is fsynced at every COMMIT before any
// request of the batch is answered: an answered gift survives SIGKILL and
// power loss. Because one fsync covers a whole batch, FULL costs almost
// nothing in throughput. (WAL with synchronous=NORMAL would survive a process
// crash but could lose the last commits on power loss; it is available as
// Config.Synchronous "normal" but not the default.) On PostgreSQL a COMMIT
// returns after the WAL flush (synchronous_commit=on, the server default).
//
// A batch whose SQL fails as a whole (for example a unique violation raced
// by another node) is rolled back and its transfers are retried one per
// transaction, so one bad transfer never sinks its neighbours.
package ledger
