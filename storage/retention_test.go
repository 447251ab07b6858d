package storage

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
)

func TestPurgeExpired(t *testing.T) {
	ctx := context.Background()
	db := testDB(t)
	now := time.Now().UTC()
	user := uuid.New()
	// Activity logs are kept 2 years; rate-limit windows until their expires_at.
	for _, row := range []struct {
		region string
		age    time.Duration
	}{{"me-central1", 3 * 365 * 24 * time.Hour}, {"eu-west1", 3 * 365 * 24 * time.Hour}, {"eu-west1", 24 * time.Hour}} {
		execSQL(t, db, `INSERT INTO activity_logs (region, user_id, action, created_at) VALUES ($1, $2, 'probe', $3)`,
			row.region, user, now.Add(-row.age))
	}
	key := uuid.New()
	execSQL(t, db, `INSERT INTO rate_limits (region, bucket, key_hash, window_start, hits, expires_at) VALUES
		('us-east1', 'probe', $1, $2, 3, $3), ('us-east1', 'probe', $1, $4, 1, $5)`,
		key[:], now.Add(-2*time.Hour), now.Add(-time.Hour), now, now.Add(time.Hour))

	deleted, err := db.PurgeExpired(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if deleted["activity_logs"] < 2 || deleted["rate_limits"] < 1 {
		t.Fatalf("deleted %v", deleted)
	}
	var logs, limits int
	db.pool.QueryRow(ctx, `SELECT count(*) FROM activity_logs WHERE user_id = $1`, user).Scan(&logs)
	db.pool.QueryRow(ctx, `SELECT count(*) FROM rate_limits WHERE key_hash = $1`, key[:]).Scan(&limits)
	if logs != 1 || limits != 1 {
		t.Fatalf("kept %d activity logs and %d rate-limit rows, want 1 and 1 (the live ones)", logs, limits)
	}
}
