package realtime

import "encoding/binary"

// WebSocket opcodes (RFC 6455 §5.2) the hub sends.
const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	opPong  = 0xA
)

// frame encodes one unfragmented, unmasked server frame (servers never mask,
// RFC 6455 §5.1). A room message is framed once and the same bytes are
// written to every socket in the room: nothing is copied or allocated per
// delivery.
func frame(op byte, payload []byte) []byte {
	n := len(payload)
	var b []byte
	switch {
	case n < 126:
		b = make([]byte, 2, 2+n)
		b[1] = byte(n)
	case n <= 0xFFFF:
		b = make([]byte, 4, 4+n)
		b[1] = 126
		binary.BigEndian.PutUint16(b[2:], uint16(n))
	default:
		b = make([]byte, 10, 10+n)
		b[1] = 127
		binary.BigEndian.PutUint64(b[2:], uint64(n))
	}
	b[0] = 0x80 | op // FIN: never fragmented
	return append(b, payload...)
}

// closeFrame is a close frame with a status code and a short reason
// (control frames carry at most 125 bytes).
func closeFrame(code uint16, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, code)
	return frame(opClose, append(p, reason...))
}

var pingFrame = frame(opPing, nil)
