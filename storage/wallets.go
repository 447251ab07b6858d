package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Balance is one asset of a wallet. Total = Available + Pending; Pending is held by open
// cash-outs.
type Balance struct {
	Asset     string
	Decimals  int
	Total     decimal.Decimal
	Available decimal.Decimal
	Pending   decimal.Decimal
	UpdatedAt time.Time
}

// Wallet is a user's wallet with its balances, in asset display order.
type Wallet struct {
	ID           uuid.UUID
	UserID       uuid.UUID
	Status       string // active, frozen, closed
	PrimaryAsset string
	Balances     []Balance
}

// Balance returns the wallet's balance of asset, and whether it has one.
func (w Wallet) Balance(asset string) (Balance, bool) {
	for _, b := range w.Balances {
		if b.Asset == asset {
			return b, true
		}
	}
	return Balance{}, false
}

// GetWallet returns the caller's wallet and balances, read in the caller's home region in one
// read-committed transaction (one statement). Balances are never cached: a wallet that shows
// the old balance after a transfer is wrong (design.md). Returns ErrNotFound without a wallet.
func (db *DB) GetWallet(ctx context.Context, userID uuid.UUID, region string) (Wallet, error) {
	var w Wallet
	err := db.inTx(ctx, "get_wallet", readCommitted, func(tx pgx.Tx) error {
		w = Wallet{}
		rows, err := tx.Query(ctx, getWalletSQL, region, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				asset             *string
				decimals          *int
				total, avail, pen decimal.NullDecimal
				updated           *time.Time
			)
			if err := rows.Scan(&w.ID, &w.UserID, &w.Status, &w.PrimaryAsset, &asset, &decimals, &total, &avail, &pen, &updated); err != nil {
				return err
			}
			if asset == nil {
				continue
			}
			w.Balances = append(w.Balances, Balance{Asset: *asset, Decimals: *decimals,
				Total: total.Decimal, Available: avail.Decimal, Pending: pen.Decimal, UpdatedAt: *updated})
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if w.ID == uuid.Nil {
			return fmt.Errorf("wallet of user %s: %w", userID, ErrNotFound)
		}
		return nil
	})
	return w, err
}

// Balances of inactive assets are still shown: money in them is the user's.
const getWalletSQL = `
SELECT w.id, w.user_id, w.status, w.primary_asset,
       b.asset_symbol, a.decimals, b.total, b.available, b.pending, b.last_updated
FROM wallets w
LEFT JOIN asset_balances b ON b.region = $1 AND b.wallet_id = w.id
LEFT JOIN supported_assets a ON a.symbol = b.asset_symbol
WHERE w.region = $1 AND w.user_id = $2
ORDER BY a.sort_order, b.asset_symbol`
