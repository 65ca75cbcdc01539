package realtime

import (
	"errors"
	"net"
	"syscall"
	"time"
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

// writeTimeout bounds a drainer's blocking write to a slow client.
const writeTimeout = 10 * time.Second

func (h *Hub) writer(jobs <-chan job) {
	defer h.wg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case j := <-jobs:
			for _, c := range j.conns {
				c.send(j.frame)
			}
		}
	}
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
	if c.raw != nil {
		c.wbuf = f
		err := c.raw.Write(c.writeFn)
		n, werr := c.wn, c.werr
		c.wbuf, c.werr = nil, nil
		if err == nil && werr == nil && n == len(f) {
			return
		}
		if err != nil || (werr != nil && !errors.Is(werr, syscall.EAGAIN) && !errors.Is(werr, syscall.EINTR)) {
			c.closeLocked()
			return
		}
		f = f[n:]
	}
	c.pending = append(c.pending, f)
	c.draining = true
	c.hub.wg.Add(1)
	go c.drain()
}

// rawWrite is the RawConn.Write callback: one write(2) on the non-blocking
// socket; returning true tells the runtime not to wait for writability.
func (c *conn) rawWrite(fd uintptr) bool {
	n, err := syscall.Write(int(fd), c.wbuf)
	c.wn, c.werr = max(n, 0), err
	return true
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
// unregisters the conn and returns from the handler, after which fasthttp
// closes the socket.
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
