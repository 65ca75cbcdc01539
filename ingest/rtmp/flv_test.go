package rtmp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// seed reads a committed fuzz seed (the bytes of a real ffmpeg FLV tag).
func seed(t testing.TB, target, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", target, name))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(raw), "\n", 3)
	q := strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")")
	s, err := strconv.Unquote(q)
	if err != nil {
		t.Fatalf("seed %s/%s: %v", target, name, err)
	}
	return []byte(s)
}

func TestParseVideoTag(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    videoTag
		wantErr error
	}{
		{"empty", nil, videoTag{}, ErrMalformedTag},
		{"truncated avc header", []byte{0x17, 0x01, 0x00}, videoTag{}, ErrMalformedTag},
		{"vp6", []byte{0x14, 0x00}, videoTag{}, ErrUnsupportedCodec},
		{"enhanced hevc", []byte{0x90, 'h', 'v', 'c', '1'}, videoTag{}, ErrUnsupportedCodec},
		{"key nalu cts 0", []byte{0x17, 0x01, 0, 0, 0, 0xaa}, videoTag{FrameType: 1, CodecID: 7, PacketType: 1, Data: []byte{0xaa}}, nil},
		{"inter positive cts", []byte{0x27, 0x01, 0, 0, 0x42, 0xbb}, videoTag{FrameType: 2, CodecID: 7, PacketType: 1, CompositionTime: 66, Data: []byte{0xbb}}, nil},
		{"negative cts", []byte{0x27, 0x01, 0xff, 0xff, 0xdf}, videoTag{FrameType: 2, CodecID: 7, PacketType: 1, CompositionTime: -33, Data: []byte{}}, nil},
		{"info frame", []byte{0x57, 0x00}, videoTag{FrameType: 5, CodecID: 7, Data: []byte{0x00}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseVideoTag(tt.in)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.FrameType != tt.want.FrameType || got.CodecID != tt.want.CodecID || got.PacketType != tt.want.PacketType ||
				got.CompositionTime != tt.want.CompositionTime || !bytes.Equal(got.Data, tt.want.Data) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseAudioTag(t *testing.T) {
	if _, err := parseAudioTag([]byte{0x2f, 0x00}); !errors.Is(err, ErrUnsupportedCodec) {
		t.Fatalf("mp3: err = %v", err)
	}
	if _, err := parseAudioTag([]byte{0xaf}); !errors.Is(err, ErrMalformedTag) {
		t.Fatalf("truncated: err = %v", err)
	}
	got, err := parseAudioTag(seed(t, "FuzzParseAudioTag", "aac-seqheader"))
	if err != nil {
		t.Fatal(err)
	}
	if got.SoundFormat != flvAudioAAC || got.PacketType != aacPacketSequenceHeader || len(got.Data) < 2 {
		t.Fatalf("got %+v", got)
	}
}

func TestParseAVCConfig(t *testing.T) {
	c, err := parseAVCConfig(seed(t, "FuzzParseAVCConfig", "ffmpeg-avcc"))
	if err != nil {
		t.Fatal(err)
	}
	if c.LengthSize != 4 || len(c.SPS) != 1 || len(c.PPS) != 1 || c.SPS[0][0]&0x1f != 7 || c.PPS[0][0]&0x1f != 8 {
		t.Fatalf("got %+v", c)
	}
	bad := map[string][]byte{
		"short":         {1, 0x64, 0, 0x1f},
		"version":       {2, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68},
		"sps past end":  {1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 9, 0x67},
		"no pps count":  {1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67},
		"no pps":        {1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 0},
		"length size 3": {1, 0x64, 0, 0x1f, 0xfe, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68},
	}
	for name, in := range bad {
		if _, err := parseAVCConfig(in); !errors.Is(err, ErrMalformedTag) {
			t.Errorf("%s: err = %v, want ErrMalformedTag", name, err)
		}
	}
}

func TestSplitNALUs(t *testing.T) {
	in := []byte{0, 0, 0, 2, 9, 0xf0, 0, 0, 0, 0, 0, 0, 0, 3, 0x65, 1, 2}
	got, err := splitNALUs(nil, in, 4)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || !bytes.Equal(got[0], []byte{9, 0xf0}) || !bytes.Equal(got[1], []byte{0x65, 1, 2}) {
		t.Fatalf("got %x", got)
	}
	got, err = splitNALUs(nil, []byte{0, 2, 0x41, 9, 1, 0x41}, 2)
	if err != nil || len(got) != 1 {
		// the second NAL unit claims 1 byte with a 2-byte prefix: truncated
		if !errors.Is(err, ErrMalformedTag) {
			t.Fatalf("2-byte prefix: got %x, %v", got, err)
		}
	}
	if _, err := splitNALUs(nil, []byte{0, 0, 0, 9, 0x65}, 4); !errors.Is(err, ErrMalformedTag) {
		t.Fatalf("past end: err = %v", err)
	}
	if _, err := splitNALUs(nil, []byte{0, 0}, 4); !errors.Is(err, ErrMalformedTag) {
		t.Fatalf("short prefix: err = %v", err)
	}
}

// amfString and friends build AMF0 test input.
func amfString(s string) []byte {
	b := []byte{amf0String, 0, 0}
	binary.BigEndian.PutUint16(b[1:], uint16(len(s)))
	return append(b, s...)
}

func amfNumber(v float64) []byte {
	b := []byte{amf0Number, 0, 0, 0, 0, 0, 0, 0, 0}
	binary.BigEndian.PutUint64(b[1:], math.Float64bits(v))
	return b
}

func amfKey(s string) []byte { return amfString(s)[1:] }

func TestParseMetadata(t *testing.T) {
	m, err := parseMetadata(seed(t, "FuzzParseMetadata", "ffmpeg-onmetadata"))
	if err != nil {
		t.Fatal(err)
	}
	if !m.VideoAVC || !m.AudioAAC || m.Width != 320 || m.Height != 240 || m.FrameRate != 30 {
		t.Fatalf("ffmpeg metadata: %+v", m)
	}

	// OBS-style object with string codec ids and nested values.
	var b []byte
	b = append(b, amfString("onMetaData")...)
	b = append(b, amf0Object)
	b = append(b, amfKey("videocodecid")...)
	b = append(b, amfString("avc1")...)
	b = append(b, amfKey("width")...)
	b = append(b, amfNumber(1920)...)
	b = append(b, amfKey("height")...)
	b = append(b, amfNumber(1080)...)
	b = append(b, amfKey("videodatarate")...)
	b = append(b, amfNumber(6000)...)
	b = append(b, amfKey("list")...)
	b = append(b, amf0StrictArray, 0, 0, 0, 2, amf0Null, amf0Boolean, 1)
	b = append(b, 0, 0, amf0ObjectEnd)
	m, err = parseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	if !m.VideoAVC || m.HasAudio || m.Width != 1920 || m.VideoBitrate != 6000000 {
		t.Fatalf("object metadata: %+v", m)
	}

	bad := map[string][]byte{
		"empty":          nil,
		"only name":      amfString("onMetaData"),
		"unknown marker": {0x11},
		"unterminated":   append(amfString("onMetaData"), amf0ECMAArray, 0, 0, 0, 1),
		"huge array":     append(amfString("onMetaData"), amf0StrictArray, 0xff, 0xff, 0xff, 0xff),
		"deep nesting":   bytes.Repeat([]byte{amf0Object, 0, 1, 'a'}, 100),
		"long string":    {amf0LongString, 0xff, 0xff, 0xff, 0xff, 'a'},
	}
	for name, in := range bad {
		if _, err := parseMetadata(in); !errors.Is(err, ErrMalformedAMF) {
			t.Errorf("%s: err = %v, want ErrMalformedAMF", name, err)
		}
	}
}

func FuzzParseVideoTag(f *testing.F) {
	f.Add([]byte{0x17, 0x01, 0, 0, 0, 0, 0, 0, 1, 0x65})
	f.Add([]byte{0x27, 0x01, 0xff, 0xff, 0xdf})
	f.Fuzz(func(t *testing.T, b []byte) {
		tag, err := parseVideoTag(b)
		if err != nil {
			return
		}
		if len(tag.Data) > len(b) {
			t.Fatalf("data longer than input")
		}
		switch tag.PacketType {
		case avcPacketSequenceHeader:
			_, _ = parseAVCConfig(tag.Data)
		case avcPacketNALU:
			for _, ls := range []int{1, 2, 4} {
				nalus, err := splitNALUs(nil, tag.Data, ls)
				if err != nil {
					continue
				}
				total := 0
				for _, n := range nalus {
					if len(n) == 0 {
						t.Fatal("empty NAL unit returned")
					}
					total += len(n) + ls
				}
				if total > len(tag.Data) {
					t.Fatalf("NAL units cover %d bytes of %d", total, len(tag.Data))
				}
			}
		}
	})
}

func FuzzParseAVCConfig(f *testing.F) {
	f.Add([]byte{1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 1, 0x67, 1, 0, 1, 0x68})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseAVCConfig(b)
		if err != nil {
			return
		}
		if len(c.SPS) == 0 || len(c.PPS) == 0 || c.LengthSize < 1 || c.LengthSize > 4 {
			t.Fatalf("accepted invalid config %+v", c)
		}
	})
}

func FuzzParseAudioTag(f *testing.F) {
	f.Add([]byte{0xaf, 0x00, 0x11, 0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		tag, err := parseAudioTag(b)
		if err != nil {
			return
		}
		if len(tag.Data) > len(b) {
			t.Fatal("data longer than input")
		}
	})
}

func FuzzParseMetadata(f *testing.F) {
	f.Add(append(amfString("onMetaData"), amf0ECMAArray, 0, 0, 0, 0, 0, 0, amf0ObjectEnd))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseMetadata(b)
		if err != nil {
			return
		}
		if m.Width < 0 || m.Height < 0 || m.VideoBitrate < 0 || m.FrameRate < 0 {
			t.Fatalf("negative values accepted: %+v", m)
		}
	})
}
