// Package wsload is a WebSocket client (RFC 6455) built to hold many
// thousands of connections on a machine it shares with the server under
// test. Connections are set up with ordinary blocking I/O (handshake, then
// whatever the protocol needs to join a room), then handed to a Loop: one
// goroutine on its own epoll set that reads every socket with one read(2)
// per wake-up, parses each frame and hands text payloads to a callback.
// There is no goroutine, no buffer and no allocation per connection while
// it idles or receives, so the client's CPU goes to reading frames, not to
// scheduling.
//
// It is a real client: the handshake's Sec-WebSocket-Accept is checked,
// frames it sends are masked, pings are answered with pongs and a close
// frame with a close frame; only fragmented messages are refused (neither
// LiveEngine nor Centrifugo sends them).
package wsload

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ErrProtocol marks a frame the client cannot accept.
var ErrProtocol = errors.New("wsload: protocol error")

// HandshakeError is a refused upgrade: the server's status and body.
type HandshakeError struct {
	Status int
	Body   string
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("websocket handshake: HTTP %d: %s", e.Status, e.Body)
}

// Conn is one client connection. Before Loop.Add it is used with blocking
// calls (WriteText, ReadText); after, only its Loop touches it.
type Conn struct {
	// ID is free for the caller (an index into its own tables).
	ID int

	nc   net.Conn
	br   *bufio.Reader
	fd   int
	mask [4]byte
	// partial holds the start of a frame that a read cut off.
	partial []byte
	closed  bool
	// arrived is the kernel's receive time (unix ns) of the newest bytes
	// the Loop is handing to its handler; 0 when the loop does not ask
	// for receive timestamps.
	arrived int64
}

const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Dial opens a WebSocket to a ws:// URL.
func Dial(ctx context.Context, rawURL string, header http.Header) (*Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" || u.Host == "" {
		return nil, fmt.Errorf("wsload: %q is not a ws:// URL", rawURL)
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	c := &Conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), fd: -1}
	_, _ = rand.Read(c.mask[:])
	var k [16]byte
	_, _ = rand.Read(k[:])
	key := base64.StdEncoding.EncodeToString(k[:])
	var req strings.Builder
	fmt.Fprintf(&req, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", u.RequestURI(), u.Host, key)
	for name, vs := range header {
		for _, v := range vs {
			fmt.Fprintf(&req, "%s: %s\r\n", name, v)
		}
	}
	req.WriteString("\r\n")
	if _, err := io.WriteString(nc, req.String()); err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		nc.Close()
		return nil, &HandshakeError{Status: resp.StatusCode, Body: string(b)}
	}
	sum := sha1.Sum([]byte(key + acceptGUID))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(sum[:]) {
		nc.Close()
		return nil, fmt.Errorf("websocket handshake: %w: wrong Sec-WebSocket-Accept", ErrProtocol)
	}
	_ = nc.SetDeadline(time.Time{})
	return c, nil
}

// appendFrame appends a masked client frame (RFC 6455 §5.3).
func appendFrame(b []byte, op byte, mask [4]byte, p []byte) []byte {
	n := len(p)
	b = append(b, 0x80|op)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, p...)
	for i := range p {
		b[start+i] ^= mask[i&3]
	}
	return b
}

// WriteText sends a text message (setup phase).
func (c *Conn) WriteText(p []byte) error {
	_, err := c.nc.Write(appendFrame(nil, 0x1, c.mask, p))
	return err
}

// ReadText returns the next text message (setup phase), answering pings.
func (c *Conn) ReadText(deadline time.Time) ([]byte, error) {
	_ = c.nc.SetReadDeadline(deadline)
	defer c.nc.SetReadDeadline(time.Time{})
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			return nil, err
		}
		n, err := readLength(c.br, h[1])
		if err != nil {
			return nil, err
		}
		if h[0]&0x80 == 0 || h[1]&0x80 != 0 {
			return nil, fmt.Errorf("%w: fragmented or masked server frame", ErrProtocol)
		}
		p := make([]byte, n)
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		switch h[0] & 0xF {
		case 0x1:
			return p, nil
		case 0x9:
			if _, err := c.nc.Write(appendFrame(nil, 0xA, c.mask, p)); err != nil {
				return nil, err
			}
		case 0x8:
			return nil, fmt.Errorf("websocket closed by server: %s", closeReason(p))
		}
	}
}

func readLength(r io.Reader, b1 byte) (int, error) {
	switch n := b1 & 0x7F; n {
	case 126:
		var b [2]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		return int(binary.BigEndian.Uint16(b[:])), nil
	case 127:
		var b [8]byte
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		v := binary.BigEndian.Uint64(b[:])
		if v > 1<<30 {
			return 0, fmt.Errorf("%w: frame of %d bytes", ErrProtocol, v)
		}
		return int(v), nil
	default:
		return int(n), nil
	}
}

func closeReason(p []byte) string {
	if len(p) < 2 {
		return "no status"
	}
	return fmt.Sprintf("%d %s", binary.BigEndian.Uint16(p), p[2:])
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.nc != nil {
		return c.nc.Close()
	}
	return nil
}

// Connect runs join(i) for every i in [0, n) on workers goroutines and
// stops at the first error, which it returns, or when ctx ends.
func Connect(ctx context.Context, n, workers int, join func(i int) error) error {
	var wg sync.WaitGroup
	var next atomic.Int64
	var first atomic.Value
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || first.Load() != nil || ctx.Err() != nil {
					return
				}
				if err := join(i); err != nil {
					first.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	err, _ := first.Load().(error)
	return err
}
