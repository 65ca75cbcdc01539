package packager

import (
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// group holds the renditions of one source stream and their shared segment
// clock.
type group struct {
	id string

	// gen counts changes of any rendition of the group (a new part, a new
	// rendition, an end); media playlists are cached per generation
	// because their rendition reports depend on the siblings.
	gen atomic.Uint64

	mu         sync.RWMutex
	renditions map[string]*rendition // by rendition name ("source", "720p")
	// sorted is a read-only snapshot of renditions sorted by name, replaced
	// on every change, so requests list siblings without locking.
	sorted atomic.Pointer[[]*rendition]
	// starts remembers which media sequence number each recent segment
	// start time got, so a rendition that joins late numbers the same
	// moment the same way as its siblings.
	starts  []segmentStart
	lastMSN uint64
	anyMSN  bool
	// targets are the EXT-X-TARGETDURATION and PART-TARGET every playlist
	// of the group carries for the whole publish: the first rendition to
	// complete a segment fixes them, the others adopt them.
	targets    targets
	targetsSet bool
}

// targets are a playlist's fixed target durations.
type targets struct {
	segment int           // EXT-X-TARGETDURATION, seconds
	part    time.Duration // PART-TARGET
}

// maxSegment is the longest a segment may last: its EXTINF rounded to the
// nearest integer must not exceed the target duration (RFC 8216 4.4.3.1).
func (t targets) maxSegment() time.Duration {
	return time.Duration(t.segment)*time.Second + time.Second/2 - time.Millisecond
}

type segmentStart struct {
	dts time.Duration
	msn uint64
}

// maxGroupStarts bounds the shared segment clock: several minutes of
// segments, far more than a late rendition needs to look back.
const maxGroupStarts = 256

func newGroup(id string) *group {
	return &group{id: id, renditions: map[string]*rendition{}}
}

// firstMSN chooses the media sequence number of a rendition's first
// segment, which starts at dts: the number a sibling gave the same start or
// the sibling segment that contains dts (so the next boundary, which the
// siblings share, gets the same number in both), else one past every
// number the group used, else 0.
func (g *group) firstMSN(dts time.Duration) uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	best := -1
	for i, s := range g.starts {
		if s.dts <= dts && (best < 0 || s.dts > g.starts[best].dts) {
			best = i
		}
	}
	if best >= 0 {
		return g.starts[best].msn
	}
	if !g.anyMSN {
		return 0
	}
	return g.lastMSN + 1
}

// restart forgets the segment clock of an earlier publish, whose
// timestamps mean nothing to a new one, but keeps numbering after its last
// number so URLs cached from it are never reused.
func (g *group) restart() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.starts = g.starts[:0]
	g.targetsSet = false
}

// fixTargets fixes the group's targets to proposed unless a sibling fixed
// them first, and returns the group's targets.
func (g *group) fixTargets(proposed targets) targets {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.targetsSet {
		g.targets, g.targetsSet = proposed, true
	}
	return g.targets
}

// fixedTargets returns the group's targets, if fixed.
func (g *group) fixedTargets() (targets, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.targets, g.targetsSet
}

// recordStart notes that a segment starting at dts has number msn.
func (g *group) recordStart(dts time.Duration, msn uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.anyMSN || msn > g.lastMSN {
		g.lastMSN, g.anyMSN = msn, true
	}
	for i := len(g.starts) - 1; i >= 0 && i >= len(g.starts)-8; i-- {
		if g.starts[i].dts == dts {
			return // a sibling recorded it already
		}
	}
	if len(g.starts) >= maxGroupStarts {
		copy(g.starts, g.starts[len(g.starts)-maxGroupStarts/2:])
		g.starts = g.starts[:maxGroupStarts/2]
	}
	g.starts = append(g.starts, segmentStart{dts: dts, msn: msn})
}

// rendition returns the rendition called name, or nil.
func (g *group) rendition(name string) *rendition {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return g.renditions[name]
}

// list returns the renditions sorted by name; the slice must not be
// modified.
func (g *group) list() []*rendition {
	if p := g.sorted.Load(); p != nil {
		return *p
	}
	return nil
}

// setLocked adds, replaces (r != nil) or removes (r == nil) a rendition;
// g.mu must be held.
func (g *group) setLocked(name string, r *rendition) {
	if r == nil {
		delete(g.renditions, name)
	} else {
		g.renditions[name] = r
	}
	out := make([]*rendition, 0, len(g.renditions))
	for _, x := range g.renditions {
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	g.sorted.Store(&out)
	g.gen.Add(1)
}
