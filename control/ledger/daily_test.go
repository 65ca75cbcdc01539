package ledger

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"
)

// TestDailyCredits: the writer adds every gift to its credited accounts'
// daily totals; a database whose gifts predate the totals gets them filled
// by Migrate, once, even with two nodes migrating at the same time; the
// reports read the totals.
func TestDailyCredits(t *testing.T) {
	ctx := context.Background()
	gift := func(key, stream, star string, share, commission int64) TransferRequest {
		return TransferRequest{IdempotencyKey: key, Kind: TransferGift, Actor: "amy", StreamID: stream,
			Legs: []Leg{{From: Wallet("amy"), To: Earnings(star), Amount: share}, {From: Wallet("amy"), To: Platform, Amount: commission}}}
	}
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			l := newLedger(t, db, DefaultConfig())
			topup(t, l, "amy", 1000)
			for _, r := range []TransferRequest{
				gift("g1", "s1", "star", 7, 3),
				gift("g2", "s1", "star", 14, 6),
				gift("g3", "s2", "star", 70, 30),
				gift("g4", "s3", "nova", 8, 2),
				gift("g1", "s1", "star", 7, 3), // a replay counts nothing
			} {
				if _, err := l.Transfer(ctx, r); err != nil {
					t.Fatal(err)
				}
			}
			// A withdrawal-like transfer credits no daily total.
			if _, err := l.Transfer(ctx, TransferRequest{IdempotencyKey: "w1", Kind: TransferWithdrawal,
				Legs: []Leg{{From: Earnings("star"), To: Hold("star"), Amount: 5}}}); err != nil {
				t.Fatal(err)
			}
			mustInvariants(t, db)
			today := utcDay(time.Now().UnixMicro())
			day := dayString(today)
			want := map[AccountID][]EarningsDay{
				Earnings("star"): {{Day: day, StreamID: "s1", Gifts: 2, Coins: 21}, {Day: day, StreamID: "s2", Gifts: 1, Coins: 70}},
				Earnings("nova"): {{Day: day, StreamID: "s3", Gifts: 1, Coins: 8}},
				Platform:         {{Day: day, StreamID: "s1", Gifts: 2, Coins: 9}, {Day: day, StreamID: "s2", Gifts: 1, Coins: 30}, {Day: day, StreamID: "s3", Gifts: 1, Coins: 2}},
				Hold("star"):     {},
			}
			check := func(stage string, want map[AccountID][]EarningsDay, since int64) {
				t.Helper()
				for acct, w := range want {
					got, err := readDaily(ctx, db, acct, since)
					if err != nil {
						t.Fatal(err)
					}
					if !reflect.DeepEqual(got, w) {
						t.Fatalf("%s: %s: got %+v, want %+v", stage, acct, got, w)
					}
				}
			}
			check("written by the writer", want, today)
			l.Close()

			// An older database: no totals, and g3 made yesterday.
			if _, err := db.ExecContext(ctx, "DROP TABLE ledger_daily_credits"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, db.Rebind("UPDATE ledger_transfers SET created_at = created_at - ? WHERE idem_key = 'g3'"), microsPerDay); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			errs := make([]error, 2)
			for i := range errs {
				wg.Add(1)
				go func() { defer wg.Done(); errs[i] = Migrate(ctx, db) }()
			}
			wg.Wait()
			if err := fmt.Sprint(errs); err != "[<nil> <nil>]" {
				t.Fatalf("two migrations at once: %s", err)
			}
			yesterday := dayString(today - 1)
			want[Earnings("star")] = []EarningsDay{{Day: day, StreamID: "s1", Gifts: 2, Coins: 21}, {Day: yesterday, StreamID: "s2", Gifts: 1, Coins: 70}}
			want[Platform] = []EarningsDay{{Day: day, StreamID: "s1", Gifts: 2, Coins: 9}, {Day: day, StreamID: "s3", Gifts: 1, Coins: 2}, {Day: yesterday, StreamID: "s2", Gifts: 1, Coins: 30}}
			check("filled by Migrate", want, today-1)
			check("today only", map[AccountID][]EarningsDay{Earnings("star"): {{Day: day, StreamID: "s1", Gifts: 2, Coins: 21}}}, today)
			mustInvariants(t, db)

			// The writer adds to the filled totals.
			l = newLedger(t, db, DefaultConfig())
			if _, err := l.Transfer(ctx, gift("g5", "s1", "star", 7, 3)); err != nil {
				t.Fatal(err)
			}
			check("after one more gift", map[AccountID][]EarningsDay{Earnings("star"): {{Day: day, StreamID: "s1", Gifts: 3, Coins: 28}}}, today)
			mustInvariants(t, db)
		})
	}
}

// TestDailyCreditsTwoNodes: two ledgers on one database (two control
// nodes) gift the same streamers at once; the daily totals add up to every
// gift exactly and no transaction fails (on PostgreSQL both upsert the same
// rows concurrently).
func TestDailyCreditsTwoNodes(t *testing.T) {
	ctx := context.Background()
	for _, d := range dialects {
		t.Run(d, func(t *testing.T) {
			db := openDB(t, d)
			nodes := []*Ledger{newLedger(t, db, DefaultConfig()), newLedger(t, db, DefaultConfig())}
			const senders, each = 8, 40
			for i := 0; i < senders; i++ {
				topup(t, nodes[0], fmt.Sprint("u", i), each*10)
			}
			var wg sync.WaitGroup
			errs := make(chan error, senders*each)
			for i := 0; i < senders; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					user := fmt.Sprint("u", i)
					for g := 0; g < each; g++ {
						stream := fmt.Sprint("s", g%2)
						_, err := nodes[(i+g)%2].Transfer(ctx, TransferRequest{IdempotencyKey: fmt.Sprint(user, "-", g), Kind: TransferGift, Actor: user, StreamID: stream,
							Legs: []Leg{{From: Wallet(user), To: Earnings("star"), Amount: 7}, {From: Wallet(user), To: Platform, Amount: 3}}})
						if err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			mustInvariants(t, db)
			today := utcDay(time.Now().UnixMicro())
			var gifts, coins int64
			for _, acct := range []AccountID{Earnings("star"), Platform} {
				days, err := readDaily(ctx, db, acct, today-1)
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range days {
					gifts += d.Gifts
					coins += d.Coins
				}
			}
			if gifts != 2*senders*each || coins != senders*each*10 {
				t.Fatalf("daily totals: %d gifts, %d coins; want %d, %d", gifts, coins, 2*senders*each, senders*each*10)
			}
		})
	}
}

func TestUTCDay(t *testing.T) {
	for _, c := range []struct {
		at   time.Time
		want string
	}{
		{time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC), "2026-11-26"},
		{time.Date(2026, 11, 26, 23, 59, 59, 999999000, time.UTC), "2026-11-26"},
		{time.Date(2026, 11, 26, 1, 0, 0, 0, time.FixedZone("CET", 3600)), "2026-11-26"},
		{time.Date(2026, 11, 26, 0, 59, 0, 0, time.FixedZone("CET", 3600)), "2026-11-25"},
		{time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), "1969-12-31"},
	} {
		if got := dayString(utcDay(c.at.UnixMicro())); got != c.want {
			t.Errorf("%v: %s, want %s", c.at, got, c.want)
		}
	}
}

// BenchmarkEarningsReport: a streamer's 30-day earnings report over 100k
// gifts, read from the daily totals (what the API does) against summing the
// gifts themselves (what it did before 2026-11-26, same work as giftTotals).
func BenchmarkEarningsReport(b *testing.B) {
	ctx := context.Background()
	db := openDB(b, "sqlite")
	l := newBareWriter(b, db)
	const gifts, size = 100_000, 500
	var seed []*job
	seed = append(seed, &job{ctx: ctx, req: &TransferRequest{IdempotencyKey: "seed", Kind: TransferTopup,
		Legs: []Leg{{From: Clearing("x"), To: Wallet("amy"), Amount: 1 << 40}}}})
	if _, err := l.apply(ctx, l.conn, seed); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < gifts; i += size {
		jobs := make([]*job, 0, size)
		for k := i; k < i+size; k++ {
			jobs = append(jobs, &job{ctx: ctx, req: &TransferRequest{IdempotencyKey: fmt.Sprint("g", k), Kind: TransferGift, Actor: "amy", StreamID: fmt.Sprint("s", k%3),
				Legs: []Leg{{From: Wallet("amy"), To: Earnings("star"), Amount: 7}, {From: Wallet("amy"), To: Platform, Amount: 3}}}})
		}
		if _, err := l.apply(ctx, l.conn, jobs); err != nil {
			b.Fatal(err)
		}
	}
	since := utcDay(time.Now().UnixMicro()) - 29
	b.Run("daily-totals", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			days, err := readDaily(ctx, db, Earnings("star"), since)
			n := int64(0)
			for _, d := range days {
				n += d.Gifts
			}
			if err != nil || n != gifts {
				b.Fatalf("%+v %v", days, err)
			}
		}
	})
	b.Run("scan-gifts", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			t, err := giftTotals(ctx, db, db.Dialect)
			if err != nil || len(t) < 6 {
				b.Fatalf("%d totals, %v", len(t), err)
			}
		}
	})
}
