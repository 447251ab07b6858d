package storage

import (
	"errors"
	"fmt"

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
