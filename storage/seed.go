package storage

import (
	"context"
	"crypto/sha1"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Asset is a supported asset as the API lists it. Amounts are decimal strings, exact.
type Asset struct {
	Symbol    string
	Name      string
	AssetType string // fiat or crypto
	Decimals  int
	MinAmount string
	MaxAmount string
	Network   string // crypto only
	IsActive  bool
	SortOrder int
}

// seedAssets: fiat with 2 decimals, BTC and ETH with 8, USDT with 6 (issue: the foundation).
var seedAssets = []Asset{
	{Symbol: "USD", Name: "US Dollar", AssetType: "fiat", Decimals: 2, MinAmount: "0.01", MaxAmount: "50000", IsActive: true, SortOrder: 1},
	{Symbol: "EUR", Name: "Euro", AssetType: "fiat", Decimals: 2, MinAmount: "0.01", MaxAmount: "50000", IsActive: true, SortOrder: 2},
	{Symbol: "AED", Name: "UAE Dirham", AssetType: "fiat", Decimals: 2, MinAmount: "0.05", MaxAmount: "180000", IsActive: true, SortOrder: 3},
	{Symbol: "SAR", Name: "Saudi Riyal", AssetType: "fiat", Decimals: 2, MinAmount: "0.05", MaxAmount: "180000", IsActive: true, SortOrder: 4},
	{Symbol: "EGP", Name: "Egyptian Pound", AssetType: "fiat", Decimals: 2, MinAmount: "1", MaxAmount: "2000000", IsActive: true, SortOrder: 5},
	{Symbol: "BTC", Name: "Bitcoin", AssetType: "crypto", Decimals: 8, MinAmount: "0.00001", MaxAmount: "10", Network: "bitcoin", IsActive: true, SortOrder: 10},
	{Symbol: "ETH", Name: "Ether", AssetType: "crypto", Decimals: 8, MinAmount: "0.0001", MaxAmount: "200", Network: "ethereum", IsActive: true, SortOrder: 11},
	{Symbol: "USDT", Name: "Tether USD", AssetType: "crypto", Decimals: 6, MinAmount: "0.01", MaxAmount: "50000", Network: "ethereum", IsActive: true, SortOrder: 12},
}

// seedRates: 1 USD = rate quote. Development values, replaced by a real provider in production.
var seedRates = map[string]string{
	"EUR": "0.92", "AED": "3.6725", "SAR": "3.75", "EGP": "48.50",
	"BTC": "0.0000105263157895", "ETH": "0.000285714285714286", "USDT": "1",
}

type seedPromotion struct {
	Title, Description, Color string
	Priority                  int
}

var seedPromotions = []seedPromotion{
	{"Send money home for free", "No fees on transfers to friends and family this month.", "#0E7C66", 30},
	{"Invite a friend", "Both of you get 5 USD when your friend makes a first transfer.", "#3D5AFE", 20},
	{"Crypto, simply", "Buy BTC, ETH and USDT from your wallet balance.", "#F7931A", 10},
}

// SystemAccount names a per-region system wallet. Money that enters or leaves 7awel (cash-in,
// cash-out) moves against the issuance account, whose balances may go negative: it mirrors the
// money held outside, so the sum of every balance of an asset stays zero. Fees are credited to
// the fee account. Each region has its own, so no movement crosses regions for them.
type SystemAccount string

const (
	SystemIssuance SystemAccount = "issuance"
	SystemFees     SystemAccount = "fees"
)

// SystemUserID is the fixed id of a region's system user for an account kind: a name-based UUID,
// so every process of every region derives the same id without a lookup.
func SystemUserID(region string, kind SystemAccount) uuid.UUID {
	return uuid.NewHash(sha1.New(), systemNamespace, []byte(string(kind)+"@"+region), 5)
}

var systemNamespace = uuid.MustParse("6f1d6a0e-3b1f-4c55-9a57-7a5e1c0d2a77")

// Seed writes the reference data and the system accounts. It is idempotent: a second run
// updates the reference rows to the seed values and creates nothing twice.
func (db *DB) Seed(ctx context.Context) error {
	return db.inTx(ctx, "seed", readCommitted, func(tx pgx.Tx) error {
		for _, a := range seedAssets {
			if _, err := tx.Exec(ctx, seedAssetSQL, a.Symbol, a.Name, a.AssetType, a.Decimals,
				a.MinAmount, a.MaxAmount, a.IsActive, nullIfEmpty(a.Network), a.SortOrder); err != nil {
				return fmt.Errorf("seed asset %s: %w", a.Symbol, err)
			}
		}
		for quote, rate := range seedRates {
			if _, err := tx.Exec(ctx, seedRateSQL, "USD", quote, rate); err != nil {
				return fmt.Errorf("seed rate USD/%s: %w", quote, err)
			}
		}
		for i, p := range seedPromotions {
			id := uuid.NewHash(sha1.New(), systemNamespace, []byte(fmt.Sprintf("promotion-%d", i)), 5)
			if _, err := tx.Exec(ctx, seedPromotionSQL, id, p.Title, p.Description, p.Color, p.Priority); err != nil {
				return fmt.Errorf("seed promotion %d: %w", i, err)
			}
		}
		for _, region := range db.regions.Names() {
			for _, kind := range []SystemAccount{SystemIssuance, SystemFees} {
				if err := seedSystemAccount(ctx, tx, region, kind); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

func seedSystemAccount(ctx context.Context, tx pgx.Tx, region string, kind SystemAccount) error {
	userID := SystemUserID(region, kind)
	if _, err := tx.Exec(ctx, seedSystemUserSQL, userID, region); err != nil {
		return fmt.Errorf("seed system user %s/%s: %w", region, kind, err)
	}
	var walletID uuid.UUID
	err := tx.QueryRow(ctx, `SELECT id FROM wallets WHERE region = $1 AND user_id = $2`, region, userID).Scan(&walletID)
	if err == pgx.ErrNoRows {
		err = tx.QueryRow(ctx, `INSERT INTO wallets (region, user_id, wallet_type) VALUES ($1, $2, 'system') RETURNING id`,
			region, userID).Scan(&walletID)
	}
	if err != nil {
		return fmt.Errorf("seed system wallet %s/%s: %w", region, kind, err)
	}
	_, err = tx.Exec(ctx, seedSystemBalancesSQL, region, walletID, userID, kind == SystemIssuance)
	if err != nil {
		return fmt.Errorf("seed system balances %s/%s: %w", region, kind, err)
	}
	return nil
}

const seedAssetSQL = `
INSERT INTO supported_assets (symbol, name, asset_type, decimals, min_amount, max_amount, is_active, network, sort_order)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (symbol) DO UPDATE SET
    name = excluded.name, asset_type = excluded.asset_type, decimals = excluded.decimals,
    min_amount = excluded.min_amount, max_amount = excluded.max_amount, is_active = excluded.is_active,
    network = excluded.network, sort_order = excluded.sort_order, updated_at = now()`

const seedRateSQL = `
INSERT INTO exchange_rates (base_symbol, quote_symbol, rate, source)
VALUES ($1, $2, $3, 'seed')
ON CONFLICT (base_symbol, quote_symbol) DO UPDATE SET rate = excluded.rate, source = excluded.source, as_of = now()`

const seedPromotionSQL = `
INSERT INTO promotions (id, title, description, background_color, priority, start_date, is_active)
VALUES ($1, $2, $3, $4, $5, now(), true)
ON CONFLICT (id) DO UPDATE SET title = excluded.title, description = excluded.description,
    background_color = excluded.background_color, priority = excluded.priority, updated_at = now()`

const seedSystemUserSQL = `
INSERT INTO users (id, region, is_system, status, phone_verified)
VALUES ($1, $2, true, 'active', false)
ON CONFLICT (id) DO NOTHING`

// Balances for every supported asset, including assets added since the last seed.
const seedSystemBalancesSQL = `
INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol, allow_negative)
SELECT $1, $2, $3, a.symbol, $4
FROM supported_assets a
WHERE NOT EXISTS (
    SELECT 1 FROM asset_balances b WHERE b.region = $1 AND b.wallet_id = $2 AND b.asset_symbol = a.symbol
)`

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
