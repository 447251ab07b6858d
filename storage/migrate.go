package storage

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"strconv"
	"strings"

	"github.com/golang-migrate/migrate/v4"
	_ "github.com/golang-migrate/migrate/v4/database/cockroachdb" // cockroachdb:// — its lock is a table
	_ "github.com/golang-migrate/migrate/v4/database/pgx/v5"      // pgx5://
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/migrations"
	"github.com/7awel/wallet/regions"
)

// Version tables. The overlay has its own so the shared set's numbering stays the same on both
// engines (design.md, Migrations).
const (
	sharedVersionTable  = "schema_migrations"
	overlayVersionTable = "schema_migrations_cockroach"
)

// SchemaVersion is where a database's schema stands.
type SchemaVersion struct {
	Shared, Overlay uint // 0 when nothing is applied
	Dirty           bool
}

// ExpectedSchema returns the versions this binary's embedded migrations lead to.
func ExpectedSchema(engine Engine) SchemaVersion {
	v := SchemaVersion{Shared: lastVersion(migrations.Shared())}
	if engine == Cockroach {
		v.Overlay = lastVersion(migrations.Cockroach())
	}
	return v
}

func lastVersion(fsys fs.FS) uint {
	names, _ := fs.Glob(fsys, "*.up.sql")
	var last uint
	for _, n := range names {
		num, _, _ := strings.Cut(n, "_")
		if v, err := strconv.ParseUint(num, 10, 32); err == nil && uint(v) > last {
			last = uint(v)
		}
	}
	return last
}

// MigrateUp makes the configured regions exist (database regions on CockroachDB, the region
// enum's values on PostgreSQL), then applies the shared set and, on CockroachDB, the overlay.
// Each step is idempotent; running it again on a current schema changes nothing.
func MigrateUp(ctx context.Context, dbURL string, rt *regions.Table) error {
	engine, err := ensureRegions(ctx, dbURL, rt)
	if err != nil {
		return err
	}
	if err := runMigrate(dbURL, engine, false, func(m *migrate.Migrate) error { return m.Up() }); err != nil {
		return fmt.Errorf("shared migrations: %w", err)
	}
	if engine == Cockroach {
		if err := runMigrate(dbURL, engine, true, func(m *migrate.Migrate) error { return m.Up() }); err != nil {
			return fmt.Errorf("cockroachdb overlay: %w", err)
		}
	}
	return nil
}

// MigrateDown undoes steps migrations (0: all of them). On CockroachDB the overlay is undone
// first, since the shared tables cannot be dropped from under their localities.
func MigrateDown(ctx context.Context, dbURL string, steps int) error {
	engine, err := detectEngineURL(ctx, dbURL)
	if err != nil {
		return err
	}
	down := func(m *migrate.Migrate) error {
		if steps <= 0 {
			return m.Down()
		}
		return m.Steps(-steps)
	}
	if engine == Cockroach {
		v, err := ReadSchemaVersion(ctx, dbURL)
		if err != nil {
			return err
		}
		if v.Overlay > 0 {
			if err := runMigrate(dbURL, engine, true, down); err != nil {
				return fmt.Errorf("cockroachdb overlay: %w", err)
			}
			if steps > 0 {
				return nil
			}
		}
	}
	return runMigrate(dbURL, engine, false, down)
}

// ReadSchemaVersion reads the applied versions without taking the migration lock.
func ReadSchemaVersion(ctx context.Context, dbURL string) (SchemaVersion, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return SchemaVersion{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return readSchemaVersion(ctx, conn)
}

type queryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func readSchemaVersion(ctx context.Context, q queryRower) (SchemaVersion, error) {
	var v SchemaVersion
	for _, t := range []struct {
		table string
		into  *uint
	}{{sharedVersionTable, &v.Shared}, {overlayVersionTable, &v.Overlay}} {
		var exists bool
		if err := q.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, t.table).Scan(&exists); err != nil {
			return v, err
		}
		if !exists {
			continue
		}
		var version int64
		var dirty bool
		err := q.QueryRow(ctx, `SELECT version, dirty FROM `+t.table+` LIMIT 1`).Scan(&version, &dirty)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return v, err
		}
		if version > 0 {
			*t.into = uint(version)
		}
		v.Dirty = v.Dirty || dirty
	}
	return v, nil
}

// SchemaCurrent reports whether the schema is one this binary can serve: clean, and at or
// above the version its migrations lead to. Readiness depends on it. "At or above" is the
// expand/contract rule: a release's migration Job runs before its rollout, and the pods of the
// previous release must stay ready on the newer schema until they are replaced.
func (db *DB) SchemaCurrent(ctx context.Context) (bool, SchemaVersion, error) {
	v, err := readSchemaVersion(ctx, db.pool)
	if err != nil {
		return false, v, translate(err)
	}
	want := ExpectedSchema(db.engine)
	return !v.Dirty && v.Shared >= want.Shared && v.Overlay >= want.Overlay, v, nil
}

func runMigrate(dbURL string, engine Engine, overlay bool, do func(*migrate.Migrate) error) error {
	fsys, table := migrations.Shared(), sharedVersionTable
	if overlay {
		fsys, table = migrations.Cockroach(), overlayVersionTable
	}
	src, err := iofs.New(fsys, ".")
	if err != nil {
		return err
	}
	target, err := migrateURL(dbURL, engine, table)
	if err != nil {
		return err
	}
	m, err := migrate.NewWithSourceInstance("iofs", src, target)
	if err != nil {
		return fmt.Errorf("open migrations: %w", redactURLError(err))
	}
	defer m.Close()
	if err := do(m); err != nil && !errors.Is(err, migrate.ErrNoChange) {
		return err
	}
	return nil
}

// migrateURL turns a postgres:// URL into golang-migrate's driver URL: pgx5:// on PostgreSQL,
// cockroachdb:// on CockroachDB, where the pgx driver's advisory lock is a no-op
// (reference/cockroachdb.md §1.3, §11).
func migrateURL(dbURL string, engine Engine, table string) (string, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "", fmt.Errorf("parse database url: %w", redactURLError(err))
	}
	if engine == Cockroach {
		u.Scheme = "cockroachdb"
	} else {
		u.Scheme = "pgx5"
	}
	q := u.Query()
	q.Set("x-migrations-table", table)
	if engine == Cockroach {
		q.Set("x-lock-table", "schema_lock")
	}
	u.RawQuery = q.Encode()
	return u.String(), nil
}

func detectEngineURL(ctx context.Context, dbURL string) (Engine, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version string
	if err := conn.QueryRow(ctx, "SELECT version()").Scan(&version); err != nil {
		return 0, err
	}
	if strings.Contains(version, "CockroachDB") {
		return Cockroach, nil
	}
	return Postgres, nil
}

// ensureRegions runs regionStatements on the database behind dbURL.
func ensureRegions(ctx context.Context, dbURL string, rt *regions.Table) (Engine, error) {
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var version, dbName string
	if err := conn.QueryRow(ctx, "SELECT version(), current_database()").Scan(&version, &dbName); err != nil {
		return 0, err
	}
	engine := Postgres
	if strings.Contains(version, "CockroachDB") {
		engine = Cockroach
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'crdb_internal_region')`).Scan(&exists); err != nil {
		return 0, err
	}
	for _, stmt := range regionStatements(engine, dbName, rt, exists) {
		// One statement at a time, outside a transaction: an enum value added in a transaction is
		// not usable until it commits, on both engines (reference/cockroachdb.md §1.2).
		if _, err := conn.Exec(ctx, stmt); err != nil {
			if engine == Postgres && sqlState(err) == "42710" {
				continue // another process created the type first
			}
			return 0, fmt.Errorf("ensure regions: %s: %w", stmt, err)
		}
	}
	return engine, nil
}

// regionStatements are the idempotent statements that make the configured regions exist.
//   - CockroachDB: a database gets regions through ALTER DATABASE; the first must set the primary
//     region, and ADD REGION needs one (reference/cockroachdb.md §1.1). The regions become the
//     values of crdb_internal_region, which the shared tables' region column uses.
//   - PostgreSQL: the same enum, created with the configured values.
//
// Regions are only ever added: dropping one is an operator's decision with data to move first.
func regionStatements(engine Engine, dbName string, rt *regions.Table, typeExists bool) []string {
	var out []string
	if engine == Cockroach {
		db := pgx.Identifier{dbName}.Sanitize()
		if !typeExists {
			out = append(out, fmt.Sprintf("ALTER DATABASE %s PRIMARY REGION %s", db, pgx.Identifier{rt.Primary()}.Sanitize()))
		}
		for _, r := range rt.Names() {
			if !typeExists && r == rt.Primary() {
				continue
			}
			out = append(out, fmt.Sprintf("ALTER DATABASE %s ADD REGION IF NOT EXISTS %s", db, pgx.Identifier{r}.Sanitize()))
		}
		return out
	}
	if !typeExists {
		quoted := make([]string, 0, len(rt.Names()))
		for _, r := range rt.Names() {
			quoted = append(quoted, quoteLiteral(r))
		}
		out = append(out, "CREATE TYPE crdb_internal_region AS ENUM ("+strings.Join(quoted, ", ")+")")
	}
	for _, r := range rt.Names() {
		out = append(out, "ALTER TYPE crdb_internal_region ADD VALUE IF NOT EXISTS "+quoteLiteral(r))
	}
	return out
}

// quoteLiteral quotes a region name; names are validated by regions.New, this is belt and braces.
func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
