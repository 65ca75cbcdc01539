// Package stamp writes and reads the glass-to-glass latency stamp: an H.264
// SEI user_data_unregistered message carrying the publisher's wall-clock send
// time. The stamp rides inside the video access unit, so it survives every
// hop that forwards NAL units untouched (RTMP, WebRTC, LL-HLS fMP4) and needs
// only CopySEI in a transcoder to survive re-encoding.
package stamp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"time"
)

// UUID identifies LiveEngine's latency stamp among other user data SEI
// messages (x264 writes its own, with another UUID).
var UUID = [16]byte{
	0x4c, 0x69, 0x76, 0x65, 0x45, 0x6e, 0x67, 0x69, // "LiveEngi"
	0x6e, 0x65, 0x2d, 0x47, 0x32, 0x47, 0x01, 0x00, // "ne-G2G" v1
}

// ErrNoStamp means an access unit carries no latency stamp.
var ErrNoStamp = errors.New("stamp: no latency stamp in access unit")

const (
	naluTypeSEI        = 6
	seiUserDataUnreg   = 5
	payloadLen         = 16 + 8
	maxSEIMessagesSeen = 64
)

// Encode returns one SEI NAL unit (header included, no start code) carrying
// t as unix nanoseconds. The bytes are emulation-prevented, ready to insert
// into an access unit.
func Encode(t time.Time) []byte {
	rbsp := make([]byte, 0, 3+payloadLen+1)
	rbsp = append(rbsp, naluTypeSEI, seiUserDataUnreg, payloadLen)
	rbsp = append(rbsp, UUID[:]...)
	rbsp = binary.BigEndian.AppendUint64(rbsp, uint64(t.UnixNano()))
	rbsp = append(rbsp, 0x80) // rbsp_stop_one_bit + alignment
	return escape(rbsp)
}

// escape inserts emulation prevention bytes: 00 00 0x (x <= 3) becomes
// 00 00 03 0x, so the NAL unit never contains a start code.
func escape(b []byte) []byte {
	out := make([]byte, 0, len(b)+4)
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// unescape removes emulation prevention bytes.
func unescape(b []byte) []byte {
	if !bytes.Contains(b, []byte{0, 0, 3}) {
		return b
	}
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// IsStamp reports whether nalu is an SEI NAL unit holding a latency stamp.
func IsStamp(nalu []byte) bool {
	_, ok := parse(nalu)
	return ok
}

// Find returns the stamp carried by an access unit (NAL units without start
// codes). It never panics on malformed input; it returns ErrNoStamp when no
// well-formed stamp is present.
func Find(au [][]byte) (time.Time, error) {
	for _, n := range au {
		if t, ok := parse(n); ok {
			return t, nil
		}
	}
	return time.Time{}, ErrNoStamp
}

// parse walks the SEI messages of one NAL unit looking for the stamp.
func parse(nalu []byte) (time.Time, bool) {
	if len(nalu) < 2 || nalu[0]&0x1f != naluTypeSEI {
		return time.Time{}, false
	}
	b := unescape(nalu[1:])
	for i := 0; i < maxSEIMessagesSeen && len(b) > 0; i++ {
		if b[0] == 0x80 && len(b) == 1 {
			break // trailing bits
		}
		typ, n := readVarSize(b)
		if n == 0 {
			break
		}
		b = b[n:]
		size, n := readVarSize(b)
		if n == 0 {
			break
		}
		b = b[n:]
		if size > len(b) {
			break
		}
		msg := b[:size]
		b = b[size:]
		if typ == seiUserDataUnreg && size == payloadLen && bytes.Equal(msg[:16], UUID[:]) {
			ns := int64(binary.BigEndian.Uint64(msg[16:]))
			return time.Unix(0, ns), true
		}
	}
	return time.Time{}, false
}

// readVarSize reads an SEI payload type or size (a run of 0xFF bytes plus a
// last byte). n is 0 when b ends before the value does.
func readVarSize(b []byte) (v, n int) {
	for n < len(b) {
		c := b[n]
		n++
		v += int(c)
		if c != 0xff {
			return v, n
		}
		if v > 1<<20 {
			return 0, 0
		}
	}
	return 0, 0
}

// isVCL reports whether an H.264 NAL unit is a coded slice.
func isVCL(nalu []byte) bool {
	if len(nalu) == 0 {
		return false
	}
	t := nalu[0] & 0x1f
	return t >= 1 && t <= 5
}

// Insert returns au with sei placed before its first slice NAL unit, as
// H.264 requires SEI to precede the picture's slices. Any stamp already in
// au is dropped so a re-stamped unit carries exactly one. au itself is not
// modified (units are shared by many readers).
func Insert(au [][]byte, sei []byte) [][]byte {
	out := make([][]byte, 0, len(au)+1)
	done := false
	for _, n := range au {
		if IsStamp(n) {
			continue
		}
		if !done && isVCL(n) {
			out = append(out, sei)
			done = true
		}
		out = append(out, n)
	}
	if !done {
		out = append(out, sei)
	}
	return out
}

// CopySEI carries the latency stamp of a source access unit into an encoded
// access unit with the same PTS (a transcoder's rung output): it returns dst
// with src's stamp NAL unit inserted before dst's first slice, or dst
// unchanged when src has no stamp. dst is not modified.
func CopySEI(src, dst [][]byte) [][]byte {
	for _, n := range src {
		if IsStamp(n) {
			return Insert(dst, n)
		}
	}
	return dst
}
