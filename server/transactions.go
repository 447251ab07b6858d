package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/7awel/wallet/storage"
)

// referencePattern: the client's idempotency key. UUIDs are recommended; any short plain token
// is accepted (reference/security.md §3.2: validate the key's format).
var referencePattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,100}$`)

const maxNoteRunes = 200

func checkReference(ref string) error {
	if !referencePattern.MatchString(ref) {
		return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
			Detail: "Some fields are missing or invalid.",
			Fields: map[string]string{"reference": "1 to 100 characters of A-Z a-z 0-9 . _ : - (a UUID is best)"}}
	}
	return nil
}

func checkNote(note string) error {
	if !utf8.ValidString(note) || utf8.RuneCountInString(note) > maxNoteRunes {
		return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
			Detail: "Some fields are missing or invalid.", Fields: map[string]string{"note": "at most 200 characters"}}
	}
	return nil
}

// --- JSON shapes ---

type counterpartyJSON struct {
	UserID      string `json:"user_id"`
	DisplayName string `json:"display_name"`
	Phone       string `json:"phone"`
}

type cashOutJSON struct {
	Method      string     `json:"method"`
	Provider    *string    `json:"provider"`
	PickupCode  *string    `json:"pickup_code"`
	ExpiresAt   time.Time  `json:"expires_at"`
	CollectedAt *time.Time `json:"collected_at,omitempty"`
	CancelledAt *time.Time `json:"cancelled_at,omitempty"`
}

// transactionJSON is a transaction as api.md shows it; to_*, rate_as_of and cash_out are ours.
type transactionJSON struct {
	ID           string            `json:"id"`
	Reference    *string           `json:"reference"`
	Type         string            `json:"type"`
	Status       string            `json:"status"`
	Direction    string            `json:"direction"`
	Amount       string            `json:"amount"`
	Asset        string            `json:"asset"`
	Fee          string            `json:"fee"`
	ExchangeRate *string           `json:"exchange_rate"`
	ToAmount     *string           `json:"to_amount,omitempty"`
	ToAsset      *string           `json:"to_asset,omitempty"`
	RateAsOf     *time.Time        `json:"rate_as_of,omitempty"`
	Note         *string           `json:"note"`
	Counterparty *counterpartyJSON `json:"counterparty"`
	CreatedAt    time.Time         `json:"created_at"`
	CompletedAt  *time.Time        `json:"completed_at"`
	CashOut      *cashOutJSON      `json:"cash_out,omitempty"`
}

func strPtr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toTransactionJSON(t storage.Transaction) transactionJSON {
	j := transactionJSON{
		ID: t.ID.String(), Reference: strPtr(t.Reference), Type: t.Type, Status: t.Status, Direction: t.Direction,
		Amount: storage.FormatAmount(t.Amount, t.Decimals), Asset: t.Asset, Fee: storage.FormatAmount(t.Fee, t.Decimals),
		Note: strPtr(t.Note), CreatedAt: t.CreatedAt, CompletedAt: t.CompletedAt, RateAsOf: t.RateAsOf,
	}
	if t.ExchangeRate.Valid {
		j.ExchangeRate = strPtr(t.ExchangeRate.Decimal.String())
	}
	if t.ToAmount.Valid {
		j.ToAmount = strPtr(storage.FormatAmount(t.ToAmount.Decimal, t.ToDecimals))
		j.ToAsset = strPtr(t.ToAsset)
	}
	if c := t.Counterparty; c != nil {
		j.Counterparty = &counterpartyJSON{UserID: c.UserID.String(), DisplayName: c.DisplayName, Phone: c.Phone}
	}
	if c := t.CashOut; c != nil {
		j.CashOut = &cashOutJSON{Method: c.Method, Provider: strPtr(c.Provider), PickupCode: strPtr(c.PickupCode),
			ExpiresAt: c.ExpiresAt, CollectedAt: c.CollectedAt, CancelledAt: c.CancelledAt}
	}
	return j
}

// respondMovement answers a movement: 201 the first time, 200 with Idempotent-Replayed: true for
// a repeat of the same reference and body, with the same body.
func respondMovement(w http.ResponseWriter, r *http.Request, res storage.Result, body any) {
	setRetriesHeader(w, r)
	if res.Replayed {
		w.Header().Set("Idempotent-Replayed", "true")
		respond(w, http.StatusOK, body)
		return
	}
	respond(w, http.StatusCreated, body)
}

// --- POST /transactions/send ---

type sendRequest struct {
	RecipientPhone string `json:"recipient_phone"`
	RecipientID    string `json:"recipient_id"`
	Amount         string `json:"amount"`
	Asset          string `json:"asset"`
	Reference      string `json:"reference"`
	PIN            string `json:"pin"`
	Note           string `json:"note"`
}

// recipientFrom reads exactly one of a phone (normalised to E.164) and a user id.
func recipientFrom(phoneField, phone, idField, id string) (storage.Recipient, error) {
	switch {
	case phone != "" && id != "", phone == "" && id == "":
		return storage.Recipient{}, &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
			Detail: "Name the recipient by phone or by user id, not both.",
			Fields: map[string]string{phoneField: "exactly one of " + phoneField + " and " + idField}}
	case id != "":
		uid, err := uuid.Parse(id)
		if err != nil || uid.String() != id {
			// A malformed id names nobody.
			return storage.Recipient{}, Errorf(http.StatusNotFound, "recipient_not_found", "No user has this id.")
		}
		return storage.Recipient{UserID: uid}, nil
	}
	e164, _, err := parsePhone(phone)
	if err != nil {
		return storage.Recipient{}, errInvalidPhone(phoneField)
	}
	return storage.Recipient{Phone: e164}, nil
}

// issuedAtKey carries the access token's issue time from authedMovement to the handler.
type issuedAtKey struct{}

// authedMovement is authed for a movement that checks the session itself, inside its own
// transaction (storage.MovementAuth): the same rule as authedLive (revoked, expired, suspended,
// or issued before tokens_not_before is refused), without a transaction of its own. On
// PostgreSQL the session row is read in the transfer's first round trip; that saved four
// round trips per transfer (issue 7).
func (s *Server) authedMovement(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, iat, err := s.authenticate(r)
		if err != nil {
			return err
		}
		r = s.withClient(r, "")
		ctx := context.WithValue(withPrincipal(r.Context(), p), issuedAtKey{}, iat)
		reached := new(bool)
		ctx = context.WithValue(ctx, reachedKey{}, reached)
		err = fn(w, r.WithContext(ctx))
		if err != nil && !*reached {
			// Refused before the movement (the body, an unknown asset, a malformed PIN…), which
			// is where the session is checked: an ended session still answers 401, as on every
			// authedLive call, and not the request's problem. One lookup, on this error path
			// only; if the lookup itself fails, the refusal stands.
			lerr := s.db.SessionLive(ctx, p.Region, p.UserID, p.SessionID, iat)
			if errors.Is(lerr, storage.ErrSessionRevoked) || errors.Is(lerr, storage.ErrAccountSuspended) {
				return sessionProblem(lerr)
			}
		}
		return err
	}
}

// reachedKey carries a *bool that movementAuth sets once the handler hands its movement the
// session to check: an error after that comes from the movement, which checked it already.
type reachedKey struct{}

// movementAuth is what a movement behind authedMovement checks with itself: the session of the
// access token and the PIN (a malformed PIN is refused here, uncounted, as VerifyPIN would).
func movementAuth(r *http.Request, p Principal, pin string) (*storage.MovementAuth, error) {
	iat, ok := r.Context().Value(issuedAtKey{}).(time.Time)
	if !ok {
		return nil, errors.New("movement: route is not behind authedMovement")
	}
	if !validPINFormat(pin) {
		return nil, storage.ErrInvalidPIN // malformed: refused without spending an attempt
	}
	if reached, ok := r.Context().Value(reachedKey{}).(*bool); ok {
		*reached = true
	}
	return &storage.MovementAuth{SessionID: p.SessionID, IssuedAt: iat, PIN: pin}, nil
}

func (m *moneyAPI) send(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	var req sendRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkReference(req.Reference); err != nil {
		return err
	}
	if err := checkNote(req.Note); err != nil {
		return err
	}
	asset, amount, err := m.assetAmount(r.Context(), req.Asset, req.Amount)
	if err != nil {
		return err
	}
	rcpt, err := recipientFrom("recipient_phone", req.RecipientPhone, "recipient_id", req.RecipientID)
	if err != nil {
		return err
	}
	if rcpt.UserID == p.UserID {
		return Errorf(http.StatusUnprocessableEntity, "invalid_recipient", "You cannot send money to yourself.")
	}
	// The session and the PIN are checked by the transfer itself, in its first round trip; a
	// PIN the cache cannot decide takes VerifyPIN's counted slow path first.
	auth, err := movementAuth(r, p, req.PIN)
	if err != nil {
		return err
	}
	res, err := m.s.db.Transfer(r.Context(), storage.TransferRequest{
		Sender: storage.Party{UserID: p.UserID, Region: p.Region}, Recipient: rcpt,
		Asset: asset.Symbol, Amount: amount, Reference: req.Reference, Note: req.Note, Fees: m.fees,
		Auth: auth,
	})
	if err != nil {
		return err
	}
	respondMovement(w, r, res, toTransactionJSON(res.Transaction))
	return nil
}

// --- POST /transactions/cashout ---

type cashOutRequest struct {
	Amount    string `json:"amount"`
	Asset     string `json:"asset"`
	Method    string `json:"method" validate:"required,oneof=atm agent bank"`
	Provider  string `json:"provider" validate:"max=100"`
	Reference string `json:"reference"`
	PIN       string `json:"pin"`
}

func (m *moneyAPI) cashOut(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	var req cashOutRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	if err := checkReference(req.Reference); err != nil {
		return err
	}
	asset, amount, err := m.assetAmount(r.Context(), req.Asset, req.Amount)
	if err != nil {
		return err
	}
	auth, err := movementAuth(r, p, req.PIN)
	if err != nil {
		return err
	}
	res, err := m.s.db.CashOut(r.Context(), storage.CashOutRequest{
		Sender: storage.Party{UserID: p.UserID, Region: p.Region}, Asset: asset.Symbol, Amount: amount,
		Method: req.Method, Provider: req.Provider, Reference: req.Reference, Fees: m.fees, Auth: auth,
	})
	if err != nil {
		return err
	}
	tx := toTransactionJSON(res.Transaction)
	respondMovement(w, r, res, map[string]any{"transaction": tx, "cash_out": tx.CashOut})
	return nil
}

// --- POST /transactions/exchange ---

type exchangeRequest struct {
	FromAsset string `json:"from_asset"`
	ToAsset   string `json:"to_asset"`
	Amount    string `json:"amount"`
	Reference string `json:"reference"`
	PIN       string `json:"pin"`
}

func (m *moneyAPI) exchange(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	var req exchangeRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkReference(req.Reference); err != nil {
		return err
	}
	from, err := m.assets.Get(r.Context(), req.FromAsset)
	if err != nil {
		return err
	}
	to, err := m.assets.Get(r.Context(), req.ToAsset)
	if err != nil {
		return err
	}
	if from.Symbol == to.Symbol {
		return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
			Detail: "Exchange between two different assets.", Fields: map[string]string{"to_asset": "differs from from_asset"}}
	}
	amount, err := parseAmount("amount", req.Amount, from)
	if err != nil {
		return err
	}
	// The quote is taken before the transaction: a provider may be a network call.
	rates, err := m.rates.Rates(r.Context())
	if err != nil {
		return err
	}
	rate, err := rates.Cross(from.Symbol, to.Symbol)
	if err != nil {
		return fmt.Errorf("%w: no rate for %s/%s", storage.ErrAssetUnavailable, from.Symbol, to.Symbol)
	}
	auth, err := movementAuth(r, p, req.PIN)
	if err != nil {
		return err
	}
	res, err := m.s.db.Exchange(r.Context(), storage.ExchangeRequest{
		User: storage.Party{UserID: p.UserID, Region: p.Region}, From: from.Symbol, To: to.Symbol,
		Amount: amount, Rate: rate, AsOf: rates.AsOf, Reference: req.Reference, Fees: m.fees, Auth: auth,
	})
	if err != nil {
		return err
	}
	respondMovement(w, r, res, toTransactionJSON(res.Transaction))
	return nil
}

// --- GET /transactions, GET /transactions/{id} ---

var (
	historyTypes     = map[string]bool{"transfer": true, "payment": true, "cash_out": true, "cash_in": true, "exchange": true}
	historyStatuses  = map[string]bool{"pending": true, "processing": true, "completed": true, "failed": true, "cancelled": true}
	historyDirection = map[string]bool{"incoming": true, "outgoing": true}
	symbolPattern    = regexp.MustCompile(`^[A-Z0-9]{2,10}$`)
)

// parseHistoryQuery reads the filters of GET /transactions. Every problem is reported per
// parameter (422 validation_failed); a cursor this server did not make is 400 invalid_cursor.
func parseHistoryQuery(q url.Values) (storage.HistoryFilter, error) {
	var f storage.HistoryFilter
	fields := map[string]string{}
	one := func(name string) string {
		v := q[name]
		if len(v) > 1 {
			fields[name] = "given more than once"
		}
		if len(v) == 0 {
			return ""
		}
		return v[0]
	}
	if v := one("type"); v != "" {
		if !historyTypes[v] {
			fields["type"] = "one of: transfer payment cash_out cash_in exchange"
		}
		f.Type = v
	}
	if v := one("status"); v != "" {
		if !historyStatuses[v] {
			fields["status"] = "one of: pending processing completed failed cancelled"
		}
		f.Status = v
	}
	if v := one("asset"); v != "" {
		if !symbolPattern.MatchString(v) {
			fields["asset"] = "an asset symbol such as USD"
		}
		f.Asset = v
	}
	if v := one("direction"); v != "" {
		if !historyDirection[v] {
			fields["direction"] = "one of: incoming outgoing"
		}
		f.Direction = v
	}
	for _, name := range []string{"from", "to"} {
		v := one(name)
		if v == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil || t.Year() < 2000 || t.Year() > 9999 {
			fields[name] = "an RFC 3339 time such as 2026-01-31T00:00:00Z"
			continue
		}
		if name == "from" {
			f.From = t
		} else {
			f.To = t
		}
	}
	if v := one("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			fields["limit"] = "a number from 1 to 100"
		}
		f.Limit = n
	}
	if len(fields) > 0 {
		return f, &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
			Detail: "Some query parameters are invalid.", Fields: fields}
	}
	if v := one("cursor"); v != "" {
		c, err := storage.DecodeCursor(v)
		if err != nil {
			return f, &Error{Status: http.StatusBadRequest, Code: "invalid_cursor",
				Detail: "The cursor is not one this API returned; start again without it."}
		}
		f.Cursor = &c
	}
	return f, nil
}

func (m *moneyAPI) listTransactions(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	f, err := parseHistoryQuery(r.URL.Query())
	if err != nil {
		return err
	}
	page, err := m.s.db.ListTransactions(r.Context(), storage.Party{UserID: p.UserID, Region: p.Region}, f)
	if err != nil {
		return err
	}
	items := make([]transactionJSON, 0, len(page.Items))
	for _, t := range page.Items {
		items = append(items, toTransactionJSON(t))
	}
	var next *string
	if page.Next != nil {
		s := page.Next.Encode()
		next = &s
	}
	respond(w, http.StatusOK, map[string]any{"items": items, "next_cursor": next})
	return nil
}

func (m *moneyAPI) getTransaction(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	id, err := uuid.Parse(mux.Vars(r)["id"])
	if err != nil {
		return Errorf(http.StatusNotFound, "not_found", "The transaction does not exist.")
	}
	t, err := m.s.db.GetTransaction(r.Context(), storage.Party{UserID: p.UserID, Region: p.Region}, id)
	if errors.Is(err, storage.ErrNotFound) {
		return &Error{Status: http.StatusNotFound, Code: "not_found", Detail: "The transaction does not exist.", Err: err}
	}
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, toTransactionJSON(t))
	return nil
}
