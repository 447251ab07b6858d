package main

import (
	"context"
	"fmt"
	"io"
	"sort"

	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
)

// reconcileCmd is `7awel reconcile`: it proves the ledger (storage.Reconcile) and prints what it
// checked and every difference. A difference is an error, so the process exits non-zero and a
// scheduled run alerts.
func reconcileCmd(ctx context.Context, c *config, log *zap.Logger, stdout io.Writer) error {
	return withDatabase(ctx, c, log, func(url string) error {
		db, err := storage.Open(ctx, url, c.regions, storage.Options{Logger: log})
		if err != nil {
			return err
		}
		defer db.Close()
		rep, err := db.Reconcile(ctx)
		if err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
		return printReconcile(stdout, rep)
	})
}

// printReconcile writes the report and returns an error when the books do not balance.
func printReconcile(w io.Writer, rep storage.ReconcileReport) error {
	fmt.Fprintf(w, "checked %d balances and %d transactions\n", rep.Balances, rep.Transactions)
	assets := make([]string, 0, len(rep.Assets))
	for a := range rep.Assets {
		assets = append(assets, a)
	}
	sort.Strings(assets)
	for _, a := range assets {
		fmt.Fprintf(w, "asset %-5s sum of balances %s\n", a, rep.Assets[a])
	}
	for _, d := range rep.Differences {
		fmt.Fprintln(w, "DIFFERENCE:", d)
	}
	if !rep.OK() {
		return fmt.Errorf("reconcile: %d differences", len(rep.Differences))
	}
	fmt.Fprintln(w, "ok: every balance equals its ledger entries and every asset sums to zero")
	return nil
}
