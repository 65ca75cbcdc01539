package transcode

import "github.com/asticode/go-astiav"

// inputPadding is AV_INPUT_BUFFER_PADDING_SIZE of FFmpeg 5.1: decoders read
// up to this many bytes past a packet's end, which must be zero.
const inputPadding = 64

// packetFrom loads the first n bytes of buf into p, with zeroed padding after
// them as libavcodec requires. buf is reused by the caller; it is copied.
func packetFrom(p *astiav.Packet, buf []byte, n int) error {
	p.Unref()
	buf = buf[:n]
	for range inputPadding {
		buf = append(buf, 0)
	}
	if err := p.FromData(buf); err != nil {
		return err
	}
	p.SetSize(n)
	return nil
}
