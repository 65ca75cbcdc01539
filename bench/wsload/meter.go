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
// number once, in order.
type Meter struct {
	// Reply, when set, answers a text message that carries no marker (for
	// protocol-level pings); nil means no answer.
	Reply func(payload []byte) []byte
	// Sample, when set, is called with each latency (for live progress).
	Sample func(time.Duration)

	next     []int32 // per connection ID: the sequence number expected next
	received atomic.Int64
	// OutOfOrder counts messages that skipped, repeated or went back.
	OutOfOrder atomic.Int64
	Closed     atomic.Int64

	mu       sync.Mutex
	shards   []*meterShard
	closeErr []string
}

// NewMeter is a meter for connections with IDs 0..conns-1.
func NewMeter(conns int) *Meter {
	m := &Meter{next: make([]int32, conns)}
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

func (s *meterShard) OnText(c *Conn, p []byte, at time.Time) []byte {
	m := s.m
	found := false
	for {
		i := bytes.Index(p, marker)
		if i < 0 {
			break
		}
		found = true
		p = p[i+len(marker):]
		seq, rest := number(p)
		sent, _ := number(rest[min(1, len(rest)):])
		p = rest
		if c.ID < len(m.next) {
			if int32(seq) != m.next[c.ID] {
				m.OutOfOrder.Add(1)
			}
			m.next[c.ID] = int32(seq) + 1
		}
		d := at.UnixNano() - sent
		s.lat = append(s.lat, d)
		m.received.Add(1)
		if m.Sample != nil {
			m.Sample(time.Duration(d))
		}
	}
	if !found && m.Reply != nil {
		return m.Reply(p)
	}
	return nil
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
