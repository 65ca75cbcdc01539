package ledger

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// GiftRecord is one gift as the leaderboards count it.
type GiftRecord struct {
	// Sender gifted Coins on StreamID.
	Sender   string
	StreamID string
	Coins    int64
	// Streamer earned Earned coins (after commission); empty when the
	// record carries no earnings (a commission leg during Rebuild).
	Streamer string
	Earned   int64
	At       time.Time
}

// Period of a leaderboard.
type Period string

// Leaderboard periods; day and week are UTC (ISO weeks).
const (
	PeriodDay  Period = "day"
	PeriodWeek Period = "week"
	PeriodAll  Period = "all"
)

// Board names one leaderboard.
type Board struct {
	// Streamers selects the top earning streamers; otherwise top gifters.
	Streamers bool
	// StreamID restricts gifters to one stream ("" means all streams).
	StreamID string
	// Period and At choose the bucket (the day or week containing At).
	Period Period
	At     time.Time
}

// Key is the board's storage key.
func (b Board) Key() string {
	p := bucket(b.Period, b.At)
	switch {
	case b.Streamers:
		return "streamers:" + p
	case b.StreamID != "":
		return "stream:" + b.StreamID + ":" + p
	default:
		return "gifters:" + p
	}
}

func bucket(p Period, t time.Time) string {
	t = t.UTC()
	switch p {
	case PeriodDay:
		return "day:" + t.Format("2006-01-02")
	case PeriodWeek:
		y, w := t.ISOWeek()
		return fmt.Sprintf("week:%04d-W%02d", y, w)
	default:
		return "all"
	}
}

// increments yields the keys a record increments, with the member and score.
func (g GiftRecord) increments(yield func(key, member string, score int64)) {
	bk := bucketsOf(g.At)
	for _, p := range bk {
		if g.Sender != "" && g.Coins > 0 {
			// A gift without a stream counts on the all-streams board
			// only (it used to count there twice).
			if g.StreamID != "" {
				yield("stream:"+g.StreamID+":"+p, g.Sender, g.Coins)
			}
			yield("gifters:"+p, g.Sender, g.Coins)
		}
		if g.Streamer != "" && g.Earned > 0 {
			yield("streamers:"+p, g.Streamer, g.Earned)
		}
	}
}

// dayBuckets are the day, week and all-time bucket names of one UTC day.
type dayBuckets struct {
	day   int64
	names [3]string
}

// lastBuckets memoizes bucketsOf for the current day: every gift of a
// batch falls on it, and formatting dates showed in the gift path's profile.
var lastBuckets atomic.Pointer[dayBuckets]

// bucketsOf returns the bucket names (as Board.Key builds them) of the day,
// the week and all time containing t.
func bucketsOf(t time.Time) [3]string {
	day := t.Unix()
	if day < 0 {
		day -= 86399 // floor division for dates before 1970
	}
	day /= 86400
	if b := lastBuckets.Load(); b != nil && b.day == day {
		return b.names
	}
	b := &dayBuckets{day: day, names: [3]string{bucket(PeriodDay, t), bucket(PeriodWeek, t), bucket(PeriodAll, t)}}
	lastBuckets.Store(b)
	return b.names
}

// Standing is one row of a leaderboard.
type Standing struct {
	Rank  int    `json:"rank"`
	ID    string `json:"user_id"`
	Coins int64  `json:"coins"`
}

// Leaderboard keeps the derived rankings. The ledger is the truth: a board
// can always be rebuilt from it (Rebuild).
type Leaderboard interface {
	// Add counts gifts.
	Add(ctx context.Context, gifts []GiftRecord) error
	// Top returns the first n standings of a board.
	Top(ctx context.Context, b Board, n int) ([]Standing, error)
	// Reset empties every board.
	Reset(ctx context.Context) error
}

// MemoryLeaderboard is the in-process Leaderboard (single node, `all` mode).
type MemoryLeaderboard struct {
	mu sync.Mutex
	// boards hold each member's score behind a pointer, so that a gift
	// can add to the cells it counts in without looking each one up.
	boards map[string]map[string]*int64
	// day holds the boards of the day, week and all time of the latest
	// gifts and the cells of their senders and streamers, so that
	// counting a gift takes two lookups instead of building nine keys
	// (4.5 µs per gift in BenchmarkGifts' profile) or nine map updates
	// (2.4 µs).
	day *dayBoards
}

// dayBoards are the boards one day's gifts increment, by bucket (day,
// week, all time), and the cells of the members counted on them.
type dayBoards struct {
	buckets   [3]string
	gifters   [3]map[string]*int64
	streamers [3]map[string]*int64
	streams   map[string]*streamBoards
	// earners are a streamer's cells on the streamers boards.
	earners map[string]*[3]*int64
}

// streamBoards are one stream's gifter boards of a day, week and all time.
type streamBoards struct {
	boards [3]map[string]*int64
	// senders are a sender's cells on this stream's boards (0..2) and
	// on the all-streams gifters boards (3..5).
	senders map[string]*[6]*int64
}

var _ Leaderboard = (*MemoryLeaderboard)(nil)

// NewMemoryLeaderboard returns an empty in-process leaderboard.
func NewMemoryLeaderboard() *MemoryLeaderboard {
	return &MemoryLeaderboard{boards: make(map[string]map[string]*int64)}
}

// Add implements Leaderboard.
func (m *MemoryLeaderboard) Add(_ context.Context, gifts []GiftRecord) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var sb *streamBoards // of the previous gift's stream, while d holds
	var sbID string
	for _, g := range gifts {
		if g.StreamID == "" {
			g.increments(func(key, member string, score int64) { *cell(m.board(key), member) += score })
			continue
		}
		// The boards g.increments names, looked up once per day and stream.
		bk := bucketsOf(g.At)
		d := m.day
		if d == nil || d.buckets != bk {
			d = &dayBoards{buckets: bk, streams: make(map[string]*streamBoards), earners: make(map[string]*[3]*int64)}
			for i, p := range bk {
				d.gifters[i] = m.board("gifters:" + p)
				d.streamers[i] = m.board("streamers:" + p)
			}
			m.day, sb = d, nil
		}
		if sb == nil || sbID != g.StreamID {
			sb = d.streams[g.StreamID]
			if sb == nil {
				sb = &streamBoards{senders: make(map[string]*[6]*int64)}
				for i, p := range bk {
					sb.boards[i] = m.board("stream:" + g.StreamID + ":" + p)
				}
				d.streams[g.StreamID] = sb
			}
			sbID = g.StreamID
		}
		if g.Sender != "" && g.Coins > 0 {
			c := sb.senders[g.Sender]
			if c == nil {
				c = new([6]*int64)
				for i := range bk {
					c[i], c[3+i] = cell(sb.boards[i], g.Sender), cell(d.gifters[i], g.Sender)
				}
				sb.senders[g.Sender] = c
			}
			for _, p := range c {
				*p += g.Coins
			}
		}
		if g.Streamer != "" && g.Earned > 0 {
			c := d.earners[g.Streamer]
			if c == nil {
				c = new([3]*int64)
				for i := range bk {
					c[i] = cell(d.streamers[i], g.Streamer)
				}
				d.earners[g.Streamer] = c
			}
			for _, p := range c {
				*p += g.Earned
			}
		}
	}
	return nil
}

// board returns the board stored under key, made empty if missing.
func (m *MemoryLeaderboard) board(key string) map[string]*int64 {
	b := m.boards[key]
	if b == nil {
		b = make(map[string]*int64)
		m.boards[key] = b
	}
	return b
}

// cell returns member's score on board b, added at 0 if missing; call it
// only to add to the score, so no member stands on a board with nothing.
func cell(b map[string]*int64, member string) *int64 {
	c := b[member]
	if c == nil {
		c = new(int64)
		b[member] = c
	}
	return c
}

// Top implements Leaderboard.
func (m *MemoryLeaderboard) Top(_ context.Context, b Board, n int) ([]Standing, error) {
	m.mu.Lock()
	board := m.boards[b.Key()]
	out := make([]Standing, 0, len(board))
	for id, c := range board {
		out = append(out, Standing{ID: id, Coins: *c})
	}
	m.mu.Unlock()
	sortStandings(out)
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Reset implements Leaderboard.
func (m *MemoryLeaderboard) Reset(context.Context) error {
	m.mu.Lock()
	m.boards = make(map[string]map[string]*int64)
	m.day = nil
	m.mu.Unlock()
	return nil
}

func sortStandings(s []Standing) {
	sort.Slice(s, func(i, k int) bool {
		if s[i].Coins != s[k].Coins {
			return s[i].Coins > s[k].Coins
		}
		return s[i].ID < s[k].ID
	})
	for i := range s {
		s[i].Rank = i + 1
	}
}

// Rebuild empties lb and recounts every gift in the ledger. Gifts sent while
// it runs may be counted twice or not at all; run it when gifting is quiet
// (the `liveengine leaderboards rebuild` command) or run it again.
func Rebuild(ctx context.Context, db *sqldb.DB, lb Leaderboard) error {
	if err := lb.Reset(ctx); err != nil {
		return fmt.Errorf("leaderboard rebuild: reset: %w", err)
	}
	rows, err := db.QueryContext(ctx, db.Rebind("SELECT id, actor, stream_id, legs, created_at FROM ledger_transfers WHERE kind = ?"), TransferGift)
	if err != nil {
		return fmt.Errorf("leaderboard rebuild: %w", err)
	}
	defer rows.Close()
	batch := make([]GiftRecord, 0, 1024)
	for rows.Next() {
		var id, actor, stream, raw string
		var at int64
		if err := rows.Scan(&id, &actor, &stream, &raw, &at); err != nil {
			return fmt.Errorf("leaderboard rebuild: %w", err)
		}
		legs, err := parseLegs(raw)
		if err != nil {
			return fmt.Errorf("leaderboard rebuild: transfer %s: %w", id, err)
		}
		// As the gift counted when sent: the sender's coins over every leg,
		// the streamer's share on the earnings leg.
		g := GiftRecord{Sender: actor, StreamID: stream, At: time.UnixMicro(at)}
		for _, l := range legs {
			g.Coins += l.Amount
			if l.To.Kind() == KindEarnings {
				g.Streamer, g.Earned = l.To.Owner(), g.Earned+l.Amount
			}
		}
		batch = append(batch, g)
		if len(batch) == cap(batch) {
			if err := lb.Add(ctx, batch); err != nil {
				return fmt.Errorf("leaderboard rebuild: %w", err)
			}
			batch = batch[:0]
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("leaderboard rebuild: %w", err)
	}
	if err := lb.Add(ctx, batch); err != nil {
		return fmt.Errorf("leaderboard rebuild: %w", err)
	}
	return nil
}
