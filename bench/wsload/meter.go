package wsload

import (
	"bytes"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Marker starts the text every fan-out message carries: `bench SEQ NANOS`,
// SEQ counting from 0 and NANOS the publisher's clock (unix nanoseconds)
// just before its publish call. It is looked for inside a JSON string, so
// it works whatever envelope the server wraps the message in (LiveEngine's
// comment, Centrifugo's publication, several of them in one frame).
const Marker = `"body":"bench `

// Body is the message text for sequence number seq published at t.
func Body(seq int, t time.Time) string {
	return "bench " + strconv.Itoa(seq) + " " + strconv.FormatInt(t.UnixNano(), 10)
}

// Meter checks every fan-out message each connection receives: latency
// (receipt − publish call), and that each connection sees every sequence
// number exactly once. Messages published concurrently may legitimately
// arrive in another order than their numbers; Reordered counts them.
type Meter struct {
	// Reply, when set, answers a text message that carries no marker (for
	// protocol-level pings); nil means no answer.
	Reply func(payload []byte) []byte
	// Samples, when set, is called with the latencies a loop recorded
	// since its previous call (for live progress), once per epoll batch
	// rather than once per message, from the loops' goroutines.
	Samples func([]time.Duration)

	seen [][]uint64 // per connection ID: a bit per sequence number received
	last []int32    // per connection ID: the highest sequence number so far
	// Duplicates counts messages a connection received more than once.
	Duplicates atomic.Int64
	// Reordered counts messages that arrived after a higher-numbered one.
	Reordered atomic.Int64
	// Closed counts connections that ended during the run.
	Closed atomic.Int64

	mu       sync.Mutex
	shards   []*meterShard
	closeErr []string
}

// NewMeter is a meter for connections with IDs 0..conns-1.
func NewMeter(conns int) *Meter {
	m := &Meter{seen: make([][]uint64, conns), last: make([]int32, conns)}
	for i := range m.last {
		m.last[i] = -1
	}
	return m
}

// Received is the number of fan-out messages received so far.
func (m *Meter) Received() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	var n int64
	for _, s := range m.shards {
		n += s.received.Load()
	}
	return n
}

// Handler returns a handler for one Loop (latencies and counts are kept
// per loop, so loops never contend).
func (m *Meter) Handler() Handler {
	s := &meterShard{m: m, lat: make([]time.Duration, 0, 1<<16)}
	m.mu.Lock()
	m.shards = append(m.shards, s)
	m.mu.Unlock()
	return s
}

// Latencies returns every latency recorded, sorted.
func (m *Meter) Latencies() []time.Duration {
	return m.sorted(func(s *meterShard) []time.Duration { return s.lat })
}

// Arrivals returns the latencies up to the kernel's receive time (see
// Loop.Stamps), sorted; empty when the loops do not stamp.
func (m *Meter) Arrivals() []time.Duration {
	return m.sorted(func(s *meterShard) []time.Duration { return s.arr })
}

// sorted gathers one list of durations from every loop's shard, sorted.
func (m *Meter) sorted(of func(*meterShard) []time.Duration) []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []time.Duration
	for _, s := range m.shards {
		all = append(all, of(s)...)
	}
	slices.Sort(all)
	return all
}

// FanoutSpread describes how each message (sequence number) some
// connection received was fanned out: starts holds the latency of its
// first receipt (the server's path up to the start of the fan-out),
// spreads its last receipt minus its first (the fan-out itself), both
// sorted, one entry per message.
func (m *Meter) FanoutSpread() (starts, spreads []time.Duration) {
	m.mu.Lock()
	var first, last []time.Duration
	for _, s := range m.shards {
		for seq := range s.first {
			if s.first[seq] == 0 {
				continue
			}
			for seq >= len(first) {
				first, last = append(first, 0), append(last, 0)
			}
			if first[seq] == 0 || s.first[seq] < first[seq] {
				first[seq] = s.first[seq]
			}
			last[seq] = max(last[seq], s.final[seq])
		}
	}
	m.mu.Unlock()
	for i := range first {
		if first[i] != 0 {
			starts, spreads = append(starts, first[i]), append(spreads, last[i]-first[i])
		}
	}
	slices.Sort(starts)
	slices.Sort(spreads)
	return starts, spreads
}

// QuantileMS is the p-quantile (0..1) of sorted durations, in
// milliseconds; 0 when there are none.
func QuantileMS(sorted []time.Duration, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(p*float64(len(sorted)-1))]) / 1e6
}

// CloseErrors returns the first reasons connections ended for.
func (m *Meter) CloseErrors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.closeErr...)
}

type meterShard struct {
	m       *Meter
	lat     []time.Duration
	arr     []time.Duration // publish call → kernel receive time, when the loop stamps
	sampled int             // lat[:sampled] went to Samples
	// first and final are, per sequence number, the earliest and the
	// latest latency this loop saw (0: none yet).
	first, final []time.Duration
	received     atomic.Int64
	_            [64]byte // keeps the loops' counters off one cache line
}

var marker = []byte(Marker)

func (s *meterShard) OnText(c *Conn, p []byte, at time.Time) (reply []byte) {
	m := s.m
	if m.Reply != nil {
		reply = m.Reply(p)
	}
	for {
		i := bytes.Index(p, marker)
		if i < 0 {
			break
		}
		p = p[i+len(marker):]
		seq, rest := number(p)
		sent, _ := number(rest[min(1, len(rest)):])
		p = rest
		if id := c.ID; id >= 0 && id < len(m.seen) && seq >= 0 && seq < 1<<24 {
			w := int(seq / 64)
			for len(m.seen[id]) <= w {
				m.seen[id] = append(m.seen[id], 0)
			}
			bit := uint64(1) << (seq % 64)
			if m.seen[id][w]&bit != 0 {
				m.Duplicates.Add(1)
				continue
			}
			m.seen[id][w] |= bit
			if int32(seq) < m.last[id] {
				m.Reordered.Add(1)
			} else {
				m.last[id] = int32(seq)
			}
		}
		d := time.Duration(at.UnixNano() - sent)
		s.lat = append(s.lat, d)
		if c.arrived != 0 {
			s.arr = append(s.arr, time.Duration(c.arrived-sent))
		}
		s.received.Add(1)
		if seq >= 0 && seq < 1<<24 {
			for int(seq) >= len(s.first) {
				s.first = append(s.first, 0)
				s.final = append(s.final, 0)
			}
			if f := s.first[seq]; f == 0 || d < f {
				s.first[seq] = d
			}
			s.final[seq] = max(s.final[seq], d)
		}
	}
	return reply
}

// EndBatch hands the latencies of the loop's last batch to Samples.
func (s *meterShard) EndBatch() {
	if s.m.Samples != nil && s.sampled < len(s.lat) {
		s.m.Samples(s.lat[s.sampled:])
	}
	s.sampled = len(s.lat)
}

func (s *meterShard) OnClose(c *Conn, err error) {
	s.m.Closed.Add(1)
	s.m.mu.Lock()
	if len(s.m.closeErr) < 5 {
		s.m.closeErr = append(s.m.closeErr, err.Error())
	}
	s.m.mu.Unlock()
}

// number parses the decimal digits at the start of b.
func number(b []byte) (int64, []byte) {
	var v int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + int64(b[i]-'0')
	}
	return v, b[i:]
}
