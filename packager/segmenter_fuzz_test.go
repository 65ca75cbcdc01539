package packager

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/bluenviron/gohlslib/v2/pkg/playlist"

	"github.com/liveengine/liveengine/engine"
)

// FuzzSegmenter feeds arbitrary unit sequences (tracks, keyframes, DTS
// steps that may stall or go backwards) to a rendition and checks what it
// publishes: consecutive MSNs, bounded parts that add up to their segment,
// well-formed fMP4 and a playlist gohlslib parses.
func FuzzSegmenter(f *testing.F) {
	f.Add([]byte{0x03, 33, 0x00, 21, 0x01, 33, 0x00, 21, 0x01, 33, 0x03, 33})
	f.Add(bytes.Repeat([]byte{0x01, 33, 0x00, 10}, 200))
	f.Add(append(bytes.Repeat([]byte{0x01, 40}, 100), bytes.Repeat([]byte{0x03, 40, 0x01, 40}, 60)...))
	f.Add([]byte{0x00, 21, 0x00, 21, 0x00, 0, 0x04, 50, 0x03, 255})

	eng, err := engine.New(engine.DefaultConfig(), engine.NewLocalBus(), slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	conf := DefaultConfig()
	conf.MaxPartsPerSegment = 8
	pk, err := New(conf, eng, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "fuzz", Protocol: "test"})
	if err != nil {
		f.Fatal(err)
	}
	sps := []byte{0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60}
	pps := []byte{0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0}
	s, err := pub.Start([]*engine.Track{
		{Codec: engine.CodecH264, ClockRate: 90000, SPS: sps, PPS: pps},
		{Codec: engine.CodecAAC, ClockRate: 48000, AACConfig: []byte{0x11, 0x90}, SampleRate: 48000, Channels: 2},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(pub.Close)

	f.Fuzz(func(t *testing.T, data []byte) {
		g := newGroup("fuzz")
		r, err := newRendition(pk, g, "source", s)
		if err != nil {
			t.Fatal(err)
		}
		g.setLocked("source", r)
		// Two bytes per unit: flags (bit 0 video, bit 1 keyframe, bit 2
		// step backwards) and a DTS step in milliseconds.
		var dts [2]time.Duration
		for i := 0; i+1 < len(data); i += 2 {
			flags, step := data[i], time.Duration(data[i+1])*time.Millisecond
			tr := 1
			if flags&1 != 0 {
				tr = 0
			}
			if flags&4 != 0 {
				dts[tr] -= step
			} else {
				dts[tr] += step
			}
			u := &engine.Unit{Track: tr, DTS: dts[tr], PTS: dts[tr], Key: flags&2 != 0 || tr == 1, NTP: time.Unix(1700000000, 0).Add(dts[tr])}
			if tr == 0 {
				u.NALUs = [][]byte{{0x65, 0x88, byte(i)}}
				if !u.Key {
					u.NALUs[0][0] = 0x41
				}
			} else {
				u.Payload = []byte{0x21, byte(i)}
			}
			r.onUnit(u)
		}
		r.onEnd()

		r.mu.Lock()
		defer r.mu.Unlock()
		for i, seg := range r.segs {
			if i > 0 && seg.msn != r.segs[i-1].msn+1 {
				t.Fatalf("MSN %d follows %d", seg.msn, r.segs[i-1].msn)
			}
			if len(seg.parts) == 0 || len(seg.parts) > conf.MaxPartsPerSegment {
				t.Fatalf("segment %d has %d parts", seg.msn, len(seg.parts))
			}
			var sum time.Duration
			n := 0
			for _, p := range seg.parts {
				sum += p.dur
				n += len(p.data)
				if len(p.data) < 8 || string(p.data[4:8]) != "moof" {
					t.Fatalf("part of segment %d is not a moof", seg.msn)
				}
			}
			if sum != seg.dur || n != len(seg.data) {
				t.Fatalf("segment %d: parts last %v and hold %d bytes; segment %v, %d bytes", seg.msn, sum, n, seg.dur, len(seg.data))
			}
		}
		if !r.ended || r.cur != nil {
			t.Fatal("not ended after onEnd")
		}
		if len(r.segs) == 0 {
			return
		}
		b, err := r.playlistLocked(nil)
		if err != nil {
			t.Fatal(err)
		}
		var m playlist.Media
		if err := m.Unmarshal(b); err != nil {
			t.Fatalf("playlist does not parse: %v\n%s", err, b)
		}
		if !m.Endlist || len(m.Segments) != len(r.segs) {
			t.Fatalf("playlist: endlist %v, %d segments, want %d", m.Endlist, len(m.Segments), len(r.segs))
		}
	})
}
