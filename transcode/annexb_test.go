package transcode

import (
	"bytes"
	"reflect"
	"testing"
)

func TestSplitAnnexB(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want [][]byte
	}{
		{nil, nil},
		{[]byte{1, 2, 3}, nil},
		{[]byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3}, [][]byte{{0x67, 1, 2}, {0x68, 3}}},
		{[]byte{0, 0, 1, 0x65, 0, 0, 0, 0, 0, 1, 0x41, 0, 0, 2}, [][]byte{{0x65}, {0x41, 0, 0, 2}}},
		{[]byte{0, 0, 1}, nil},
		{[]byte{0, 0, 1, 0, 0, 1, 9}, [][]byte{{9}}},
	} {
		if got := splitAnnexB(tc.in, nil); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("splitAnnexB(%x) = %x, want %x", tc.in, got, tc.want)
		}
	}
}

func FuzzSplitAnnexB(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3})
	f.Add([]byte{0, 0, 1, 0x65, 0, 0, 0, 0, 0, 1, 0x41, 0, 0, 2})
	f.Add([]byte{0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		nalus := splitAnnexB(b, nil)
		for _, n := range nalus {
			if len(n) == 0 || n[len(n)-1] == 0 || bytes.Contains(n, []byte{0, 0, 1}) {
				t.Fatalf("bad NAL unit %x from %x", n, b)
			}
		}
		// Re-framing what we split and splitting again is stable.
		again := splitAnnexB(appendAnnexB(nil, nalus...), nil)
		if !reflect.DeepEqual(again, nalus) && !(len(again) == 0 && len(nalus) == 0) {
			t.Fatalf("unstable split of %x: %x then %x", b, nalus, again)
		}
	})
}
