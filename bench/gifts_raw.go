package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/liveengine/liveengine/bench/rawhttp"
)

// rawGifter is one connection of a -raw storm: it gifts as sender, and
// after an accepted gift may send the same Idempotency-Key again.
type rawGifter struct {
	sender int
	seq    int64
	first  []byte // transfer id of the gift being replayed; nil: next is a new gift
	coins  int64
	done   bool // the sender's wallet is spent
}

// stormRaw is the storm on bench/rawhttp's client: every connection on one
// thread, a request a write(2), so the client costs the box little and the
// server's ceiling shows. The checks are the net/http storm's: a replay
// must return the first answer's transfer, and what each sender was charged
// is kept for the final wallet check.
func (g *giftStorm) stormRaw(ctx context.Context, r *Run) error {
	var stop atomic.Bool
	go func() {
		<-ctx.Done()
		stop.Store(true)
	}()
	r.Active.Add(int64(*g.clients))
	defer r.Active.Add(-int64(*g.clients))
	body := `{"gift_id":` + strconv.Quote(g.giftID) + `,"quantity":1}`
	// Each sender's request head up to the Idempotency-Key's value.
	heads := make([][]byte, len(g.senders))
	for i, c := range g.senders {
		heads[i] = []byte("POST /api/v1/streams/" + g.streamID + "/gifts HTTP/1.1\r\nHost: " + g.host +
			"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) +
			"\r\nAuthorization: Bearer " + c.token + "\r\nIdempotency-Key: ")
	}
	tail := "\r\n\r\n" + body
	run := randomHex(4)
	conns := make([]rawGifter, *g.clients)
	for k := range conns {
		conns[k].sender = k % len(g.senders)
	}
	charged := make([]int64, len(g.senders))
	lat := make([]time.Duration, 0, 1024)
	l := &rawhttp.Loop{Addr: g.host, Conns: *g.clients, Timeout: 30 * time.Second}
	l.Request = func(k int, buf []byte) ([]byte, bool) {
		c := &conns[k]
		if c.done || (stop.Load() && c.first == nil) {
			return nil, false
		}
		if c.first == nil {
			c.seq++
		}
		buf = append(buf, heads[c.sender]...)
		buf = append(buf, "gift-"...)
		buf = append(buf, run...)
		buf = strconv.AppendInt(append(buf, '-'), int64(k), 10)
		buf = strconv.AppendInt(append(buf, '-'), c.seq, 10)
		return append(buf, tail...), true
	}
	l.Answer = func(k int, a rawhttp.Answer) {
		c := &conns[k]
		replay := c.first != nil
		ok := a.Status == 200 || a.Status == 201
		transfer, coins, perr := parseGiftReceipt(a.Body)
		again := false // the next request replays this gift's key
		switch {
		case !ok && a.Status == 402 && bytes.Contains(a.Body, []byte("insufficient_funds")):
			c.done = true // spent: this sender is done
		case !ok:
			r.Error(fmt.Errorf("%w: gift %d of connection %d (replay %v): status %d: %.200s", ErrAPI, c.seq, k, replay, a.Status, a.Body))
		case perr != nil:
			r.Error(fmt.Errorf("gift %d of connection %d: %w", c.seq, k, perr))
		case replay:
			if !bytes.Equal(transfer, c.first) || coins != c.coins {
				r.Error(fmt.Errorf("%w: replay of connection %d's gift %d gave transfer %s (%d coins), first %s (%d)", ErrInvariant, k, c.seq, transfer, coins, c.first, c.coins))
			} else {
				r.Frames.Add(1) // replays answered from the idempotency store
			}
		default:
			lat = append(lat, a.Latency)
			r.Ops.Add(1)
			charged[c.sender] += coins
			if rand.Float64() < *g.replay {
				c.first, c.coins, again = append(c.first[:0], transfer...), coins, true
			}
		}
		if !again {
			c.first = nil
		}
		if len(lat) == cap(lat) {
			r.OpLatencies(lat)
			lat = lat[:0]
		}
	}
	err := l.Run()
	r.OpLatencies(lat)
	g.mu.Lock()
	for i, c := range g.senders {
		g.charged[c] += charged[i]
	}
	g.mu.Unlock()
	return err
}

var (
	transferKey = []byte(`"transfer_id":"`)
	coinsKey    = []byte(`"coins":`)
)

// parseGiftReceipt picks transfer_id and coins out of a gift's answer
// without a JSON decoder (ids carry no escapes).
func parseGiftReceipt(b []byte) (transfer []byte, coins int64, err error) {
	i := bytes.Index(b, transferKey)
	if i < 0 {
		return nil, 0, errors.New("gift answer without transfer_id")
	}
	t := b[i+len(transferKey):]
	j := bytes.IndexByte(t, '"')
	if j < 1 {
		return nil, 0, errors.New("gift answer: bad transfer_id")
	}
	transfer = t[:j]
	i = bytes.Index(b, coinsKey)
	if i < 0 {
		return nil, 0, errors.New("gift answer without coins")
	}
	v := b[i+len(coinsKey):]
	n := 0
	for n < len(v) && v[n] >= '0' && v[n] <= '9' {
		n++
	}
	if coins, err = strconv.ParseInt(string(v[:n]), 10, 64); err != nil {
		return nil, 0, fmt.Errorf("gift answer: bad coins: %w", err)
	}
	return transfer, coins, nil
}
