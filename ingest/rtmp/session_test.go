package rtmp

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/liveengine/liveengine/engine"
	"github.com/liveengine/liveengine/engine/enginetest"
)

// Synthetic FLV tag bodies around the real ffmpeg sequence headers.

func avcFrame(key bool, cts int32, nalus ...[]byte) []byte {
	b := []byte{0x27, avcPacketNALU, byte(cts >> 16), byte(cts >> 8), byte(cts)}
	if key {
		b[0] = 0x17
	}
	for _, n := range nalus {
		b = append(b, byte(len(n)>>24), byte(len(n)>>16), byte(len(n)>>8), byte(len(n)))
		b = append(b, n...)
	}
	return b
}

var (
	naluAUD   = []byte{0x09, 0xf0}
	naluIDR   = []byte{0x65, 0x88, 0x84, 0x00, 0x33}
	naluSlice = []byte{0x41, 0x9a, 0x02, 0x10}
)

func metadataBody(video, audio bool) []byte {
	var b []byte
	b = append(b, amfString("onMetaData")...)
	b = append(b, amf0ECMAArray, 0, 0, 0, 2)
	if video {
		b = append(b, amfKey("videocodecid")...)
		b = append(b, amfNumber(7)...)
		b = append(b, amfKey("framerate")...)
		b = append(b, amfNumber(25)...)
	}
	if audio {
		b = append(b, amfKey("audiocodecid")...)
		b = append(b, amfNumber(10)...)
	}
	return append(b, 0, 0, amf0ObjectEnd)
}

type sessionRig struct {
	t    *testing.T
	eng  *engine.Engine
	pub  *engine.Publisher
	sess *session
	now  time.Time
}

func newSessionRig(t *testing.T, key string) *sessionRig {
	eng := enginetest.NewEngine(t)
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: key, Protocol: "rtmp", Remote: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	r := &sessionRig{t: t, eng: eng, pub: pub, now: time.Unix(1700000000, 0)}
	r.sess = newSession(DefaultConfig(), pub, testLogger(t))
	r.sess.now = func() time.Time { return r.now }
	r.sess.startAt = r.now
	return r
}

func (r *sessionRig) must(err error) {
	r.t.Helper()
	if err != nil {
		r.t.Fatal(err)
	}
}

func TestSessionTimestampWraparound(t *testing.T) {
	r := newSessionRig(t, "wrap")
	r.must(r.sess.metadata(metadataBody(true, true)))
	r.must(r.sess.video(0, seed(t, "FuzzParseVideoTag", "avc-seqheader")))
	r.must(r.sess.audio(0, seed(t, "FuzzParseAudioTag", "aac-seqheader")))
	s := r.pub.Stream()
	if s == nil {
		t.Fatal("not live once every announced track was configured")
	}
	if vt := s.Tracks()[0]; vt.Width != 320 || vt.Height != 240 || vt.FrameRate != 25 {
		t.Fatalf("video track %dx%d @%v", vt.Width, vt.Height, vt.FrameRate)
	}
	rec := record(t, s)

	start := uint32(0xffffff00) // 256 ms before the 32-bit wrap
	var vts, ats uint32 = start, start
	for i := 0; i < 30; i++ {
		r.must(r.sess.video(vts, avcFrame(i%10 == 0, 0, naluAUD, pick(i%10 == 0, naluIDR, naluSlice))))
		vts += 40
		r.must(r.sess.audio(ats, []byte{0xaf, aacPacketRaw, 0x21, 0x10, 0x04}))
		ats += 21
	}
	waitFor(t, "60 units", func() bool { return rec.count() == 60 })
	units := rec.snapshot()
	var lastV, lastA time.Duration = -1, -1
	var ntp0 time.Time
	for i, u := range units {
		if i == 0 {
			if u.Track != 0 || !u.Key || u.DTS != 0 {
				t.Fatalf("first unit: track %d key %v dts %v", u.Track, u.Key, u.DTS)
			}
			ntp0 = u.NTP
		}
		if got := u.NTP.Sub(ntp0); got != u.PTS {
			t.Fatalf("unit %d: NTP offset %v != PTS %v", i, got, u.PTS)
		}
		if u.Track == 0 {
			if u.DTS <= lastV {
				t.Fatalf("video DTS %v after %v across the wrap", u.DTS, lastV)
			}
			for _, n := range u.NALUs {
				if n[0]&0x1f == 9 {
					t.Fatal("AUD kept")
				}
			}
			lastV = u.DTS
		} else {
			if u.PTS <= lastA {
				t.Fatalf("audio PTS %v after %v across the wrap", u.PTS, lastA)
			}
			lastA = u.PTS
		}
	}
	// FLV audio times are rounded to milliseconds; the session restores
	// the exact 1024-sample frame cadence of 48 kHz AAC.
	if lastV != 29*40*time.Millisecond || lastA != 29*(1024*time.Second/48000) {
		t.Fatalf("last video DTS %v, audio PTS %v", lastV, lastA)
	}
}

func pick(c bool, a, b []byte) []byte {
	if c {
		return a
	}
	return b
}

func TestSessionStartTimeout(t *testing.T) {
	r := newSessionRig(t, "late-audio")
	r.must(r.sess.metadata(metadataBody(true, true)))
	r.must(r.sess.video(0, seed(t, "FuzzParseVideoTag", "avc-seqheader")))
	// An inter frame before any keyframe cannot be decoded: dropped.
	r.must(r.sess.video(0, avcFrame(false, 0, naluSlice)))
	r.must(r.sess.video(40, avcFrame(true, 0, naluIDR)))
	r.must(r.sess.video(80, avcFrame(false, 0, naluSlice)))
	if r.pub.Stream() != nil {
		t.Fatal("live before the announced audio track was configured")
	}
	r.now = r.now.Add(DefaultConfig().StartTimeout)
	r.must(r.sess.video(120, avcFrame(false, 0, naluSlice)))
	s := r.pub.Stream()
	if s == nil {
		t.Fatal("not live after the start timeout")
	}
	if len(s.Tracks()) != 1 || s.Tracks()[0].Codec != engine.CodecH264 {
		t.Fatalf("tracks %+v, want video only", s.Tracks())
	}
	rec := record(t, s)
	waitFor(t, "buffered frames", func() bool { return rec.count() == 3 })
	units := rec.snapshot()
	if !units[0].Key || units[0].DTS != 0 || units[2].DTS != 80*time.Millisecond {
		t.Fatalf("buffered frames: key %v dts %v..%v", units[0].Key, units[0].DTS, units[2].DTS)
	}
	// The audio config arriving late is ignored, its frames too.
	r.must(r.sess.audio(160, seed(t, "FuzzParseAudioTag", "aac-seqheader")))
	r.must(r.sess.audio(160, []byte{0xaf, aacPacketRaw, 0x21}))
	r.must(r.sess.video(160, avcFrame(false, 0, naluSlice)))
	waitFor(t, "next frame", func() bool { return rec.count() == 4 })
}

func TestSessionConfigChangeInjectsParameterSets(t *testing.T) {
	r := newSessionRig(t, "reconfig")
	r.must(r.sess.metadata(metadataBody(true, false)))
	hdr := seed(t, "FuzzParseVideoTag", "avc-seqheader")
	r.must(r.sess.video(0, hdr))
	s := r.pub.Stream()
	if s == nil {
		t.Fatal("video-only stream not live after its sequence header")
	}
	rec := record(t, s)
	r.must(r.sess.video(0, avcFrame(true, 0, naluIDR)))
	r.must(r.sess.video(0, hdr)) // repeated header: nothing changes

	// A new SPS: the encoder restarted with other settings.
	changed := bytes.Clone(hdr)
	c, err := parseAVCConfig(changed[5:])
	if err != nil {
		t.Fatal(err)
	}
	c.SPS[0][len(c.SPS[0])-1] ^= 0x01
	r.must(r.sess.video(40, changed))
	r.must(r.sess.video(40, avcFrame(false, 0, naluSlice)))
	r.must(r.sess.video(80, avcFrame(true, 0, naluIDR)))
	waitFor(t, "3 frames", func() bool { return rec.count() == 3 })
	units := rec.snapshot()
	if len(units[0].NALUs) != 1 || len(units[1].NALUs) != 1 {
		t.Fatalf("parameter sets injected before the change: %d, %d NAL units", len(units[0].NALUs), len(units[1].NALUs))
	}
	k := units[2]
	if len(k.NALUs) != 3 || !bytes.Equal(k.NALUs[0], c.SPS[0]) || !bytes.Equal(k.NALUs[1], c.PPS[0]) || !k.Key {
		t.Fatalf("keyframe after the change: %x", k.NALUs)
	}
	if !bytes.Equal(s.Tracks()[0].SPS, seedSPS(t)) {
		t.Fatal("the live track's SPS changed")
	}
}

func TestSessionAnnexBFrames(t *testing.T) {
	r := newSessionRig(t, "annexb")
	r.must(r.sess.metadata(metadataBody(true, false)))
	r.must(r.sess.video(0, seed(t, "FuzzParseVideoTag", "avc-seqheader")))
	s := r.pub.Stream()
	rec := record(t, s)
	frame := []byte{0x17, avcPacketNALU, 0, 0, 0}
	frame = append(frame, 0, 0, 0, 1)
	frame = append(frame, naluAUD...)
	frame = append(frame, 0, 0, 1)
	frame = append(frame, naluIDR...)
	r.must(r.sess.video(0, frame))
	waitFor(t, "frame", func() bool { return rec.count() == 1 })
	u := rec.snapshot()[0]
	if !u.Key || len(u.NALUs) != 1 || !bytes.Equal(u.NALUs[0], naluIDR) {
		t.Fatalf("annex-b frame: key %v nalus %x", u.Key, u.NALUs)
	}
	// Garbage that is neither format still closes the connection.
	if err := r.sess.video(40, []byte{0x27, avcPacketNALU, 0, 0, 0, 0, 0, 0, 9, 0x41}); !errors.Is(err, ErrMalformedTag) {
		t.Fatalf("err = %v", err)
	}
}

func seedSPS(t *testing.T) []byte {
	c, err := parseAVCConfig(seed(t, "FuzzParseVideoTag", "avc-seqheader")[5:])
	if err != nil {
		t.Fatal(err)
	}
	return c.SPS[0]
}

func TestSessionNoSupportedTracks(t *testing.T) {
	r := newSessionRig(t, "hevc")
	hevc := []byte{0x90, 'h', 'v', 'c', '1', 0, 0}
	r.must(r.sess.video(0, hevc))
	r.must(r.sess.audio(0, []byte{0x2f, 0xff})) // MP3
	r.now = r.now.Add(DefaultConfig().StartTimeout)
	err := r.sess.video(40, hevc)
	if !errors.Is(err, ErrNoSupportedTracks) {
		t.Fatalf("err = %v, want ErrNoSupportedTracks", err)
	}
	if r.pub.Stream() != nil {
		t.Fatal("went live without tracks")
	}
}

// BenchmarkSessionVideo measures the per-frame cost of turning an FLV
// video tag into an engine unit on a live stream with one reader.
func BenchmarkSessionVideo(b *testing.B) {
	eng := enginetest.NewEngine(b)
	pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "bench", Protocol: "rtmp"})
	if err != nil {
		b.Fatal(err)
	}
	defer pub.Close()
	sess := newSession(DefaultConfig(), pub, testLogger(b))
	hdr := seed(b, "FuzzParseVideoTag", "avc-seqheader")
	if err := sess.metadata(metadataBody(true, false)); err != nil {
		b.Fatal(err)
	}
	if err := sess.video(0, hdr); err != nil {
		b.Fatal(err)
	}
	s := pub.Stream()
	r, err := s.AddReader(engine.ReaderOptions{Name: "bench", Kind: "bench", QueueLen: 1 << 16}, func(*engine.Unit) {}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	slice := bytes.Repeat([]byte{0x41, 0x9a}, 4000) // ~8 KB inter frame
	frame := avcFrame(false, 0, naluAUD, []byte{0x06, 0x05, 0x01, 0x80}, slice)
	key := avcFrame(true, 0, naluIDR)
	if err := sess.video(0, key); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := sess.video(uint32(i*33), frame); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAudioTimeResync(t *testing.T) {
	frame := 1024 * time.Second / 48000
	s := &session{aacFrame: frame}
	in := []int64{0, 21, 43, 1000, 1021, 1000}
	want := []time.Duration{0, frame, 2 * frame, time.Second, time.Second + frame, time.Second}
	for i, v := range in {
		if got := s.audioTime(ms(v)); got != want[i] {
			t.Fatalf("frame %d at %d ms: got %v, want %v", i, v, got, want[i])
		}
	}
}

// FuzzSessionTags drives a session on a real engine with a sequence of
// tags: records of [kind byte][timestamp uint32][length uint16][body].
// Kind 0 is video, 1 audio, 2 metadata. Whatever the input, the session
// must neither panic nor write units that break the engine's invariants.
func FuzzSessionTags(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 0, 0, 5, 0x17, 0x01, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		eng := enginetest.NewEngine(t)
		pub, err := eng.Authorize(context.Background(), engine.PublishRequest{Key: "fuzz", Protocol: "rtmp"})
		if err != nil {
			t.Fatal(err)
		}
		defer pub.Close()
		sess := newSession(DefaultConfig(), pub, slog.New(slog.DiscardHandler))
		now := time.Unix(0, 0)
		sess.now = func() time.Time { return now }
		sess.startAt = now
		var reader *engine.Reader
		for len(in) >= 7 {
			kind, ts, n := in[0], binary.BigEndian.Uint32(in[1:]), int(binary.BigEndian.Uint16(in[5:]))
			in = in[7:]
			n = min(n, len(in))
			body := in[:n]
			in = in[n:]
			now = now.Add(time.Second) // exercise the start timeout too
			switch kind % 3 {
			case 0:
				err = sess.video(ts, body)
			case 1:
				err = sess.audio(ts, body)
			case 2:
				err = sess.metadata(body)
			}
			if err != nil {
				return // the connection would close here
			}
			if s := pub.Stream(); s != nil && reader == nil {
				if len(s.Tracks()) == 0 {
					t.Fatal("live without tracks")
				}
				reader, err = s.AddReader(engine.ReaderOptions{Name: "fuzz", Kind: "bench"}, func(u *engine.Unit) {
					if u.Track < 0 || u.Track >= len(s.Tracks()) {
						t.Errorf("unit on track %d of %d", u.Track, len(s.Tracks()))
					}
					for _, nalu := range u.NALUs {
						if len(nalu) == 0 {
							t.Error("empty NAL unit")
						}
					}
				}, nil)
				if err != nil {
					t.Fatal(err)
				}
			}
		}
		if reader != nil {
			pub.Close()
			<-reader.Done()
		}
	})
}
