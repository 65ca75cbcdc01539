package ledger

import (
	"context"
	"sync/atomic"
	"time"
)

// deadlineStep is how far a shared request deadline may lie past the
// request's own: requests that start within one step share a context.
const deadlineStep = 10 * time.Millisecond

// sharedDeadlines hands out request contexts that end timeout after the
// request started, rounded up to the next deadlineStep. Requests that
// start within one step share one context and its timer, so a gift costs
// no context, timer and done channel of its own (context.WithTimeout was
// ~2 µs and three allocations per gift). Nothing cancels a shared context
// early; its timer ends it, and at most timeout/deadlineStep of them are
// live at once.
type sharedDeadlines struct {
	timeout time.Duration
	cur     atomic.Pointer[sharedDeadline]
}

type sharedDeadline struct {
	ctx    context.Context
	cancel context.CancelFunc // called by its timer only; kept for vet
	until  time.Time          // requests starting before this share ctx
}

// context returns a context whose deadline is at least timeout from now.
func (s *sharedDeadlines) context() context.Context {
	now := time.Now()
	if d := s.cur.Load(); d != nil && now.Before(d.until) {
		return d.ctx
	}
	d := &sharedDeadline{until: now.Add(deadlineStep)}
	d.ctx, d.cancel = context.WithDeadline(context.Background(), d.until.Add(s.timeout))
	// Two requests racing here may both make one; either is fine.
	s.cur.Store(d)
	return d.ctx
}
