package ledger

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// runRawGiftClients is runGiftClients on a raw HTTP/1.1 keep-alive client:
// ONE goroutine on its own thread waits on every connection with epoll,
// writes each request with one write(2) and parses only the status line and
// Content-Length of the answer. It does what the fasthttp client does for
// this load (one request in flight per connection, the next sent when the
// answer is complete) at a fraction of its CPU, so the 2 cores go to the
// server: the fasthttp client cost ~40-50 µs per gift, this one ~10.
//
// pause > 0 rests the thread that long after a round of answers that did
// not fill the event list, before waiting again: answers that arrive
// meanwhile are taken in the next round without waking the thread for
// each, which also spares the server's write(2) the wake-up of a sleeping
// reader (on one shared box that wake-up was ~20 µs of the server's CPU per
// gift; across a network it would be the client machine's). A latency
// measured includes up to pause of that rest.
func runRawGiftClients(addr string, n, clients int, authz []string, pause time.Duration, logf func(string, ...any)) (giftLoad, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return giftLoad{}, fmt.Errorf("epoll: %w", err)
	}
	defer syscall.Close(epfd)
	type rawConn struct {
		fd  int
		buf []byte // answer bytes read so far
		t0  time.Time
		i   int64 // gift in flight
	}
	conns := make(map[int32]*rawConn, clients)
	defer func() {
		for _, c := range conns {
			syscall.Close(c.fd)
		}
	}()
	for k := 0; k < clients; k++ {
		fd, err := dialFD(addr)
		if err != nil {
			return giftLoad{}, err
		}
		conns[int32(fd)] = &rawConn{fd: fd, buf: make([]byte, 0, 1024)}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return giftLoad{}, fmt.Errorf("epoll add: %w", err)
		}
	}
	head := []byte("POST /api/v1/streams/live/gifts HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\nContent-Length: 18\r\nAuthorization: ")
	const body = "\r\n\r\n{\"gift_id\":\"rose\"}"
	var next, failed int64
	lat := make([]time.Duration, 0, n)
	var wbuf []byte
	send := func(c *rawConn) error {
		next++
		c.i = next
		wbuf = append(append(wbuf[:0], head...), authz[next%int64(len(authz))]...)
		wbuf = strconv.AppendInt(append(wbuf, "\r\nIdempotency-Key: g"...), next, 10)
		wbuf = append(wbuf, body...)
		c.t0 = time.Now()
		w, err := syscall.Write(c.fd, wbuf)
		if err == nil && w != len(wbuf) {
			// One small request per connection in flight: the socket
			// buffer always has room, so this does not happen.
			err = errors.New("short write")
		}
		return err
	}
	open := 0
	for _, c := range conns {
		if next >= int64(n) {
			break
		}
		if err := send(c); err != nil {
			return giftLoad{}, err
		}
		open++
	}
	events := make([]syscall.EpollEvent, 256)
	rbuf := make([]byte, 64<<10)
	for open > 0 {
		m, err := syscall.EpollWait(epfd, events, 60_000)
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return giftLoad{}, fmt.Errorf("epoll wait: %w", err)
		}
		if m == 0 {
			return giftLoad{}, errors.New("no answer in 60 s")
		}
		now := time.Now()
		for _, ev := range events[:m] {
			c := conns[ev.Fd]
			r, err := syscall.Read(c.fd, rbuf)
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || r == 0 {
				return giftLoad{}, fmt.Errorf("gift %d: connection closed: %v", c.i, err)
			}
			c.buf = append(c.buf, rbuf[:r]...)
			status, size, ok, err := parseRawAnswer(c.buf)
			if err != nil {
				return giftLoad{}, fmt.Errorf("gift %d: %w", c.i, err)
			}
			if !ok {
				continue // the rest of the answer is on its way
			}
			lat = append(lat, now.Sub(c.t0))
			if status != 201 {
				if failed++; failed <= 3 {
					logf("gift %d: status %d: %s", c.i, status, c.buf[:size])
				}
			}
			c.buf = append(c.buf[:0], c.buf[size:]...)
			if next >= int64(n) {
				open--
				continue
			}
			if err := send(c); err != nil {
				return giftLoad{}, err
			}
		}
		if pause > 0 && m < len(events) {
			// A plain nanosleep: this thread is ours alone.
			ts := syscall.NsecToTimespec(int64(pause))
			_ = syscall.Nanosleep(&ts, nil)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	return giftLoad{p50: pct(0.50), p99: pct(0.99), failed: failed}, nil
}

// dialFD connects to addr and returns a non-blocking socket of its own
// (a duplicate: Go's poller forgets the original).
func dialFD(addr string) (int, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return -1, err
	}
	defer nc.Close()
	rc, err := nc.(*net.TCPConn).SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return -1, err
	}
	return fd, nil
}

// parseRawAnswer reads an HTTP/1.1 answer at the start of b: its status and
// total size, or ok=false while it is incomplete. It knows only what the
// money API sends: a Content-Length body, no chunking.
func parseRawAnswer(b []byte) (status, size int, ok bool, err error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, 0, false, nil
	}
	h := b[:end]
	if len(h) < 12 || !bytes.HasPrefix(h, []byte("HTTP/1.1 ")) {
		return 0, 0, false, fmt.Errorf("bad status line %q", h[:min(len(h), 40)])
	}
	status, err = strconv.Atoi(string(h[9:12]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("bad status line %q", h[:min(len(h), 40)])
	}
	i := bytes.Index(h, []byte("\r\nContent-Length: "))
	if i < 0 {
		return 0, 0, false, errors.New("answer without Content-Length")
	}
	v := h[i+len("\r\nContent-Length: "):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		v = v[:j]
	}
	cl, err := strconv.Atoi(string(v))
	if err != nil || cl < 0 {
		return 0, 0, false, fmt.Errorf("bad Content-Length %q", v)
	}
	size = end + 4 + cl
	if len(b) < size {
		return 0, 0, false, nil
	}
	return status, size, true, nil
}

// TestRawGiftClient checks the benchmark's raw client against the server:
// every gift answered 201 and counted once, an answer split over reads is
// parsed, a bad one is an error.
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
	// Keys g1..g300 are replays (201, same answer), then 200 more fit.
	if want := int64(600 - 300 - 200); res.failed != want {
		t.Fatalf("%d failed gifts, want %d", res.failed, want)
	}
	mustInvariants(t, db)

	answer := []byte("HTTP/1.1 201 Created\r\nServer: x\r\nContent-Length: 5\r\n\r\n{}{}}HTTP/1.1")
	for cut := 0; cut < len(answer)-12; cut++ {
		st, size, ok, err := parseRawAnswer(answer[:cut])
		if err != nil && cut >= 12 {
			t.Fatalf("cut %d: %v", cut, err)
		}
		if ok && (st != 201 || size != len(answer)-12) {
			t.Fatalf("cut %d: status %d size %d", cut, st, size)
		}
		if ok != (cut >= len(answer)-12) {
			t.Fatalf("cut %d: ok=%v", cut, ok)
		}
	}
	if _, _, _, err := parseRawAnswer([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")); err == nil {
		t.Fatal("an answer without Content-Length parsed")
	}
}
