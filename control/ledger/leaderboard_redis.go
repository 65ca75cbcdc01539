package ledger

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisLeaderboard keeps boards in Redis sorted sets (several control nodes).
type RedisLeaderboard struct {
	rdb    redis.UniversalClient
	prefix string
}

var _ Leaderboard = (*RedisLeaderboard)(nil)

// NewRedisLeaderboard uses rdb with keys under prefix (e.g. "le:lb:").
func NewRedisLeaderboard(rdb redis.UniversalClient, prefix string) *RedisLeaderboard {
	return &RedisLeaderboard{rdb: rdb, prefix: prefix}
}

// retention of day and week boards; all-time boards never expire.
func retention(key string) time.Duration {
	switch {
	case strings.Contains(key, ":day:"), strings.HasPrefix(key, "day:"):
		return 8 * 24 * time.Hour
	case strings.Contains(key, ":week:"), strings.HasPrefix(key, "week:"):
		return 6 * 7 * 24 * time.Hour
	}
	return 0
}

// Add implements Leaderboard: increments are summed per key and member
// first, so a batch of gifts costs one pipelined round trip.
func (r *RedisLeaderboard) Add(ctx context.Context, gifts []GiftRecord) error {
	if len(gifts) == 0 {
		return nil
	}
	type km struct{ key, member string }
	sum := make(map[km]int64)
	for _, g := range gifts {
		g.increments(func(key, member string, score int64) { sum[km{key, member}] += score })
	}
	pipe := r.rdb.Pipeline()
	expire := make(map[string]time.Duration)
	for k, v := range sum {
		pipe.ZIncrBy(ctx, r.prefix+k.key, float64(v), k.member)
		if d := retention(k.key); d > 0 {
			expire[k.key] = d
		}
	}
	for k, d := range expire {
		pipe.Expire(ctx, r.prefix+k, d)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("redis leaderboard add: %w", err)
	}
	return nil
}

// Top implements Leaderboard.
func (r *RedisLeaderboard) Top(ctx context.Context, b Board, n int) ([]Standing, error) {
	if n <= 0 {
		return nil, nil
	}
	zs, err := r.rdb.ZRevRangeWithScores(ctx, r.prefix+b.Key(), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("redis leaderboard top %s: %w", b.Key(), err)
	}
	if len(zs) == n {
		// Members tied with the last one may sort before it by id (Redis
		// orders ties by member, descending): fetch them all, so ties are
		// broken by ascending id exactly as in the memory board.
		last := strconv.FormatFloat(zs[n-1].Score, 'f', -1, 64)
		tied, err := r.rdb.ZRangeByScoreWithScores(ctx, r.prefix+b.Key(), &redis.ZRangeBy{Min: last, Max: last}).Result()
		if err != nil {
			return nil, fmt.Errorf("redis leaderboard top %s: %w", b.Key(), err)
		}
		seen := make(map[string]bool, len(zs))
		for _, z := range zs {
			seen[fmt.Sprint(z.Member)] = true
		}
		for _, z := range tied {
			if !seen[fmt.Sprint(z.Member)] {
				zs = append(zs, z)
			}
		}
	}
	out := make([]Standing, len(zs))
	for i, z := range zs {
		out[i] = Standing{ID: fmt.Sprint(z.Member), Coins: int64(z.Score)}
	}
	sortStandings(out)
	if len(out) > n {
		out = out[:n]
	}
	return out, nil
}

// Reset implements Leaderboard: deletes every key under the prefix.
func (r *RedisLeaderboard) Reset(ctx context.Context) error {
	var cursor uint64
	for {
		keys, next, err := r.rdb.Scan(ctx, cursor, r.prefix+"*", 500).Result()
		if err != nil {
			return fmt.Errorf("redis leaderboard reset: %w", err)
		}
		if len(keys) > 0 {
			if err := r.rdb.Del(ctx, keys...).Err(); err != nil {
				return fmt.Errorf("redis leaderboard reset: %w", err)
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}
