package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/migrations"
)

// retentionBatch bounds one DELETE, so a backlog never holds locks for long.
const retentionBatch = 1000

// PurgeExpired deletes rows past their retention on PostgreSQL, the plan's "Data Retention
// Policies" (OTP codes 24 h, sessions 30 days after last activity, activity logs 2 years, …),
// from the same declarations the CockroachDB overlay turns into row-level TTL
// (migrations.Tables). On CockroachDB it does nothing: the TTL jobs do it there
// (reference/cockroachdb.md §4). Each statement pins one region. It returns rows deleted per table.
func (db *DB) PurgeExpired(ctx context.Context, now time.Time) (map[string]int64, error) {
	deleted := map[string]int64{}
	if db.engine == Cockroach {
		return deleted, nil
	}
	for _, t := range migrations.Tables {
		if t.TTL == "" {
			continue
		}
		// ctid batches are PostgreSQL's way to bound a DELETE; this path never runs on CockroachDB.
		sql := fmt.Sprintf(`DELETE FROM %[1]s WHERE ctid IN (
			SELECT ctid FROM %[1]s WHERE region = $1 AND (%[2]s) < $2 LIMIT %[3]d)`,
			pgx.Identifier{t.Name}.Sanitize(), t.TTL, retentionBatch)
		for _, region := range db.regions.Names() {
			for {
				var n int64
				err := db.inTx(ctx, "purge_expired", readCommitted, func(tx pgx.Tx) error {
					tag, err := tx.Exec(ctx, sql, region, now)
					n = tag.RowsAffected()
					return err
				})
				if err != nil {
					return deleted, fmt.Errorf("purge %s in %s: %w", t.Name, region, err)
				}
				deleted[t.Name] += n
				if n < retentionBatch {
					break
				}
			}
		}
	}
	return deleted, nil
}
