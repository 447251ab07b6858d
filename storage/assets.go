package storage

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// ListAssets returns the active supported assets in display order, in one read-committed
// transaction. The table is GLOBAL reference data, so this reads locally in every region.
func (db *DB) ListAssets(ctx context.Context) ([]Asset, error) {
	var out []Asset
	err := db.inTx(ctx, "list_assets", readCommitted, func(tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, listAssetsSQL)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a Asset
			var network *string
			if err := rows.Scan(&a.Symbol, &a.Name, &a.AssetType, &a.Decimals, &a.MinAmount, &a.MaxAmount,
				&network, &a.IsActive, &a.SortOrder); err != nil {
				return err
			}
			if network != nil {
				a.Network = *network
			}
			a.MinAmount, a.MaxAmount = trimAmount(a.MinAmount), trimAmount(a.MaxAmount)
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, err
}

// GetAsset returns one supported asset, active or not, or ErrNotFound.
func (db *DB) GetAsset(ctx context.Context, symbol string) (Asset, error) {
	var a Asset
	err := db.inTx(ctx, "get_asset", readCommitted, func(tx pgx.Tx) error {
		var network *string
		err := tx.QueryRow(ctx, getAssetSQL, symbol).Scan(&a.Symbol, &a.Name, &a.AssetType, &a.Decimals,
			&a.MinAmount, &a.MaxAmount, &network, &a.IsActive, &a.SortOrder)
		if err != nil {
			return fmt.Errorf("asset %s: %w", symbol, err)
		}
		if network != nil {
			a.Network = *network
		}
		a.MinAmount, a.MaxAmount = trimAmount(a.MinAmount), trimAmount(a.MaxAmount)
		return nil
	})
	return a, err
}

const assetColumns = `symbol, name, asset_type, decimals, min_amount::text, max_amount::text, network, is_active, sort_order`

const listAssetsSQL = `SELECT ` + assetColumns + ` FROM supported_assets WHERE is_active ORDER BY sort_order, symbol`

const getAssetSQL = `SELECT ` + assetColumns + ` FROM supported_assets WHERE symbol = $1`

// trimAmount drops the trailing zeros NUMERIC(20,8) pads with ("50000.00000000" → "50000").
func trimAmount(s string) string {
	d, err := decimal.NewFromString(s)
	if err != nil {
		return s
	}
	return d.String()
}

// FormatAmount writes an amount with exactly the asset's number of decimals ("12.50" for a
// 2-decimal asset): the one place amounts become strings for clients.
func FormatAmount(d decimal.Decimal, decimals int) string {
	return d.StringFixed(int32(decimals))
}

// AssetCache keeps the supported assets for TTL (read-mostly reference data, cached as the plan
// says), so validating an amount costs no round trip. Safe for concurrent use.
type AssetCache struct {
	db  *DB
	ttl time.Duration

	mu      sync.Mutex
	list    []Asset
	fetched time.Time
}

// NewAssetCache returns a cache over db (ttl 0: one minute).
func NewAssetCache(db *DB, ttl time.Duration) *AssetCache {
	if ttl <= 0 {
		ttl = time.Minute
	}
	return &AssetCache{db: db, ttl: ttl}
}

// Active returns the active assets in display order.
func (c *AssetCache) Active(ctx context.Context) ([]Asset, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list != nil && time.Since(c.fetched) < c.ttl {
		return c.list, nil
	}
	list, err := c.db.ListAssets(ctx)
	if err != nil {
		return nil, err
	}
	c.list, c.fetched = list, time.Now()
	return list, nil
}

// Get returns an active asset, or ErrAssetUnavailable.
func (c *AssetCache) Get(ctx context.Context, symbol string) (Asset, error) {
	list, err := c.Active(ctx)
	if err != nil {
		return Asset{}, err
	}
	for _, a := range list {
		if a.Symbol == symbol {
			return a, nil
		}
	}
	return Asset{}, fmt.Errorf("%w: %q", ErrAssetUnavailable, symbol)
}
