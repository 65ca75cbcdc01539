// Package rawhttp is a load generator's HTTP/1.1 client, cheap enough that
// on a shared box the CPU goes to the server under test: ONE goroutine,
// locked to its own thread, waits on every keep-alive connection with
// epoll, writes each request with one write(2) and parses only the status
// line and Content-Length of the answer. It keeps one request in flight per
// connection, as a fasthttp or net/http client would for this load, at a
// fraction of their CPU (~10 µs per request where fasthttp's client cost
// ~40-50 µs, measured with control/ledger's BenchmarkGifts).
//
// It knows only what a JSON API built on fasthttp sends: answers with a
// Content-Length body, no chunking, no TLS. Linux only (epoll).
package rawhttp

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// ErrAnswer means an answer could not be parsed (or never came).
var ErrAnswer = errors.New("rawhttp: bad answer")

// Answer is one parsed HTTP answer. Head and Body point into the
// connection's buffer: valid only during the Loop.Answer call.
type Answer struct {
	Status int
	Head   []byte // status line and headers, without the blank line
	Body   []byte
	// Latency is from the request's write(2) to the epoll round that
	// completed the answer (plus up to Loop.Pause).
	Latency time.Duration
}

// Loop drives Conns keep-alive connections to Addr until every connection
// is done. Request and Answer run on the loop's own goroutine, one at a
// time: they need no locks among themselves.
type Loop struct {
	Addr  string
	Conns int
	// Request appends connection c's next request (the whole HTTP/1.1
	// message) to buf and returns it; ok=false ends connection c.
	Request func(c int, buf []byte) (req []byte, ok bool)
	// Answer receives connection c's answer to its last request; Request
	// is asked for c's next one right after.
	Answer func(c int, a Answer)
	// Pause > 0 rests the thread that long after a round of answers that
	// did not fill the event list, before waiting again: answers that
	// arrive meanwhile are taken in the next round without waking the
	// thread for each, which also spares the server's write(2) the wake-up
	// of a sleeping reader (~20 µs of a server's CPU per request on one
	// shared 2-core box). A latency includes up to Pause of that rest.
	Pause time.Duration
	// Timeout ends the run with an error when no answer at all comes for
	// this long (60 s if zero).
	Timeout time.Duration

	// Reads counts read(2) calls, Rounds epoll waits that returned events.
	Reads, Rounds int64
}

type conn struct {
	fd  int
	id  int
	buf []byte // answer bytes read so far
	t0  time.Time
}

// Run dials the connections and drives them; it returns when every
// connection's Request said no more and its last answer came, or on the
// first transport or parse error.
func (l *Loop) Run() error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	timeout := l.Timeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("rawhttp: epoll: %w", err)
	}
	defer syscall.Close(epfd)
	conns := make(map[int32]*conn, l.Conns)
	defer func() {
		for _, c := range conns {
			syscall.Close(c.fd)
		}
	}()
	for k := 0; k < l.Conns; k++ {
		fd, err := DialFD(l.Addr)
		if err != nil {
			return err
		}
		conns[int32(fd)] = &conn{fd: fd, id: k, buf: make([]byte, 0, 1024)}
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			return fmt.Errorf("rawhttp: epoll add: %w", err)
		}
	}
	var wbuf []byte
	// send asks for c's next request and writes it; false: c is done.
	send := func(c *conn) (bool, error) {
		req, ok := l.Request(c.id, wbuf[:0])
		if !ok {
			return false, nil
		}
		wbuf = req
		c.t0 = time.Now()
		w, err := syscall.Write(c.fd, req)
		if err == nil && w != len(req) {
			// One small request per connection in flight: the socket
			// buffer always has room, so this does not happen.
			err = errors.New("short write")
		}
		if err != nil {
			return false, fmt.Errorf("rawhttp: connection %d: write: %w", c.id, err)
		}
		return true, nil
	}
	open := 0
	for _, c := range conns {
		ok, err := send(c)
		if err != nil {
			return err
		}
		if ok {
			open++
		}
	}
	events := make([]syscall.EpollEvent, 256)
	rbuf := make([]byte, 64<<10)
	for open > 0 {
		m, err := syscall.EpollWait(epfd, events, int(timeout/time.Millisecond))
		if err != nil {
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return fmt.Errorf("rawhttp: epoll wait: %w", err)
		}
		if m == 0 {
			return fmt.Errorf("%w: none in %s (%d connections waiting)", ErrAnswer, timeout, open)
		}
		l.Rounds++
		now := time.Now()
		for _, ev := range events[:m] {
			c := conns[ev.Fd]
			r, err := syscall.Read(c.fd, rbuf)
			l.Reads++
			if err == syscall.EAGAIN {
				continue
			}
			if err != nil || r == 0 {
				return fmt.Errorf("rawhttp: connection %d closed: %v", c.id, err)
			}
			c.buf = append(c.buf, rbuf[:r]...)
			status, body, size, ok, err := ParseAnswer(c.buf)
			if err != nil {
				return fmt.Errorf("rawhttp: connection %d: %w", c.id, err)
			}
			if !ok {
				continue // the rest of the answer is on its way
			}
			l.Answer(c.id, Answer{Status: status, Head: c.buf[:body-4], Body: c.buf[body:size], Latency: now.Sub(c.t0)})
			c.buf = append(c.buf[:0], c.buf[size:]...)
			more, err := send(c)
			if err != nil {
				return err
			}
			if !more {
				open--
			}
		}
		if l.Pause > 0 && m < len(events) {
			// A plain nanosleep: this thread is ours alone.
			ts := syscall.NsecToTimespec(int64(l.Pause))
			_ = syscall.Nanosleep(&ts, nil)
		}
	}
	return nil
}

// DialFD connects to addr and returns a non-blocking socket of its own
// (a duplicate: Go's poller forgets the original).
func DialFD(addr string) (int, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return -1, fmt.Errorf("rawhttp: %w", err)
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

var (
	headEnd       = []byte("\r\n\r\n")
	statusPrefix  = []byte("HTTP/1.1 ")
	contentLength = []byte("\r\nContent-Length: ")
)

// ParseAnswer reads an HTTP/1.1 answer at the start of b: its status, where
// its body starts and its total size, or ok=false while it is incomplete.
// An answer without Content-Length (chunked, or closed by the server) is an
// error: this client does not read those.
func ParseAnswer(b []byte) (status, body, size int, ok bool, err error) {
	end := bytes.Index(b, headEnd)
	if end < 0 {
		return 0, 0, 0, false, nil
	}
	h := b[:end]
	if len(h) < 12 || !bytes.HasPrefix(h, statusPrefix) {
		return 0, 0, 0, false, fmt.Errorf("%w: status line %q", ErrAnswer, h[:min(len(h), 40)])
	}
	status, err = strconv.Atoi(string(h[9:12]))
	if err != nil {
		return 0, 0, 0, false, fmt.Errorf("%w: status line %q", ErrAnswer, h[:min(len(h), 40)])
	}
	i := bytes.Index(h, contentLength)
	if i < 0 {
		return 0, 0, 0, false, fmt.Errorf("%w: no Content-Length", ErrAnswer)
	}
	v := h[i+len(contentLength):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		v = v[:j]
	}
	cl, err := strconv.Atoi(string(v))
	// A load generator's answers are small; a bound also keeps body+cl
	// from overflowing.
	if err != nil || cl < 0 || cl > 1<<30 {
		return 0, 0, 0, false, fmt.Errorf("%w: Content-Length %q", ErrAnswer, v)
	}
	body = end + 4
	size = body + cl
	if len(b) < size {
		return 0, 0, 0, false, nil
	}
	return status, body, size, true, nil
}
