package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/migrations"
	"github.com/7awel/wallet/regions"
)

// Relocation: moving a user's home region (design.md, Regions and PII: "Moving a user is an
// explicit operation that rewrites the user's rows in one transaction"). On CockroachDB each
// UPDATE of the region column moves the row to the other region's partition (§1.2).

// ActionRelocated is the audit action of a relocation (details: from, to, rows moved).
const ActionRelocated = "relocated"

// ErrSystemAccount refuses to relocate a region's system account: its id is derived from its
// region (SystemUserID), so it can never live anywhere else.
var ErrSystemAccount = errors.New("system account")

// relocationRule says which rows of a REGIONAL BY ROW table belong to a user, as a predicate
// that follows `region = $1 AND` ($1 the old region, $2 the target, $3 the user id, or the
// phone's blind index when byPhone), or why the table holds no rows of a user (skip).
type relocationRule struct {
	table   string
	owner   string
	byPhone bool
	skip    string
}

// relocationRules, in execution order: the children of the user's transactions first, while
// their transactions are still in the old region for the sub-select to find. Every regional
// table must appear here (relocationPlan refuses otherwise), so a table added to
// migrations.Tables without deciding how a user's rows move fails the tests instead of being
// left behind silently.
var relocationRules = []relocationRule{
	{table: "transaction_details", owner: "transaction_id IN (SELECT t.id FROM transactions t WHERE t.region = $1 AND t.sender_id = $3)"},
	{table: "cash_out_details", owner: "transaction_id IN (SELECT t.id FROM transactions t WHERE t.region = $1 AND t.sender_id = $3)"},
	{table: "transactions", owner: "sender_id = $3"}, // initiated by the user; received ones stay with their sender
	{table: "ledger_entries", owner: "user_id = $3"}, // the user's side only; counterparties' entries stay with them
	{table: "asset_balances", owner: "user_id = $3"},
	{table: "wallets", owner: "user_id = $3"},
	{table: "users", owner: "id = $3"},
	{table: "user_profiles", owner: "user_id = $3"},
	{table: "user_auth", owner: "user_id = $3"},
	{table: "user_settings", owner: "user_id = $3"},
	{table: "notification_settings", owner: "user_id = $3"},
	{table: "user_sessions", owner: "user_id = $3"},
	{table: "refresh_tokens", owner: "user_id = $3"},
	{table: "activity_logs", owner: "user_id = $3"},
	{table: "contacts_with_accounts", owner: "owner_id = $3"},
	{table: "contact_sync_status", owner: "user_id = $3"},
	{table: "payment_requests", owner: "requestor_id = $3"}, // requests addressed to the user: see relocateRequestsToSQL
	{table: "promotion_views", owner: "user_id = $3"},
	// Challenges are homed with the phone's home region (otpHome reads the directory), so the
	// phone's challenges follow its user; a user without a phone (erased) has none.
	{table: "otp_codes", owner: "phone_bidx = $3", byPhone: true},
	{table: "rate_limits", skip: "throttle counters belong to the region that counts them (client address, device, phone), not to a user"},
}

// relocationStep is one statement of a relocation.
type relocationStep struct {
	table string
	sql   string
	phone bool // $3 is the phone's blind index, not the user id
}

// relocationPlan returns the UPDATE of every table of tables that holds a user's rows, in rule
// order, or an error naming a table without a rule, or a rule for a table that is not in
// tables. RelocateUser runs it over migrations.RegionalTables() and fails closed.
func relocationPlan(tables []string) ([]relocationStep, error) {
	var steps []relocationStep
	seen := map[string]bool{}
	for _, r := range relocationRules {
		if !slices.Contains(tables, r.table) {
			return nil, fmt.Errorf("relocation rule for %q, which is not a REGIONAL BY ROW table", r.table)
		}
		if seen[r.table] {
			return nil, fmt.Errorf("two relocation rules for %q", r.table)
		}
		seen[r.table] = true
		if r.skip != "" {
			continue
		}
		steps = append(steps, relocationStep{table: r.table, phone: r.byPhone, sql: fmt.Sprintf(
			"UPDATE %s SET %s = $2 WHERE %s = $1 AND %s", r.table, migrations.RegionColumn, migrations.RegionColumn, r.owner)})
	}
	var missing []string
	for _, t := range tables {
		if !seen[t] {
			missing = append(missing, t)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no relocation rule for REGIONAL BY ROW tables %v: say in storage/relocate.go how a user's rows move", missing)
	}
	return steps, nil
}

// The user's row, found region by region (each statement pinned), and locked.
const relocateFindSQL = `
SELECT phone_bidx, email_bidx, is_system FROM users WHERE region = $1 AND id = $2 FOR UPDATE`

// Wallet before balances, balances in asset order: the order movements lock them in.
// lockWalletExclusiveSQL waits for every movement holding the wallet (debits NO KEY UPDATE,
// credits' foreign keys KEY SHARE) and keeps new ones out; DeleteUser takes it too.
const lockWalletExclusiveSQL = `SELECT 1 FROM wallets WHERE region = $1 AND user_id = $2 FOR UPDATE`

const relocateLockBalancesSQL = `
SELECT 1 FROM asset_balances WHERE region = $1 AND user_id = $2 ORDER BY asset_symbol FOR UPDATE`

// Payment requests of other users addressed to this one record where the payer lives; the
// requests stay with their requestors, but their recipient_region must follow the payer.
const relocateRequestsToSQL = `
UPDATE payment_requests SET recipient_region = $3, updated_at = now()
WHERE region = $1 AND recipient_id = $2 AND recipient_region = $4`

// RelocateUser moves every row of a user to target in one transaction that may be retried
// (isolation: see below), and returns the region the user was homed in. It moves the rows relocationRules name
// (profile, auth, settings, sessions and refresh tokens, activity, wallet, balances, the user's
// ledger entries, the transactions the user initiated with their details, contacts, requests,
// views, the phone's OTP challenges), each UPDATE pinned to the old region; points the phone and
// email directory entries at target; revokes every session, so that outstanding access and
// refresh tokens (which name the old region) stop working and new ones carry target; and writes
// the audit row in target.
//
// Ciphertexts move as they are: their AAD binds the owning user id (or challenge id), never the
// region, and the counterparty copies on other users' entries stay valid. Rows of other parties
// stay where they are: transfers the user received are homed with their senders, and the fee
// and issuance accounts' entries with those accounts.
//
// Relocating to the current home changes nothing (from == target). Returns ErrNotFound for an
// unknown user, regions.ErrUnknownRegion for a target not in the deployment, ErrSystemAccount
// for a system account.
func (db *DB) RelocateUser(ctx context.Context, userID uuid.UUID, target string) (string, error) {
	if !db.regions.Has(target) {
		return "", fmt.Errorf("relocate %s to %q: %w", userID, target, regions.ErrUnknownRegion)
	}
	steps, err := relocationPlan(migrations.RegionalTables())
	if err != nil {
		return "", err
	}
	// The serving region is not known here (an operator call); the order only decides how many
	// probes a lookup takes.
	all := db.regions.Names()
	var from string
	// Isolation: SERIALIZABLE on CockroachDB; on PostgreSQL READ COMMITTED behind locks, like the
	// debiting movements (transfers.go). There a SERIALIZABLE relocation takes its snapshot
	// before it waits for the user's locks, so against a steady stream of payments to the user
	// (a merchant) every attempt ends in 40001 and it never gets through. Instead it first locks
	// what every movement touching the user locks or writes: the user row, the wallet (debits
	// hold it NO KEY UPDATE, credits KEY SHARE; FOR UPDATE waits for both and blocks new ones)
	// and the balances (every ledger entry is written in the transaction that updates its
	// balance). Once it holds them, no movement of the user is in flight, each later statement
	// sees every earlier one committed, and a movement that waited finds the rows gone from the
	// old region and retries through the directory.
	err = db.inTx(ctx, "relocate_user", db.debitIsolation(), func(tx pgx.Tx) error {
		from = ""
		var phoneBidx, emailBidx []byte
		var system bool
		for _, region := range all {
			err := tx.QueryRow(ctx, relocateFindSQL, region, userID).Scan(&phoneBidx, &emailBidx, &system)
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			if err != nil {
				return err
			}
			from = region
			break
		}
		switch {
		case from == "":
			return fmt.Errorf("user %s: %w", userID, ErrNotFound)
		case system:
			return fmt.Errorf("user %s: %w", userID, ErrSystemAccount)
		case from == target:
			return nil
		}
		if _, err := tx.Exec(ctx, lockWalletExclusiveSQL, from, userID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, relocateLockBalancesSQL, from, userID); err != nil {
			return err
		}
		// One round trip for every move: on CockroachDB each statement writes two regions.
		b := &pgx.Batch{}
		for _, s := range steps {
			var owner any = userID
			if s.phone {
				owner = phoneBidx
			}
			b.Queue(s.sql, from, target, owner)
		}
		for _, region := range all {
			b.Queue(relocateRequestsToSQL, region, userID, target, from)
		}
		br := tx.SendBatch(ctx, b)
		moved := 0
		for _, s := range steps {
			tag, err := br.Exec()
			if err != nil {
				br.Close()
				return fmt.Errorf("relocate %s: %w", s.table, err)
			}
			moved += int(tag.RowsAffected())
		}
		for range all {
			if _, err := br.Exec(); err != nil {
				br.Close()
				return fmt.Errorf("relocate payment requests to %s: %w", userID, err)
			}
		}
		if err := br.Close(); err != nil {
			return err
		}
		// GLOBAL directories: keyed by blind index, so no region to pin. A phone change in
		// flight can leave two phone rows; the user_id index finds both.
		if _, err := tx.Exec(ctx, `UPDATE phone_directory SET home_region = $2, updated_at = now() WHERE user_id = $1`,
			userID, target); err != nil {
			return err
		}
		if emailBidx != nil {
			if _, err := tx.Exec(ctx, `UPDATE email_directory SET home_region = $3, updated_at = now()
WHERE email_bidx = $1 AND user_id = $2`, emailBidx, userID, target); err != nil {
				return err
			}
		}
		// Revoking the sessions is what stops the old tokens: each names the old region, where
		// its session no longer is, and the session is revoked wherever it is looked up.
		// tokens_not_before is deliberately not set: it has one-second precision, so it would
		// also refuse a login made in the second of the relocation.
		if err := revokeSessions(ctx, tx, target, userID, nil, nil, ActionRelocated); err != nil {
			return err
		}
		return logActivity(ctx, tx, target, userID, ActionRelocated, map[string]any{"from": from, "to": target, "rows": moved})
	})
	if err != nil {
		return "", fmt.Errorf("relocate %s: %w", userID, err)
	}
	return from, nil
}
