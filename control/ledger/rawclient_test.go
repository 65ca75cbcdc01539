package ledger

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/liveengine/liveengine/bench/rawhttp"
)

// runRawGiftClients is runGiftClients on bench/rawhttp's client: one
// goroutine on its own thread waits on every connection with epoll, writes
// each request with one write(2) and parses only the status line and
// Content-Length of the answer, so the 2 cores go to the server: the
// fasthttp client cost ~40-50 µs per gift, this one ~10. pause is
// rawhttp.Loop.Pause (a latency includes up to pause).
func runRawGiftClients(addr string, n, clients int, authz []string, pause time.Duration, logf func(string, ...any)) (giftLoad, error) {
	head := []byte("POST /api/v1/streams/live/gifts HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 18\r\nAuthorization: ")
	const body = "\r\n\r\n{\"gift_id\":\"rose\"}"
	var next, failed int64
	inFlight := make([]int64, clients) // gift number per connection
	lat := make([]time.Duration, 0, n)
	l := &rawhttp.Loop{Addr: addr, Conns: clients, Pause: pause}
	l.Request = func(c int, buf []byte) ([]byte, bool) {
		if next >= int64(n) {
			return nil, false
		}
		next++
		inFlight[c] = next
		sender, key := benchGift(next, len(authz))
		buf = append(append(buf, head...), authz[sender]...)
		buf = append(append(buf, "\r\nIdempotency-Key: "...), key[:]...)
		return append(buf, body...), true
	}
	l.Answer = func(c int, a rawhttp.Answer) {
		lat = append(lat, a.Latency)
		if a.Status != 201 {
			if failed++; failed <= 3 {
				logf("gift %d: status %d: %s", inFlight[c], a.Status, a.Body)
			}
		}
	}
	if err := l.Run(); err != nil {
		return giftLoad{}, err
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	return giftLoad{p50: pct(0.50), p99: pct(0.99), failed: failed}, nil
}

// TestRawGiftClient checks the benchmark's raw client against the server:
// every gift answered 201 and counted once (rawhttp's own tests cover its
// parser).
func TestRawGiftClient(t *testing.T) {
	db := openDB(t, "sqlite")
	s := startServer(t, db, DefaultConfig(), nil)
	s.addGift("rose", 10)
	s.streams.set("live", "star", true)
	const senders = 5
	for i := 0; i < senders; i++ {
		s.topup(fmt.Sprint("u", i), 1000)
	}
	authz, err := senderAuth(senders)
	if err != nil {
		t.Fatal(err)
	}
	res, err := runRawGiftClients(s.addr, 300, 7, authz, 0, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	if res.failed != 0 {
		t.Fatalf("%d failed gifts", res.failed)
	}
	if got := s.balance(Earnings("star")); got != 300*7 {
		t.Fatalf("streamer earnings %d, want %d", got, 300*7)
	}
	// Out of coins now (5 senders x 1000 coins = 500 gifts of 10, 300 spent
	// + 300 more asked): the client counts the 402 answers as failures.
	res, err = runRawGiftClients(s.addr, 600, 3, authz, 100*time.Microsecond, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	// The first 300 gifts are replays (same keys: 201, same answer); of the
	// 300 new ones, those the ledger took show in the earnings, the rest
	// must be the client's failures.
	took := s.balance(Earnings("star"))/7 - 300
	if took < 150 || took > 200 || res.failed != 300-took {
		t.Fatalf("%d failed gifts, %d new gifts taken: want 300 in all, up to 200 taken", res.failed, took)
	}
	mustInvariants(t, db)
}
