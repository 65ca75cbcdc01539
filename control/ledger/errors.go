package ledger

import (
	"errors"
	"fmt"
)

// ErrInsufficientFunds means a transfer would take a balance below zero; it
// was rejected and moved nothing.
var ErrInsufficientFunds = errors.New("insufficient funds")

// ErrIdempotencyConflict means the idempotency key was already used by a
// different request.
var ErrIdempotencyConflict = errors.New("idempotency key reused with a different request")

// ErrInvalidTransfer means the transfer request is malformed (no legs, a
// non-positive amount, an unknown account kind, an empty key).
var ErrInvalidTransfer = errors.New("invalid transfer")

// ErrClosed means the ledger is closed and accepts no more transfers.
var ErrClosed = errors.New("ledger closed")

// ErrEffectFailed means a guarded side effect of a transfer (such as a
// withdrawal status change) found nothing to change; the transfer was
// rejected and moved nothing.
var ErrEffectFailed = errors.New("transfer precondition failed")

// FundsError details ErrInsufficientFunds.
type FundsError struct {
	Account   AccountID
	Balance   int64
	Requested int64
}

func (e *FundsError) Error() string {
	return fmt.Sprintf("account %s: balance %d, needs %d: %v", e.Account, e.Balance, e.Requested, ErrInsufficientFunds)
}

func (e *FundsError) Unwrap() error { return ErrInsufficientFunds }
