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
// and the sum of all balances is always zero. A transfer is ONE immutable
// row of ledger_transfers holding its legs (JSON [debit, credit, amount]
// triples) and, indexed, its first leg's debit and credit accounts
// (schema.go). Accounts are named by string
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
// locks the rows, so several control nodes stay correct; on SQLite the
// writer, the only one that changes balances, keeps the balances it
// committed in memory and reads only the others, and drops them whenever
// PRAGMA data_version, read inside the transaction, shows another
// connection committed: see balanceCache), applies the
// transfers in order in memory, rejecting individually any that would take a
// balance below zero or reuse a key with a different request, inserts the
// transfers, legs included, with one multi-row INSERT, writes each changed
// balance once (the platform account row is updated once per batch, not once
// per gift), commits once, and only then answers every request of the batch.
//
// Durability (Config.Synchronous): a request is answered only after its
// transfer is on stable storage. The default, "pipelined", takes the disk
// flush off the writer's path: on SQLite (WAL mode) the writer commits with
// synchronous=NORMAL and a syncer goroutine fsyncs the -wal file before it
// answers the batch; on PostgreSQL the writer commits with
// synchronous_commit=off and the syncer's own durable commit flushes the
// WAL past the batch's commit record (see walsync.go for why both are
// sound). Meanwhile the writer already runs the next batch, and one flush
// covers every batch committed since the previous one. "full" makes the
// database sync inside every COMMIT instead (SQLite synchronous=FULL,
// PostgreSQL synchronous_commit=on); "normal" (SQLite only) survives a
// process crash but may lose the last answered commits on power loss.
//
// The SQLite writer does not look every idempotency key up before applying
// a batch: the unique index on the key finds a replay at insert time (or a
// SELECT of the keys of the transfers the batch rejected does), and the
// batch is then rolled back and applied again with the lookup (lookupKeys).
//
// On SQLite the writer never checkpoints the WAL itself: a checkpointer
// goroutine on its own connection does, and the writer only copies the
// tail a concurrent checkpoint missed, between batches (checkpoint.go).
//
// On PostgreSQL a key can be committed by another transaction (another
// node, or naive mode) after the batch looked it up: the insert's unique
// violation, or a transfer rejected because the other one moved the coins
// or settled the withdrawal first, makes the batch run again, and the
// lookup then answers the duplicate as a replay.
//
// A batch whose SQL fails as a whole otherwise is rolled back and its
// transfers are retried one per transaction, so one bad transfer never
// sinks its neighbours.
package ledger
