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
	// Sample, when set, is called with each latency (for live progress).
	Sample func(time.Duration)

	seen     [][]uint64 // per connection ID: a bit per sequence number received
	last     []int32    // per connection ID: the highest sequence number so far
	received atomic.Int64
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
func (m *Meter) Received() int64 { return m.received.Load() }

// Handler returns a handler for one Loop (latencies are kept per loop, so
// loops never contend).
func (m *Meter) Handler() Handler {
	s := &meterShard{m: m, lat: make([]int64, 0, 1<<16)}
	m.mu.Lock()
	m.shards = append(m.shards, s)
	m.mu.Unlock()
	return s
}

// Latencies returns every latency recorded, sorted.
func (m *Meter) Latencies() []time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []time.Duration
	for _, s := range m.shards {
		for _, v := range s.lat {
			all = append(all, time.Duration(v))
		}
	}
	slices.Sort(all)
	return all
}

// CloseErrors returns the first reasons connections ended for.
func (m *Meter) CloseErrors() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.closeErr...)
}

type meterShard struct {
	m   *Meter
	lat []int64
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
		d := at.UnixNano() - sent
		s.lat = append(s.lat, d)
		m.received.Add(1)
		if m.Sample != nil {
			m.Sample(time.Duration(d))
		}
	}
	return reply
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
