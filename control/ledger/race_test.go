package ledger

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/ledger/payment"
)

// raceModes are the ways a money request can meet a concurrent duplicate:
// one node with group commit, one node in naive mode (each transfer its own
// transaction, run side by side), and two control nodes with group commit
// on one database (the nodes' writers race each other).
var raceModes = []string{"sqlite", "postgres", "sqlite-naive", "postgres-naive", "sqlite-2nodes", "postgres-2nodes"}

// startNodes starts the API for mode: two servers on one database for
// "-2nodes", else one server returned twice. Every node knows stream
// "live" of "star".
func startNodes(t *testing.T, mode string) ([2]*server, func()) {
	t.Helper()
	d, rest, _ := strings.Cut(mode, "-")
	db := openDB(t, d)
	conf := DefaultConfig()
	conf.Naive = rest == "naive"
	var nodes [2]*server
	nodes[0] = startServer(t, db, conf, nil)
	nodes[1] = nodes[0]
	if rest == "2nodes" {
		nodes[1] = startServer(t, db, conf, nil)
	}
	for _, s := range nodes {
		s.streams.set("live", "star", true)
	}
	return nodes, func() { mustInvariants(t, db) }
}

// checkHolds fails unless every withdrawal row has exactly one withdrawal
// transfer, and the user's hold is the sum of the pending ones.
func checkHolds(t *testing.T, s *server, user string) {
	t.Helper()
	ctx := context.Background()
	db := s.db
	var pending, rows, transfers int64
	if err := db.QueryRowContext(ctx, db.Rebind("SELECT COALESCE(SUM(CASE WHEN status = 'pending' THEN coins ELSE 0 END), 0), COUNT(*) FROM ledger_withdrawals WHERE user_id = ?"), user).Scan(&pending, &rows); err != nil {
		t.Fatal(err)
	}
	if err := db.QueryRowContext(ctx, db.Rebind("SELECT COUNT(*) FROM ledger_transfers WHERE kind = ? AND actor = ?"), TransferWithdrawal, user).Scan(&transfers); err != nil {
		t.Fatal(err)
	}
	if rows != transfers {
		t.Fatalf("%s: %d withdrawal rows, %d withdrawal transfers", user, rows, transfers)
	}
	if h := s.balance(Hold(user)); h != pending {
		t.Fatalf("%s: hold %d, pending withdrawals %d", user, h, pending)
	}
}

// earn gives star earnings: fan tops up and sends n crowns (5000 coins,
// 3500 to star).
func earn(s *server, fan string, n int) {
	s.t.Helper()
	s.topup(fan, int64(n)*5000)
	for i := 0; i < n; i++ {
		s.must(201, "POST", "/api/v1/streams/live/gifts", fan, fmt.Sprint(fan, "-crown-", i), map[string]any{"gift_id": "crown"}, nil)
	}
}

// TestSettleRaces: an admin's approve sent several times at once (a double
// click, two admins, two nodes) is one settlement, answered 200 with the
// same body every time; approve and reject at once settle once, the loser
// answers 409.
func TestSettleRaces(t *testing.T) {
	for _, mode := range raceModes {
		t.Run(mode, func(t *testing.T) {
			nodes, check := startNodes(t, mode)
			s := nodes[0]
			s.addGift("crown", 5000)
			earn(s, "fan", 4) // star: 14000
			const rounds = 4
			var ws [2 * rounds]WithdrawalView
			for i := range ws {
				s.must(201, "POST", "/api/v1/withdrawals", "star", fmt.Sprint("w", i), map[string]any{"coins": 1000 + i}, &ws[i])
			}
			type answer struct {
				status int
				body   []byte
			}
			race := func(wid string, actions []string) []answer {
				out := make([]answer, len(actions))
				var wg sync.WaitGroup
				for i, act := range actions {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st, b := nodes[i%2].do("POST", "/api/v1/admin/withdrawals/"+wid+"/"+act, "root:admin", fmt.Sprint(wid, "-", i), nil)
						out[i] = answer{st, b}
					}()
				}
				wg.Wait()
				return out
			}
			var posted, voided int64
			for r := 0; r < rounds; r++ {
				// The same approval, six times at once.
				w := ws[2*r]
				got := race(w.ID, []string{"approve", "approve", "approve", "approve", "approve", "approve"})
				for i, a := range got {
					if a.status != 200 || !bytes.Equal(a.body, got[0].body) {
						t.Errorf("approve %d of %s: %d %s (first: %d %s)", i, w.ID, a.status, a.body, got[0].status, got[0].body)
					}
				}
				posted += w.Coins
				// Approve and reject at once: one wins.
				w = ws[2*r+1]
				got = race(w.ID, []string{"approve", "reject", "approve", "reject"})
				var wins []string
				for i, a := range got {
					switch a.status {
					case 200:
						var v WithdrawalView
						if err := json.Unmarshal(a.body, &v); err != nil {
							t.Fatal(err)
						}
						wins = append(wins, v.Status)
						if want := map[int]string{0: "posted", 1: "voided"}[i%2]; v.Status != want {
							t.Errorf("%s answered 200 %s", []string{"approve", "reject"}[i%2], a.body)
						}
					case 409:
					default:
						t.Errorf("settle %d of %s: %d %s", i, w.ID, a.status, a.body)
					}
				}
				if len(wins) == 0 || (len(wins) == 2 && wins[0] != wins[1]) || len(wins) > 2 {
					t.Fatalf("approve+reject of %s: winners %v", w.ID, wins)
				}
				if wins[0] == "posted" {
					posted += w.Coins
				} else {
					voided += w.Coins
				}
			}
			if got := s.balance(Payout); got != posted {
				t.Errorf("payout %d, want %d", got, posted)
			}
			if got := s.balance(Earnings("star")); got != 14000-posted {
				t.Errorf("earnings %d, want %d (voided %d)", got, 14000-posted, voided)
			}
			var list struct{ Withdrawals []WithdrawalView }
			s.must(200, "GET", "/api/v1/admin/withdrawals?status=pending", "root:admin", "", nil, &list)
			if len(list.Withdrawals) != 0 {
				t.Errorf("still pending: %+v", list.Withdrawals)
			}
			checkHolds(t, s, "star")
			check()
		})
	}
}

// TestWebhookStorm: one verified "completed" webhook delivered many times
// at once (provider retries, several nodes behind a load balancer) credits
// exactly once, and every delivery is answered 200: a 5xx makes the
// provider retry for days.
func TestWebhookStorm(t *testing.T) {
	for _, mode := range raceModes {
		t.Run(mode, func(t *testing.T) {
			nodes, check := startNodes(t, mode)
			s := nodes[0]
			pp := payment.NewPayPal(s.api.conf.PayPal.HMACConfig)
			const orders, deliveries = 3, 8
			for o := 0; o < orders; o++ {
				var ov OrderView
				s.must(201, "POST", "/api/v1/wallet/topups", "cat", fmt.Sprint("o", o), map[string]any{"coins": 1000, "provider": "paypal"}, &ov)
				var wg sync.WaitGroup
				var mu sync.Mutex
				credited := 0
				for i := 0; i < deliveries; i++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						body := payment.NewEventBody(fmt.Sprint("WH-", o, "-", i%2), ov.OrderID, 1000, "USD", 2)
						var hs []string
						for k, v := range pp.SignHeaders(body, time.Now()) {
							hs = append(hs, k, v)
						}
						st, b := nodes[i%2].do("POST", "/api/v1/payments/webhooks/paypal", "", "", body, hs...)
						var r WebhookResult
						if st != 200 || json.Unmarshal(b, &r) != nil {
							t.Errorf("delivery %d of %s: %d %s", i, ov.OrderID, st, b)
							return
						}
						mu.Lock()
						if r.Credited {
							credited++
						}
						mu.Unlock()
					}()
				}
				wg.Wait()
				if credited != 1 {
					t.Errorf("%s: %d deliveries said credited", ov.OrderID, credited)
				}
			}
			if got := s.balance(Wallet("cat")); got != orders*1000 {
				t.Fatalf("wallet %d, want %d", got, orders*1000)
			}
			check()
		})
	}
}

// TestWithdrawalRaces: withdrawal requests at once against earnings that
// gifts keep adding to: never more held than earned; the same key sent to
// two nodes at once is one withdrawal (201 with the same body, or 409 while
// in flight on one node); the same key with two bodies is one withdrawal
// and the other request is refused, never both applied.
func TestWithdrawalRaces(t *testing.T) {
	for _, mode := range raceModes {
		t.Run(mode, func(t *testing.T) {
			nodes, check := startNodes(t, mode)
			s := nodes[0]
			s.addGift("crown", 5000)
			s.addGift("rose", 10)
			earn(s, "fan", 1) // star: 3500
			s.topup("fan2", 1000)

			// Six withdrawals of 1000 at once from 3500: three fit; gifts
			// arrive meanwhile (70 coins at most, never enough for a fourth).
			var wg sync.WaitGroup
			status := make([]int, 6)
			for i := range status {
				wg.Add(1)
				go func() {
					defer wg.Done()
					st, b := nodes[i%2].do("POST", "/api/v1/withdrawals", "star", fmt.Sprint("big", i), map[string]any{"coins": 1000})
					if st != 201 && st != 402 {
						t.Errorf("withdrawal %d: %d %s", i, st, b)
					}
					status[i] = st
				}()
			}
			for g := 0; g < 10; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nodes[g%2].must(201, "POST", "/api/v1/streams/live/gifts", "fan2", fmt.Sprint("rose", g), map[string]any{"gift_id": "rose"}, nil)
				}()
			}
			wg.Wait()
			if n := strings.Count(fmt.Sprint(status), "201"); n != 3 {
				t.Fatalf("six withdrawals of 1000 from 3500: %v", status)
			}
			if got := s.balance(Earnings("star")); got != 3500+70-3000 {
				t.Fatalf("earnings %d", got)
			}

			earn(s, "fan3", 3) // star: 570 + 10500
			// The same key and body on both nodes at once, several times.
			for r := 0; r < 4; r++ {
				key := fmt.Sprint("same", r)
				answers := make([][]byte, 4)
				for i := range answers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						st, b := nodes[i%2].do("POST", "/api/v1/withdrawals", "star", key, map[string]any{"coins": 1000})
						switch st {
						case 201:
							answers[i] = b
						case 409:
							if !strings.Contains(string(b), "idempotency_in_flight") {
								t.Errorf("%s: 409 %s", key, b)
							}
						default:
							t.Errorf("%s: %d %s", key, st, b)
						}
					}()
				}
				wg.Wait()
				var first []byte
				for _, b := range answers {
					if b != nil && first == nil {
						first = b
					}
					if b != nil && !bytes.Equal(b, first) {
						t.Errorf("%s: two answers %s and %s", key, first, b)
					}
				}
			}
			if got := s.balance(Hold("star")); got != 3000+4*1000 {
				t.Fatalf("hold %d, want %d", got, 3000+4*1000)
			}

			// The same key with two bodies at once: one applies.
			for r := 0; r < 4; r++ {
				twoBodiesAtOnce(t, nodes, "/api/v1/withdrawals", "star", fmt.Sprint("twobodies", r), func(i int) any { return map[string]any{"coins": 1000 + i} })
			}
			checkHolds(t, s, "star")
			check()
		})
	}
}

// TestGiftAmounts: a gift's price times its quantity never wraps around
// int64 (with max_gift_quantity set very high, a quantity chosen so that
// price × quantity overflows to a few hundred coins bought 2×10^16 gifts
// of 10^9 coins for 512); commission overrides of 0% and 100% move the
// whole gift to one side; odd quantities are refused.
func TestGiftAmounts(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServerWith(t, db, DefaultConfig(), nil, bearerAuth{}, func(c *APIConfig) { c.MaxGiftQuantity = math.MaxInt64 })
			s.streams.set("live", "star", true)
			s.streams.set("live2", "nova", true)
			s.streams.set("live3", "zed", true)
			s.addGift("diamond", 1_000_000_000)
			s.addGift("rose", 10)
			s.topup("amy", 100_000)
			// 20211507185753197 × 10^9 = 512 (mod 2^64).
			for _, q := range []int64{20211507185753197, math.MaxInt64, 9_300_000_000, 1_000_001} {
				st, b := s.do("POST", "/api/v1/streams/live/gifts", "amy", fmt.Sprint("huge", q), fmt.Sprintf(`{"gift_id":"diamond","quantity":%d}`, q))
				if st != 400 && st != 402 {
					t.Errorf("quantity %d of a 10^9 gift: %d %s", q, st, b)
				}
			}
			if got := s.balance(Wallet("amy")); got != 100_000 {
				t.Fatalf("amy %d after refused gifts", got)
			}
			// Odd quantities: 0 means one, the others are refused.
			for body, want := range map[string]int{
				`{"gift_id":"rose","quantity":-1}`:                    400,
				`{"gift_id":"rose","quantity":1.5}`:                   400,
				`{"gift_id":"rose","quantity":"2"}`:                   400,
				`{"gift_id":"rose","quantity":99999999999999999999}`:  400,
				`{"gift_id":"rose","quantity":-99999999999999999999}`: 400,
				`{"gift_id":"rose","quantity":0}`:                     201,
			} {
				if st, b := s.do("POST", "/api/v1/streams/live/gifts", "amy", "odd"+body, body); st != want {
					t.Errorf("%s: %d %s, want %d", body, st, b, want)
				}
			}
			// Overrides at both ends: nova keeps everything, zed nothing.
			s.must(200, "PUT", "/api/v1/admin/streamers/nova/commission", "root:admin", "", map[string]any{"percent": 0}, nil)
			s.must(200, "PUT", "/api/v1/admin/streamers/zed/commission", "root:admin", "", map[string]any{"percent": 100}, nil)
			for i := 0; i < 3; i++ {
				s.must(201, "POST", "/api/v1/streams/live2/gifts", "amy", fmt.Sprint("n", i), map[string]any{"gift_id": "rose", "quantity": 7}, nil)
				s.must(201, "POST", "/api/v1/streams/live3/gifts", "amy", fmt.Sprint("z", i), map[string]any{"gift_id": "rose", "quantity": 7}, nil)
			}
			if n, z, p := s.balance(Earnings("nova")), s.balance(Earnings("zed")), s.balance(Platform); n != 210 || z != 0 || p != 3+210 {
				t.Fatalf("nova %d, zed %d, platform %d", n, z, p)
			}
			var e EarningsView
			s.must(200, "GET", "/api/v1/earnings", "zed", "", nil, &e)
			if e.Available != 0 || len(e.ByDay) != 0 {
				t.Fatalf("zed earnings %+v", e)
			}
			s.must(200, "GET", "/api/v1/earnings", "nova", "", nil, &e)
			if e.Available != 210 || len(e.ByDay) != 1 || e.ByDay[0].Gifts != 3 {
				t.Fatalf("nova earnings %+v", e)
			}
			var rep struct {
				Total int64 `json:"period_total_coins"`
			}
			s.must(200, "GET", "/api/v1/admin/reports/commission", "root:admin", "", nil, &rep)
			if rep.Total != 213 {
				t.Fatalf("commission report %+v", rep)
			}
			mustInvariants(t, db)
		})
	}
}

// TestAccountCreationOrder: two transactions that each create the same two
// new accounts, named in opposite orders by their legs, at once (naive
// mode on PostgreSQL here; two nodes' batches with the first gifts of two
// new streamers in opposite orders alike). Creating them in leg order
// deadlocked on the primary key about once in 16 rounds: PostgreSQL
// aborted one (a 500 in naive mode, a 1 s stall and a one-by-one retry of
// the whole batch with group commit).
func TestAccountCreationOrder(t *testing.T) {
	db := openDB(t, "postgres")
	conf := DefaultConfig()
	conf.Naive = true
	l := newLedger(t, db, conf)
	ctx := context.Background()
	for r := 0; r < 120; r++ {
		a, b := Clearing(fmt.Sprint("p", r)), Wallet(fmt.Sprint("u", r))
		var wg sync.WaitGroup
		for i, legs := range [][]Leg{{{From: a, To: b, Amount: 5}}, {{From: b, To: a, Amount: 5}}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// The second may find b empty: refused, fine.
				_, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: fmt.Sprint("k", r, "-", i), Legs: legs})
				if err != nil && !errors.Is(err, ErrInsufficientFunds) {
					t.Errorf("round %d: %v", r, err)
				}
			}()
		}
		wg.Wait()
		if t.Failed() {
			break
		}
	}
	mustInvariants(t, db)
}

// TestIdempotencyKeys: keys at the length limit; one key used by one user
// for a gift and then a withdrawal (refused: the key is the user's, across
// endpoints), and by another user (independent); the same key with two
// bodies at once on every mode, never both applied.
func TestIdempotencyKeys(t *testing.T) {
	for _, mode := range raceModes {
		t.Run(mode, func(t *testing.T) {
			nodes, check := startNodes(t, mode)
			s := nodes[0]
			s.addGift("crown", 5000)
			s.addGift("rose", 10)
			earn(s, "fan", 1) // star: 3500
			s.topup("amy", 1000)
			s.topup("bob", 1000)
			long := strings.Repeat("k", 200)
			first := s.must(201, "POST", "/api/v1/streams/live/gifts", "amy", long, map[string]any{"gift_id": "rose"}, nil)
			if st, b := s.do("POST", "/api/v1/streams/live/gifts", "amy", long+"k", map[string]any{"gift_id": "rose"}); st != 400 || !strings.Contains(string(b), "idempotency_key_required") {
				t.Fatalf("201-byte key: %d %s", st, b)
			}
			s.must(201, "POST", "/api/v1/withdrawals", "star", long, map[string]any{"coins": 1000}, nil)
			// amy's long key again, for a withdrawal: refused, the gift
			// still replays.
			if st, b := s.do("POST", "/api/v1/withdrawals", "amy", long, map[string]any{"coins": 1000}); st != 422 {
				t.Fatalf("gift key reused for a withdrawal: %d %s", st, b)
			}
			if again := s.must(201, "POST", "/api/v1/streams/live/gifts", "amy", long, map[string]any{"gift_id": "rose"}, nil); !bytes.Equal(first, again) {
				t.Fatalf("gift replay differs:\n%s\n%s", first, again)
			}
			// star's withdrawal key, for star's gift: refused too.
			if st, b := s.do("POST", "/api/v1/streams/live/gifts", "star", long, map[string]any{"gift_id": "rose"}); st != 422 {
				t.Fatalf("withdrawal key reused for a gift: %d %s", st, b)
			}
			// bob's key is bob's.
			s.must(201, "POST", "/api/v1/streams/live/gifts", "bob", long, map[string]any{"gift_id": "rose"}, nil)

			// Two bodies, one key, at once: one gift at most.
			for r := 0; r < 6; r++ {
				twoBodiesAtOnce(t, nodes, "/api/v1/streams/live/gifts", "bob", fmt.Sprint("two", r), func(i int) any { return map[string]any{"gift_id": "rose", "quantity": 1 + i} })
			}
			var n int64
			if err := s.db.QueryRowContext(context.Background(), s.db.Rebind("SELECT COUNT(*) FROM ledger_transfers WHERE actor = ? AND kind = ?"), "bob", TransferGift).Scan(&n); err != nil {
				t.Fatal(err)
			}
			spent := 1000 - s.balance(Wallet("bob"))
			if spent < 10*n || spent > 10*(1+2*(n-1)) {
				t.Fatalf("bob: %d gifts, %d coins spent", n, spent)
			}
			checkHolds(t, s, "star")
			check()
		})
	}
}

// TestLargeAmounts: the largest amounts the configuration allows (a top-up
// of max_topup_coins, a withdrawal of it, four currency decimals) price
// and pay out without wrapping around int64 in minor units.
func TestLargeAmounts(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			const big = int64(MaxAmount)
			s := startServerWith(t, db, DefaultConfig(), nil, bearerAuth{}, func(c *APIConfig) {
				c.CurrencyDecimals, c.MaxTopupCoins, c.MaxGiftQuantity = 4, big, 1_000_000
				c.Sandbox.Decimals = 4
			})
			s.streams.set("live", "star", true)
			s.addGift("diamond", 1_000_000_000)
			var o OrderView
			s.must(201, "POST", "/api/v1/wallet/topups", "whale", "t1", map[string]any{"coins": big}, &o)
			if o.Amount != "10000000000000.0000" {
				t.Fatalf("price of %d coins: %+v", big, o)
			}
			s.must(200, "POST", o.Checkout.URL, "whale", "", nil, nil)
			if got := s.balance(Wallet("whale")); got != big {
				t.Fatalf("whale %d after a top-up of %d", got, big)
			}
			s.must(201, "POST", "/api/v1/streams/live/gifts", "whale", "g1", map[string]any{"gift_id": "diamond", "quantity": 1_000_000}, nil)
			var w WithdrawalView
			s.must(201, "POST", "/api/v1/withdrawals", "star", "w1", map[string]any{"coins": big * 7 / 10}, &w)
			if w.Amount != "7000000000000.0000" {
				t.Fatalf("withdrawal %+v", w)
			}
			var minor int64
			if err := db.QueryRowContext(context.Background(), db.Rebind("SELECT amount_minor FROM ledger_withdrawals WHERE id = ?"), w.ID).Scan(&minor); err != nil || minor != big*7/10*100 {
				t.Fatalf("withdrawal amount_minor %d (%v), want %d", minor, err, big*7/10*100)
			}
			checkHolds(t, s, "star")
			mustInvariants(t, db)
		})
	}
}

// TestMinorUnits: coins to currency minor units, rounded down for payouts
// and up for prices, exactly as with unbounded integers.
func TestMinorUnits(t *testing.T) {
	for _, cpu := range []int64{1, 3, 7, 100, 1000} {
		for dec := 0; dec <= 4; dec++ {
			c := DefaultAPIConfig()
			c.CoinsPerUnit, c.CurrencyDecimals = cpu, dec
			m := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(dec)), nil)
			for _, coins := range []int64{0, 1, 2, cpu - 1, cpu, cpu + 1, 12345, 999_999_999_999_999, MaxAmount} {
				x := new(big.Int).Mul(big.NewInt(coins), m)
				q, r := new(big.Int).QuoRem(x, big.NewInt(cpu), new(big.Int))
				up := new(big.Int).Set(q)
				if r.Sign() > 0 {
					up.Add(up, big.NewInt(1))
				}
				if !up.IsInt64() {
					continue // 10^15 coins at 1 coin per unit, 4 decimals: no int64 holds it
				}
				if got := c.currencyMinor(coins); got != q.Int64() {
					t.Errorf("currencyMinor(%d) with %d coins/unit, %d decimals = %d, want %s", coins, cpu, dec, got, q)
				}
				if got := c.priceMinor(coins); got != up.Int64() {
					t.Errorf("priceMinor(%d) with %d coins/unit, %d decimals = %d, want %s", coins, cpu, dec, got, up)
				}
			}
		}
	}
}

// twoBodiesAtOnce posts two different bodies under one Idempotency-Key at
// the same time, one per node: at most one applies (201); the other is a
// key reused with another body (422) or a request still in flight (409).
func twoBodiesAtOnce(t *testing.T, nodes [2]*server, path, user, key string, body func(i int) any) {
	t.Helper()
	var wg sync.WaitGroup
	ok := make([]bool, 2)
	for i := range ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, b := nodes[i].do("POST", path, user, key, body(i))
			switch {
			case st == 201:
				ok[i] = true
			case st == 422 && strings.Contains(string(b), "idempotency_key_reused"):
			case st == 409 && strings.Contains(string(b), "idempotency_in_flight"):
			default:
				t.Errorf("%s body %d: %d %s", key, i, st, b)
			}
		}()
	}
	wg.Wait()
	if ok[0] && ok[1] {
		t.Fatalf("%s: both bodies applied", key)
	}
}
