package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/cockroach-go/v2/crdb"
	crdbpgx "github.com/cockroachdb/cockroach-go/v2/crdb/crdbpgxv5"
	"github.com/jackc/pgx/v5"
)

// Isolation of a transaction. Money moves SERIALIZABLE on both engines, so that tests on
// PostgreSQL meet the same 40001 retries production meets on CockroachDB (design.md).
type isolation int

const (
	readCommitted isolation = iota
	serializable
)

// Backoff between retries: jittered exponential, capped. A retry is a conflict with a concurrent
// transaction; waiting a little lets it finish.
const (
	backoffBase = 2 * time.Millisecond
	backoffMax  = 100 * time.Millisecond
)

func backoff(attempt int) time.Duration {
	d := backoffBase << min(attempt, 6)
	d = min(d, backoffMax)
	return d/2 + rand.N(d/2+1) // equal jitter
}

// retryCounter, when a request put one in its context, counts the retries its transactions took
// (the API reports them in a response header for load tests).
type retryCounterKey struct{}

// WithRetryCounter returns a context in which transactions count their retries.
func WithRetryCounter(ctx context.Context) context.Context {
	return context.WithValue(ctx, retryCounterKey{}, new(atomic.Int64))
}

// Retries returns the retries counted in ctx by WithRetryCounter, or 0.
func Retries(ctx context.Context) int64 {
	if c, ok := ctx.Value(retryCounterKey{}).(*atomic.Int64); ok {
		return c.Load()
	}
	return 0
}

// inTx runs fn in one transaction, retrying it on serialization failures and deadlocks. op names
// the operation in metrics. fn may run several times: it must not have effects outside the
// transaction, and it must return driver errors wrapped with %w so that retries are seen.
//
// The two engines need different loops (design.md, Two engines):
//   - CockroachDB: crdbpgx.ExecuteTx, the SAVEPOINT cockroach_restart protocol, which retries
//     40001 on the same transaction. It has no backoff and a default of 50 retries, so the
//     closure sleeps before each re-run and WithMaxRetries bounds it
//     (reference/cockroachdb.md §7.3).
//   - PostgreSQL: BEGIN … COMMIT, retrying 40001 and 40P01 from a fresh BEGIN, and checking the
//     COMMIT error. A 40001 cannot be cured by rolling back to a savepoint there: the snapshot
//     stays the same.
func (db *DB) inTx(ctx context.Context, op string, iso isolation, fn func(pgx.Tx) error) error {
	opts := pgx.TxOptions{IsoLevel: pgx.ReadCommitted}
	if iso == serializable {
		opts.IsoLevel = pgx.Serializable
	}
	var err error
	if db.engine == Cockroach {
		err = db.inTxCockroach(ctx, op, opts, fn)
	} else {
		err = db.inTxPostgres(ctx, op, opts, fn)
	}
	db.metrics.observeTx(op, err)
	return translate(err)
}

func (db *DB) countRetry(ctx context.Context, op string) {
	db.metrics.retries.WithLabelValues(op).Inc()
	if c, ok := ctx.Value(retryCounterKey{}).(*atomic.Int64); ok {
		c.Add(1)
	}
}

func (db *DB) inTxPostgres(ctx context.Context, op string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	for attempt := 0; ; attempt++ {
		err := db.attemptPostgres(ctx, opts, fn)
		if err == nil {
			return nil
		}
		state := sqlState(err)
		if state != codeSerializationFailure && state != codeDeadlock {
			return err
		}
		if attempt >= db.maxRetries {
			db.metrics.giveups.WithLabelValues(op).Inc()
			return fmt.Errorf("%w after %d attempts (%s): %w", ErrBusy, attempt+1, op, err)
		}
		db.countRetry(ctx, op)
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return err
		}
	}
}

// attemptPostgres is one BEGIN … COMMIT. A COMMIT that fails is returned: on PostgreSQL a
// serialization failure can surface at COMMIT, and a connection lost during COMMIT leaves the
// outcome unknown.
func (db *DB) attemptPostgres(ctx context.Context, opts pgx.TxOptions, fn func(pgx.Tx) error) (err error) {
	tx, err := db.pool.BeginTx(ctx, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			// The rollback error is secondary: the connection is discarded if it is broken.
			_ = tx.Rollback(context.WithoutCancel(ctx))
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(ctx); err != nil {
		if sqlState(err) == "" {
			return fmt.Errorf("%w: %w", ErrAmbiguousCommit, err)
		}
		return err
	}
	return nil
}

func (db *DB) inTxCockroach(ctx context.Context, op string, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	attempt := 0
	err := crdbpgx.ExecuteTx(crdb.WithMaxRetries(ctx, db.maxRetries), db.pool, opts, func(tx pgx.Tx) error {
		if attempt > 0 {
			db.countRetry(ctx, op)
			if err := sleep(ctx, backoff(attempt-1)); err != nil {
				return err
			}
		}
		attempt++
		return fn(tx)
	})
	var maxErr *crdb.MaxRetriesExceededError
	var ambiguous *crdb.AmbiguousCommitError
	switch {
	case errors.As(err, &maxErr):
		db.metrics.giveups.WithLabelValues(op).Inc()
		return fmt.Errorf("%w after %d attempts (%s): %w", ErrBusy, attempt, op, err)
	case errors.As(err, &ambiguous):
		return fmt.Errorf("%w: %w", ErrAmbiguousCommit, err)
	}
	return err
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// readReference runs fn in a read-only transaction on the reference-data pool (follower reads
// on CockroachDB, see followerReads). Reads only: a write there fails.
func (db *DB) readReference(ctx context.Context, op string, fn func(pgx.Tx) error) error {
	err := pgx.BeginTxFunc(ctx, db.ref, pgx.TxOptions{AccessMode: pgx.ReadOnly}, fn)
	db.metrics.observeTx(op, err)
	return translate(err)
}
