package storage

import (
	"context"
	"errors"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/migrations"
	"github.com/7awel/wallet/regions"
)

func tableExists(t *testing.T, db *DB, name string) bool {
	t.Helper()
	var ok bool
	if err := db.pool.QueryRow(context.Background(), `SELECT to_regclass($1) IS NOT NULL`, name).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestMigrateUpDownUp runs the whole shared set up, all the way down, and up again on a fresh
// database.
func TestMigrateUpDownUp(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	v, err := ReadSchemaVersion(ctx, url)
	if err != nil || v != ExpectedSchema(Postgres) || v.Dirty {
		t.Fatalf("after up: %+v, %v; want %+v", v, err, ExpectedSchema(Postgres))
	}
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatalf("second up is not a no-op: %v", err)
	}
	if err := MigrateDown(ctx, url, 1); err != nil {
		t.Fatal(err)
	}
	names, _ := fs.Glob(migrations.Shared(), "*.up.sql")
	sort.Strings(names)
	previous, _ := strconv.Atoi(strings.SplitN(names[len(names)-2], "_", 2)[0])
	if v, _ := ReadSchemaVersion(ctx, url); v.Shared != uint(previous) {
		t.Fatalf("after down 1: %+v, want version %d", v, previous)
	}
	if err := MigrateDown(ctx, url, 0); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, testRegions, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, tbl := range migrations.Tables {
		if tableExists(t, db, tbl.Name) {
			t.Errorf("table %s survived migrate down", tbl.Name)
		}
	}
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatalf("up after down: %v", err)
	}
	if ok, v, err := db.SchemaCurrent(ctx); !ok || err != nil {
		t.Fatalf("schema not current after up/down/up: %+v %v", v, err)
	}
}

// TestMigrateAddsRegions: a deployment that adds a region gets it in the enum on the next up.
func TestMigrateAddsRegions(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	more, err := regions.Parse(regions.DefaultRegions+",ap-south1", regions.DefaultPrimary, "")
	if err != nil {
		t.Fatal(err)
	}
	if err := MigrateUp(ctx, url, more); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, more, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var labels []string
	if err := db.pool.QueryRow(ctx, `SELECT array_agg(enumlabel::TEXT ORDER BY enumsortorder) FROM pg_enum e
		JOIN pg_type t ON t.oid = e.enumtypid WHERE t.typname = 'crdb_internal_region'`).Scan(&labels); err != nil {
		t.Fatal(err)
	}
	if strings.Join(labels, ",") != regions.DefaultRegions+",ap-south1" {
		t.Fatalf("region enum = %v", labels)
	}
}

func TestRegionStatements(t *testing.T) {
	rt, _ := regions.Parse("me-central1,eu-west1", "me-central1", "")
	tests := []struct {
		engine Engine
		exists bool
		want   []string
	}{
		{Postgres, false, []string{
			"CREATE TYPE crdb_internal_region AS ENUM ('me-central1', 'eu-west1')",
			"ALTER TYPE crdb_internal_region ADD VALUE IF NOT EXISTS 'me-central1'",
			"ALTER TYPE crdb_internal_region ADD VALUE IF NOT EXISTS 'eu-west1'",
		}},
		{Postgres, true, []string{
			"ALTER TYPE crdb_internal_region ADD VALUE IF NOT EXISTS 'me-central1'",
			"ALTER TYPE crdb_internal_region ADD VALUE IF NOT EXISTS 'eu-west1'",
		}},
		{Cockroach, false, []string{
			`ALTER DATABASE "wallet" PRIMARY REGION "me-central1"`,
			`ALTER DATABASE "wallet" ADD REGION IF NOT EXISTS "eu-west1"`,
		}},
		{Cockroach, true, []string{
			`ALTER DATABASE "wallet" ADD REGION IF NOT EXISTS "me-central1"`,
			`ALTER DATABASE "wallet" ADD REGION IF NOT EXISTS "eu-west1"`,
		}},
	}
	for _, tt := range tests {
		got := regionStatements(tt.engine, "wallet", rt, tt.exists)
		if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
			t.Errorf("%v exists=%v:\n got %q\nwant %q", tt.engine, tt.exists, got, tt.want)
		}
	}
}

func TestMigrateURL(t *testing.T) {
	got, _ := migrateURL("postgres://u:p@h:5432/wallet?sslmode=disable", Cockroach, overlayVersionTable)
	if !strings.HasPrefix(got, "cockroachdb://u:p@h:5432/wallet?") || !strings.Contains(got, "x-migrations-table=schema_migrations_cockroach") {
		t.Errorf("cockroach url = %s", got)
	}
	got, _ = migrateURL("postgresql://h/wallet", Postgres, sharedVersionTable)
	if !strings.HasPrefix(got, "pgx5://h/wallet?") {
		t.Errorf("postgres url = %s", got)
	}
}

// TestSchema checks the plan's tables, the region column's type, and the money constraints.
func TestSchema(t *testing.T) {
	ctx := context.Background()
	// Its own database: the probes below leave a balance without ledger entries, which a
	// reconcile of the shared database would rightly report.
	url := freshDatabase(t)
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, testRegions, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range migrations.Tables {
		if !tableExists(t, db, tbl.Name) {
			t.Errorf("table %s missing", tbl.Name)
			continue
		}
		var typ string
		err := db.pool.QueryRow(ctx, `SELECT udt_name FROM information_schema.columns
			WHERE table_name = $1 AND column_name = 'region'`, tbl.Name).Scan(&typ)
		if tbl.Locality == migrations.RegionalByRow && (err != nil || typ != "crdb_internal_region") {
			t.Errorf("%s.region: type %q, %v", tbl.Name, typ, err)
		}
	}

	userID, walletID := uuid.New(), uuid.New()
	execSQL(t, db, `INSERT INTO users (id, region) VALUES ($1, 'eu-west1')`, userID)
	execSQL(t, db, `INSERT INTO wallets (id, region, user_id) VALUES ($1, 'eu-west1', $2)`, walletID, userID)
	execSQL(t, db, `INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol, total, available)
		VALUES ('eu-west1', $1, $2, 'USD', 10, 10)`, walletID, userID)

	cases := []struct {
		name string
		sql  string
		want error
	}{
		{"negative available", `UPDATE asset_balances SET available = -1, total = -1 WHERE wallet_id = $1`, ErrInsufficientFunds},
		{"total not the sum", `UPDATE asset_balances SET total = 11 WHERE wallet_id = $1`, ErrConstraint},
		{"second wallet", `INSERT INTO wallets (region, user_id) SELECT 'eu-west1', user_id FROM wallets WHERE id = $1`, ErrConflict},
		{"unknown asset", `INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol) SELECT 'eu-west1', id, user_id, 'XXX' FROM wallets WHERE id = $1`, ErrConstraint},
		{"bad region", `UPDATE users SET region = 'mars-north1' WHERE id = (SELECT user_id FROM wallets WHERE id = $1)`, nil},
	}
	for _, c := range cases {
		err := db.inTx(ctx, "schema_probe", serializable, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, c.sql, walletID)
			return err
		})
		if c.want == nil {
			if sqlState(err) != "22P02" { // invalid_text_representation: not a value of the enum
				t.Errorf("%s: err = %v, want the enum to refuse it", c.name, err)
			}
			continue
		}
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestSeedIsIdempotent(t *testing.T) {
	ctx := context.Background()
	db := testDB(t)
	count := func() (n [4]int) {
		for i, q := range []string{`SELECT count(*) FROM supported_assets`, `SELECT count(*) FROM exchange_rates`,
			`SELECT count(*) FROM promotions`, `SELECT count(*) FROM asset_balances WHERE user_id IN (SELECT id FROM users WHERE is_system)`} {
			if err := db.pool.QueryRow(ctx, q).Scan(&n[i]); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	if err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	first := count()
	if err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	if second := count(); second != first {
		t.Fatalf("counts changed on a second seed: %v → %v", first, second)
	}
	if first[0] != 8 || first[1] != 7 || first[2] != 3 {
		t.Fatalf("seeded %v", first)
	}
	if want := len(testRegions.Names()) * 2 * 8; first[3] != want {
		t.Fatalf("system balances = %d, want %d", first[3], want)
	}
	var decimals int
	var min string
	if err := db.pool.QueryRow(ctx, `SELECT decimals, min_amount::TEXT FROM supported_assets WHERE symbol = 'USDT'`).Scan(&decimals, &min); err != nil || decimals != 6 {
		t.Fatalf("USDT decimals = %d (%v)", decimals, err)
	}
	var negOK bool
	issuance := SystemUserID(testRegions.Primary(), SystemIssuance)
	if err := db.pool.QueryRow(ctx, `SELECT bool_and(allow_negative) FROM asset_balances WHERE user_id = $1`, issuance).Scan(&negOK); err != nil || !negOK {
		t.Fatalf("issuance balances allow_negative = %v (%v)", negOK, err)
	}
}

// TestSchemaCurrentAcceptsNewer: pods of the previous release stay ready once the next
// release's migration has run; a dirty or older schema is not current.
func TestSchemaCurrentAcceptsNewer(t *testing.T) {
	ctx := context.Background()
	url := freshDatabase(t)
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, testRegions, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	want := ExpectedSchema(Postgres).Shared
	for _, c := range []struct {
		version int64
		dirty   bool
		ok      bool
	}{{int64(want), false, true}, {int64(want) + 1, false, true}, {int64(want) - 1, false, false}, {int64(want), true, false}} {
		execSQL(t, db, `UPDATE schema_migrations SET version = $1, dirty = $2`, c.version, c.dirty)
		if ok, v, err := db.SchemaCurrent(ctx); ok != c.ok || err != nil {
			t.Errorf("version %d dirty %v: current = %v (%+v, %v), want %v", c.version, c.dirty, ok, v, err, c.ok)
		}
	}
}
