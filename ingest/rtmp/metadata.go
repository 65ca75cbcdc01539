package rtmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrMalformedAMF is returned for AMF0 data that cannot be decoded.
var ErrMalformedAMF = errors.New("malformed AMF0 data")

// AMF0 type markers (AMF0 File Format Specification, 2.1).
const (
	amf0Number      = 0x00
	amf0Boolean     = 0x01
	amf0String      = 0x02
	amf0Object      = 0x03
	amf0Null        = 0x05
	amf0Undefined   = 0x06
	amf0ECMAArray   = 0x08
	amf0ObjectEnd   = 0x09
	amf0StrictArray = 0x0a
	amf0Date        = 0x0b
	amf0LongString  = 0x0c
)

// amfMaxDepth bounds nesting so a hostile payload cannot exhaust the stack;
// real metadata is one or two levels deep.
const amfMaxDepth = 8

// amfMaxEntries bounds the entries of one object or array; the declared
// count of an array is never trusted for allocation.
const amfMaxEntries = 4096

// amfDecoder decodes AMF0 values from a byte slice.
type amfDecoder struct {
	b   []byte
	pos int
}

func (d *amfDecoder) need(n int, what string) error {
	if n < 0 || len(d.b)-d.pos < n {
		return fmt.Errorf("%s at offset %d: need %d bytes, have %d: %w", what, d.pos, n, len(d.b)-d.pos, ErrMalformedAMF)
	}
	return nil
}

func (d *amfDecoder) readString(long bool) (string, error) {
	size := 2
	if long {
		size = 4
	}
	if err := d.need(size, "string length"); err != nil {
		return "", err
	}
	var n int
	if long {
		n64 := uint64(binary.BigEndian.Uint32(d.b[d.pos:]))
		if n64 > uint64(len(d.b)) {
			return "", fmt.Errorf("long string at offset %d: length %d past end: %w", d.pos, n64, ErrMalformedAMF)
		}
		n = int(n64)
	} else {
		n = int(binary.BigEndian.Uint16(d.b[d.pos:]))
	}
	d.pos += size
	if err := d.need(n, "string"); err != nil {
		return "", err
	}
	s := string(d.b[d.pos : d.pos+n])
	d.pos += n
	return s, nil
}

// readProps reads name/value pairs up to the object end marker.
func (d *amfDecoder) readProps(depth int) (map[string]any, error) {
	m := map[string]any{}
	for {
		if err := d.need(3, "property"); err != nil {
			return nil, err
		}
		if d.b[d.pos] == 0 && d.b[d.pos+1] == 0 && d.b[d.pos+2] == amf0ObjectEnd {
			d.pos += 3
			return m, nil
		}
		if len(m) >= amfMaxEntries {
			return nil, fmt.Errorf("object with more than %d properties: %w", amfMaxEntries, ErrMalformedAMF)
		}
		name, err := d.readString(false)
		if err != nil {
			return nil, err
		}
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, fmt.Errorf("property %q: %w", name, err)
		}
		m[name] = v
	}
}

// value decodes one AMF0 value: float64, bool, string, map[string]any,
// []any or nil.
func (d *amfDecoder) value(depth int) (any, error) {
	if depth > amfMaxDepth {
		return nil, fmt.Errorf("nesting deeper than %d: %w", amfMaxDepth, ErrMalformedAMF)
	}
	if err := d.need(1, "type marker"); err != nil {
		return nil, err
	}
	marker := d.b[d.pos]
	d.pos++
	switch marker {
	case amf0Number:
		if err := d.need(8, "number"); err != nil {
			return nil, err
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.pos:]))
		d.pos += 8
		return v, nil
	case amf0Boolean:
		if err := d.need(1, "boolean"); err != nil {
			return nil, err
		}
		v := d.b[d.pos] != 0
		d.pos++
		return v, nil
	case amf0String:
		return d.readString(false)
	case amf0LongString:
		return d.readString(true)
	case amf0Object:
		return d.readProps(depth)
	case amf0ECMAArray:
		// The count is a hint that encoders get wrong; the end marker
		// is what terminates the array.
		if err := d.need(4, "ECMA array count"); err != nil {
			return nil, err
		}
		d.pos += 4
		return d.readProps(depth)
	case amf0StrictArray:
		if err := d.need(4, "strict array count"); err != nil {
			return nil, err
		}
		n := binary.BigEndian.Uint32(d.b[d.pos:])
		d.pos += 4
		if n > amfMaxEntries || int(n) > len(d.b)-d.pos {
			return nil, fmt.Errorf("strict array of %d entries: %w", n, ErrMalformedAMF)
		}
		arr := make([]any, 0, n)
		for i := uint32(0); i < n; i++ {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, fmt.Errorf("array entry %d: %w", i, err)
			}
			arr = append(arr, v)
		}
		return arr, nil
	case amf0Date:
		if err := d.need(10, "date"); err != nil {
			return nil, err
		}
		v := math.Float64frombits(binary.BigEndian.Uint64(d.b[d.pos:]))
		d.pos += 10
		return v, nil
	case amf0Null, amf0Undefined:
		return nil, nil
	}
	return nil, fmt.Errorf("type marker 0x%02x at offset %d: %w", marker, d.pos-1, ErrMalformedAMF)
}

// streamMetadata is what an onMetaData message announces about a publish.
type streamMetadata struct {
	// HasVideo and HasAudio report announced tracks of any codec.
	HasVideo, HasAudio bool
	// VideoAVC and AudioAAC report announced tracks this server ingests.
	VideoAVC, AudioAAC bool
	Width, Height      int
	FrameRate          float64
	// VideoBitrate and AudioBitrate are in bits/s.
	VideoBitrate, AudioBitrate int
	Encoder                    string
}

// parseMetadata decodes the body of an @setDataFrame or onMetaData data
// message: optionally the string "onMetaData", then an object or ECMA
// array of properties.
func parseMetadata(b []byte) (streamMetadata, error) {
	d := &amfDecoder{b: b}
	var props map[string]any
	for props == nil {
		if d.pos >= len(b) {
			return streamMetadata{}, fmt.Errorf("metadata: no properties object: %w", ErrMalformedAMF)
		}
		v, err := d.value(0)
		if err != nil {
			return streamMetadata{}, fmt.Errorf("metadata: %w", err)
		}
		switch v := v.(type) {
		case string:
			// "onMetaData" (or "@setDataFrame" when a client repeats it).
		case map[string]any:
			props = v
		default:
			return streamMetadata{}, fmt.Errorf("metadata: unexpected %T before the properties: %w", v, ErrMalformedAMF)
		}
	}
	var m streamMetadata
	num := func(k string) float64 {
		if f, ok := props[k].(float64); ok && !math.IsNaN(f) && !math.IsInf(f, 0) && f > 0 && f < 1e12 {
			return f
		}
		return 0
	}
	if v, ok := props["videocodecid"]; ok {
		m.HasVideo = true
		switch v := v.(type) {
		case float64:
			m.VideoAVC = v == flvVideoAVC
		case string:
			m.VideoAVC = v == "avc1"
		}
	}
	if v, ok := props["audiocodecid"]; ok {
		m.HasAudio = true
		switch v := v.(type) {
		case float64:
			m.AudioAAC = v == flvAudioAAC
		case string:
			m.AudioAAC = v == "mp4a"
		}
	}
	m.Width = int(num("width"))
	m.Height = int(num("height"))
	m.FrameRate = num("framerate")
	if m.FrameRate == 0 {
		m.FrameRate = num("fps")
	}
	m.VideoBitrate = int(num("videodatarate") * 1000)
	m.AudioBitrate = int(num("audiodatarate") * 1000)
	if s, ok := props["encoder"].(string); ok {
		m.Encoder = s
	}
	return m, nil
}
