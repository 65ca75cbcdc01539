package realtime

import (
	"net"
	"runtime"
	"syscall"
	"time"
	"unsafe"
)

// How room messages reach sockets. A message is framed once; the topic's
// listeners are split into shards (a connection belongs to one shard for
// its whole life, so its messages stay in order) and one writer goroutine
// per shard writes the shared frame to each socket with a single
// non-blocking write(2). A socket whose kernel buffer is full keeps the
// unwritten rest in its pending list and gets a drainer goroutine that
// waits for it (with a write deadline) and flushes the backlog in one
// writev(2); a client that lags SendQueue frames is disconnected. So the
// common case costs one syscall per delivery and no goroutine wake-up,
// channel hand-off or allocation per connection.

// job is one frame for the listeners of one topic in one shard.
type job struct {
	frame []byte
	conns []*conn
}

// maxCoalesce bounds how many queued messages a writer merges into one
// write per socket.
const maxCoalesce = 64

// writeTimeout bounds a drainer's blocking write to a slow client.
const writeTimeout = 10 * time.Second

// yieldEvery is how many sockets a writer writes before it lets other
// goroutines run. A room's fan-out keeps every writer busy for tens of
// milliseconds; without a yield the HTTP handlers and the relay that bring
// the next message wait for the runtime's 10 ms preemption at each hop.
const yieldEvery = 128

// writer writes the jobs of one shard in order. When messages queue up
// faster than the shard is written (a burst, or a loaded machine), the
// queued frames for the same listeners are merged and each socket gets them
// in one write: the syscalls per message fall as the load rises, so a
// backlog drains instead of growing.
func (h *Hub) writer(jobs <-chan job) {
	defer h.wg.Done()
	batch := make([]job, 0, maxCoalesce)
	sent := 0
	for {
		select {
		case <-h.ctx.Done():
			return
		case j := <-jobs:
			batch = append(batch[:0], j)
		}
	more:
		for len(batch) < maxCoalesce {
			select {
			case j := <-jobs:
				batch = append(batch, j)
			default:
				break more
			}
		}
		// Merge runs of jobs for the same listener snapshot (the same room,
		// no join or leave in between); other runs keep their order.
		for i := 0; i < len(batch); {
			k := i + 1
			for k < len(batch) && sameConns(batch[k].conns, batch[i].conns) {
				k++
			}
			f := batch[i].frame
			if k-i > 1 {
				var n int
				for _, j := range batch[i:k] {
					n += len(j.frame)
				}
				f = make([]byte, 0, n)
				for _, j := range batch[i:k] {
					f = append(f, j.frame...)
				}
			}
			for _, c := range batch[i].conns {
				c.send(f)
				if sent++; sent%yieldEvery == 0 {
					runtime.Gosched()
				}
			}
			i = k
		}
		clear(batch)
	}
}

func sameConns(a, b []*conn) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// send writes a frame to the client, or queues it behind a backlog. It
// never blocks on the network, so a writer, the pinger or a reader may call
// it for any connection.
func (c *conn) send(f []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.draining {
		if len(c.pending) >= c.hub.conf.SendQueue {
			c.hub.dropped.Add(1)
			c.hub.log.Info("disconnecting slow websocket client", "remote", c.sock.RemoteAddr().String(), "user", c.id.UserID, "queued", len(c.pending))
			c.closeLocked()
			return
		}
		c.pending = append(c.pending, f)
		return
	}
	if c.fd >= 0 {
		// The socket is non-blocking (Go's poller set it so). c.fd stays
		// this socket's while closed is false: the connection's goroutine
		// closes the socket only after close(). A raw
		// system call: a non-blocking write never parks the thread, so the
		// runtime's syscall bookkeeping (paid per delivery) buys nothing.
		r, _, errno := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(c.fd), uintptr(unsafe.Pointer(unsafe.SliceData(f))), uintptr(len(f)))
		n := int(r)
		if errno == 0 && n == len(f) {
			return
		}
		if errno != 0 && errno != syscall.EAGAIN && errno != syscall.EINTR {
			c.closeLocked()
			return
		}
		if errno != 0 {
			n = 0
		}
		f = f[n:]
	}
	c.pending = append(c.pending, f)
	c.draining = true
	c.hub.wg.Add(1)
	go c.drain()
}

// drain writes a slow client's backlog with blocking writes, then hands the
// write side back to the non-blocking path.
func (c *conn) drain() {
	defer c.hub.wg.Done()
	for {
		c.mu.Lock()
		if c.closed || len(c.pending) == 0 {
			c.draining = false
			c.pending = nil
			c.mu.Unlock()
			return
		}
		batch := net.Buffers(c.pending)
		c.pending = nil
		// The deadline is set under mu so it cannot overwrite close's.
		_ = c.sock.SetWriteDeadline(time.Now().Add(writeTimeout))
		c.mu.Unlock()
		_, err := batch.WriteTo(c.sock)
		c.mu.Lock()
		if !c.closed {
			// RawConn.Write honours deadlines too: clear it for the fast path.
			_ = c.sock.SetWriteDeadline(time.Time{})
		}
		c.mu.Unlock()
		if err != nil {
			c.close()
		}
	}
}

func (c *conn) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeLocked()
}

// closeLocked marks the connection closed and wakes its reader (and a
// drainer blocked in a write) with expired deadlines. Ending the reader
// unregisters the conn, after which its goroutine closes the socket.
func (c *conn) closeLocked() {
	if c.closed {
		return
	}
	c.closed = true
	c.pending = nil
	now := time.Now()
	_ = c.sock.SetReadDeadline(now)
	_ = c.sock.SetWriteDeadline(now)
}

// goingAway tells the client the server is shutting down, then closes.
func (c *conn) goingAway() {
	c.send(closeFrame(1001, "server shutting down"))
	c.close()
}
