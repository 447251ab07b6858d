package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
	"github.com/7awel/wallet/storage/dbtest"
)

// TestReconcileCommand runs reconcileCmd against a real, seeded database: clean books print ok
// and return nil; a balance changed behind the ledger's back is reported and is an error.
func TestReconcileCommand(t *testing.T) {
	ctx := context.Background()
	url := dbtest.ForTest(t)
	env := map[string]string{"DATABASE_URL": url}
	fs := flag.NewFlagSet("reconcile", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c, err := loadConfig(fs, nil, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if err := storage.MigrateUp(ctx, url, c.regions); err != nil {
		t.Fatal(err)
	}
	db, err := storage.Open(ctx, url, c.regions, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Seed(ctx)
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	var out bytes.Buffer
	if err := reconcileCmd(ctx, c, zap.NewNop(), &out); err != nil {
		t.Fatalf("clean books: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "ok:") || !strings.Contains(out.String(), "asset USD") {
		t.Fatalf("output: %s", out.String())
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	fees := storage.SystemUserID(c.regions.Primary(), storage.SystemFees)
	if _, err := conn.Exec(ctx, `UPDATE asset_balances SET available = available + 5, total = total + 5
WHERE region = $1 AND user_id = $2 AND asset_symbol = 'EUR'`, c.regions.Primary(), fees); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	err = reconcileCmd(ctx, c, zap.NewNop(), &out)
	if err == nil || !strings.Contains(out.String(), "DIFFERENCE:") || !strings.Contains(out.String(), "asset EUR") {
		t.Fatalf("tampered books: %v\n%s", err, out.String())
	}
}
