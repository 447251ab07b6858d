package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/7awel/wallet/storage"
)

// Error is an API error: an HTTP status, a stable snake_case code the app switches on, and a
// detail for people. Handlers return one (or a storage sentinel, mapped below); one adapter
// writes it as an RFC 9457 problem document and logs it once.
type Error struct {
	Status int
	Code   string
	Detail string
	// Fields: validation messages by field name (the problem's `errors` extension).
	Fields map[string]string
	// Extra: further problem extensions, e.g. attempts_left or locked_until.
	Extra map[string]any
	// RetryAfter sets the Retry-After header (429, 503).
	RetryAfter time.Duration
	// Err is the cause, logged for 5xx and never sent to the client.
	Err error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%d %s: %s: %v", e.Status, e.Code, e.Detail, e.Err)
	}
	return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf builds an Error with a formatted detail.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Detail: fmt.Sprintf(format, args...)}
}

// sentinels maps data-layer errors to what the client sees. The one table from error to status
// and code: anything not here, and not an *Error, is a 500.
var sentinels = []struct {
	err    error
	status int
	code   string
	detail string
	retry  time.Duration
}{
	{storage.ErrNotFound, http.StatusNotFound, "not_found", "The resource does not exist.", 0},
	{storage.ErrInsufficientFunds, http.StatusUnprocessableEntity, "insufficient_funds", "The balance is too low for this amount.", 0},
	{storage.ErrConflict, http.StatusConflict, "conflict", "The request conflicts with the current state.", 0},
	{storage.ErrBusy, http.StatusServiceUnavailable, "busy", "The service is busy; retry the same request shortly.", time.Second},
	{storage.ErrAmbiguousCommit, http.StatusServiceUnavailable, "outcome_unknown", "The outcome is unknown; retry the same request with the same reference.", time.Second},
	{storage.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "The database is unavailable; retry shortly.", 2 * time.Second},
	// Auth and user (issue 3). Numbers (attempts_left, locked_until, Retry-After) are added by
	// authProblem from the error's type.
	{storage.ErrInvalidPIN, http.StatusUnauthorized, "invalid_pin", "The PIN is wrong.", 0},
	{storage.ErrPINLocked, http.StatusLocked, "pin_locked", "Too many wrong PINs; the PIN is locked for a while.", 0},
	{storage.ErrOTPInvalid, http.StatusUnauthorized, "otp_invalid", "The code is wrong.", 0},
	{storage.ErrOTPExpired, http.StatusUnauthorized, "otp_expired", "The code has expired or was replaced; request a new one.", 0},
	{storage.ErrOTPLocked, http.StatusTooManyRequests, "otp_locked", "Too many wrong codes; request a new one later.", 0},
	{storage.ErrRateLimited, http.StatusTooManyRequests, "rate_limited", "Too many requests; retry later.", 0},
	{storage.ErrPhoneTaken, http.StatusConflict, "phone_taken", "An account with this phone number exists; log in instead.", 0},
	{storage.ErrEmailTaken, http.StatusConflict, "email_taken", "Another account uses this email address.", 0},
	{storage.ErrInvalidVerification, http.StatusUnauthorized, "invalid_verification_token", "The verification token is invalid, spent or expired; verify the phone again.", 0},
	{storage.ErrInvalidRefreshToken, http.StatusUnauthorized, "invalid_refresh_token", "The refresh token is invalid; sign in again.", 0},
	{storage.ErrSessionRevoked, http.StatusUnauthorized, "unauthorized", "This session has ended; sign in again.", 0},
	{storage.ErrAccountSuspended, http.StatusForbidden, "account_suspended", "This account is suspended.", 0},
	{storage.ErrInvalidCredentials, http.StatusUnauthorized, "invalid_credentials", "The phone or PIN is wrong.", 0},
	{storage.ErrBalanceNotEmpty, http.StatusConflict, "balance_not_empty", "Move or cash out every balance before closing the account.", 0},
	// Money (issue 4).
	{storage.ErrIdempotencyConflict, http.StatusConflict, "idempotency_conflict", "This reference was already used with a different request; use a new reference.", 0},
	{storage.ErrRecipientNotFound, http.StatusNotFound, "recipient_not_found", "No active user has this phone number or id.", 0},
	{storage.ErrInvalidRecipient, http.StatusUnprocessableEntity, "invalid_recipient", "This recipient cannot receive the transfer.", 0},
	{storage.ErrInvalidAmount, http.StatusUnprocessableEntity, "invalid_amount", "The amount is not valid for this asset.", 0},
	{storage.ErrAssetUnavailable, http.StatusUnprocessableEntity, "asset_unavailable", "This asset is not available.", 0},
	{storage.ErrWalletFrozen, http.StatusForbidden, "wallet_frozen", "This wallet is frozen and cannot send money.", 0},
	{storage.ErrDailyLimitExceeded, http.StatusUnprocessableEntity, "daily_limit_exceeded", "This would pass your daily limit for this asset.", 0},
	{storage.ErrCashOutNotPending, http.StatusConflict, "cash_out_not_pending", "The cash-out was already collected, cancelled or expired.", 0},
}

// toError turns any error a handler returned into an *Error.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			e := &Error{Status: s.status, Code: s.code, Detail: s.detail, RetryAfter: s.retry, Err: err}
			authProblem(err, e)
			return e
		}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal_error",
		Detail: "Something went wrong on our side. The request id identifies it.", Err: err}
}

// problem is the RFC 9457 document with our extensions.
type problem struct {
	Type      string            `json:"type"`
	Title     string            `json:"title"`
	Status    int               `json:"status"`
	Detail    string            `json:"detail,omitempty"`
	Code      string            `json:"code"`
	RequestID string            `json:"request_id"`
	Errors    map[string]string `json:"errors,omitempty"`
}

// problemTypeBase is where a problem type's documentation lives (a stable URI per code).
const problemTypeBase = "https://docs.7awel.com/problems/"

func writeProblem(w http.ResponseWriter, r *http.Request, e *Error) {
	doc := map[string]any{}
	for k, v := range e.Extra {
		doc[k] = v
	}
	p := problem{
		Type:      problemTypeBase + e.Code,
		Title:     http.StatusText(e.Status),
		Status:    e.Status,
		Detail:    e.Detail,
		Code:      e.Code,
		RequestID: requestID(r.Context()),
		Errors:    e.Fields,
	}
	doc["type"], doc["title"], doc["status"], doc["code"], doc["request_id"] = p.Type, p.Title, p.Status, p.Code, p.RequestID
	if p.Detail != "" {
		doc["detail"] = p.Detail
	}
	if len(p.Errors) > 0 {
		doc["errors"] = p.Errors
	}
	if e.RetryAfter > 0 {
		secs := int((e.RetryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(secs))
	}
	writeJSON(w, e.Status, "application/problem+json", doc)
}
