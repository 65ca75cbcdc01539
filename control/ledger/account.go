package ledger

import "strings"

// AccountID names a ledger account, "kind:owner".
type AccountID string

// Account kinds (the part of an AccountID before the colon).
const (
	KindWallet   = "wallet"
	KindEarnings = "earnings"
	KindPlatform = "platform"
	KindClearing = "clearing"
	KindHold     = "hold"
)

// Platform is the account that collects the platform's gift commission.
const Platform AccountID = "platform:commission"

// Payout is the external clearing account that receives approved withdrawals.
const Payout AccountID = "clearing:payout"

// Wallet is a viewer's coin wallet.
func Wallet(userID string) AccountID { return AccountID(KindWallet + ":" + userID) }

// Earnings is a streamer's earnings account, credited by gifts.
func Earnings(userID string) AccountID { return AccountID(KindEarnings + ":" + userID) }

// Hold is where a streamer's pending withdrawals wait for approval.
func Hold(userID string) AccountID { return AccountID(KindHold + ":" + userID) }

// Clearing is the external clearing account of a payment provider; it goes
// negative by the coins bought through that provider.
func Clearing(provider string) AccountID { return AccountID(KindClearing + ":" + provider) }

// Kind returns the account kind.
func (a AccountID) Kind() string {
	k, _, _ := strings.Cut(string(a), ":")
	return k
}

// Owner returns the part after the colon (a user id for wallets, earnings
// and holds).
func (a AccountID) Owner() string {
	_, o, _ := strings.Cut(string(a), ":")
	return o
}

// AllowsNegative reports whether the account may go below zero: only external
// clearing accounts, which mirror money held outside the ledger.
func (a AccountID) AllowsNegative() bool { return a.Kind() == KindClearing }

// valid reports whether the id has a known kind and a non-empty owner.
func (a AccountID) valid() bool {
	k, o, ok := strings.Cut(string(a), ":")
	if !ok || o == "" || len(a) > 200 {
		return false
	}
	switch k {
	case KindWallet, KindEarnings, KindPlatform, KindClearing, KindHold:
		return true
	}
	return false
}
