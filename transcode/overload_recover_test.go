package transcode

import (
	"io"
	"log/slog"
	"testing"
	"time"
)

// TestOverloadLevelRecovers drives the overload policy with synthetic
// signals: a rung whose encode time exceeds the frame interval raises the
// level to its maximum; once the queues are empty and the source clock is
// kept, the level must come back to 0 even though the shedding rungs' last
// encode-time averages (keyframes only) are still high. The level used to
// stick at its maximum, leaving every rung at keyframes only for good.
func TestOverloadLevelRecovers(t *testing.T) {
	j, step := policyJob(3)
	maxLevel := 2 * len(j.rungs)

	// Overload: every rung is slower than real time, its queue backs up.
	for _, r := range j.rungs {
		for len(r.in) < cap(r.in)/2 {
			r.in <- frameItem{}
		}
	}
	for i := 0; i < 50 && j.level < maxLevel; i++ {
		for _, r := range j.rungs {
			r.encNanos.Store(int64(80 * time.Millisecond))
		}
		step()
	}
	if j.level != maxLevel {
		t.Fatalf("level %d under sustained overload, want %d", j.level, maxLevel)
	}

	for _, r := range j.rungs {
		for len(r.in) > 0 {
			<-r.in
		}
	}
	// Load gone. Shedding rungs only encode keyframes, so their averages
	// stay high; they must not count. Rungs that encode every frame report
	// a cheap frame time.
	for i := 0; i < 200 && j.level > 0; i++ {
		n := len(j.rungs)
		for k, r := range j.rungs {
			if j.level > n-1-k {
				r.encNanos.Store(int64(80 * time.Millisecond)) // keyframes only
			} else {
				r.encNanos.Store(int64(5 * time.Millisecond))
			}
		}
		step()
	}
	if j.level != 0 {
		t.Fatalf("overload level stuck at %d after the load went away", j.level)
	}
}

// policyJob is a job with n idle rungs (queues of 8) for driving the
// overload policy, and a step that feeds it one frame: each step is one
// frame interval of source time, and the policy's timestamps are moved
// back so its pacing (1 s to rise, 5 s calm to fall) passes without
// sleeping.
func policyJob(n int) (*job, func()) {
	j := &job{
		t:        &Transcoder{m: newMetrics()},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		frameDur: 33 * time.Millisecond,
	}
	for i := 0; i < n; i++ {
		j.rungs = append(j.rungs, &rung{j: j, in: make(chan frameItem, 8)})
	}
	pts := time.Duration(0)
	step := func() {
		pts += j.frameDur
		j.wallBase = time.Now().Add(-pts) // decoding exactly on the source clock
		j.ptsBase = 0
		j.lastChange = j.lastChange.Add(-6 * time.Second)
		if !j.lastBusy.IsZero() {
			j.lastBusy = j.lastBusy.Add(-6 * time.Second)
		}
		j.updateLoad(pts)
	}
	return j, step
}

// TestOverloadIgnoresQueueBlips: a rung queue that is half full for a few
// frames at a time (x264 warming up, a GOP burst, a moment without CPU)
// is no overload; one that stays half full is.
func TestOverloadIgnoresQueueBlips(t *testing.T) {
	j, step := policyJob(1)
	r := j.rungs[0]
	for round := 0; round < 20; round++ {
		for len(r.in) < cap(r.in)/2 {
			r.in <- frameItem{}
		}
		for i := 0; i < 5; i++ { // 5 frames, about 170 ms
			step()
		}
		for len(r.in) > 0 {
			<-r.in
		}
		step()
	}
	if j.level != 0 {
		t.Fatalf("level %d after short queue blips, want 0", j.level)
	}
	for len(r.in) < cap(r.in)/2 {
		r.in <- frameItem{}
	}
	for i := 0; i < 4*backlogFrames && j.level == 0; i++ {
		step()
	}
	if j.level == 0 {
		t.Fatal("a queue half full for many frames did not raise the level")
	}
}
