package migrations

import (
	"fmt"
	"sort"
	"strings"
)

// Locality is where a table's rows live on a multi-region CockroachDB
// (reference/cockroachdb.md §1.2).
type Locality string

const (
	// RegionalByRow: each row lives in the region named by its `region` column, the owner's
	// home region. Every statement on such a table must pin that column.
	RegionalByRow Locality = "REGIONAL BY ROW"
	// Global: non-personal reference data, read locally everywhere, written rarely.
	Global Locality = "GLOBAL"
)

// RegionColumn is the column that homes a REGIONAL BY ROW row (`REGIONAL BY ROW AS region`).
const RegionColumn = "region"

// Table declares one table's locality and retention. It is the single place that says so: the
// CockroachDB overlay is generated from it and the statement-locality audit reads it.
type Table struct {
	Name     string
	Locality Locality
	// TTL is a row-level TTL expression (reference/cockroachdb.md §4), empty for none. On
	// PostgreSQL the same retention is a periodic DELETE (storage).
	TTL     string
	TTLCron string
	// Why names the owner of the rows, or why the table is GLOBAL.
	Why string
}

// Tables lists every table of the schema. A table missing here fails the schema tests.
var Tables = []Table{
	{Name: "users", Locality: RegionalByRow, Why: "the user"},
	{Name: "user_profiles", Locality: RegionalByRow, Why: "the user's PII"},
	{Name: "user_auth", Locality: RegionalByRow, Why: "the user's PIN hash and lock state"},
	{Name: "user_settings", Locality: RegionalByRow, Why: "the user's settings"},
	{Name: "notification_settings", Locality: RegionalByRow, Why: "the user's settings"},
	{Name: "user_sessions", Locality: RegionalByRow, Why: "the user's devices",
		TTL: "last_activity + INTERVAL '30 days'", TTLCron: "0 */4 * * *"},
	{Name: "refresh_tokens", Locality: RegionalByRow, Why: "the user's session lineage",
		TTL: "expires_at", TTLCron: "0 */4 * * *"},
	{Name: "activity_logs", Locality: RegionalByRow, Why: "the user's audit trail",
		TTL: "created_at + INTERVAL '2 years'", TTLCron: "@daily"},
	{Name: "otp_codes", Locality: RegionalByRow, Why: "challenges for a phone, homed with the phone's country",
		TTL: "created_at + INTERVAL '24 hours'", TTLCron: "0 */4 * * *"},
	{Name: "rate_limits", Locality: RegionalByRow, Why: "throttle counters of the region that counts them",
		TTL: "expires_at", TTLCron: "0 */4 * * *"},
	{Name: "wallets", Locality: RegionalByRow, Why: "the user's wallet"},
	{Name: "asset_balances", Locality: RegionalByRow, Why: "the user's balances"},
	{Name: "transactions", Locality: RegionalByRow, Why: "homed with the initiator (sender)"},
	{Name: "ledger_entries", Locality: RegionalByRow, Why: "homed with each party"},
	{Name: "transaction_details", Locality: RegionalByRow, Why: "homed with its transaction"},
	{Name: "cash_out_details", Locality: RegionalByRow, Why: "homed with its transaction"},
	{Name: "contacts_with_accounts", Locality: RegionalByRow, Why: "the owner's contacts"},
	{Name: "contact_sync_status", Locality: RegionalByRow, Why: "the owner's sync state"},
	{Name: "payment_requests", Locality: RegionalByRow, Why: "homed with the requestor"},
	{Name: "promotion_views", Locality: RegionalByRow, Why: "the user's views and clicks"},
	{Name: "phone_directory", Locality: Global, Why: "keyed hash → user and home region, no PII; lets any region find a recipient"},
	{Name: "email_directory", Locality: Global, Why: "keyed hash → user and home region, no PII; global email uniqueness"},
	{Name: "supported_assets", Locality: Global, Why: "reference data"},
	{Name: "exchange_rates", Locality: Global, Why: "reference data"},
	{Name: "promotions", Locality: Global, Why: "reference data"},
}

// HashShardedIndex is an index whose leading column is a timestamp: on CockroachDB it is
// recreated USING HASH so that inserts in time order do not all land on one range
// (reference/cockroachdb.md §5).
type HashShardedIndex struct {
	Table, Name, Columns, Where string
}

// HashSharded lists the indexes the overlay recreates as hash-sharded.
var HashSharded = []HashShardedIndex{
	{Table: "transactions", Name: "transactions_status_time_idx", Columns: "status, created_at"},
	{Table: "cash_out_details", Name: "cash_out_details_open_expiry_idx", Columns: "expires_at",
		Where: "collected_at IS NULL AND cancelled_at IS NULL"},
}

// Lookup returns the declaration of a table.
func Lookup(name string) (Table, bool) {
	for _, t := range Tables {
		if t.Name == name {
			return t, true
		}
	}
	return Table{}, false
}

// RegionalTables returns the names of the REGIONAL BY ROW tables, sorted.
func RegionalTables() []string {
	var out []string
	for _, t := range Tables {
		if t.Locality == RegionalByRow {
			out = append(out, t.Name)
		}
	}
	sort.Strings(out)
	return out
}

// OverlayFile is one generated CockroachDB migration: exactly one statement up and one down,
// because CockroachDB runs a schema change fully atomically only alone
// (reference/cockroachdb.md §1.3).
type OverlayFile struct {
	Name       string // e.g. "000001_users_locality"
	Up, Down   string
	Commentary string
}

// Overlay generates the CockroachDB overlay from Tables and HashSharded, in the order it must
// run: localities first (ADD REGION must not run concurrently with locality changes, §1.2),
// then TTL, then the hash-sharded indexes.
func Overlay() []OverlayFile {
	var out []OverlayFile
	add := func(name, comment, up, down string) {
		out = append(out, OverlayFile{
			Name:       fmt.Sprintf("%06d_%s", len(out)+1, name),
			Commentary: comment, Up: up, Down: down,
		})
	}
	for _, t := range Tables {
		switch t.Locality {
		case RegionalByRow:
			add(t.Name+"_locality",
				fmt.Sprintf("%s: %s. Rows live in their `region` (reference/cockroachdb.md §1.2, custom region column).", t.Name, t.Why),
				fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY ROW AS %s;", t.Name, RegionColumn),
				fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;", t.Name))
		case Global:
			add(t.Name+"_locality",
				fmt.Sprintf("%s: %s. Read locally in every region, written rarely (reference/cockroachdb.md §1.2, §6).", t.Name, t.Why),
				fmt.Sprintf("ALTER TABLE %s SET LOCALITY GLOBAL;", t.Name),
				fmt.Sprintf("ALTER TABLE %s SET LOCALITY REGIONAL BY TABLE IN PRIMARY REGION;", t.Name))
		}
	}
	for _, t := range Tables {
		if t.TTL == "" {
			continue
		}
		add(t.Name+"_ttl",
			fmt.Sprintf("%s: row-level TTL, the plan's retention. Reads still filter expired rows (reference/cockroachdb.md §4).", t.Name),
			fmt.Sprintf("ALTER TABLE %s SET (ttl_expiration_expression = $$(%s)$$, ttl_job_cron = '%s');", t.Name, t.TTL, t.TTLCron),
			fmt.Sprintf("ALTER TABLE %s RESET (ttl);", t.Name))
	}
	for _, ix := range HashSharded {
		where, comment := "", ""
		if ix.Where != "" {
			where = " WHERE " + ix.Where
			comment = " A partial hash-sharded index is [inference]: check EXPLAIN on the target version."
		}
		create := fmt.Sprintf("CREATE INDEX %s ON %s (%s)%s;", ix.Name, ix.Table, ix.Columns, where)
		hashed := fmt.Sprintf("CREATE INDEX %s ON %s (%s) USING HASH%s;", ix.Name, ix.Table, ix.Columns, where)
		drop := fmt.Sprintf("DROP INDEX %s@%s;", ix.Table, ix.Name)
		add(ix.Name+"_drop",
			fmt.Sprintf("%s leads with a timestamp; drop it to recreate it hash-sharded (reference/cockroachdb.md §5).", ix.Name),
			drop, create)
		add(ix.Name+"_hash",
			fmt.Sprintf("%s, hash-sharded so time-ordered inserts spread over ranges (reference/cockroachdb.md §5).%s", ix.Name, comment),
			hashed, drop)
	}
	return out
}

// Render returns a file's up and down text with its commentary as a SQL comment.
func (f OverlayFile) Render() (up, down string) {
	header := "-- Generated from migrations/locality.go by `go test ./migrations -update`; do not edit.\n-- " +
		strings.ReplaceAll(f.Commentary, "\n", "\n-- ") + "\n"
	return header + f.Up + "\n", header + f.Down + "\n"
}

// LocalityExceptions are the statements allowed to touch a REGIONAL BY ROW table without
// pinning its region, by key, each with its reason. A statement claims one with the comment
// /* locality-exception: key */; the statement-locality audit refuses undeclared keys.
// None is needed today: every statement the API sends names its region.
var LocalityExceptions = map[string]string{}
