package transcode

// splitAnnexB splits an H.264/H.265 Annex-B byte stream into NAL units
// (start codes removed, trailing zero bytes of a NAL unit trimmed). The
// returned slices alias b. Bytes before the first start code are ignored:
// libx264 always begins a packet with one.
func splitAnnexB(b []byte, out [][]byte) [][]byte {
	start := -1
	i := 0
	for i+2 < len(b) {
		// A start code is 00 00 01 (a 4-byte 00 00 00 01 ends the same way).
		if b[i] == 0 && b[i+1] == 0 && b[i+2] == 1 {
			if start >= 0 {
				out = appendNALU(out, b[start:i])
			}
			i += 3
			start = i
			continue
		}
		// Skip fast: a start code needs b[i+2] to be 0 or 1.
		if b[i+2] > 1 {
			i += 3
		} else {
			i++
		}
	}
	if start >= 0 {
		out = appendNALU(out, b[start:])
	}
	return out
}

func appendNALU(out [][]byte, n []byte) [][]byte {
	for len(n) > 0 && n[len(n)-1] == 0 {
		n = n[:len(n)-1]
	}
	if len(n) > 0 {
		out = append(out, n)
	}
	return out
}

// appendAnnexB appends NAL units to dst with 4-byte start codes.
func appendAnnexB(dst []byte, nalus ...[]byte) []byte {
	for _, n := range nalus {
		if len(n) == 0 {
			continue
		}
		dst = append(dst, 0, 0, 0, 1)
		dst = append(dst, n...)
	}
	return dst
}
