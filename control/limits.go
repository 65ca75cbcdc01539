package control

import (
	"math"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/time/rate"
)

// limiter is a set of token buckets keyed by client IP or user id. Idle
// buckets are swept so the map does not grow with every address ever seen.
type limiter struct {
	name  string
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[string]*bucket
	swept   time.Time
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(name string, limit rate.Limit, burst int) *limiter {
	return &limiter{name: name, limit: limit, burst: burst, buckets: map[string]*bucket{}, swept: time.Now()}
}

// allow takes a token for key or returns a 429 API error with Retry-After.
func (l *limiter) allow(key string) error {
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.swept) > time.Minute {
		for k, b := range l.buckets {
			// A bucket idle long enough to be full again carries no state.
			if now.Sub(b.seen) > 10*time.Minute {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[key]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	r := b.lim.ReserveN(now, 1)
	delay := r.DelayFrom(now)
	if delay > 0 {
		r.CancelAt(now)
	}
	l.mu.Unlock()
	if delay <= 0 {
		return nil
	}
	secs := int(math.Ceil(delay.Seconds()))
	return &Error{Status: fasthttp.StatusTooManyRequests, code: "rate_limited", RetryAfter: secs,
		Message: "too many " + l.name + " requests; retry in " + (time.Duration(secs) * time.Second).String()}
}
