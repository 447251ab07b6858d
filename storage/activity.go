package storage

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Actions written to activity_logs (the audit trail, reference/security.md §1.10). Details never
// hold PII: ids, codes and outcomes only.
const (
	ActionSignUp          = "sign_up"
	ActionLogin           = "login"
	ActionPINFailed       = "pin_failed"
	ActionPINLocked       = "pin_locked"
	ActionLogout          = "logout"
	ActionPINChanged      = "pin_changed"
	ActionPINReset        = "pin_reset"
	ActionProfileUpdated  = "profile_updated"
	ActionSettingsUpdated = "settings_updated"
	ActionSessionRevoked  = "session_revoked"
	ActionRefreshReuse    = "refresh_token_reused"
	ActionAccountDeleted  = "account_deleted"
)

// ClientMeta is where a request came from: the client address and the device. It rides in the
// context so that methods deep in a flow (VerifyPIN, called by money handlers too) can write it to
// the audit trail without every signature carrying it.
type ClientMeta struct {
	IP        string // as the server saw it (trusted proxy header or peer address)
	DeviceID  string
	UserAgent string
}

type clientMetaKey struct{}

// WithClientMeta returns ctx carrying m.
func WithClientMeta(ctx context.Context, m ClientMeta) context.Context {
	return context.WithValue(ctx, clientMetaKey{}, m)
}

// ClientMetaFrom returns the ClientMeta of ctx (zero if none).
func ClientMetaFrom(ctx context.Context) ClientMeta {
	m, _ := ctx.Value(clientMetaKey{}).(ClientMeta)
	return m
}

// inetOrNil is a client address as INET, or NULL when it is not an address (never fail a flow
// over a log column).
func inetOrNil(ip string) any {
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.String()
	}
	return nil
}

func textOrNil(s string, max int) any {
	if s == "" {
		return nil
	}
	if len(s) > max {
		s = s[:max]
	}
	return s
}

const activityInsertSQL = `
INSERT INTO activity_logs (region, user_id, action, details, ip_address, device_id)
VALUES ($1, $2, $3, $4, $5, $6)`

// logActivity writes one audit row inside tx, so the row commits with the change it records.
func logActivity(ctx context.Context, tx pgx.Tx, region string, userID uuid.UUID, action string, details map[string]any) error {
	m := ClientMetaFrom(ctx)
	if details == nil {
		details = map[string]any{}
	}
	if _, err := tx.Exec(ctx, activityInsertSQL, region, userID, action, details,
		inetOrNil(m.IP), textOrNil(m.DeviceID, 200)); err != nil {
		return fmt.Errorf("activity %s: %w", action, err)
	}
	return nil
}

// Activity is one audit row as tests and support tools read it.
type Activity struct {
	Action   string
	Details  map[string]any
	IP       string
	DeviceID string
}

// ListActivity returns a user's audit rows, newest first, at most limit. One read-committed
// transaction.
func (db *DB) ListActivity(ctx context.Context, region string, userID uuid.UUID, limit int) ([]Activity, error) {
	var out []Activity
	err := db.inTx(ctx, "list_activity", readCommitted, func(tx pgx.Tx) error {
		out = out[:0]
		rows, err := tx.Query(ctx, `
SELECT action, COALESCE(details, '{}'::JSONB), COALESCE(host(ip_address), ''), COALESCE(device_id, '')
FROM activity_logs WHERE region = $1 AND user_id = $2 ORDER BY created_at DESC LIMIT $3`, region, userID, limit)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var a Activity
			if err := rows.Scan(&a.Action, &a.Details, &a.IP, &a.DeviceID); err != nil {
				return err
			}
			out = append(out, a)
		}
		return rows.Err()
	})
	return out, err
}
