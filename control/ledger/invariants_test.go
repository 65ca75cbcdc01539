package ledger

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// TestInvariantsCatchTampering: each kind of damage a ledger must never
// show is reported by CheckInvariants, naming the account or transfer.
func TestInvariantsCatchTampering(t *testing.T) {
	ctx := context.Background()
	gift := TransferRequest{IdempotencyKey: "g1", Kind: TransferGift,
		Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}}
	cases := []struct {
		name   string
		tamper []string
		check  func(r Report) bool
	}{
		{"balance", []string{"UPDATE ledger_accounts SET balance = balance + 1 WHERE id = 'earnings:star'"},
			func(r Report) bool { return r.Sum == 1 && slices.Contains(r.Mismatched, "earnings:star") }},
		{"coins moved between balances", []string{
			"UPDATE ledger_accounts SET balance = balance + 5 WHERE id = 'earnings:star'",
			"UPDATE ledger_accounts SET balance = balance - 5 WHERE id = 'wallet:amy'"},
			func(r Report) bool {
				return r.Sum == 0 && slices.Contains(r.Mismatched, "earnings:star") && slices.Contains(r.Mismatched, "wallet:amy")
			}},
		{"negative", []string{
			"UPDATE ledger_accounts SET allow_negative = 1, balance = -1 WHERE id = 'platform:commission'",
			"UPDATE ledger_accounts SET balance = balance + 4 WHERE id = 'earnings:star'"},
			func(r Report) bool { return slices.Contains(r.Negative, "platform:commission") }},
		{"legs not adding up", []string{`UPDATE ledger_transfers SET legs = '[["wallet:amy","earnings:star",8],["wallet:amy","platform:commission",3]]' WHERE idem_key = 'g1'`},
			func(r Report) bool { return len(r.BadTransfers) == 1 }},
		{"malformed legs", []string{`UPDATE ledger_transfers SET legs = '[["wallet:amy"' WHERE idem_key = 'g1'`},
			func(r Report) bool { return len(r.BadTransfers) == 1 && len(r.Mismatched) == 3 }},
		{"first leg not indexed", []string{`UPDATE ledger_transfers SET credit = 'platform:commission' WHERE idem_key = 'g1'`},
			func(r Report) bool { return len(r.BadTransfers) == 1 }},
		{"self leg", []string{`UPDATE ledger_transfers SET legs = '[["wallet:amy","earnings:star",10],["wallet:amy","wallet:amy",0]]' WHERE idem_key = 'g1'`},
			func(r Report) bool { return len(r.BadTransfers) == 1 }},
		{"daily total", []string{`UPDATE ledger_daily_credits SET coins = coins + 1 WHERE account = 'earnings:star'`},
			func(r Report) bool {
				return len(r.MismatchedDaily) == 1 && strings.HasPrefix(r.MismatchedDaily[0], "earnings:star/") && len(r.Mismatched) == 0
			}},
		{"daily total missing", []string{`DELETE FROM ledger_daily_credits WHERE account = 'platform:commission'`},
			func(r Report) bool {
				return len(r.MismatchedDaily) == 1 && strings.HasPrefix(r.MismatchedDaily[0], "platform:commission/")
			}},
	}
	for _, d := range dialects {
		for _, c := range cases {
			t.Run(d+"/"+c.name, func(t *testing.T) {
				db := openDB(t, d)
				l := newLedger(t, db, DefaultConfig())
				topup(t, l, "amy", 100)
				if _, err := l.Transfer(ctx, gift); err != nil {
					t.Fatal(err)
				}
				mustInvariants(t, db)
				for _, q := range c.tamper {
					if _, err := db.ExecContext(ctx, q); err != nil {
						t.Fatal(err)
					}
				}
				r, err := CheckInvariants(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				if r.OK || r.Err() == nil || !c.check(r) {
					t.Fatalf("report %+v", r)
				}
			})
		}
	}
}
