package main

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
)

// runJobs does a serving process's periodic work until ctx ends: it returns expired cash-out
// holds of its own region to their owners, and on PostgreSQL deletes rows past their retention
// (CockroachDB's row-level TTL does that there). Every pod runs it; both jobs are idempotent
// and safe to run side by side, and each region's pods look after their own region's rows.
func runJobs(ctx context.Context, db *storage.DB, region string, log *zap.Logger, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			runJobsOnce(ctx, db, region, log, now)
		}
	}
}

func runJobsOnce(ctx context.Context, db *storage.DB, region string, log *zap.Logger, now time.Time) {
	if n, err := db.ExpireCashOutsIn(ctx, region, now); err != nil {
		if ctx.Err() == nil {
			log.Error("cash-out expiry", zap.Error(err))
		}
	} else if n > 0 {
		log.Info("cash-outs expired", zap.Int("count", n))
	}
	deleted, err := db.PurgeExpired(ctx, now)
	if err != nil {
		if ctx.Err() == nil {
			log.Error("retention", zap.Error(err))
		}
		return
	}
	for table, n := range deleted {
		if n > 0 {
			log.Info("retention", zap.String("table", table), zap.Int64("deleted", n))
		}
	}
}
