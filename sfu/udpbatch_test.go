package sfu

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"
)

// TestBatchConnDeliversEveryDatagram sends, inside one hold, interleaved
// runs of datagrams to two receivers (runs of equal sizes that the Linux
// path sends as one GSO message, odd sizes, more than one batch) and
// checks that each receiver gets every datagram, whole and in order.
func TestBatchConnDeliversEveryDatagram(t *testing.T) {
	for _, network := range []string{"udp4", "udp"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "udp" {
				addr = ":0" // a dual-stack AF_INET6 socket: IPv4 goes v4-mapped
			}
			pc, err := net.ListenPacket(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			b := newBatchConn(pc.(*net.UDPConn))
			defer b.Close()

			var rx [2]*net.UDPConn
			var dst [2]netip.AddrPort
			for i := range rx {
				c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_ = c.SetReadBuffer(4 << 20)
				rx[i] = c
				dst[i] = c.LocalAddr().(*net.UDPAddr).AddrPort()
			}
			type dgram struct {
				to   int
				data []byte
			}
			var sent []dgram
			seq := 0
			add := func(to int, sizes ...int) {
				for _, n := range sizes {
					p := bytes.Repeat([]byte{byte(seq)}, n)
					// First byte 0x80: an RTP/SRTP datagram, the only
					// kind a hold queues (RFC 7983).
					p[0] = 0x80
					copy(p[1:], fmt.Sprintf("%05d", seq))
					seq++
					sent = append(sent, dgram{to, p})
				}
			}
			for round := 0; round < 5; round++ {
				add(0, 1228, 1228, 1228, 700) // a picture: full fragments, then the rest
				add(1, 1228, 1228, 1228, 700)
				add(0, 90)               // audio
				add(1, 1228, 1228, 1228) // all full
				add(0, 500, 600)         // a larger one after a smaller: two messages
				add(1, 300)
			}
			for i := 0; i < 70; i++ { // one run longer than a batch
				add(0, 1000)
			}
			b.hold()
			for _, d := range sent {
				if _, err := b.WriteToAddrPort(d.data, dst[d.to]); err != nil {
					t.Fatal(err)
				}
			}
			// STUN and DTLS never wait in a hold's queue: a binding
			// request written mid-fan-out goes out before the release.
			stun := append([]byte{0x00, 0x01}, bytes.Repeat([]byte{7}, 18)...)
			if _, err := b.WriteToAddrPort(stun, dst[1]); err != nil {
				t.Fatal(err)
			}
			sent = append(sent, dgram{1, stun})
			b.release()
			// Outside a hold a write goes at once.
			add(1, 42)
			if _, err := b.WriteToAddrPort(sent[len(sent)-1].data, dst[1]); err != nil {
				t.Fatal(err)
			}

			for i, c := range rx {
				var want [][]byte
				for _, d := range sent {
					if d.to == i {
						want = append(want, d.data)
					}
				}
				buf := make([]byte, 2000)
				for k, w := range want {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					n, err := c.Read(buf)
					if err != nil {
						t.Fatalf("receiver %d, datagram %d of %d: %v", i, k, len(want), err)
					}
					if !bytes.Equal(buf[:n], w) {
						t.Fatalf("receiver %d, datagram %d: got %d bytes %q..., want %d bytes %q...", i, k, n, buf[:min(n, 5)], len(w), w[:5])
					}
				}
			}
			// Linux since 4.18 takes UDP_SEGMENT; a refusal would turn it
			// off for good and show here.
			if runtime.GOOS == "linux" && !b.sys.gso() {
				t.Error("UDP GSO was turned off: the kernel refused a segmented send")
			}
			if d := b.dropped.Load(); d != 0 {
				t.Errorf("%d datagrams dropped", d)
			}
			if p := b.packets.Load(); p != uint64(len(sent)-2) {
				t.Errorf("%d datagrams went through the queue, want %d", p, len(sent)-2)
			}
		})
	}
}
