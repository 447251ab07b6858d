package driver

import (
	"context"
	"fmt"
	"strings"

	"github.com/7awel/wallet/regions"
	"github.com/7awel/wallet/storage"
)

// DatabaseReconciler opens the API's database and returns a Config.Reconcile that runs the
// operators' ledger proof (storage.DB.Reconcile) over it, and a function to close it.
// regionList and primary are the deployment's REGIONS and PRIMARY_REGION (empty: the
// defaults). It only reads.
func DatabaseReconciler(ctx context.Context, url, regionList, primary string) (func(context.Context) (string, error), func(), error) {
	if regionList == "" {
		regionList = regions.DefaultRegions
	}
	if primary == "" {
		primary = regions.DefaultPrimary
	}
	rt, err := regions.Parse(regionList, primary, "")
	if err != nil {
		return nil, nil, err
	}
	db, err := storage.Open(ctx, url, rt, storage.Options{MaxConns: 2})
	if err != nil {
		return nil, nil, fmt.Errorf("reconcile: open the database: %w", err)
	}
	check := func(ctx context.Context) (string, error) {
		rep, err := db.Reconcile(ctx)
		if err != nil {
			return "", err
		}
		summary := fmt.Sprintf("%d balances, %d transactions", rep.Balances, rep.Transactions)
		if !rep.OK() {
			d := rep.Differences
			if len(d) > 5 {
				d = append(d[:5:5], fmt.Sprintf("and %d more", len(rep.Differences)-5))
			}
			return summary, fmt.Errorf("the books do not balance: %s", strings.Join(d, "; "))
		}
		return summary, nil
	}
	return check, db.Close, nil
}
