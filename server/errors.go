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
}

// toError turns any error a handler returned into an *Error.
func toError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return &Error{Status: s.status, Code: s.code, Detail: s.detail, RetryAfter: s.retry, Err: err}
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
