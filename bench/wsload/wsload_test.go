package wsload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fasthttp/websocket"
)

type recorder struct {
	mu     sync.Mutex
	texts  []string
	closed chan error
}

func (r *recorder) OnText(c *Conn, p []byte, _ time.Time) []byte {
	r.mu.Lock()
	r.texts = append(r.texts, string(p))
	r.mu.Unlock()
	if string(p) == "echo?" {
		return []byte("echo!")
	}
	return nil
}

func (r *recorder) OnClose(c *Conn, err error) { r.closed <- err }

// TestLoopReadsFramesPingsAndClose runs the client against gorilla's server
// side: frames of every length encoding, one split across TCP writes, a
// ping that must be answered, a reply the handler asks for, and a close.
func TestLoopReadsFramesPingsAndClose(t *testing.T) {
	big := strings.Repeat("x", 70000)
	pong := make(chan string, 1)
	echoed := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		ws.SetPongHandler(func(s string) error { pong <- s; return nil })
		if _, m, err := ws.ReadMessage(); err != nil || string(m) != "hello" {
			t.Errorf("server read %q %v", m, err)
			return
		}
		for _, m := range []string{"a", strings.Repeat("m", 300), big, "echo?"} {
			_ = ws.WriteMessage(websocket.TextMessage, []byte(m))
		}
		_ = ws.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(time.Second))
		// Reading delivers the pong and the client's "echo!" reply.
		for {
			_, m, err := ws.ReadMessage()
			if err != nil {
				return
			}
			echoed <- string(m)
			break
		}
		// A frame in two TCP writes (TestConsumeKeepsPartialFrames checks
		// the split deterministically).
		raw := ws.NetConn()
		raw.Write([]byte{0x81, 5, 'h', 'e'})
		raw.Write([]byte{'l', 'l', 'o'})
		_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
		ws.ReadMessage() // the client's close reply
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WriteText([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	first, err := c.ReadText(time.Now().Add(30 * time.Second))
	if err != nil || string(first) != "a" {
		t.Fatalf("setup read %q %v", first, err)
	}
	rec := &recorder{closed: make(chan error, 1)}
	l, err := NewLoop(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.Add(c); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-rec.closed:
		if err == nil || !strings.Contains(err.Error(), "1000 bye") {
			t.Errorf("close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no close")
	}
	if got := <-pong; got != "p1" {
		t.Errorf("pong %q", got)
	}
	if got := <-echoed; got != "echo!" {
		t.Errorf("reply %q", got)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	want := []string{strings.Repeat("m", 300), big, "echo?", "hello"}
	if len(rec.texts) != len(want) {
		t.Fatalf("got %d texts, want %d", len(rec.texts), len(want))
	}
	for i := range want {
		if rec.texts[i] != want[i] {
			t.Errorf("text %d: %d bytes, want %d", i, len(rec.texts[i]), len(want[i]))
		}
	}
}

func TestDialRefusedAndForgedAccept(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":{"code":"too_many_connections"}}`))
	}))
	defer srv.Close()
	_, err := Dial(context.Background(), "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	var he *HandshakeError
	if !errors.As(err, &he) || he.Status != 429 || !strings.Contains(he.Body, "too_many_connections") {
		t.Fatalf("want a 429 HandshakeError, got %v", err)
	}
	// A server that answers 101 with the wrong accept key is not WebSocket.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			l, err := br.ReadString('\n')
			if err != nil || l == "\r\n" {
				break
			}
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: forged\r\n\r\n"))
	}()
	_, err = Dial(context.Background(), "ws://"+ln.Addr().String()+"/", nil)
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("forged accept: want ErrProtocol, got %v", err)
	}
	if _, err := Dial(context.Background(), "http://x/", nil); err == nil {
		t.Fatal("http:// URL accepted")
	}
}

func TestMeterCountsOnceAndFindsBatches(t *testing.T) {
	m := NewMeter(2)
	h := m.Handler()
	now := time.Now()
	c0, c1 := &Conn{ID: 0}, &Conn{ID: 1}
	// Centrifugo may batch several publications in one frame.
	h.OnText(c0, []byte(`{"push":{"pub":{"data":{"body":"`+Body(0, now)+`"}}}}`+"\n"+`{"push":{"pub":{"data":{"body":"`+Body(1, now)+`"}}}}`), now)
	h.OnText(c0, []byte(`{"data":{"body":"`+Body(1, now)+`"}}`), now) // repeated
	h.OnText(c1, []byte(`{"data":{"body":"`+Body(1, now)+`"}}`), now)
	h.OnText(c1, []byte(`{"data":{"body":"`+Body(0, now)+`"}}`), now) // late
	if m.Received() != 4 || m.Duplicates.Load() != 1 || m.Reordered.Load() != 1 || len(m.Latencies()) != 4 {
		t.Fatalf("received %d duplicates %d reordered %d", m.Received(), m.Duplicates.Load(), m.Reordered.Load())
	}
}

// TestConsumeKeepsPartialFrames feeds a stream of frames to the parser cut
// at every possible byte.
func TestConsumeKeepsPartialFrames(t *testing.T) {
	var stream []byte
	want := []string{"a", strings.Repeat("m", 300), strings.Repeat("b", 70000)}
	for _, m := range want {
		stream = append(stream, serverFrame(m)...)
	}
	for _, cut := range []int{1, 2, 3, 5, 200, 303, 304, 310, len(stream) - 1} {
		rec := &recorder{closed: make(chan error, 1)}
		l := &Loop{h: rec}
		c := &Conn{fd: -1}
		var wbuf []byte
		if err := l.consume(c, append([]byte(nil), stream[:cut]...), time.Now(), &wbuf); err != nil {
			t.Fatal(err)
		}
		rest := append(c.partial, stream[cut:]...)
		c.partial = nil
		if err := l.consume(c, rest, time.Now(), &wbuf); err != nil {
			t.Fatal(err)
		}
		if len(rec.texts) != len(want) || c.partial != nil {
			t.Fatalf("cut %d: %d texts, partial %d bytes", cut, len(rec.texts), len(c.partial))
		}
		for i := range want {
			if rec.texts[i] != want[i] {
				t.Fatalf("cut %d: text %d differs", cut, i)
			}
		}
	}
	// A masked or fragmented server frame is refused.
	for _, bad := range [][]byte{{0x81, 0x81, 1, 2, 3, 4, 'x'}, {0x01, 1, 'x'}} {
		if err := (&Loop{h: &recorder{}}).consume(&Conn{fd: -1}, bad, time.Now(), new([]byte)); !errors.Is(err, ErrProtocol) {
			t.Errorf("% x: want ErrProtocol, got %v", bad, err)
		}
	}
}

func serverFrame(m string) []byte {
	n := len(m)
	switch {
	case n < 126:
		return append([]byte{0x81, byte(n)}, m...)
	case n <= 0xFFFF:
		return append([]byte{0x81, 126, byte(n >> 8), byte(n)}, m...)
	default:
		b := []byte{0x81, 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
		return append(b, m...)
	}
}

// stampRecorder keeps (arrival, read) pairs.
type stampRecorder struct {
	mu    sync.Mutex
	pairs [][2]int64
}

func (r *stampRecorder) OnText(c *Conn, _ []byte, at time.Time) []byte {
	r.mu.Lock()
	r.pairs = append(r.pairs, [2]int64{c.arrived, at.UnixNano()})
	r.mu.Unlock()
	return nil
}

func (r *stampRecorder) OnClose(*Conn, error) {}

func (r *stampRecorder) stamped() (n int, bad []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pairs {
		if p[0] == 0 {
			continue
		}
		n++
		if p[0] > p[1] {
			bad = append(bad, fmt.Sprintf("arrived %d after read %d", p[0], p[1]))
		}
	}
	return n, bad
}

// TestLoopStampsArrival checks the kernel's receive time reaches the
// handler and is never after the read. The kernel turns receive stamps on
// a moment after the first socket asks (a deferred work item), so the
// server keeps sending until some message carries one.
func TestLoopStampsArrival(t *testing.T) {
	added, done := make(chan struct{}), make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := (&websocket.Upgrader{}).Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		<-added
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if ws.WriteMessage(websocket.TextMessage, []byte("m")) != nil {
				return
			}
		}
	}))
	defer srv.Close()
	defer close(done)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rec := &stampRecorder{}
	l, err := NewLoop(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	l.Stamps = true
	if err := l.Add(c); err != nil {
		t.Fatal(err)
	}
	close(added)
	for {
		n, bad := rec.stamped()
		if len(bad) > 0 {
			t.Fatal(bad)
		}
		if n >= 3 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d stamped messages after 30 s", n)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// FuzzConsume feeds arbitrary server bytes to the frame parser, whole and
// cut in two: it must not panic, and a stream it accepts whole it must
// accept cut, with the same texts.
func FuzzConsume(f *testing.F) {
	f.Add(serverFrame("a"), 1)
	f.Add(append(serverFrame(strings.Repeat("m", 300)), serverFrame("b")...), 3)
	f.Add([]byte{0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0}, 4)
	f.Add([]byte{0x89, 2, 'p', '1', 0x88, 2, 3, 232}, 5)
	f.Add([]byte{0x81, 0x81, 1, 2, 3, 4, 'x'}, 2)
	f.Fuzz(func(t *testing.T, stream []byte, cut int) {
		parse := func(parts ...[]byte) ([]string, error) {
			rec := &recorder{closed: make(chan error, 1)}
			l := &Loop{h: rec}
			c := &Conn{fd: -1}
			var wbuf []byte
			for _, p := range parts {
				data := append(c.partial, p...)
				c.partial = nil
				if err := l.consume(c, data, time.Now(), &wbuf); err != nil {
					return rec.texts, err
				}
			}
			return rec.texts, nil
		}
		whole, err := parse(stream)
		if err != nil || len(stream) == 0 {
			return
		}
		cut = int(uint(cut) % uint(len(stream)))
		split, err := parse(stream[:cut], stream[cut:])
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if len(split) != len(whole) {
			t.Fatalf("cut at %d: %d texts, whole %d", cut, len(split), len(whole))
		}
		for i := range whole {
			if split[i] != whole[i] {
				t.Fatalf("cut at %d: text %d differs", cut, i)
			}
		}
	})
}
