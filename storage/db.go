// Package storage is 7awel's data layer: the domain types and all of the SQL, on PostgreSQL or
// CockroachDB through one pgx pool.
//
// Every exported method of DB is one transaction and one retry unit: callers never see a
// transaction, and the closure a method runs may execute several times (tx.go). Driver errors are
// translated to the sentinels of errors.go here and nowhere else. It is deliberately not an ORM
// and not a repository-per-table layer: methods are named after what the API does.
package storage

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/7awel/wallet/regions"
)

// Engine is the SQL engine behind a pool, detected at connect and never configured by hand.
type Engine int

const (
	Postgres Engine = iota + 1
	Cockroach
)

func (e Engine) String() string {
	switch e {
	case Postgres:
		return "postgresql"
	case Cockroach:
		return "cockroachdb"
	}
	return "unknown"
}

// Options tune Open. The zero value is usable.
type Options struct {
	// MaxConns caps the pool; 0 keeps pgx's default (max(4, cores)).
	MaxConns int32
	// Tracer, when set, sees every statement (the statement-locality audit uses it in tests).
	Tracer pgx.QueryTracer
	// Registerer receives the storage metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	Logger     *zap.Logger
	// MaxRetries bounds the retries of one transaction (default 10).
	MaxRetries int
	// Keys protect PII and credentials; required by the user and money methods.
	Keys *Keys
}

// DB is the data layer over one pool. It is safe for concurrent use.
type DB struct {
	pool *pgxpool.Pool
	// ref reads reference data (assets, rates, promotions). On CockroachDB it is a second pool
	// whose read-only transactions are follower reads; on PostgreSQL it is pool.
	ref        *pgxpool.Pool
	engine     Engine
	regions    *regions.Table
	log        *zap.Logger
	metrics    *metrics
	maxRetries int
	keys       *Keys
	pins       *pinState        // PIN hashing semaphore and verified-PIN cache (pin.go)
	transfers  *transferBatcher // coalesces transfers on PostgreSQL (transfers.go)

	// serialTransfers, set by tests only, sends PostgreSQL's transfers through CockroachDB's
	// path (one SERIALIZABLE transaction each, transferTx), so that its SQL runs here too.
	serialTransfers bool
}

// Open connects to url, detects the engine and returns a DB. It does not migrate.
func Open(ctx context.Context, url string, rt *regions.Table, opts Options) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", redactURLError(err))
	}
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	if opts.Tracer != nil {
		cfg.ConnConfig.Tracer = opts.Tracer
	}
	cfg.MaxConnIdleTime = 5 * time.Minute
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open pool: %w", err)
	}
	engine, err := detectEngine(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	maxRetries := opts.MaxRetries
	if maxRetries <= 0 {
		maxRetries = 10
	}
	db := &DB{pool: pool, ref: pool, engine: engine, regions: rt, log: log, maxRetries: maxRetries, keys: opts.Keys, pins: newPINState(),
		transfers: newTransferBatcher(pool)}
	if engine == Cockroach {
		refCfg := cfg.Copy()
		followerReads(refCfg.ConnConfig)
		refCfg.MaxConns = max(2, cfg.MaxConns/4)
		if db.ref, err = pgxpool.NewWithConfig(ctx, refCfg); err != nil {
			pool.Close()
			return nil, fmt.Errorf("open follower-read pool: %w", err)
		}
	}
	db.metrics = newMetrics(opts.Registerer, pool)
	return db, nil
}

// followerReads makes every read-only transaction on the connection an exact-staleness
// follower read (about 4.2 s old), served by the nearest replica instead of the leaseholder
// (reference/cockroachdb.md §6). The option travels in the startup packet, so the SQL text
// stays the same as on PostgreSQL. Only reference data read through DB.ref may be that stale:
// assets and exchange rates change rarely and are cached for a minute anyway.
func followerReads(cfg *pgx.ConnConfig) {
	const opt = "-c default_transaction_use_follower_reads=on"
	if cur := cfg.RuntimeParams["options"]; cur != "" {
		cfg.RuntimeParams["options"] = cur + " " + opt
		return
	}
	cfg.RuntimeParams["options"] = opt
}

func detectEngine(ctx context.Context, pool *pgxpool.Pool) (Engine, error) {
	var version string
	if err := pool.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return 0, fmt.Errorf("detect engine: %w", err)
	}
	if strings.Contains(version, "CockroachDB") {
		return Cockroach, nil
	}
	return Postgres, nil
}

// Close closes the pools after in-flight work has returned.
func (db *DB) Close() {
	if db.ref != db.pool {
		db.ref.Close()
	}
	db.pool.Close()
}

// Engine reports the engine behind the pool.
func (db *DB) Engine() Engine { return db.engine }

// Regions returns the deployment's region table.
func (db *DB) Regions() *regions.Table { return db.regions }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error { return db.pool.Ping(ctx) }

// redactURLError keeps a password out of an error about a malformed URL.
func redactURLError(err error) error {
	return fmt.Errorf("%s", strings.SplitN(err.Error(), "://", 2)[0])
}

// Keys returns the application keys the DB encrypts and hashes with (nil if none were given).
func (db *DB) Keys() *Keys { return db.keys }
