package rtmp

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformedTag is returned for an FLV tag body that cannot be parsed:
// truncated headers, lengths that point past the end, bad config records.
var ErrMalformedTag = errors.New("malformed FLV tag")

// ErrUnsupportedCodec is returned for a well-formed tag of a codec this
// server does not ingest (only H.264 video and AAC audio are supported).
var ErrUnsupportedCodec = errors.New("unsupported codec")

// FLV codec and packet constants (Adobe Flash Video File Format
// Specification v10.1, E.4.2.1 and E.4.3.1).
const (
	flvFrameKey  = 1
	flvFrameInfo = 5

	flvVideoAVC = 7
	flvAudioAAC = 10

	avcPacketSequenceHeader = 0
	avcPacketNALU           = 1
	avcPacketEndOfSequence  = 2

	aacPacketSequenceHeader = 0
	aacPacketRaw            = 1

	// flvExHeader marks an Enhanced RTMP video tag (FourCC codecs such as
	// HEVC and AV1), which this server does not ingest yet.
	flvExHeader = 0x80
)

// videoTag is the parsed header of an FLV video tag body.
type videoTag struct {
	FrameType uint8
	CodecID   uint8
	// PacketType and CompositionTime are set for AVC tags only.
	PacketType uint8
	// CompositionTime is PTS - DTS in milliseconds (signed, 24 bits).
	CompositionTime int32
	// Data is the rest of the body: an AVCDecoderConfigurationRecord or
	// length-prefixed NAL units. It aliases the input.
	Data []byte
}

// parseVideoTag parses the header of an FLV video tag body.
func parseVideoTag(b []byte) (videoTag, error) {
	if len(b) < 1 {
		return videoTag{}, fmt.Errorf("video tag: empty body: %w", ErrMalformedTag)
	}
	if b[0]&flvExHeader != 0 {
		fourCC := "?"
		if len(b) >= 5 {
			fourCC = string(b[1:5])
		}
		return videoTag{}, fmt.Errorf("video tag: enhanced RTMP codec %q: %w", fourCC, ErrUnsupportedCodec)
	}
	t := videoTag{FrameType: b[0] >> 4, CodecID: b[0] & 0x0f}
	if t.CodecID != flvVideoAVC {
		return t, fmt.Errorf("video tag: codec id %d: %w", t.CodecID, ErrUnsupportedCodec)
	}
	if t.FrameType == flvFrameInfo {
		// Video info/command frames carry no picture; callers skip them.
		t.Data = b[1:]
		return t, nil
	}
	if len(b) < 5 {
		return videoTag{}, fmt.Errorf("video tag: AVC header needs 5 bytes, have %d: %w", len(b), ErrMalformedTag)
	}
	t.PacketType = b[1]
	cts := int32(uint32(b[2])<<16 | uint32(b[3])<<8 | uint32(b[4]))
	t.CompositionTime = cts << 8 >> 8 // sign-extend 24 bits
	t.Data = b[5:]
	return t, nil
}

// audioTag is the parsed header of an FLV audio tag body.
type audioTag struct {
	SoundFormat uint8
	// PacketType is set for AAC tags only.
	PacketType uint8
	// Data is an AudioSpecificConfig or a raw AAC frame. It aliases the input.
	Data []byte
}

// parseAudioTag parses the header of an FLV audio tag body.
func parseAudioTag(b []byte) (audioTag, error) {
	if len(b) < 1 {
		return audioTag{}, fmt.Errorf("audio tag: empty body: %w", ErrMalformedTag)
	}
	t := audioTag{SoundFormat: b[0] >> 4}
	if t.SoundFormat != flvAudioAAC {
		return t, fmt.Errorf("audio tag: sound format %d: %w", t.SoundFormat, ErrUnsupportedCodec)
	}
	if len(b) < 2 {
		return audioTag{}, fmt.Errorf("audio tag: AAC header needs 2 bytes: %w", ErrMalformedTag)
	}
	t.PacketType = b[1]
	t.Data = b[2:]
	return t, nil
}

// avcConfig is an AVCDecoderConfigurationRecord (ISO/IEC 14496-15, 5.3.3.1).
type avcConfig struct {
	Profile, Compatibility, Level uint8
	// LengthSize is the size in bytes of the NAL unit length prefixes.
	LengthSize int
	SPS        [][]byte
	PPS        [][]byte
}

// parseAVCConfig parses an AVCDecoderConfigurationRecord. The parameter
// sets it returns alias b.
func parseAVCConfig(b []byte) (avcConfig, error) {
	if len(b) < 6 {
		return avcConfig{}, fmt.Errorf("avc config: %d bytes, need at least 6: %w", len(b), ErrMalformedTag)
	}
	if b[0] != 1 {
		return avcConfig{}, fmt.Errorf("avc config: version %d: %w", b[0], ErrMalformedTag)
	}
	c := avcConfig{
		Profile:       b[1],
		Compatibility: b[2],
		Level:         b[3],
		LengthSize:    int(b[4]&0x03) + 1,
	}
	if c.LengthSize == 3 {
		return avcConfig{}, fmt.Errorf("avc config: NAL length size 3: %w", ErrMalformedTag)
	}
	pos := 5
	readSets := func(count int, what string) ([][]byte, error) {
		sets := make([][]byte, 0, count)
		for i := 0; i < count; i++ {
			if len(b)-pos < 2 {
				return nil, fmt.Errorf("avc config: %s %d length truncated: %w", what, i, ErrMalformedTag)
			}
			n := int(binary.BigEndian.Uint16(b[pos:]))
			pos += 2
			if n == 0 || len(b)-pos < n {
				return nil, fmt.Errorf("avc config: %s %d has length %d, %d bytes left: %w", what, i, n, len(b)-pos, ErrMalformedTag)
			}
			sets = append(sets, b[pos:pos+n])
			pos += n
		}
		return sets, nil
	}
	spsCount := int(b[pos] & 0x1f)
	pos++
	var err error
	if c.SPS, err = readSets(spsCount, "SPS"); err != nil {
		return avcConfig{}, err
	}
	if len(b)-pos < 1 {
		return avcConfig{}, fmt.Errorf("avc config: PPS count truncated: %w", ErrMalformedTag)
	}
	count := int(b[pos])
	pos++
	if c.PPS, err = readSets(count, "PPS"); err != nil {
		return avcConfig{}, err
	}
	if len(c.SPS) == 0 || len(c.PPS) == 0 {
		return avcConfig{}, fmt.Errorf("avc config: %d SPS and %d PPS, need at least one of each: %w", len(c.SPS), len(c.PPS), ErrMalformedTag)
	}
	// Profile-specific extensions (chroma format, bit depth, SPS ext)
	// follow for high profiles; they repeat what the SPS says, so they
	// are not read.
	return c, nil
}

// maxNALUsPerFrame bounds the NAL units of one access unit: real encoders
// write a handful, so more means garbage, not a picture.
const maxNALUsPerFrame = 1024

// splitNALUs splits length-prefixed NAL units, appending them to dst. The
// NAL units alias b. Empty NAL units are skipped.
func splitNALUs(dst [][]byte, b []byte, lengthSize int) ([][]byte, error) {
	for len(b) > 0 {
		if len(b) < lengthSize {
			return dst, fmt.Errorf("nalu: %d bytes left for a %d-byte length: %w", len(b), lengthSize, ErrMalformedTag)
		}
		var n uint32
		for i := 0; i < lengthSize; i++ {
			n = n<<8 | uint32(b[i])
		}
		b = b[lengthSize:]
		if uint64(n) > uint64(len(b)) {
			return dst, fmt.Errorf("nalu: length %d, %d bytes left: %w", n, len(b), ErrMalformedTag)
		}
		if n > 0 {
			if len(dst) >= maxNALUsPerFrame {
				return dst, fmt.Errorf("nalu: more than %d NAL units in one frame: %w", maxNALUsPerFrame, ErrMalformedTag)
			}
			dst = append(dst, b[:n])
		}
		b = b[n:]
	}
	return dst, nil
}
