package packager

import "testing"

// TestHoldPastLastPart: a blocking reload for a part past the last one of
// a segment that has just completed holds until the next segment's first
// part is in the playlist. TestRTMPToLLHLS once asked for part 0.10 as
// segment 0 was cut after part 0.9 and got back a playlist whose newest
// part was still 0.9.
func TestHoldPastLastPart(t *testing.T) {
	r := &rendition{segs: []*segment{{msn: 0, parts: make([]part, 10)}}, cur: &segment{msn: 1}}
	for _, c := range []struct {
		msn  uint64
		part int
		want bool
	}{
		{0, 9, true},   // listed
		{0, -1, true},  // the segment is complete
		{0, 10, false}, // the next part is 1.0, not there yet
		{1, 0, false},
		{1, -1, false},
	} {
		if got := r.hasLocked(c.msn, c.part); got != c.want {
			t.Errorf("before 1.0: has(%d, %d) = %v, want %v", c.msn, c.part, got, c.want)
		}
	}
	r.cur.parts = make([]part, 1)
	if !r.hasLocked(0, 10) || !r.hasLocked(1, 0) || r.hasLocked(1, 1) {
		t.Error("after 1.0: 0.10 and 1.0 must be answered, 1.1 held")
	}
	// Further back: a part past segment 0's end is answered by segment 1.
	r.segs = append(r.segs, &segment{msn: 1, parts: make([]part, 3)})
	r.cur = &segment{msn: 2}
	if !r.hasLocked(0, 12) {
		t.Error("0.12 with segment 1 complete must be answered")
	}
}
