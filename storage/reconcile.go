package storage

import (
	"context"
	"fmt"
	"sort"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// ReconcileReport is what Reconcile found. Differences is empty when the books balance.
type ReconcileReport struct {
	Balances     int
	Transactions int
	Assets       map[string]decimal.Decimal // sum of every balance, per asset (zero when conserved)
	Differences  []string
}

// OK reports whether the books balance.
func (r ReconcileReport) OK() bool { return len(r.Differences) == 0 }

// Reconcile proves the ledger (design.md, Money), in one serializable read-only transaction so
// that every figure comes from the same snapshot while movements go on:
//   - every balance: total = available + pending, total = the sum of its ledger entries,
//     pending = the sum of its open cash-out holds, the daily limit's counter = the sum of the
//     counted movements its owner sent on the counter's day, and no negative figure unless
//     allowed;
//   - every transaction: its entries sum to zero per asset;
//   - every asset: the sum of all balances is zero (issuance mirrors the money outside).
//
// It reads every region, one region per statement, each pinned. It is an operator's batch job,
// not a request path; the per-transaction sums are held in memory.
func (db *DB) Reconcile(ctx context.Context) (ReconcileReport, error) {
	var rep ReconcileReport
	err := db.inTx(ctx, "reconcile", serializable, func(tx pgx.Tx) error {
		rep = ReconcileReport{Assets: map[string]decimal.Decimal{}}
		perTx := map[uuid.UUID]map[string]decimal.Decimal{}
		for _, region := range db.regions.Names() {
			if err := reconcileBalances(ctx, tx, region, &rep); err != nil {
				return err
			}
			rows, err := tx.Query(ctx, reconcileEntriesSQL, region)
			if err != nil {
				return err
			}
			for rows.Next() {
				var id uuid.UUID
				var asset string
				var sum decimal.Decimal
				if err := rows.Scan(&id, &asset, &sum); err != nil {
					rows.Close()
					return err
				}
				if perTx[id] == nil {
					perTx[id] = map[string]decimal.Decimal{}
				}
				perTx[id][asset] = perTx[id][asset].Add(sum)
			}
			rows.Close()
			if err := rows.Err(); err != nil {
				return err
			}
		}
		rep.Transactions = len(perTx)
		for id, sums := range perTx {
			for asset, sum := range sums {
				if !sum.IsZero() {
					rep.Differences = append(rep.Differences,
						fmt.Sprintf("transaction %s: entries in %s sum to %s, want 0", id, asset, sum))
				}
			}
		}
		for asset, sum := range rep.Assets {
			if !sum.IsZero() {
				rep.Differences = append(rep.Differences,
					fmt.Sprintf("asset %s: balances sum to %s, want 0 (money created or destroyed)", asset, sum))
			}
		}
		sort.Strings(rep.Differences)
		return nil
	})
	return rep, err
}

func reconcileBalances(ctx context.Context, tx pgx.Tx, region string, rep *ReconcileReport) error {
	rows, err := tx.Query(ctx, reconcileBalancesSQL, region)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			user                              uuid.UUID
			asset                             string
			total, avail, pending, led, holds decimal.Decimal
			allowNegative                     bool
			spent, spentTxs                   decimal.Decimal
			spentOn                           *string
		)
		if err := rows.Scan(&user, &asset, &total, &avail, &pending, &allowNegative, &led, &holds,
			&spent, &spentOn, &spentTxs); err != nil {
			return err
		}
		rep.Balances++
		rep.Assets[asset] = rep.Assets[asset].Add(total)
		where := fmt.Sprintf("balance %s/%s/%s", region, user, asset)
		if !total.Equal(avail.Add(pending)) {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s: total %s != available %s + pending %s", where, total, avail, pending))
		}
		if !total.Equal(led) {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s: total %s != sum of ledger entries %s", where, total, led))
		}
		if !pending.Equal(holds) {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s: pending %s != open cash-out holds %s", where, pending, holds))
		}
		if !spent.Equal(spentTxs) {
			day := "no day"
			if spentOn != nil {
				day = *spentOn
			}
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s: daily counter %s on %s != sum of that day's outgoing movements %s", where, spent, day, spentTxs))
		}
		if !allowNegative && (avail.Sign() < 0 || pending.Sign() < 0) {
			rep.Differences = append(rep.Differences, fmt.Sprintf("%s: negative (available %s, pending %s)", where, avail, pending))
		}
	}
	return rows.Err()
}

const reconcileBalancesSQL = `
SELECT b.user_id, b.asset_symbol, b.total, b.available, b.pending, b.allow_negative,
       COALESCE((SELECT sum(e.amount) FROM ledger_entries e
                 WHERE e.region = $1 AND e.user_id = b.user_id AND e.asset_symbol = b.asset_symbol), 0),
       COALESCE((SELECT sum(t.amount + t.fee) FROM transactions t
                 WHERE t.region = $1 AND t.sender_id = b.user_id AND t.asset_symbol = b.asset_symbol
                   AND t.type = 'cash_out' AND t.status = 'pending'), 0),
       b.daily_spent, b.daily_spent_on::text,
       COALESCE((SELECT sum(t.amount + t.fee) FROM transactions t
                 WHERE t.region = $1 AND t.sender_id = b.user_id AND t.asset_symbol = b.asset_symbol
                   AND t.type IN ('transfer', 'payment', 'cash_out', 'exchange')
                   AND t.status IN ('pending', 'processing', 'completed')
                   AND t.created_at >= b.daily_spent_on::timestamp AT TIME ZONE 'UTC'
                   AND t.created_at < (b.daily_spent_on + 1)::timestamp AT TIME ZONE 'UTC'), 0)
FROM asset_balances b
WHERE b.region = $1`

const reconcileEntriesSQL = `
SELECT transaction_id, asset_symbol, sum(amount) FROM ledger_entries WHERE region = $1 GROUP BY transaction_id, asset_symbol`
