package stamp

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

func TestRoundTrip(t *testing.T) {
	cases := []time.Time{
		time.Unix(0, 0),
		time.Unix(1764100000, 123456789),
		time.Unix(0, 0x0000000300000001), // forces emulation prevention
		time.Unix(0, 1<<62),
	}
	for _, ts := range cases {
		sei := Encode(ts)
		for i := 0; i+2 < len(sei); i++ {
			if sei[i] == 0 && sei[i+1] == 0 && sei[i+2] <= 2 {
				t.Fatalf("%v: start code emulation at %d: % x", ts, i, sei)
			}
		}
		got, err := Find([][]byte{{0x09, 0xf0}, sei, {0x65, 1, 2}})
		if err != nil || !got.Equal(ts) {
			t.Fatalf("Find(%v) = %v, %v", ts, got, err)
		}
	}
}

func TestFindNone(t *testing.T) {
	// An x264 version SEI (another UUID) is not a stamp.
	other := append([]byte{6, 5, 24}, bytes.Repeat([]byte{0xdc}, 24)...)
	other = append(other, 0x80)
	if _, err := Find([][]byte{other, {0x65, 0}}); !errors.Is(err, ErrNoStamp) {
		t.Fatalf("err = %v, want ErrNoStamp", err)
	}
	if _, err := Find(nil); !errors.Is(err, ErrNoStamp) {
		t.Fatalf("err = %v, want ErrNoStamp", err)
	}
}

func TestFindAfterOtherMessage(t *testing.T) {
	ts := time.Unix(1764100000, 42)
	s := Encode(ts)
	// Prepend a recovery point SEI (type 6, size 1) inside the same NAL.
	multi := append([]byte{6, 6, 1, 0x84}, s[1:]...)
	got, err := Find([][]byte{multi})
	if err != nil || !got.Equal(ts) {
		t.Fatalf("Find = %v, %v", got, err)
	}
}

func TestInsertAndCopy(t *testing.T) {
	ts := time.Unix(1764100000, 7)
	au := [][]byte{{0x09, 0xf0}, {0x67, 1}, {0x68, 2}, {0x65, 3}, {0x65, 4}}
	in := Insert(au, Encode(ts))
	if len(in) != 6 || !IsStamp(in[3]) || in[4][0] != 0x65 {
		t.Fatalf("Insert order wrong: %x", in)
	}
	if len(au) != 5 {
		t.Fatal("Insert modified its input")
	}
	// Re-stamping replaces the old stamp.
	again := Insert(in, Encode(ts.Add(time.Second)))
	if len(again) != 6 {
		t.Fatalf("re-stamp kept two stamps: %d NALUs", len(again))
	}
	dst := [][]byte{{0x41, 9}}
	out := CopySEI(in, dst)
	if got, err := Find(out); err != nil || !got.Equal(ts) || out[1][0] != 0x41 {
		t.Fatalf("CopySEI = %x (%v, %v)", out, got, err)
	}
	if out := CopySEI(au, dst); len(out) != 1 {
		t.Fatal("CopySEI without a stamp changed dst")
	}
}

func FuzzFind(f *testing.F) {
	f.Add(Encode(time.Unix(1764100000, 1)))
	f.Add([]byte{6, 5, 24})
	f.Add([]byte{6, 0xff, 0xff, 0xff})
	f.Add([]byte{6, 5, 0xff, 0x10, 0, 0, 3, 1})
	f.Add([]byte{0x65, 0x88})
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := Find([][]byte{b})
		if err == nil {
			// A found stamp must survive a re-encode round trip.
			got, err2 := Find([][]byte{Encode(ts)})
			if err2 != nil || !got.Equal(ts) {
				t.Fatalf("round trip of %v failed: %v", ts, err2)
			}
		}
		_ = Insert([][]byte{b, {0x65}}, Encode(time.Unix(0, 1)))
	})
}
