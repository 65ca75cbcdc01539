package bench

import (
	"fmt"
	"net"
	"sync"
	"time"
)

// Relay is a TCP relay that holds every chunk of bytes for a fixed delay
// before forwarding it, in both directions. Put between a publisher and a
// server it adds exactly Delay to the media path, which is how the latency
// meter is checked against a known delay.
type Relay struct {
	ln       net.Listener
	upstream string
	delay    time.Duration

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewRelay listens on listenAddr (e.g. 127.0.0.1:0) and relays to upstream
// with delay.
func NewRelay(listenAddr, upstream string, delay time.Duration) (*Relay, error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, fmt.Errorf("relay listen %s: %w", listenAddr, err)
	}
	r := &Relay{ln: ln, upstream: upstream, delay: delay, conns: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

// Addr is the relay's listening address.
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Close stops the relay and its connections and waits for its goroutines.
func (r *Relay) Close() {
	r.ln.Close()
	r.mu.Lock()
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

func (r *Relay) track(c net.Conn, add bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
}

func (r *Relay) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", r.upstream, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		r.track(c, true)
		r.track(up, true)
		r.wg.Add(2)
		go r.pipe(c, up)
		go r.pipe(up, c)
	}
}

type held struct {
	b  []byte
	at time.Time
}

// pipe copies src to dst, each chunk leaving delay after it arrived; the
// queue keeps order and lets reading continue while chunks wait.
func (r *Relay) pipe(src, dst net.Conn) {
	defer r.wg.Done()
	q := make(chan held, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for h := range q {
			if d := time.Until(h.at.Add(r.delay)); d > 0 {
				time.Sleep(d)
			}
			if _, err := dst.Write(h.b); err != nil {
				break
			}
		}
		dst.Close()
		for range q {
		}
	}()
	for {
		b := make([]byte, 32<<10)
		n, err := src.Read(b)
		if n > 0 {
			q <- held{b[:n], time.Now()}
		}
		if err != nil {
			break
		}
	}
	close(q)
	<-done
	src.Close()
	r.track(src, false)
	r.track(dst, false)
}
