package sfu

import (
	"encoding/binary"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// batchSys holds the sendmmsg headers. The i-th iovec points at the i-th
// queued datagram once, at init; a send groups the datagrams into
// messages and fills lengths, addresses and segment sizes.
//
// Consecutive datagrams to one address where all but the last have the
// same size (the RTP packets of one picture to one viewer: full FU-A
// fragments, then the rest) go as one message with UDP_SEGMENT (UDP GSO,
// Linux 4.18+): the kernel walks its send path once for the group and
// splits it at the end, into the same datagrams.
type batchSys struct {
	raw   syscall.RawConn
	inet6 bool // the socket is AF_INET6 (dual stack): IPv4 goes v4-mapped
	noGSO bool // the kernel refused UDP_SEGMENT once: plain datagrams
	hdrs  [batchSize]unix.Mmsghdr
	iovs  [batchSize]unix.Iovec
	names [batchSize]unix.RawSockaddrInet6
	cmsgs [batchSize][gsoCmsgRoom]byte
	first [batchSize]int // first datagram of each message
	segs  [batchSize]int // datagrams in each message
	msgs  int

	// State of the send in progress, read by writeFn (a method value made
	// once, so rawConn.Write allocates nothing).
	off, end int
	errno    syscall.Errno
	writeFn  func(fd uintptr) bool
}

func (s *batchSys) init(b *batchConn) {
	raw, err := b.UDPConn.SyscallConn()
	if err != nil {
		return
	}
	s.raw = raw
	_ = raw.Control(func(fd uintptr) {
		if sa, err := syscall.Getsockname(int(fd)); err == nil {
			_, s.inet6 = sa.(*syscall.SockaddrInet6)
		}
	})
	for i := range s.hdrs {
		s.iovs[i].Base = &b.bufs[i][0]
		s.hdrs[i].Hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&s.cmsgs[i][0]))
		h.Level = unix.SOL_UDP
		h.Type = unix.UDP_SEGMENT
		h.SetLen(unix.CmsgLen(2))
	}
	s.writeFn = s.sendmmsg
	s.noGSO = gsoCmsgSpace > gsoCmsgRoom
}

// gsoCmsgRoom holds a UDP_SEGMENT control message (a uint16) on any
// architecture; gsoCmsgSpace is its exact size here.
const gsoCmsgRoom = 32

var gsoCmsgSpace = unix.CmsgSpace(2)

// gsoMaxSegs and gsoMaxBytes are the kernel's limits on one GSO send.
const (
	gsoMaxSegs  = 64
	gsoMaxBytes = 65000
)

// group builds the messages of the first n queued datagrams.
func (s *batchSys) group(b *batchConn, n int) {
	s.msgs = 0
	for i := 0; i < n; {
		k := s.msgs
		size := b.lens[i]
		j, total := i+1, size
		if !s.noGSO {
			// Extend while the previous segment was full size and the
			// next goes to the same address and is not larger.
			for j < n && j-i < gsoMaxSegs && b.lens[j-1] == size && b.lens[j] <= size &&
				total+b.lens[j] <= gsoMaxBytes && b.dst[j] == b.dst[i] {
				total += b.lens[j]
				j++
			}
		}
		for x := i; x < j; x++ {
			s.iovs[x].SetLen(b.lens[x])
		}
		h := &s.hdrs[k].Hdr
		h.Iov = &s.iovs[i]
		h.SetIovlen(j - i)
		h.Namelen = s.setName(k, b.dst[i])
		if j-i > 1 {
			binary.NativeEndian.PutUint16(s.cmsgs[k][unix.CmsgLen(0):], uint16(size))
			h.Control = &s.cmsgs[k][0]
			h.SetControllen(gsoCmsgSpace)
		} else {
			h.Control = nil
			h.SetControllen(0)
		}
		s.hdrs[k].Len = 0
		s.first[k], s.segs[k] = i, j-i
		s.msgs++
		i = j
	}
}

// send writes the first n queued datagrams with as few sendmmsg calls as
// the kernel allows.
func (s *batchSys) send(b *batchConn, n int) {
	if s.raw == nil {
		b.sendOneByOne(n)
		return
	}
	s.group(b, n)
	s.off, s.end = 0, s.msgs
	for s.off < s.end {
		s.errno = 0
		if err := s.raw.Write(s.writeFn); err != nil {
			for k := s.off; k < s.end; k++ {
				b.dropped.Add(uint64(s.segs[k]))
			}
			return
		}
		if s.errno == 0 {
			continue
		}
		if s.segs[s.off] > 1 && !s.noGSO {
			// A kernel or device without UDP GSO: plain datagrams from
			// here on, starting again at the refused message.
			s.noGSO = true
			rest := s.first[s.off]
			m := n - rest
			copy(b.lens[:m], b.lens[rest:n])
			copy(b.dst[:m], b.dst[rest:n])
			for x := 0; x < m; x++ {
				copy(b.bufs[x][:b.lens[x]], b.bufs[rest+x][:b.lens[x]])
			}
			n = m
			s.group(b, n)
			s.off, s.end = 0, s.msgs
			continue
		}
		// The message was refused (bad address, no route): drop it and
		// go on with the others.
		b.dropped.Add(uint64(s.segs[s.off]))
		s.off++
	}
}

// sendmmsg is called by rawConn.Write; it returns false to wait until
// the socket is writable again.
func (s *batchSys) sendmmsg(fd uintptr) bool {
	for s.off < s.end {
		r, _, e := syscall.Syscall6(unix.SYS_SENDMMSG, fd,
			uintptr(unsafe.Pointer(&s.hdrs[s.off])), uintptr(s.end-s.off), 0, 0, 0)
		switch {
		case e == syscall.EAGAIN:
			return false
		case e == syscall.EINTR:
			continue
		case e != 0:
			s.errno = e
			return true
		}
		s.off += int(r)
	}
	return true
}

// setName writes addr as the i-th destination and returns its length.
func (s *batchSys) setName(i int, addr netip.AddrPort) uint32 {
	ip := addr.Addr()
	n := &s.names[i]
	if !s.inet6 && ip.Unmap().Is4() {
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(n))
		sa.Family = unix.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], addr.Port())
		sa.Addr = ip.Unmap().As4()
		sa.Zero = [8]byte{}
		return unix.SizeofSockaddrInet4
	}
	n.Family = unix.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&n.Port))[:], addr.Port())
	n.Flowinfo = 0
	n.Addr = ip.As16()
	n.Scope_id = 0
	if z := ip.Zone(); z != "" {
		if ifi, err := netInterfaceIndex(z); err == nil {
			n.Scope_id = uint32(ifi)
		}
	}
	return unix.SizeofSockaddrInet6
}

// gso reports whether sends group datagrams with UDP_SEGMENT.
func (s *batchSys) gso() bool { return s.raw != nil && !s.noGSO }
