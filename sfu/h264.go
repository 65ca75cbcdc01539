package sfu

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// H.264 NAL unit types the SFU looks at.
const (
	naluIDR   = 5
	naluSPS   = 7
	naluPPS   = 8
	naluAUD   = 9
	naluSTAPA = 24
	naluFUA   = 28
)

// ErrBadAVC is returned for a length-prefixed access unit whose lengths do
// not add up.
var ErrBadAVC = errors.New("malformed length-prefixed H.264 access unit")

// splitAVC cuts an access unit of 4-byte length-prefixed NAL units (what
// pion's H264Packet emits with IsAVC) into NAL units, appended to dst. The
// NAL units alias buf.
func splitAVC(dst [][]byte, buf []byte) ([][]byte, error) {
	for len(buf) > 0 {
		if len(buf) < 4 {
			return dst, fmt.Errorf("%w: %d trailing bytes", ErrBadAVC, len(buf))
		}
		n := binary.BigEndian.Uint32(buf)
		buf = buf[4:]
		if n == 0 || uint64(n) > uint64(len(buf)) {
			return dst, fmt.Errorf("%w: NAL unit of %d bytes with %d left", ErrBadAVC, n, len(buf))
		}
		dst = append(dst, buf[:n])
		buf = buf[n:]
	}
	return dst, nil
}

// rtpPayload is one packetized RTP payload of a unit.
type rtpPayload struct {
	data   []byte
	marker bool
}

// packetizeH264 appends the RTP payloads of one access unit to dst, with
// slab as backing store for FU-A fragments (reused across calls by the
// caller once the payloads are no longer referenced). Single NAL units
// that fit are sent as they are (aliasing the unit, no copy); larger ones
// as FU-A. With sps/pps set, they are sent before the access unit, which
// is what a viewer joining at a keyframe needs. AUDs are dropped.
func packetizeH264(dst []rtpPayload, slab []byte, nalus [][]byte, sps, pps []byte, mtu int) ([]rtpPayload, []byte) {
	if sps != nil && pps != nil {
		dst = append(dst, rtpPayload{data: sps}, rtpPayload{data: pps})
	}
	first := len(dst)
	for _, nalu := range nalus {
		if len(nalu) == 0 || nalu[0]&0x1f == naluAUD {
			continue
		}
		if len(nalu) <= mtu {
			dst = append(dst, rtpPayload{data: nalu})
			continue
		}
		ind := nalu[0]&0xe0 | naluFUA
		typ := nalu[0] & 0x1f
		body := nalu[1:]
		max := mtu - 2
		for start := true; len(body) > 0; start = false {
			n := min(max, len(body))
			hdr := typ
			if start {
				hdr |= 0x80
			}
			if n == len(body) {
				hdr |= 0x40
			}
			off := len(slab)
			slab = append(slab, ind, hdr)
			slab = append(slab, body[:n]...)
			dst = append(dst, rtpPayload{data: slab[off:len(slab):len(slab)]})
			body = body[n:]
		}
	}
	if len(dst) > first {
		dst[len(dst)-1].marker = true
	} else if len(dst) > 0 {
		dst[len(dst)-1].marker = true
	}
	return dst, slab
}

// fuaSize returns the slab bytes packetizeH264 needs for nalus.
func fuaSize(nalus [][]byte, mtu int) int {
	n := 0
	for _, nalu := range nalus {
		if len(nalu) > mtu {
			frags := (len(nalu) - 1 + mtu - 3) / (mtu - 2)
			n += len(nalu) - 1 + 2*frags
		}
	}
	return n
}
