package ledger

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/liveengine/liveengine/control/sqldb"
)

// Gift is a catalog entry.
type Gift struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Price        int64  `json:"price"`
	AnimationURL string `json:"animation_url"`
	Tier         int    `json:"tier"`
	Active       bool   `json:"active"`
}

// catalogCache keeps the gift catalog and commission overrides in memory:
// the gift hot path reads them once per request.
type catalogCache struct {
	db  *sqldb.DB
	ttl time.Duration

	mu       sync.Mutex
	loadedAt time.Time
	gifts    map[string]Gift
	order    []string
	percents map[string]int
}

func newCatalogCache(db *sqldb.DB, ttl time.Duration) *catalogCache {
	return &catalogCache{db: db, ttl: ttl}
}

func (c *catalogCache) invalidate() {
	c.mu.Lock()
	c.loadedAt = time.Time{}
	c.mu.Unlock()
}

// snapshot returns current maps, reloading them when older than the TTL.
func (c *catalogCache) snapshot(ctx context.Context) (map[string]Gift, []string, map[string]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gifts != nil && time.Since(c.loadedAt) < c.ttl {
		return c.gifts, c.order, c.percents, nil
	}
	gifts := make(map[string]Gift)
	var order []string
	rows, err := c.db.QueryContext(ctx, "SELECT id, name, price, animation_url, tier, active FROM ledger_gifts ORDER BY tier, price, id")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load gift catalog: %w", err)
	}
	for rows.Next() {
		var g Gift
		var active int
		if err := rows.Scan(&g.ID, &g.Name, &g.Price, &g.AnimationURL, &g.Tier, &active); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("load gift catalog: %w", err)
		}
		g.Active = active == 1
		gifts[g.ID] = g
		order = append(order, g.ID)
	}
	// A read broken part way must not be cached as the whole catalog (a
	// missing commission override would charge the default for a TTL).
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, nil, nil, fmt.Errorf("load gift catalog: %w", err)
	}
	rows.Close()
	percents := make(map[string]int)
	rows, err = c.db.QueryContext(ctx, "SELECT streamer_id, percent FROM ledger_commissions")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("load commissions: %w", err)
	}
	for rows.Next() {
		var id string
		var p int
		if err := rows.Scan(&id, &p); err != nil {
			rows.Close()
			return nil, nil, nil, fmt.Errorf("load commissions: %w", err)
		}
		percents[id] = p
	}
	if err := rows.Err(); err != nil {
		rows.Close()
		return nil, nil, nil, fmt.Errorf("load commissions: %w", err)
	}
	rows.Close()
	c.gifts, c.order, c.percents, c.loadedAt = gifts, order, percents, time.Now()
	return gifts, order, percents, nil
}
