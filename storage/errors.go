package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Sentinel errors of the data layer. Methods wrap them with %w and context (ids, never PII);
// server maps each to one HTTP status and stable code.
var (
	ErrNotFound = errors.New("not found")
	// ErrConflict: a uniqueness rule refused the write.
	ErrConflict = errors.New("conflict")
	// ErrConstraint: a CHECK or foreign key refused the write; a bug or a race the caller lost.
	ErrConstraint = errors.New("constraint violated")
	// ErrInsufficientFunds: the debit would take a balance below zero.
	ErrInsufficientFunds = errors.New("insufficient funds")
	// ErrBusy: the transaction kept conflicting and the retry bound was reached. Safe to retry
	// later: nothing was applied.
	ErrBusy = errors.New("database busy: retries exhausted")
	// ErrAmbiguousCommit: the connection failed during COMMIT, so whether the transaction applied
	// is unknown. Idempotent operations are safe to retry with the same reference.
	ErrAmbiguousCommit = errors.New("commit outcome unknown")
	// ErrUnavailable: the database could not be reached.
	ErrUnavailable = errors.New("database unavailable")
)

// SQLSTATE codes the layer acts on.
const (
	codeSerializationFailure = "40001"
	codeDeadlock             = "40P01"
	codeUniqueViolation      = "23505"
	codeCheckViolation       = "23514"
	codeForeignKeyViolation  = "23503"
	codeNotNullViolation     = "23502"
)

// sqlState returns the SQLSTATE of a driver error, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// translate maps a driver error to a sentinel, keeping the original for the log. The constraint
// name is kept: it is schema, not data.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: %w", ErrNotFound, err)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case codeUniqueViolation:
			return fmt.Errorf("%w: %s", ErrConflict, pgErr.ConstraintName)
		case codeCheckViolation:
			if pgErr.ConstraintName == "asset_balances_not_negative" {
				return fmt.Errorf("%w: %s", ErrInsufficientFunds, pgErr.ConstraintName)
			}
			return fmt.Errorf("%w: %s", ErrConstraint, pgErr.ConstraintName)
		case codeForeignKeyViolation, codeNotNullViolation:
			return fmt.Errorf("%w: %s", ErrConstraint, pgErr.ConstraintName)
		}
		return err
	}
	if pgconn.SafeToRetry(err) || pgconn.Timeout(err) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// Sentinels of sign-up, login and the user (issue 3). Errors that carry numbers wrap these in
// the types below, reachable with errors.As.
var (
	// ErrInvalidPIN: the PIN is wrong; a *PINError says how many attempts are left.
	ErrInvalidPIN = errors.New("invalid PIN")
	// ErrPINLocked: too many wrong PINs; a *PINError says until when.
	ErrPINLocked = errors.New("PIN locked")
	// ErrOTPInvalid: the code is wrong; an *OTPError says how many attempts are left.
	ErrOTPInvalid = errors.New("invalid OTP code")
	// ErrOTPExpired: no live challenge for the phone and purpose; request a new code.
	ErrOTPExpired = errors.New("OTP expired")
	// ErrOTPLocked: the challenge took its five wrong codes; a *RateLimitError says when a new
	// code may be requested.
	ErrOTPLocked = errors.New("OTP locked")
	// ErrRateLimited: a throttle refused the call; a *RateLimitError says when to retry.
	ErrRateLimited = errors.New("rate limited")
	// ErrPhoneTaken, ErrEmailTaken: the directory already holds the value for another user.
	ErrPhoneTaken = errors.New("phone taken")
	ErrEmailTaken = errors.New("email taken")
	// ErrInvalidVerification: the verification token is unknown, spent, expired, or for another
	// phone or purpose.
	ErrInvalidVerification = errors.New("invalid verification token")
	// ErrInvalidRefreshToken: unknown, expired, or its session is no longer live.
	ErrInvalidRefreshToken = errors.New("invalid refresh token")
	// ErrRefreshReuse: a rotated refresh token came back; its session is now revoked. It wraps
	// ErrInvalidRefreshToken.
	ErrRefreshReuse = fmt.Errorf("%w: reused", ErrInvalidRefreshToken)
	// ErrSessionRevoked: the session of an access token is revoked, expired or older than the
	// user's tokens_not_before.
	ErrSessionRevoked = errors.New("session revoked")
	// ErrAccountSuspended: the user may not sign in or act.
	ErrAccountSuspended = errors.New("account suspended")
	// ErrInvalidCredentials: the phone has no account (login).
	ErrInvalidCredentials = errors.New("invalid credentials")
	// ErrBalanceNotEmpty: an account with money in it cannot be deleted.
	ErrBalanceNotEmpty = errors.New("balance not empty")
)

// PINError carries the numbers of ErrInvalidPIN and ErrPINLocked.
type PINError struct {
	Err          error // ErrInvalidPIN or ErrPINLocked
	AttemptsLeft int
	LockedUntil  time.Time
}

func (e *PINError) Error() string { return e.Err.Error() }
func (e *PINError) Unwrap() error { return e.Err }

// OTPError carries the attempts left of ErrOTPInvalid.
type OTPError struct {
	AttemptsLeft int
}

func (e *OTPError) Error() string { return ErrOTPInvalid.Error() }
func (e *OTPError) Unwrap() error { return ErrOTPInvalid }

// RateLimitError carries when a throttled call may be retried. Err is ErrRateLimited or
// ErrOTPLocked; Bucket names the throttle (for logs, never a key).
type RateLimitError struct {
	Err        error
	Bucket     string
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("%v (%s, retry after %s)", e.Err, e.Bucket, e.RetryAfter)
}
func (e *RateLimitError) Unwrap() error { return e.Err }

// Money sentinels (issue 4). Each maps to one HTTP status and code in server/errors.go.
var (
	// ErrIdempotencyConflict: the reference was already used with a different request.
	ErrIdempotencyConflict = errors.New("reference already used with another request")
	// ErrRecipientNotFound: no active user answers to the phone or id.
	ErrRecipientNotFound = errors.New("recipient not found")
	// ErrInvalidRecipient: the recipient cannot receive this (the sender themself, a frozen wallet).
	ErrInvalidRecipient = errors.New("invalid recipient")
	// ErrInvalidAmount: not positive, too many decimals, or outside the asset's limits.
	ErrInvalidAmount = errors.New("invalid amount")
	// ErrAssetUnavailable: the asset is unknown or not active.
	ErrAssetUnavailable = errors.New("asset unavailable")
	// ErrWalletFrozen: the caller's wallet may not send.
	ErrWalletFrozen = errors.New("wallet frozen")
	// ErrDailyLimitExceeded: the day's outgoing total in the asset would pass the limit.
	ErrDailyLimitExceeded = errors.New("daily limit exceeded")
	// ErrCashOutNotPending: the cash-out was already collected, cancelled or expired.
	ErrCashOutNotPending = errors.New("cash-out is not pending")
)
