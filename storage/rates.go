package storage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// RateBase is the asset every stored rate is quoted against; cross rates go through it.
const RateBase = "USD"

// Rates is one consistent set of exchange rates: 1 RateBase = PerBase[symbol] symbol.
type Rates struct {
	PerBase map[string]decimal.Decimal
	AsOf    time.Time // the oldest quote in the set
}

// rateDivisionPrecision is the number of decimals cross rates are computed to: more than
// NUMERIC(38,18) stores, so the stored rate is exact to its last digit.
const rateDivisionPrecision = 18

// Cross returns how many `quote` one `base` buys, derived through RateBase, or ErrNotFound
// when either asset has no rate.
func (r Rates) Cross(base, quote string) (decimal.Decimal, error) {
	b, ok := r.PerBase[base]
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("%w: no rate for %s", ErrNotFound, base)
	}
	q, ok := r.PerBase[quote]
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("%w: no rate for %s", ErrNotFound, quote)
	}
	return q.DivRound(b, rateDivisionPrecision), nil
}

// RateProvider quotes exchange rates. The development provider reads the exchange_rates table;
// a production one would call a market-data service. It is called before a movement's
// transaction, never inside it: a quote may be a network call, and the closure may re-run.
type RateProvider interface {
	Rates(ctx context.Context) (Rates, error)
}

// TableRates is the table-backed RateProvider, cached for TTL (the plan caches rates for one
// minute), so quoting costs no database round trip on the hot path.
type TableRates struct {
	db  *DB
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	cached  Rates
	fetched time.Time
}

// NewTableRates returns a provider over db's exchange_rates, cached for ttl (0: one minute).
func NewTableRates(db *DB, ttl time.Duration) *TableRates {
	if ttl <= 0 {
		ttl = time.Minute
	}
	return &TableRates{db: db, ttl: ttl, now: time.Now}
}

// Rates returns the cached set, reloading it when older than the TTL. Concurrent callers at
// expiry wait for one reload rather than each querying.
func (p *TableRates) Rates(ctx context.Context) (Rates, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cached.PerBase != nil && p.now().Sub(p.fetched) < p.ttl {
		return p.cached, nil
	}
	r, err := p.db.LoadRates(ctx)
	if err != nil {
		return Rates{}, err
	}
	p.cached, p.fetched = r, p.now()
	return r, nil
}

// LoadRates reads every rate quoted against RateBase, in one read-committed transaction.
func (db *DB) LoadRates(ctx context.Context) (Rates, error) {
	var out Rates
	err := db.inTx(ctx, "load_rates", readCommitted, func(tx pgx.Tx) error {
		out = Rates{PerBase: map[string]decimal.Decimal{RateBase: decimal.NewFromInt(1)}}
		rows, err := tx.Query(ctx, loadRatesSQL, RateBase)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var sym string
			var rate decimal.Decimal
			var asOf time.Time
			if err := rows.Scan(&sym, &rate, &asOf); err != nil {
				return err
			}
			out.PerBase[sym] = rate
			if out.AsOf.IsZero() || asOf.Before(out.AsOf) {
				out.AsOf = asOf
			}
		}
		return rows.Err()
	})
	if err == nil && out.AsOf.IsZero() {
		out.AsOf = time.Now()
	}
	return out, err
}

// Only active assets are quoted: an inactive asset cannot be exchanged into or out of.
const loadRatesSQL = `
SELECT r.quote_symbol, r.rate, r.as_of
FROM exchange_rates r
JOIN supported_assets a ON a.symbol = r.quote_symbol
WHERE r.base_symbol = $1 AND a.is_active`

// SetRate writes the rate 1 RateBase = rate quote (operators and tests; GLOBAL table, written
// rarely), in one read-committed transaction.
func (db *DB) SetRate(ctx context.Context, quote string, rate decimal.Decimal) error {
	return db.inTx(ctx, "set_rate", readCommitted, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `
INSERT INTO exchange_rates (base_symbol, quote_symbol, rate, source)
VALUES ($1, $2, $3, 'manual')
ON CONFLICT (base_symbol, quote_symbol) DO UPDATE SET rate = excluded.rate, source = excluded.source, as_of = now()`,
			RateBase, quote, rate)
		return err
	})
}
