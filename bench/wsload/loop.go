package wsload

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// Handler receives what a Loop reads. OnText may return a text message to
// send back (Centrifugo's JSON protocol wants "{}" for its "{}" pings).
// A Loop calls its handler from one goroutine; several Loops call theirs
// concurrently, for different connections.
type Handler interface {
	OnText(c *Conn, payload []byte, at time.Time) (reply []byte)
	OnClose(c *Conn, err error)
}

// BatchHandler is a Handler that wants to know when a Loop has read
// everything one epoll_wait reported, to pass on what it gathered in one go
// rather than once per message.
type BatchHandler interface {
	Handler
	EndBatch()
}

// Events is how many ready sockets a Loop takes from one epoll_wait.
const Events = 1024

// Loop reads many connections from one goroutine through epoll.
type Loop struct {
	h    Handler
	epfd int
	rbuf []byte
	wbuf []byte
	oob  []byte // recvmsg control buffer, for receive timestamps

	mu    sync.RWMutex
	conns []*Conn // by file descriptor: no hashing per event
	open  int
	dead  []*Conn // failed since the last reap (loop goroutine only)

	// Frames and Reads count text frames and read(2) calls.
	Frames, Reads atomic.Int64

	// Stamps asks the kernel for the time each segment reached the
	// socket (SO_TIMESTAMPNS, set before Add): handlers see it as the
	// connection's Arrived time. Sharing the machine with the server, the
	// client may read a frame long after it arrived; the arrival time
	// shows what the server and the network path took on their own.
	Stamps bool

	// Pause is how long the loop rests after a round that emptied its ready
	// list, before waiting again (set before Add). Data that arrives
	// meanwhile is read in the next round without waking the thread for
	// each socket: fewer wake-ups for the loop and for the server, whose
	// write(2) pays for waking a sleeping reader; a delivery may be seen up
	// to Pause later. Zero reads as soon as anything arrives.
	Pause time.Duration

	stop chan struct{}
	done chan struct{}
}

// NewLoop starts a loop.
func NewLoop(h Handler) (*Loop, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("wsload: epoll: %w", err)
	}
	l := &Loop{h: h, epfd: epfd, rbuf: make([]byte, 64<<10),
		stop: make(chan struct{}), done: make(chan struct{})}
	go l.run()
	return l, nil
}

// Add moves a connection set up with blocking calls onto the loop. Bytes
// already buffered (a message that followed the join reply) are delivered
// at once, from the caller's goroutine.
func (l *Loop) Add(c *Conn) error {
	sc, ok := c.nc.(syscall.Conn)
	if !ok {
		return errors.New("wsload: connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var fd int
	var derr error
	if err := rc.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) }); err != nil {
		return err
	}
	if derr != nil {
		return derr
	}
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		c.partial = append([]byte(nil), b...)
	}
	// The duplicate keeps the socket open; Go's poller forgets the original.
	c.nc.Close()
	c.nc, c.br, c.fd = nil, nil, fd
	if err := syscall.SetNonblock(fd, true); err != nil {
		syscall.Close(fd)
		return err
	}
	if l.Stamps {
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TIMESTAMPNS, 1); err != nil {
			syscall.Close(fd)
			return fmt.Errorf("wsload: SO_TIMESTAMPNS: %w", err)
		}
	}
	if len(c.partial) > 0 {
		buf := c.partial
		c.partial = nil
		var wbuf []byte
		// The handler is the loop's: hold the loop off while it runs here.
		l.mu.Lock()
		err := l.consume(c, buf, time.Now(), &wbuf)
		l.mu.Unlock()
		if err != nil {
			syscall.Close(fd)
			return err
		}
	}
	l.mu.Lock()
	if fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*Conn, fd+1-len(l.conns)+len(l.conns)/2)...)
	}
	l.conns[fd] = c
	l.open++
	l.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.mu.Lock()
		l.conns[fd] = nil
		l.open--
		l.mu.Unlock()
		syscall.Close(fd)
		return err
	}
	return nil
}

// Len is the number of open connections on the loop.
func (l *Loop) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.open
}

// Close closes every connection (without a close handshake) and the loop.
func (l *Loop) Close() {
	close(l.stop)
	<-l.done
	l.mu.Lock()
	for fd, c := range l.conns {
		if c != nil {
			syscall.Close(fd)
		}
	}
	l.conns, l.open = nil, 0
	l.mu.Unlock()
	syscall.Close(l.epfd)
}

func (l *Loop) run() {
	defer close(l.done)
	// The loop blocks in epoll_wait; a thread of its own keeps that off
	// the scheduler's hands.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	events := make([]syscall.EpollEvent, Events)
	bh, _ := l.h.(BatchHandler)
	for {
		select {
		case <-l.stop:
			return
		default:
		}
		n, err := syscall.EpollWait(l.epfd, events, 100)
		if err != nil && !errors.Is(err, syscall.EINTR) {
			return
		}
		if n <= 0 {
			continue
		}
		l.mu.RLock()
		for i := 0; i < n; i++ {
			fd := int(events[i].Fd)
			if fd >= len(l.conns) {
				continue
			}
			if c := l.conns[fd]; c != nil && !c.closed {
				l.readOne(c)
			}
		}
		l.mu.RUnlock()
		if bh != nil {
			bh.EndBatch()
		}
		l.reap()
		if l.Pause > 0 && n < len(events) {
			// nanosleep on this thread: time.Sleep would park the goroutine
			// and need another thread to wake this one.
			ts := syscall.NsecToTimespec(int64(l.Pause))
			_ = syscall.Nanosleep(&ts, nil)
		}
	}
}

// readOne reads what one socket has: one read(2), the socket stays in the
// level-triggered set if more is left. The read is a raw system call: the
// socket is non-blocking, so it never parks the thread, and the scheduler
// bookkeeping of syscall.Read would be paid on every delivery.
func (l *Loop) readOne(c *Conn) {
	var r uintptr
	var errno syscall.Errno
	if l.Stamps {
		r, errno = l.recvStamped(c)
	} else {
		r, _, errno = syscall.RawSyscall(syscall.SYS_READ, uintptr(c.fd), uintptr(unsafe.Pointer(&l.rbuf[0])), uintptr(len(l.rbuf)))
	}
	l.Reads.Add(1)
	if errno == syscall.EAGAIN || errno == syscall.EINTR {
		return
	}
	n := int(r)
	if errno != 0 || n == 0 {
		var err error = errno
		if errno == 0 {
			err = errors.New("connection closed by server")
		}
		l.fail(c, err)
		return
	}
	// The clock is read after each read(2) returns, so a latency is never
	// shorter than the time the bytes reached this process.
	at := time.Now()
	data := l.rbuf[:n]
	if len(c.partial) > 0 {
		data = append(c.partial, data...)
		c.partial = nil
	}
	if err := l.consume(c, data, at, &l.wbuf); err != nil {
		l.fail(c, err)
	}
}

// recvStamped reads like read(2) and sets c.arrived from the
// SCM_TIMESTAMPNS message. For TCP the kernel reports the stamp of the
// last segment the call consumed, so for earlier bytes in the same read
// the arrival time is late, never early.
func (l *Loop) recvStamped(c *Conn) (uintptr, syscall.Errno) {
	if l.oob == nil {
		l.oob = make([]byte, syscall.CmsgSpace(16)*2)
	}
	iov := syscall.Iovec{Base: &l.rbuf[0]}
	iov.SetLen(len(l.rbuf))
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: &l.oob[0]}
	msg.SetControllen(len(l.oob))
	r, _, errno := syscall.RawSyscall(syscall.SYS_RECVMSG, uintptr(c.fd), uintptr(unsafe.Pointer(&msg)), 0)
	if errno != 0 {
		return r, errno
	}
	c.arrived = 0
	for b := l.oob[:msg.Controllen]; len(b) >= syscall.SizeofCmsghdr; {
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&b[0]))
		if h.Len < syscall.SizeofCmsghdr || int(h.Len) > len(b) {
			break
		}
		if h.Level == syscall.SOL_SOCKET && h.Type == syscall.SO_TIMESTAMPNS && int(h.Len) >= syscall.CmsgLen(16) {
			ts := (*syscall.Timespec)(unsafe.Pointer(&b[syscall.CmsgLen(0)]))
			c.arrived = ts.Nano()
		}
		b = b[min(len(b), syscall.CmsgSpace(int(h.Len)-syscall.CmsgLen(0))):]
	}
	return r, 0
}

// consume parses the frames in data; an incomplete tail is kept.
func (l *Loop) consume(c *Conn, data []byte, at time.Time, wbuf *[]byte) error {
	for len(data) > 0 {
		if len(data) < 2 {
			goto partial
		}
		b0, b1 := data[0], data[1]
		if b0&0x80 == 0 || b1&0x80 != 0 || b0&0x70 != 0 {
			return fmt.Errorf("%w: fragmented, masked or extended frame (% x)", ErrProtocol, data[:2])
		}
		h, n := 2, int(b1&0x7F)
		switch n {
		case 126:
			if len(data) < 4 {
				goto partial
			}
			h, n = 4, int(data[2])<<8|int(data[3])
		case 127:
			if len(data) < 10 {
				goto partial
			}
			v := uint64(0)
			for _, x := range data[2:10] {
				v = v<<8 | uint64(x)
			}
			if v > 1<<30 {
				return fmt.Errorf("%w: frame of %d bytes", ErrProtocol, v)
			}
			h, n = 10, int(v)
		}
		if len(data) < h+n {
			goto partial
		}
		p := data[h : h+n]
		data = data[h+n:]
		switch b0 & 0xF {
		case 0x1:
			l.Frames.Add(1)
			if reply := l.h.OnText(c, p, at); reply != nil {
				*wbuf = appendFrame((*wbuf)[:0], 0x1, c.mask, reply)
				if err := writeAll(c.fd, *wbuf); err != nil {
					return err
				}
			}
		case 0x9:
			*wbuf = appendFrame((*wbuf)[:0], 0xA, c.mask, p)
			if err := writeAll(c.fd, *wbuf); err != nil {
				return err
			}
		case 0xA:
		case 0x8:
			*wbuf = appendFrame((*wbuf)[:0], 0x8, c.mask, p[:min(len(p), 2)])
			_ = writeAll(c.fd, *wbuf)
			return fmt.Errorf("websocket closed by server: %s", closeReason(p))
		default:
			return fmt.Errorf("%w: opcode %d", ErrProtocol, b0&0xF)
		}
	}
	return nil
partial:
	c.partial = append([]byte(nil), data...)
	return nil
}

// writeAll writes a small frame to a non-blocking socket, waiting briefly
// if its buffer is full (replies are rare: pongs and protocol pings).
func writeAll(fd int, b []byte) error {
	deadline := time.Now().Add(5 * time.Second)
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EINTR) {
			if time.Now().After(deadline) {
				return errors.New("write timed out")
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// fail marks a connection closed; reap removes it once the read lock is
// released.
func (l *Loop) fail(c *Conn, err error) {
	if c.closed {
		return
	}
	c.closed = true
	l.dead = append(l.dead, c)
	l.h.OnClose(c, err)
}

func (l *Loop) reap() {
	if len(l.dead) == 0 {
		return
	}
	l.mu.Lock()
	for _, c := range l.dead {
		l.conns[c.fd] = nil
		l.open--
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
		syscall.Close(c.fd)
	}
	l.mu.Unlock()
	l.dead = l.dead[:0]
}
