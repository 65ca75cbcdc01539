package sfu

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
)

// batchSize is the most datagrams one sendmmsg call carries. 64 keep the
// queue small (≈ 96 KB) and cut the syscalls of a fan-out 64-fold.
const batchSize = 64

// slotSize holds any datagram the SFU sends: an RTP packet of mtu payload
// plus header, extensions and SRTP tag, or a DTLS/STUN message.
const slotSize = 1500

// batchConn wraps the shared ICE UDP socket so that the packets of one
// fan-out leave in batches. Outside a fan-out it writes through at once;
// while at least one fan-out holds it (hold / release), writes are copied
// into a queue that goes out with one sendmmsg per batchSize packets and
// when the last holder releases. The wait a packet sees is thus bounded by
// one batch of the fan-out that queued it, never by a timer.
//
// The ICE agent's UDP mux uses ReadFromAddrPort / WriteToAddrPort when the
// conn has them (pion/ice AddrPortReaderWriter), so the queue keeps
// netip.AddrPort destinations and allocates nothing per packet.
type batchConn struct {
	*net.UDPConn

	mu    sync.Mutex
	holds int
	n     int // queued datagrams
	lens  [batchSize]int
	dst   [batchSize]netip.AddrPort
	bufs  *[batchSize][slotSize]byte
	sys   batchSys // platform state: sendmmsg headers on Linux

	// Counters for metrics and tests.
	batches atomic.Uint64 // sendmmsg calls (or write loops elsewhere)
	packets atomic.Uint64 // datagrams sent through the queue
	dropped atomic.Uint64 // datagrams the kernel refused
}

func newBatchConn(c *net.UDPConn) *batchConn {
	b := &batchConn{UDPConn: c, bufs: new([batchSize][slotSize]byte)}
	b.sys.init(b)
	return b
}

// hold starts a fan-out: writes are queued until the matching release.
func (b *batchConn) hold() {
	b.mu.Lock()
	b.holds++
	b.mu.Unlock()
}

// release ends a fan-out; the last holder sends what is queued.
func (b *batchConn) release() {
	b.mu.Lock()
	b.holds--
	if b.holds == 0 && b.n > 0 {
		b.flushLocked()
	}
	b.mu.Unlock()
}

// WriteToAddrPort queues an SRTP packet while a fan-out holds the conn,
// else sends p at once.
func (b *batchConn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	b.mu.Lock()
	// STUN (first byte 0–3) and DTLS (20–63) never wait in a fan-out's
	// queue (RFC 7983 demultiplexing): a handshake of another peer, or a
	// connectivity check, must not stall behind a long or descheduled
	// fan-out. Only SRTP/SRTCP (128–191) is batched.
	if b.holds == 0 || len(p) > slotSize || len(p) == 0 || p[0] < 128 {
		if b.n > 0 {
			b.flushLocked() // keep the order of what was queued
		}
		b.mu.Unlock()
		return b.UDPConn.WriteToUDPAddrPort(p, addr)
	}
	i := b.n
	b.lens[i] = copy(b.bufs[i][:], p)
	b.dst[i] = addr
	b.n++
	if b.n == batchSize {
		b.flushLocked()
	}
	b.mu.Unlock()
	return len(p), nil
}

// WriteTo implements net.PacketConn for callers without AddrPort support.
func (b *batchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if ua, ok := addr.(*net.UDPAddr); ok {
		return b.WriteToAddrPort(p, ua.AddrPort())
	}
	return b.UDPConn.WriteTo(p, addr)
}

// ReadFromAddrPort lets the ICE mux read without allocating addresses.
func (b *batchConn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return b.UDPConn.ReadFromUDPAddrPort(p)
}

// flushLocked sends the queue. A datagram the kernel refuses is dropped,
// as the network would; the rest of the batch still goes.
func (b *batchConn) flushLocked() {
	b.sys.send(b, b.n)
	b.batches.Add(1)
	b.packets.Add(uint64(b.n))
	b.n = 0
}

// sendOneByOne is the portable fallback of a batch send.
func (b *batchConn) sendOneByOne(n int) {
	for i := 0; i < n; i++ {
		if _, err := b.UDPConn.WriteToUDPAddrPort(b.bufs[i][:b.lens[i]], b.dst[i]); err != nil {
			b.dropped.Add(1)
		}
	}
}

// netInterfaceIndex resolves an IPv6 zone (an interface name or number).
func netInterfaceIndex(zone string) (int, error) {
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return ifi.Index, nil
	}
	var n int
	for _, c := range zone {
		if c < '0' || c > '9' {
			return 0, net.InvalidAddrError(zone)
		}
		n = n*10 + int(c-'0')
	}
	return n, nil
}
