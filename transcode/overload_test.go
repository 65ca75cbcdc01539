package transcode

import (
	"fmt"
	"testing"
)

// TestOverloadPolicyOrder checks that rising overload levels take frames
// from the lowest rung first, then the next, and never from a keyframe.
func TestOverloadPolicyOrder(t *testing.T) {
	j := &job{}
	for _, name := range []string{"720p", "480p", "360p"} {
		j.rungs = append(j.rungs, &rung{conf: Rung{Name: name}})
	}
	kept := func() string {
		out := ""
		for i, r := range j.rungs {
			n := 0
			for range 30 {
				if !j.policyDrops(i) {
					n++
				}
			}
			out += fmt.Sprintf("%s:%d ", r.conf.Name, n)
		}
		return out
	}
	want := []string{
		"720p:30 480p:30 360p:30 ", // level 0: everything
		"720p:30 480p:30 360p:15 ", // 360p at half rate
		"720p:30 480p:15 360p:15 ",
		"720p:15 480p:15 360p:15 ",
		"720p:15 480p:15 360p:0 ", // 360p keeps keyframes only
		"720p:15 480p:0 360p:0 ",
		"720p:0 480p:0 360p:0 ",
	}
	for level, w := range want {
		j.level = level
		if got := kept(); got != w {
			t.Errorf("level %d: frames kept of 30: %s, want %s", level, got, w)
		}
	}
}

func TestEvenWidth(t *testing.T) {
	for _, tc := range []struct{ w, h, to, want int }{
		{1920, 1080, 720, 1280}, {1920, 1080, 480, 854}, {1920, 1080, 360, 640}, {854, 480, 360, 640}, {1280, 720, 240, 426}, {2, 1000, 16, 2},
	} {
		if got := evenWidth(tc.w, tc.h, tc.to); got != tc.want {
			t.Errorf("evenWidth(%d, %d, %d) = %d, want %d", tc.w, tc.h, tc.to, got, tc.want)
		}
	}
}

func TestTimeRing(t *testing.T) {
	var r timeRing
	for i := range int64(300) {
		r.put(timing{ts: i * 3000, pts: fromTS(i * 3000)})
	}
	if got, ok := r.get(299 * 3000); !ok || got.pts != fromTS(299*3000) {
		t.Fatalf("newest entry: %+v %v", got, ok)
	}
	if _, ok := r.get(10 * 3000); ok {
		t.Fatal("entry older than the ring found")
	}
	if d := fromTS(toTS(1234567890)); d != 1234566666 {
		t.Fatalf("90 kHz round trip: %d", d)
	}
}

func TestNearSize(t *testing.T) {
	for _, tc := range []struct {
		rung, src int
		want      bool
	}{
		{360, 360, true}, {360, 368, true}, {640, 640, true}, {1080, 1088, true}, {720, 720, true},
		{360, 480, false}, {480, 720, false}, {720, 1080, false}, {240, 360, false}, {1000, 1080, false},
	} {
		if got := nearSize(tc.rung, tc.src); got != tc.want {
			t.Errorf("nearSize(%d, %d) = %v, want %v", tc.rung, tc.src, got, tc.want)
		}
	}
}
