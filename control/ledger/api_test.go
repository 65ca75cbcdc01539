package ledger

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/liveengine/liveengine/control/ledger/payment"
)

// TestGiftStorm: 200 concurrent senders gift one streamer, some requests
// retried with the same key (after the answer and concurrently): balances
// are exact, nobody is charged twice, the invariants hold.
func TestGiftStorm(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			s.addGift("rose", 10)
			s.streams.set("live1", "star", true)
			const senders, gifts = 200, 5
			const coins = 500
			var wg sync.WaitGroup
			// Top-ups go straight to the ledger here (TestWebhooks covers
			// them over HTTP); the gifts below all go through the API.
			for i := 0; i < senders; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					topup(t, s.l, fmt.Sprint("viewer", i), coins)
				}()
			}
			wg.Wait()
			var retried, conflicts atomic.Int64
			for i := 0; i < senders; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					user := fmt.Sprint("viewer", i)
					for g := 0; g < gifts; g++ {
						key := fmt.Sprintf("%s-gift-%d", user, g)
						body := map[string]any{"gift_id": "rose"}
						send := func() (int, []byte) {
							for {
								st, b := s.do("POST", "/api/v1/streams/live1/gifts", user, key, body)
								if st == 409 { // concurrent duplicate in flight: retry
									conflicts.Add(1)
									time.Sleep(5 * time.Millisecond)
									continue
								}
								return st, b
							}
						}
						if g%3 == 0 { // a concurrent duplicate
							var w2 sync.WaitGroup
							w2.Add(1)
							go func() { defer w2.Done(); send() }()
							defer w2.Wait()
						}
						st, first := send()
						if st != 201 {
							t.Errorf("%s: %d %s", key, st, first)
							return
						}
						if g%4 == 0 { // a retry after the answer gets the same answer
							retried.Add(1)
							st, again := send()
							if st != 201 || !bytes.Equal(first, again) {
								t.Errorf("%s retry: %d %s != %s", key, st, again, first)
							}
						}
					}
				}()
			}
			wg.Wait()
			if t.Failed() {
				return
			}
			total := int64(senders * gifts * 10)
			if got := s.balance(Earnings("star")); got != total*7/10 {
				t.Fatalf("streamer earnings %d, want %d", got, total*7/10)
			}
			if got := s.balance(Platform); got != total*3/10 {
				t.Fatalf("platform %d, want %d", got, total*3/10)
			}
			for i := 0; i < senders; i++ {
				if got := s.balance(Wallet(fmt.Sprint("viewer", i))); got != coins-gifts*10 {
					t.Fatalf("viewer%d wallet %d, want %d", i, got, coins-gifts*10)
				}
			}
			eventually(t, "room events", func() bool { return s.rooms.count() == senders*gifts })
			var top struct{ Standings []Standing }
			s.must(200, "GET", "/api/v1/leaderboards/streamers?period=day", "", "", nil, &top)
			if len(top.Standings) != 1 || top.Standings[0].ID != "star" || top.Standings[0].Coins != total*7/10 {
				t.Fatalf("streamers board %+v", top)
			}
			r := mustInvariants(t, db)
			t.Logf("%s: %d transfers, %d retries, %d in-flight 409s, stats %+v", d, r.Transfers, retried.Load(), conflicts.Load(), s.l.Stats())
		})
	}
}

func TestInsufficientCoins(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			s.addGift("car", 1000)
			s.addGift("rose", 10)
			s.streams.set("s1", "star", true)
			s.topup("bob", 500)
			st, b := s.do("POST", "/api/v1/streams/s1/gifts", "bob", "k1", map[string]any{"gift_id": "car"})
			if st != 402 || !strings.Contains(string(b), "insufficient_funds") {
				t.Fatalf("%d %s", st, b)
			}
			if s.balance(Wallet("bob")) != 500 || s.balance(Earnings("star")) != 0 || s.balance(Platform) != 0 {
				t.Fatal("an overdraft moved coins")
			}
			// The failure is not stored: after a top-up, the same key works.
			s.topup("bob", 1000)
			s.must(201, "POST", "/api/v1/streams/s1/gifts", "bob", "k1", map[string]any{"gift_id": "car"}, nil)
			if s.balance(Wallet("bob")) != 500 {
				t.Fatal("wrong balance after gift")
			}
			// Validation errors.
			for _, c := range []struct {
				path, key string
				body      any
				want      int
			}{
				{"/api/v1/streams/s1/gifts", "", map[string]any{"gift_id": "rose"}, 400},
				{"/api/v1/streams/s1/gifts", "v1", map[string]any{"gift_id": "nope"}, 404},
				{"/api/v1/streams/nope/gifts", "v2", map[string]any{"gift_id": "rose"}, 404},
				{"/api/v1/streams/s1/gifts", "v3", map[string]any{"gift_id": "rose", "quantity": -1}, 400},
				{"/api/v1/streams/s1/gifts", "v4", "{not json", 400},
			} {
				if st, b := s.do("POST", c.path, "bob", c.key, c.body); st != c.want {
					t.Errorf("%s %v: %d %s, want %d", c.path, c.body, st, b, c.want)
				}
			}
			s.streams.set("off", "star", false)
			if st, _ := s.do("POST", "/api/v1/streams/off/gifts", "bob", "v5", map[string]any{"gift_id": "rose"}); st != 409 {
				t.Errorf("offline stream: %d", st)
			}
			if st, _ := s.do("POST", "/api/v1/streams/s1/gifts", "star", "v6", map[string]any{"gift_id": "rose"}); st != 400 {
				t.Errorf("self gift: %d", st)
			}
			if st, _ := s.do("POST", "/api/v1/streams/s1/gifts", "", "v7", map[string]any{"gift_id": "rose"}); st != 401 {
				t.Errorf("anonymous: %d", st)
			}
			mustInvariants(t, db)
		})
	}
}

// TestIdempotency: same key + same body = stored answer; different body =
// 422; concurrent duplicate in flight = 409; a stored answer survives the
// stream going offline.
func TestIdempotency(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			s.addGift("rose", 10)
			s.streams.set("s1", "star", true)
			s.topup("amy", 1000)
			first := s.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 2}, nil)
			again := s.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 2}, nil)
			if !bytes.Equal(first, again) {
				t.Fatalf("replay differs:\n%s\n%s", first, again)
			}
			st, b := s.do("POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 3})
			if st != 422 || !strings.Contains(string(b), "idempotency_key_reused") {
				t.Fatalf("different body: %d %s", st, b)
			}
			// Keys are per user: another user's K is another request.
			s.topup("ben", 1000)
			s.must(201, "POST", "/api/v1/streams/s1/gifts", "ben", "K", map[string]any{"gift_id": "rose", "quantity": 2}, nil)
			// The stored answer wins over a now-failing validation.
			s.streams.set("s1", "star", false)
			again = s.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 2}, nil)
			if !bytes.Equal(first, again) {
				t.Fatal("replay after stream end differs")
			}
			// In flight: the stream lookup of the first request blocks.
			s.streams.set("slow", "star", true)
			release := make(chan struct{})
			s.streams.mu.Lock()
			s.streams.block["slow"] = release
			s.streams.mu.Unlock()
			done := make(chan int)
			go func() {
				st, _ := s.do("POST", "/api/v1/streams/slow/gifts", "amy", "F", map[string]any{"gift_id": "rose"})
				done <- st
			}()
			eventually(t, "first request in flight", func() bool {
				s.api.inflightMu.Lock()
				defer s.api.inflightMu.Unlock()
				_, ok := s.api.inflight["u:amy:F"]
				return ok
			})
			st, b = s.do("POST", "/api/v1/streams/slow/gifts", "amy", "F", map[string]any{"gift_id": "rose"})
			if st != 409 || !strings.Contains(string(b), "idempotency_in_flight") {
				t.Fatalf("in flight duplicate: %d %s", st, b)
			}
			close(release)
			if st := <-done; st != 201 {
				t.Fatalf("first request: %d", st)
			}
			if got := s.balance(Wallet("amy")); got != 1000-20-10 {
				t.Fatalf("amy %d", got)
			}
			// Top-up orders are idempotent too.
			b1 := s.must(201, "POST", "/api/v1/wallet/topups", "amy", "T", map[string]any{"coins": 300}, nil)
			b2 := s.must(201, "POST", "/api/v1/wallet/topups", "amy", "T", map[string]any{"coins": 300}, nil)
			if !bytes.Equal(b1, b2) {
				t.Fatal("top-up replay differs")
			}
			if st, _ := s.do("POST", "/api/v1/wallet/topups", "amy", "T", map[string]any{"coins": 400}); st != 422 {
				t.Fatalf("top-up different body: %d", st)
			}
			mustInvariants(t, db)
		})
	}
}

// TestWebhooks: only a verified webhook credits, exactly once.
func TestWebhooks(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			var o OrderView
			s.must(201, "POST", "/api/v1/wallet/topups", "cat", "o1", map[string]any{"coins": 1000, "provider": "paypal"}, &o)
			if o.Status != "pending" || o.Amount != "10.00" || o.Checkout.URL == "" {
				t.Fatalf("order %+v", o)
			}
			pp := payment.NewPayPal(s.api.conf.PayPal.HMACConfig)
			post := func(body []byte, h map[string]string) (int, string) {
				var hs []string
				for k, v := range h {
					hs = append(hs, k, v)
				}
				st, b := s.do("POST", "/api/v1/payments/webhooks/paypal", "", "", body, hs...)
				return st, string(b)
			}
			now := time.Now()
			body := payment.NewEventBody("WH-1", o.OrderID, 1000, "USD", 2)
			// Forged: signed with another secret, or tampered after signing.
			forger := payment.NewPayPal(payment.HMACConfig{Secret: "not-the-secret-at-all", ReplayWindow: time.Hour, Decimals: 2})
			if st, b := post(body, forger.SignHeaders(body, now)); st != 401 {
				t.Fatalf("forged: %d %s", st, b)
			}
			tampered := payment.NewEventBody("WH-1", o.OrderID, 1000, "USD", 2)
			h := pp.SignHeaders(payment.NewEventBody("WH-1", o.OrderID, 10, "USD", 2), now)
			if st, b := post(tampered, h); st != 401 {
				t.Fatalf("tampered: %d %s", st, b)
			}
			if st, b := post(body, pp.SignHeaders(body, now.Add(-time.Hour))); st != 401 {
				t.Fatalf("stale: %d %s", st, b)
			}
			if st, b := post(body, nil); st != 401 {
				t.Fatalf("unsigned: %d %s", st, b)
			}
			// Signed but wrong amount.
			cheap := payment.NewEventBody("WH-0", o.OrderID, 1, "USD", 2)
			if st, b := post(cheap, pp.SignHeaders(cheap, now)); st != 422 {
				t.Fatalf("amount mismatch: %d %s", st, b)
			}
			if s.balance(Wallet("cat")) != 0 {
				t.Fatal("credited without a valid webhook")
			}
			// Valid, then replayed (same event, and a new event id for the
			// same order, concurrently).
			st, b := post(body, pp.SignHeaders(body, now))
			if st != 200 || !strings.Contains(b, `"credited":true`) {
				t.Fatalf("valid: %d %s", st, b)
			}
			var wg sync.WaitGroup
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					bb := body
					if i%2 == 1 {
						bb = payment.NewEventBody(fmt.Sprint("WH-replay-", i), o.OrderID, 1000, "USD", 2)
					}
					if st, b := post(bb, pp.SignHeaders(bb, time.Now())); st != 200 || !strings.Contains(b, `"credited":false`) {
						t.Errorf("replay: %d %s", st, b)
					}
				}()
			}
			wg.Wait()
			if got := s.balance(Wallet("cat")); got != 1000 {
				t.Fatalf("wallet %d after replays, want 1000", got)
			}
			s.must(200, "GET", "/api/v1/wallet/topups/"+o.OrderID, "cat", "", nil, &o)
			if o.Status != "completed" {
				t.Fatalf("order %+v", o)
			}
			// Unknown order, unknown provider, other event types.
			unk := payment.NewEventBody("WH-9", "ord_nope", 1000, "USD", 2)
			if st, _ := post(unk, pp.SignHeaders(unk, now)); st != 422 {
				t.Fatalf("unknown order: %d", st)
			}
			if st, _ := s.do("POST", "/api/v1/payments/webhooks/stripe", "", "", body); st != 404 {
				t.Fatalf("unknown provider: %d", st)
			}
			other := []byte(`{"id":"WH-5","event_type":"CHECKOUT.ORDER.APPROVED"}`)
			if st, b := post(other, pp.SignHeaders(other, now)); st != 200 || !strings.Contains(b, "ignored") {
				t.Fatalf("other type: %d %s", st, b)
			}
			var w WalletView
			s.must(200, "GET", "/api/v1/wallet", "cat", "", nil, &w)
			if w.Coins != 1000 || w.Value != "10.00" {
				t.Fatalf("wallet %+v", w)
			}
			mustInvariants(t, db)
		})
	}
}

// TestWithdrawals: two-phase withdrawals, reports and admin checks.
func TestWithdrawals(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			s.addGift("crown", 5000)
			s.streams.set("s1", "star", true)
			s.topup("fan", 20000)
			for i := 0; i < 3; i++ {
				s.must(201, "POST", "/api/v1/streams/s1/gifts", "fan", fmt.Sprint("g", i), map[string]any{"gift_id": "crown"}, nil)
			}
			// 15000 gifted, 30% commission: star earned 10500.
			var e EarningsView
			s.must(200, "GET", "/api/v1/earnings", "star", "", nil, &e)
			if e.Available != 10500 || e.Value != "105.00" || len(e.ByDay) != 1 || e.ByDay[0].Coins != 10500 || e.ByDay[0].Gifts != 3 || e.ByDay[0].StreamID != "s1" {
				t.Fatalf("earnings %+v", e)
			}
			st, b := s.do("POST", "/api/v1/withdrawals", "star", "w0", map[string]any{"coins": 20000})
			if st != 402 || !strings.Contains(string(b), "insufficient_funds") {
				t.Fatalf("withdrawal above balance: %d %s", st, b)
			}
			if st, _ := s.do("POST", "/api/v1/withdrawals", "star", "w00", map[string]any{"coins": 1}); st != 400 {
				t.Fatalf("below minimum: %d", st)
			}
			var w1, w2 WithdrawalView
			s.must(201, "POST", "/api/v1/withdrawals", "star", "w1", map[string]any{"coins": 6000}, &w1)
			s.must(201, "POST", "/api/v1/withdrawals", "star", "w2", map[string]any{"coins": 4000}, &w2)
			if w1.Status != "pending" || s.balance(Hold("star")) != 10000 || s.balance(Earnings("star")) != 500 {
				t.Fatalf("holds: %+v hold=%d", w1, s.balance(Hold("star")))
			}
			// Both holds taken: a third one is refused.
			if st, _ := s.do("POST", "/api/v1/withdrawals", "star", "w3", map[string]any{"coins": 1000}); st != 402 {
				t.Fatalf("third withdrawal: %d", st)
			}
			if st, _ := s.do("POST", "/api/v1/admin/withdrawals/"+w1.ID+"/approve", "star", "a1", nil); st != 403 {
				t.Fatalf("non-admin approve: %d", st)
			}
			var list struct{ Withdrawals []WithdrawalView }
			s.must(200, "GET", "/api/v1/admin/withdrawals?status=pending", "root:admin", "", nil, &list)
			if len(list.Withdrawals) != 2 {
				t.Fatalf("pending %+v", list)
			}
			var d1, d2 WithdrawalView
			s.must(200, "POST", "/api/v1/admin/withdrawals/"+w1.ID+"/approve", "root:admin", "a1", nil, &d1)
			s.must(200, "POST", "/api/v1/admin/withdrawals/"+w1.ID+"/approve", "root:admin", "a1b", nil, nil) // replay
			s.must(200, "POST", "/api/v1/admin/withdrawals/"+w2.ID+"/reject", "root:admin", "r2", nil, &d2)
			if d1.Status != "posted" || d2.Status != "voided" {
				t.Fatalf("decisions %+v %+v", d1, d2)
			}
			if st, _ := s.do("POST", "/api/v1/admin/withdrawals/"+w1.ID+"/reject", "root:admin", "r1", nil); st != 409 {
				t.Fatalf("reject after approve: %d", st)
			}
			if st, _ := s.do("POST", "/api/v1/admin/withdrawals/wd_nope/approve", "root:admin", "x", nil); st != 404 {
				t.Fatalf("unknown withdrawal: %d", st)
			}
			if s.balance(Hold("star")) != 0 || s.balance(Earnings("star")) != 4500 || s.balance(Payout) != 6000 {
				t.Fatalf("after settle: hold=%d earnings=%d payout=%d", s.balance(Hold("star")), s.balance(Earnings("star")), s.balance(Payout))
			}
			s.must(200, "GET", "/api/v1/withdrawals", "star", "", nil, &list)
			if len(list.Withdrawals) != 2 {
				t.Fatalf("own list %+v", list)
			}
			var rep struct {
				ByDay []CommissionDay `json:"by_day"`
				Total int64           `json:"period_total_coins"`
			}
			s.must(200, "GET", "/api/v1/admin/reports/commission", "root:admin", "", nil, &rep)
			if rep.Total != 4500 || len(rep.ByDay) != 1 || rep.ByDay[0].Gifts != 3 {
				t.Fatalf("commission report %+v", rep)
			}
			// Per-streamer commission override.
			s.must(200, "PUT", "/api/v1/admin/streamers/star/commission", "root:admin", "", map[string]any{"percent": 10}, nil)
			s.must(201, "POST", "/api/v1/streams/s1/gifts", "fan", "g9", map[string]any{"gift_id": "crown"}, nil)
			if s.balance(Earnings("star")) != 4500+4500 {
				t.Fatalf("override not applied: %d", s.balance(Earnings("star")))
			}
			if st, _ := s.do("PUT", "/api/v1/admin/streamers/star/commission", "root:admin", "", map[string]any{"percent": 101}); st != 400 {
				t.Fatalf("bad percent: %d", st)
			}
			var inv Report
			s.must(200, "GET", "/api/v1/admin/invariants", "root:admin", "", nil, &inv)
			if !inv.OK {
				t.Fatalf("invariants %+v", inv)
			}
			var tx struct{ Transactions []TransactionView }
			s.must(200, "GET", "/api/v1/wallet/transactions", "star", "", nil, &tx)
			if len(tx.Transactions) == 0 {
				t.Fatal("no transactions")
			}
			// The sender's list has both sides: the top-up credit and the
			// gifts' debits, newest first, cut at the limit.
			var all, three struct{ Transactions []TransactionView }
			s.must(200, "GET", "/api/v1/wallet/transactions?limit=500", "fan", "", nil, &all)
			s.must(200, "GET", "/api/v1/wallet/transactions?limit=3", "fan", "", nil, &three)
			var credits, debits int
			for i, v := range all.Transactions {
				if v.Amount > 0 {
					credits++
				} else {
					debits++
				}
				if i > 0 && v.At.After(all.Transactions[i-1].At) {
					t.Fatalf("not newest first: %+v", all.Transactions)
				}
			}
			if credits == 0 || debits < 2 || len(three.Transactions) != 3 || !three.Transactions[0].At.Equal(all.Transactions[0].At) {
				t.Fatalf("fan transactions: %d credits, %d debits, limit 3 gave %d", credits, debits, len(three.Transactions))
			}
			mustInvariants(t, db)
		})
	}
}

func TestCatalog(t *testing.T) {
	db := openDB(t, "sqlite")
	s := startServer(t, db, DefaultConfig(), nil)
	if st, _ := s.do("POST", "/api/v1/gifts", "joe", "", map[string]any{"name": "x", "price": 1}); st != 403 {
		t.Fatalf("non-admin: %d", st)
	}
	for _, bad := range []map[string]any{{"name": "", "price": 1}, {"name": "x", "price": 0}, {"name": "x", "price": 1, "tier": 11}, {"name": "x", "price": 1, "color": "red"}} {
		if st, _ := s.do("POST", "/api/v1/gifts", "root:admin", "", bad); st != 400 {
			t.Fatalf("%v: %d", bad, st)
		}
	}
	s.addGift("rose", 10)
	if st, _ := s.do("POST", "/api/v1/gifts", "root:admin", "", map[string]any{"id": "rose", "name": "r", "price": 1}); st != 409 {
		t.Fatalf("duplicate: %d", st)
	}
	var g Gift
	s.must(200, "PUT", "/api/v1/gifts/rose", "root:admin", "", map[string]any{"price": 20, "active": false}, &g)
	if g.Price != 20 || g.Active || g.Name != "rose" {
		t.Fatalf("%+v", g)
	}
	var list struct{ Gifts []Gift }
	s.must(200, "GET", "/api/v1/gifts", "", "", nil, &list)
	if len(list.Gifts) != 0 {
		t.Fatalf("inactive listed: %+v", list)
	}
	s.streams.set("s", "star", true)
	s.topup("u", 100)
	if st, _ := s.do("POST", "/api/v1/streams/s/gifts", "u", "k", map[string]any{"gift_id": "rose"}); st != 404 {
		t.Fatalf("inactive gift sent: %d", st)
	}
	if st, _ := s.do("PUT", "/api/v1/gifts/nope", "root:admin", "", map[string]any{"price": 2}); st != 404 {
		t.Fatalf("update unknown: %d", st)
	}
	if st, _ := s.do("DELETE", "/api/v1/gifts", "root:admin", "", nil); st != 405 {
		t.Fatalf("method: %d", st)
	}
	mustInvariants(t, db)
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Synchronous = "off"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "ledger.synchronous") {
		t.Fatal(err)
	}
	a := DefaultAPIConfig()
	a.CommissionPercent = 150
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "wallet.commission_percent") {
		t.Fatal(err)
	}
	a = DefaultAPIConfig()
	a.MaxTopupCoins = MaxAmount + 1
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "wallet.max_topup_coins") {
		t.Fatal(err)
	}
	a = DefaultAPIConfig()
	a.PayPal.Enabled = true
	if err := a.Validate(); err == nil || !strings.Contains(err.Error(), "wallet.paypal.secret") {
		t.Fatal(err)
	}
	_ = context.Background
}

// TestReplayAfterRestart: a key replayed after the ledger and the API were
// restarted on the same database gets the stored answer byte for byte and
// moves nothing (the writer's in-memory state, balances included, starts
// empty and is rebuilt from the database).
func TestReplayAfterRestart(t *testing.T) {
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			s := startServer(t, db, DefaultConfig(), nil)
			s.addGift("rose", 10)
			s.streams.set("s1", "star", true)
			s.topup("amy", 100)
			first := s.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 3}, nil)
			// A PayPal top-up completed before the restart, its webhook
			// delivered again after it.
			var o OrderView
			s.must(201, "POST", "/api/v1/wallet/topups", "cat", "o1", map[string]any{"coins": 500, "provider": "paypal"}, &o)
			pp := payment.NewPayPal(s.api.conf.PayPal.HMACConfig)
			hook := payment.NewEventBody("WH-1", o.OrderID, 500, "USD", 2)
			deliver := func(s *server) (int, string) {
				var hs []string
				for k, v := range pp.SignHeaders(hook, time.Now()) {
					hs = append(hs, k, v)
				}
				st, b := s.do("POST", "/api/v1/payments/webhooks/paypal", "", "", hook, hs...)
				return st, string(b)
			}
			if st, b := deliver(s); st != 200 || !strings.Contains(b, `"credited":true`) {
				t.Fatalf("webhook: %d %s", st, b)
			}
			s.api.Close()
			s.l.Close()

			s2 := startServer(t, db, DefaultConfig(), nil)
			s2.streams.set("s1", "star", true)
			again := s2.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "K", map[string]any{"gift_id": "rose", "quantity": 3}, nil)
			if !bytes.Equal(first, again) {
				t.Fatalf("replay after restart differs:\n%s\n%s", first, again)
			}
			if st, b := deliver(s2); st != 200 || !strings.Contains(b, `"credited":false`) || s2.balance(Wallet("cat")) != 500 {
				t.Fatalf("webhook after restart: %d %s, wallet %d", st, b, s2.balance(Wallet("cat")))
			}
			// A sandbox order's completion signed as PayPal's: not PayPal's order.
			var so OrderView
			s2.must(201, "POST", "/api/v1/wallet/topups", "cat", "o2", map[string]any{"coins": 500, "provider": "sandbox"}, &so)
			hook = payment.NewEventBody("WH-2", so.OrderID, 500, "USD", 2)
			if st, b := deliver(s2); st != 422 || !strings.Contains(b, "unknown_order") || s2.balance(Wallet("cat")) != 500 {
				t.Fatalf("sandbox order via paypal: %d %s", st, b)
			}
			// The reverse matters more: the sandbox's secret is no secret,
			// and must not complete a PayPal order.
			var po OrderView
			s2.must(201, "POST", "/api/v1/wallet/topups", "cat", "o3", map[string]any{"coins": 500, "provider": "paypal"}, &po)
			sb := payment.NewSandbox(DefaultAPIConfig().Sandbox.HMACConfig)
			forged := payment.NewEventBody("WH-3", po.OrderID, 500, "USD", 2)
			var hs []string
			for k, v := range sb.SignHeaders(forged, time.Now()) {
				hs = append(hs, k, v)
			}
			if st, b := s2.do("POST", "/api/v1/payments/webhooks/sandbox", "", "", forged, hs...); st != 422 || s2.balance(Wallet("cat")) != 500 {
				t.Fatalf("paypal order via sandbox: %d %s", st, b)
			}
			if st, b := s2.do("POST", "/api/v1/payments/sandbox/orders/"+po.OrderID+"/complete", "cat", "", nil); st != 404 || s2.balance(Wallet("cat")) != 500 {
				t.Fatalf("paypal order completed by the sandbox: %d %s", st, b)
			}
			// A new gift debits the balance the database holds.
			s2.must(201, "POST", "/api/v1/streams/s1/gifts", "amy", "L", map[string]any{"gift_id": "rose", "quantity": 7}, nil)
			if st, b := s2.do("POST", "/api/v1/streams/s1/gifts", "amy", "M", map[string]any{"gift_id": "rose"}); st != 402 {
				t.Fatalf("gift from an empty wallet: %d %s", st, b)
			}
			if got := s2.balance(Wallet("amy")); got != 0 {
				t.Fatalf("amy %d, want 0", got)
			}
			mustInvariants(t, db)
		})
	}
}

// TestPoolWritesAreDurable: a top-up order, a gift and a commission
// override commit through the pool (synchronous=NORMAL on SQLite, the WAL
// not fsynced at COMMIT); each is answered only after the WAL was fsynced.
// A power cut is not simulated: the test sees the fsync happen between
// the write and the answer.
func TestPoolWritesAreDurable(t *testing.T) {
	db := openDB(t, "sqlite")
	s := startServer(t, db, DefaultConfig(), nil)
	var mu sync.Mutex
	synced := 0
	defer func(f func(string) error) { syncFile = f }(syncFile)
	syncFile = func(path string) error {
		if strings.HasSuffix(path, "-wal") {
			mu.Lock()
			synced++
			mu.Unlock()
		}
		return fsyncPath(path)
	}
	count := func() int { mu.Lock(); defer mu.Unlock(); return synced }
	for _, c := range []struct {
		name                    string
		method, path, user, key string
		body                    any
		status                  int
	}{
		{"top-up order", "POST", "/api/v1/wallet/topups", "amy", "order-1", map[string]any{"coins": 100, "provider": "sandbox"}, 201},
		{"gift", "POST", "/api/v1/gifts", "root:admin", "", map[string]any{"id": "rose", "name": "Rose", "price": 10, "tier": 1}, 201},
		{"gift update", "PUT", "/api/v1/gifts/rose", "root:admin", "", map[string]any{"price": 12}, 200},
		{"commission", "PUT", "/api/v1/admin/streamers/star/commission", "root:admin", "", map[string]any{"percent": 20}, 200},
		{"top-up order replayed", "POST", "/api/v1/wallet/topups", "amy", "order-1", map[string]any{"coins": 100, "provider": "sandbox"}, 201},
	} {
		before := count()
		s.must(c.status, c.method, c.path, c.user, c.key, c.body, nil)
		if count() == before {
			t.Errorf("%s: answered without an fsync of the WAL", c.name)
		}
	}
	// A gift replayed from its stored row after its stream went offline.
	replayGift(t, s, count)

	// PostgreSQL: the writer commits with synchronous_commit=off, so the
	// replay waits for the syncer's durable commit (ledger_sync's counter).
	pg := openDB(t, "postgres")
	ps := startServer(t, pg, DefaultConfig(), nil)
	ps.addGift("rose", 10)
	replayGift(t, ps, func() int {
		var n int
		if err := pg.QueryRowContext(context.Background(), "SELECT COALESCE(SUM(n), 0) FROM ledger_sync").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}

// replayGift sends a gift, takes its stream offline and sends it again:
// the replay is answered from the stored row, after mark moved (a flush).
func replayGift(t *testing.T, s *server, mark func() int) {
	t.Helper()
	s.streams.set("live", "star", true)
	s.topup("bob", 100)
	s.must(201, "POST", "/api/v1/streams/live/gifts", "bob", "gift-1", map[string]any{"gift_id": "rose"}, nil)
	s.streams.set("live", "star", false)
	before := mark()
	s.must(201, "POST", "/api/v1/streams/live/gifts", "bob", "gift-1", map[string]any{"gift_id": "rose"}, nil)
	if mark() == before {
		t.Errorf("%s: gift replayed from its stored row without a flush", s.l.db.Dialect)
	}
}
