package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// Throttles are fixed-window counters in rate_limits, in the database rather than in process
// memory, so that restarts and scale-out do not reset them (reference/security.md §1.8). A
// counter is homed in the region that counts it, which the caller names; its key is a blind
// index, so client addresses and device ids are not stored in clear.

// Throttle is one limit: at most Limit hits per Window.
type Throttle struct {
	Bucket string
	Limit  int
	Window time.Duration
}

const hitSQL = `
INSERT INTO rate_limits (region, bucket, key_hash, window_start, hits, expires_at)
VALUES ($1, $2, $3, $4, 1, $5)
ON CONFLICT (region, bucket, key_hash, window_start) DO UPDATE SET hits = rate_limits.hits + 1
RETURNING hits`

// Hit counts one call of key against th in region and refuses it past the limit with
// ErrRateLimited in a *RateLimitError whose RetryAfter is the end of the window. The increment
// and the test are one statement, so parallel calls cannot slip past the limit. One transaction;
// the hit is counted even when refused.
func (db *DB) Hit(ctx context.Context, region string, th Throttle, key string) error {
	if th.Limit <= 0 || th.Window <= 0 {
		return fmt.Errorf("throttle %s: limit and window must be positive", th.Bucket)
	}
	keyHash := db.keys.BlindIndex("throttle:"+th.Bucket, key)
	now := time.Now().UTC()
	start := now.Truncate(th.Window)
	var hits int
	err := db.inTx(ctx, "rate_limit_hit", readCommitted, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, hitSQL, region, th.Bucket, keyHash, start, start.Add(th.Window)).Scan(&hits)
	})
	if err != nil {
		return fmt.Errorf("rate limit %s: %w", th.Bucket, err)
	}
	if hits > th.Limit {
		return &RateLimitError{Err: ErrRateLimited, Bucket: th.Bucket, RetryAfter: start.Add(th.Window).Sub(now)}
	}
	return nil
}
