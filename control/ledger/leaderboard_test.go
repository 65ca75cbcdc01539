package ledger

import (
	"context"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/liveengine/liveengine/internal/testsvc"
	"github.com/redis/go-redis/v9"
)

func redisBoard(t *testing.T) *RedisLeaderboard {
	opt, err := redis.ParseURL(testsvc.Redis(t))
	if err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	return NewRedisLeaderboard(rdb, "le:lb:")
}

// TestLeaderboards: gifts through the API feed the board (memory and a real
// Redis); Rebuild from the ledger gives the same standings.
func TestLeaderboards(t *testing.T) {
	for _, kind := range []string{"memory", "redis"} {
		t.Run(kind, func(t *testing.T) {
			var lb Leaderboard = NewMemoryLeaderboard()
			if kind == "redis" {
				lb = redisBoard(t)
			}
			db := openDB(t, "sqlite")
			s := startServer(t, db, DefaultConfig(), lb)
			s.addGift("rose", 10)
			s.streams.set("a", "alice", true)
			s.streams.set("b", "bob", true)
			for i, n := range []int{3, 1, 2} {
				user := fmt.Sprint("v", i)
				s.topup(user, 1000)
				for g := 0; g < n; g++ {
					s.must(201, "POST", "/api/v1/streams/a/gifts", user, fmt.Sprint("a", g), map[string]any{"gift_id": "rose"}, nil)
				}
				s.must(201, "POST", "/api/v1/streams/b/gifts", user, "b", map[string]any{"gift_id": "rose", "quantity": 5}, nil)
			}
			eventually(t, "gift events", func() bool { return s.rooms.count() == 9 })
			type resp struct {
				Standings []Standing `json:"standings"`
			}
			eventually(t, "leaderboard", func() bool {
				var r resp
				s.must(200, "GET", "/api/v1/streams/a/leaderboard?period=week", "", "", nil, &r)
				return len(r.Standings) == 3
			})
			want := map[string][]Standing{
				"/api/v1/streams/a/leaderboard?period=day":                     {{1, "v0", 30}, {2, "v2", 20}, {3, "v1", 10}},
				"/api/v1/leaderboards/gifters?period=all":                      {{1, "v0", 80}, {2, "v2", 70}, {3, "v1", 60}},
				"/api/v1/leaderboards/gifters?period=week&stream_id=b&limit=2": {{1, "v0", 50}, {2, "v1", 50}},
				"/api/v1/leaderboards/streamers?period=all":                    {{1, "bob", 105}, {2, "alice", 42}},
			}
			check := func() {
				for path, w := range want {
					var r resp
					s.must(200, "GET", path, "", "", nil, &r)
					if !reflect.DeepEqual(r.Standings, w) {
						t.Fatalf("%s: %+v, want %+v", path, r.Standings, w)
					}
				}
			}
			check()
			if err := lb.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
			s.must(200, "POST", "/api/v1/admin/leaderboards/rebuild", "root:admin", "", nil, nil)
			check()
			if st, _ := s.do("GET", "/api/v1/leaderboards/gifters?period=year", "", "", nil); st != 400 {
				t.Fatal("bad period accepted")
			}
			mustInvariants(t, db)
		})
	}
}

func TestBoardKeys(t *testing.T) {
	at := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC) // ISO week 1 of 2026
	for b, want := range map[Board]string{
		{Period: PeriodDay, At: at}:                  "gifters:day:2026-01-01",
		{StreamID: "s", Period: PeriodWeek, At: at}:  "stream:s:week:2026-W01",
		{Streamers: true, Period: PeriodAll, At: at}: "streamers:all",
	} {
		if b.Key() != want {
			t.Errorf("%+v: %s, want %s", b, b.Key(), want)
		}
	}
}

// TestIncrementKeysMatchBoards checks that the keys a gift increments (built
// from memoized day buckets) are exactly the boards Top reads, across day,
// week and year boundaries and before 1970.
func TestIncrementKeysMatchBoards(t *testing.T) {
	for _, at := range []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2025, 12, 31, 23, 59, 59, 999, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", -5*3600)),
		time.Date(2026, 3, 9, 0, 0, 0, 1, time.UTC),
		time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC),
		time.Date(1969, 12, 31, 23, 0, 0, 0, time.UTC), // memoized
		time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		g := GiftRecord{Sender: "v", StreamID: "s", Coins: 10, Streamer: "st", Earned: 7, At: at}
		got := map[string]bool{}
		g.increments(func(key, member string, score int64) { got[key+" "+member] = true })
		want := map[string]bool{}
		for _, p := range []Period{PeriodDay, PeriodWeek, PeriodAll} {
			want[Board{StreamID: "s", Period: p, At: at}.Key()+" v"] = true
			want[Board{Period: p, At: at}.Key()+" v"] = true
			want[Board{Streamers: true, Period: p, At: at}.Key()+" st"] = true
		}
		if len(got) != len(want) {
			t.Fatalf("%v: %v, want %v", at, got, want)
		}
		for k := range want {
			if !got[k] {
				t.Fatalf("%v: missing %s in %v", at, k, got)
			}
		}
	}
}

// TestMemoryLeaderboardMatchesIncrements: the in-process board's shortcut
// counts exactly what GiftRecord.increments names (the Redis board's keys),
// across days, weeks, streams, a Reset and records without a stream.
func TestMemoryLeaderboardMatchesIncrements(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	base := time.Date(2026, 1, 3, 22, 0, 0, 0, time.UTC)
	m := NewMemoryLeaderboard()
	want := map[string]map[string]int64{}
	for round := 0; round < 3; round++ {
		if round == 2 {
			if err := m.Reset(context.Background()); err != nil {
				t.Fatal(err)
			}
			want = map[string]map[string]int64{}
		}
		var recs []GiftRecord
		for i := 0; i < 500; i++ {
			g := GiftRecord{Sender: fmt.Sprint("v", rng.IntN(7)), StreamID: []string{"s1", "s2", ""}[rng.IntN(3)],
				Coins: int64(rng.IntN(50)), At: base.Add(time.Duration(rng.IntN(72)) * time.Hour)}
			if rng.IntN(2) == 0 {
				g.Streamer, g.Earned = fmt.Sprint("st", rng.IntN(3)), int64(rng.IntN(30))
			}
			recs = append(recs, g)
			g.increments(func(key, member string, score int64) {
				if want[key] == nil {
					want[key] = map[string]int64{}
				}
				want[key][member] += score
			})
		}
		if err := m.Add(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	// A gift without a stream counts once.
	m2 := NewMemoryLeaderboard()
	at := time.Date(2026, 1, 3, 12, 0, 0, 0, time.UTC)
	if err := m2.Add(context.Background(), []GiftRecord{{Sender: "v", Coins: 5, At: at}}); err != nil {
		t.Fatal(err)
	}
	if top, _ := m2.Top(context.Background(), Board{Period: PeriodAll, At: at}, 1); len(top) != 1 || top[0].Coins != 5 {
		t.Fatalf("gift without a stream: %+v, want 5 coins once", top)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for key, w := range want {
		for member, score := range w {
			if c := m.boards[key][member]; c == nil || *c != score {
				t.Fatalf("%s %s: %v, want %d", key, member, c, score)
			}
		}
	}
	for key, b := range m.boards {
		for member, score := range b {
			if *score != want[key][member] {
				t.Fatalf("extra %s %s: %d", key, member, *score)
			}
		}
	}
}
