package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// SessionTTL is the absolute life of a session and of every refresh token in it: rotations do
// not extend it (ASVS 10.4.8).
const SessionTTL = 30 * 24 * time.Hour

// NewSession is what a sign-up or login needs to open a session. The ids and the refresh token
// are made by the caller, before the transaction, so a retried closure writes the same values.
type NewSession struct {
	ID          uuid.UUID
	DeviceID    string
	RefreshHash []byte // TokenHash of the refresh token handed to the client
}

// Session is a user's device sign-in as the API lists it.
type Session struct {
	ID           uuid.UUID
	DeviceID     string
	IP           string
	UserAgent    string
	CreatedAt    time.Time
	LastActivity time.Time
	ExpiresAt    time.Time
}

// SessionGrant is what a new or rotated session hands back.
type SessionGrant struct {
	UserID    uuid.UUID
	SessionID uuid.UUID
	Region    string
	ExpiresAt time.Time // absolute end of the session and of its refresh token
}

const insertSessionSQL = `
INSERT INTO user_sessions (id, region, user_id, device_id, ip_address, user_agent, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, now() + $7::BIGINT * INTERVAL '1 millisecond')
RETURNING expires_at`

const insertRefreshSQL = `
INSERT INTO refresh_tokens (region, token_hash, session_id, user_id, generation, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)`

// openSession inserts a session and its first refresh token inside tx.
func openSession(ctx context.Context, tx pgx.Tx, region string, userID uuid.UUID, s NewSession) (time.Time, error) {
	m := ClientMetaFrom(ctx)
	var expires time.Time
	if err := tx.QueryRow(ctx, insertSessionSQL, s.ID, region, userID, textOrNil(s.DeviceID, 200),
		inetOrNil(m.IP), textOrNil(m.UserAgent, 400), SessionTTL.Milliseconds()).Scan(&expires); err != nil {
		return time.Time{}, fmt.Errorf("open session: %w", err)
	}
	if _, err := tx.Exec(ctx, insertRefreshSQL, region, s.RefreshHash, s.ID, userID, 1, expires); err != nil {
		return time.Time{}, fmt.Errorf("first refresh token: %w", err)
	}
	return expires, nil
}

// A session is live while it is active, not revoked, not past its absolute end, its user is
// active, and the access token was issued after the user's tokens_not_before.
const sessionLiveSQL = `
SELECT s.is_active AND s.revoked_at IS NULL AND s.expires_at > now(),
       u.status,
       a.tokens_not_before
FROM user_sessions s
JOIN users u ON u.region = s.region AND u.id = s.user_id
JOIN user_auth a ON a.region = s.region AND a.user_id = s.user_id
WHERE s.region = $1 AND s.id = $2 AND s.user_id = $3`

// SessionLive checks that the session of an access token issued at issuedAt may still act:
// ErrSessionRevoked if not, ErrAccountSuspended for a suspended user. One read, in the user's
// home region; it also marks the session's last activity at most once a minute.
func (db *DB) SessionLive(ctx context.Context, region string, userID, sessionID uuid.UUID, issuedAt time.Time) error {
	return db.inTx(ctx, "session_live", readCommitted, func(tx pgx.Tx) error {
		// The rules are sessionRow.check's, the same the transfer path applies in its own batch.
		row := sessionRow{found: true}
		err := tx.QueryRow(ctx, sessionLiveSQL, region, sessionID, userID).Scan(&row.live, &row.status, &row.notBefore)
		if errors.Is(err, pgx.ErrNoRows) {
			row.found = false
		} else if err != nil {
			return err
		}
		if err := row.check(userID, sessionID, issuedAt); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE user_sessions SET last_activity = now()
WHERE region = $1 AND id = $2 AND last_activity < now() - INTERVAL '1 minute'`, region, sessionID)
		return err
	})
}

// Rotation: the presented token is marked used in the same statement that checks it is unused,
// so two parallel refreshes with one token cannot both succeed.
const rotateRefreshSQL = `
UPDATE refresh_tokens SET used_at = now()
WHERE region = $1 AND token_hash = $2 AND used_at IS NULL AND expires_at > now()
RETURNING session_id, user_id, generation, expires_at`

const refreshUsedSQL = `
SELECT session_id, user_id FROM refresh_tokens WHERE region = $1 AND token_hash = $2 AND used_at IS NOT NULL`

const sessionForRefreshSQL = `
SELECT s.is_active AND s.revoked_at IS NULL AND s.expires_at > now(), u.status
FROM user_sessions s JOIN users u ON u.region = s.region AND u.id = s.user_id
WHERE s.region = $1 AND s.id = $2`

// RefreshSession rotates a refresh token: the presented one (by hash) is spent and newHash
// becomes the session's current token, with the session's absolute expiry. A token that was
// already rotated revokes its whole session (RFC 9700 §4.14.2) and returns ErrRefreshReuse; an
// unknown or expired token, or a dead session, returns ErrInvalidRefreshToken. One transaction;
// the revocation on reuse commits even though the call fails. There is no grace window: a client
// that lost a refresh answer and retries looks like a thief and signs in again, which we prefer
// to keeping a spent token usable (reference/security.md §1.5).
func (db *DB) RefreshSession(ctx context.Context, region string, presented, newHash []byte) (SessionGrant, error) {
	var grant SessionGrant
	var reused bool
	err := db.inTx(ctx, "refresh_session", readCommitted, func(tx pgx.Tx) error {
		reused = false
		var gen int
		err := tx.QueryRow(ctx, rotateRefreshSQL, region, presented).Scan(&grant.SessionID, &grant.UserID, &gen, &grant.ExpiresAt)
		if errors.Is(err, pgx.ErrNoRows) {
			var sessionID, userID uuid.UUID
			err = tx.QueryRow(ctx, refreshUsedSQL, region, presented).Scan(&sessionID, &userID)
			if errors.Is(err, pgx.ErrNoRows) {
				return ErrInvalidRefreshToken
			}
			if err != nil {
				return err
			}
			reused = true
			if err := revokeSessions(ctx, tx, region, userID, &sessionID, nil, "refresh_token_reused"); err != nil {
				return err
			}
			return logActivity(ctx, tx, region, userID, ActionRefreshReuse, map[string]any{"session_id": sessionID})
		}
		if err != nil {
			return err
		}
		var live bool
		var status string
		if err := tx.QueryRow(ctx, sessionForRefreshSQL, region, grant.SessionID).Scan(&live, &status); err != nil {
			return err
		}
		if !live || status != "active" {
			return ErrInvalidRefreshToken
		}
		grant.Region = region
		if _, err := tx.Exec(ctx, insertRefreshSQL, region, newHash, grant.SessionID, grant.UserID, gen+1, grant.ExpiresAt); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		_, err = tx.Exec(ctx, `UPDATE user_sessions SET last_activity = now() WHERE region = $1 AND id = $2`, region, grant.SessionID)
		return err
	})
	if err == nil && reused {
		return SessionGrant{}, ErrRefreshReuse
	}
	return grant, err
}

// revokeSessions revokes, inside tx, the user's live sessions: only `only` when set, all but
// `except` when that is set, else all. Their unused refresh tokens die with them (the session
// check in RefreshSession refuses them).
func revokeSessions(ctx context.Context, tx pgx.Tx, region string, userID uuid.UUID, only, except *uuid.UUID, reason string) error {
	q := `UPDATE user_sessions SET is_active = false, revoked_at = now(), revoke_reason = $3
WHERE region = $1 AND user_id = $2 AND revoked_at IS NULL`
	args := []any{region, userID, reason}
	switch {
	case only != nil:
		q += ` AND id = $4`
		args = append(args, *only)
	case except != nil:
		q += ` AND id <> $4`
		args = append(args, *except)
	}
	_, err := tx.Exec(ctx, q, args...)
	return err
}

// ListSessions returns the user's live sessions, newest first. One read.
func (db *DB) ListSessions(ctx context.Context, region string, userID uuid.UUID) ([]Session, error) {
	var out []Session
	err := db.inTx(ctx, "list_sessions", readCommitted, func(tx pgx.Tx) error {
		out = nil
		rows, err := tx.Query(ctx, `
SELECT id, device_id, COALESCE(host(ip_address), ''), COALESCE(user_agent, ''), created_at, last_activity, expires_at
FROM user_sessions
WHERE region = $1 AND user_id = $2 AND is_active AND revoked_at IS NULL AND expires_at > now()
ORDER BY created_at DESC, id`, region, userID)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s Session
			if err := rows.Scan(&s.ID, &s.DeviceID, &s.IP, &s.UserAgent, &s.CreatedAt, &s.LastActivity, &s.ExpiresAt); err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	return out, err
}

// RevokeSession ends one of the user's sessions: logout (the caller's own) or "log out that
// device". A session that is not the user's, or already ended, is ErrNotFound (another user's
// session answers 404, never 403). One transaction with its audit row.
func (db *DB) RevokeSession(ctx context.Context, region string, userID, sessionID uuid.UUID, action string) error {
	return db.inTx(ctx, "revoke_session", readCommitted, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE user_sessions SET is_active = false, revoked_at = now(), revoke_reason = $4
WHERE region = $1 AND user_id = $2 AND id = $3 AND revoked_at IS NULL`, region, userID, sessionID, action)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("session %s: %w", sessionID, ErrNotFound)
		}
		return logActivity(ctx, tx, region, userID, action, map[string]any{"session_id": sessionID})
	})
}
