package storage

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

func TestFollowerReadsOption(t *testing.T) {
	cfg, err := pgx.ParseConfig("postgres://u@h/wallet")
	if err != nil {
		t.Fatal(err)
	}
	followerReads(cfg)
	if got := cfg.RuntimeParams["options"]; got != "-c default_transaction_use_follower_reads=on" {
		t.Fatalf("options = %q", got)
	}
	cfg, _ = pgx.ParseConfig("postgres://u@h/wallet?options=-c%20statement_timeout%3D5s")
	followerReads(cfg)
	if got := cfg.RuntimeParams["options"]; got != "-c statement_timeout=5s -c default_transaction_use_follower_reads=on" {
		t.Fatalf("options = %q", got)
	}
}

func TestEngineDetectedAndReferenceReadsAreReadOnly(t *testing.T) {
	db := testDB(t)
	if db.Engine() != Postgres {
		t.Fatalf("engine = %v", db.Engine())
	}
	ctx := context.Background()
	var n int
	err := db.readReference(ctx, "probe_ref", func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM supported_assets`).Scan(&n)
	})
	if err != nil || n == 0 {
		t.Fatalf("reference read: %d, %v", n, err)
	}
	err = db.readReference(ctx, "probe_ref", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `UPDATE supported_assets SET name = name`)
		return err
	})
	if sqlState(err) != "25006" { // read_only_sql_transaction
		t.Fatalf("write on the reference pool: %v", err)
	}
}
