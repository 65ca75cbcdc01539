package control

import (
	"sync"
	"testing"
)

// Racing requests on one resource get clean answers, never a 500.
func TestConcurrentAccountRaces(t *testing.T) {
	dialects(t, func(t *testing.T, dbURL string) {
		conf := testConfig(t, dbURL)
		conf.Limits.AuthPerMinute = 1000
		_, c := startServer(t, conf, newBus(t))
		const n = 8
		codes := make([]int, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				codes[i] = c.do("POST", "/api/v1/auth/register", map[string]string{
					"username": "dup", "email": "dup@example.com", "password": "password-dup"}).status
			})
		}
		wg.Wait()
		if created, conflict := count(codes, 201), count(codes, 409); created != 1 || conflict != n-1 {
			t.Fatalf("same account registered at once: %v", codes)
		}

		// One refresh token spent n times at once: exactly one new pair.
		tk := c.register("carol", "viewer")
		for i := range n {
			wg.Go(func() {
				codes[i] = c.do("POST", "/api/v1/auth/refresh", map[string]string{"refresh_token": tk.RefreshToken}).status
			})
		}
		wg.Wait()
		if count(codes, 200) != 1 || count(codes, 401) != n-1 {
			t.Fatalf("one refresh token spent at once: %v", codes)
		}
	})
}

// Concurrent key rotations and an end racing them leave the engine bus
// agreeing with the store: only the stream's current key publishes, and no
// key of an ended stream does.
func TestStreamKeyRaces(t *testing.T) {
	dialects(t, func(t *testing.T, dbURL string) {
		conf := testConfig(t, dbURL)
		conf.Limits.CostlyPerMinute = 10000
		bus := newBus(t)
		_, c := startServer(t, conf, bus)
		alice := c.as(c.register("alice", "streamer").AccessToken)
		for round := range 10 {
			in := alice.createStream("race")
			const n = 4
			keys := make([]string, n)
			codes := make([]int, n+1)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					var out ingest
					r := alice.do("POST", "/api/v1/streams/"+in.ID+"/key/rotate", nil)
					codes[i] = r.status
					if r.status == 200 {
						r.decode(t, &out)
						keys[i] = out.StreamKey
					}
				})
			}
			end := round%2 == 1
			if end {
				wg.Go(func() { codes[n] = alice.do("POST", "/api/v1/streams/"+in.ID+"/end", nil).status })
			}
			wg.Wait()
			for i, code := range codes[:n] {
				if code != 200 && code != 409 {
					t.Fatalf("round %d: rotation %d answered %d", round, i, code)
				}
			}
			if end && codes[n] != 200 {
				t.Fatalf("round %d: end answered %d", round, codes[n])
			}
			var cur ingest
			alice.must(200, "GET", "/api/v1/streams/"+in.ID+"/key", nil, &cur)
			for _, k := range append(keys, in.StreamKey) {
				if k == "" {
					continue
				}
				_, err := bus.AuthorizePublish(bg, k)
				live := !end && k == cur.StreamKey
				if live != (err == nil) {
					t.Fatalf("round %d: key %s (current %s, ended %v) authorizes: %v", round, k, cur.StreamKey, end, err)
				}
			}
		}
	})
}

func count(codes []int, want int) int {
	n := 0
	for _, c := range codes {
		if c == want {
			n++
		}
	}
	return n
}
