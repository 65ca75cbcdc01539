package packager

import (
	"hash/maphash"
	"sync"
	"time"

	"github.com/liveengine/liveengine/engine"
)

// sessions counts HLS viewers: a viewer is a distinct client address and
// User-Agent that requested a playlist of a group within the timeout. Each
// new viewer adds one to the group's source stream with AddViewers, and
// taking it away when it expires keeps the engine's count right.
type sessions struct {
	timeout time.Duration
	seed    maphash.Seed

	mu   sync.Mutex
	byID map[uint64]*session
}

type session struct {
	stream *engine.Stream // the source stream the viewer was added to
	group  string
	last   time.Time
}

// maxSessions bounds the viewers tracked at once across all streams.
const maxSessions = 1 << 20

func newSessions(timeout time.Duration) *sessions {
	return &sessions{timeout: timeout, seed: maphash.MakeSeed(), byID: map[uint64]*session{}}
}

// key hashes the session identity without allocating.
func (ss *sessions) key(group string, ip, ua []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(ss.seed)
	h.WriteString(group)
	h.WriteByte(0)
	h.Write(ip)
	h.WriteByte(0)
	h.Write(ua)
	return h.Sum64()
}

// seen records a playlist request; source finds the group's source stream
// the first time a viewer is seen.
func (ss *sessions) seen(group string, ip, ua []byte, now time.Time, source func() *engine.Stream) {
	k := ss.key(group, ip, ua)
	ss.mu.Lock()
	if s, ok := ss.byID[k]; ok {
		s.last = now
		ss.mu.Unlock()
		return
	}
	ss.mu.Unlock()
	st := source()
	if st == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if s, ok := ss.byID[k]; ok { // a concurrent request won
		s.last = now
		return
	}
	if len(ss.byID) >= maxSessions {
		return // a flood of made-up User-Agents must not grow memory without bound
	}
	ss.byID[k] = &session{stream: st, group: group, last: now}
	st.AddViewers(1)
}

// expire forgets viewers idle longer than the timeout.
func (ss *sessions) expire(now time.Time) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.byID {
		if now.Sub(s.last) > ss.timeout {
			s.stream.AddViewers(-1)
			delete(ss.byID, k)
		}
	}
}

// releaseAll forgets every viewer.
func (ss *sessions) releaseAll() {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.byID {
		s.stream.AddViewers(-1)
		delete(ss.byID, k)
	}
}

func (ss *sessions) count() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.byID)
}
