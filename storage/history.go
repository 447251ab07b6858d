package storage

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// HistoryFilter selects a caller's transactions. Zero fields do not filter.
type HistoryFilter struct {
	Type      string
	Status    string
	Asset     string
	Direction string    // incoming or outgoing
	From      time.Time // inclusive
	To        time.Time // exclusive
	Limit     int       // 1..100; 0 means 20
	Cursor    *Cursor
	ID        uuid.UUID
	Reference string // the caller's own reference
}

// Cursor is the position after the last item of a page: newest first, by (created_at, id).
type Cursor struct {
	CreatedAt time.Time
	ID        uuid.UUID
}

const cursorVersion = 1

// Encode makes the opaque cursor: base64url of version, microseconds since the epoch and id.
// Microseconds are what both engines store, so the cursor is exact.
func (c Cursor) Encode() string {
	var b [25]byte
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(c.CreatedAt.UnixMicro()))
	copy(b[9:], c.ID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ErrInvalidCursor: a cursor this server did not make.
var ErrInvalidCursor = errors.New("invalid cursor")

// DecodeCursor parses a cursor made by Encode.
func DecodeCursor(s string) (Cursor, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != 25 || b[0] != cursorVersion {
		return Cursor{}, ErrInvalidCursor
	}
	micros := int64(binary.BigEndian.Uint64(b[1:9]))
	if micros < 0 {
		return Cursor{}, ErrInvalidCursor
	}
	var id uuid.UUID
	copy(id[:], b[9:])
	return Cursor{CreatedAt: time.UnixMicro(micros).UTC(), ID: id}, nil
}

// Page is one page of history and the cursor of the next, or nil at the end.
type Page struct {
	Items []Transaction
	Next  *Cursor
}

// ListTransactions returns the caller's history, newest first, in one read-committed
// transaction (one statement) in the caller's home region: settled movements from the caller's
// own ledger entries (homed with the caller, so a cross-region transfer's recipient never reads
// another region) and open or cancelled cash-outs from the caller's own transaction rows.
func (db *DB) ListTransactions(ctx context.Context, caller Party, f HistoryFilter) (Page, error) {
	if f.Limit <= 0 {
		f.Limit = 20
	}
	if f.Limit > 100 {
		f.Limit = 100
	}
	want := f.Limit
	f.Limit++ // one more, to know whether there is a next page
	var page Page
	err := db.inTx(ctx, "list_transactions", readCommitted, func(tx pgx.Tx) error {
		q, args := historyQuery(caller, f)
		rows, err := tx.Query(ctx, q, args...)
		if err != nil {
			return err
		}
		items, err := db.scanHistory(rows, caller)
		if err != nil {
			return err
		}
		page = Page{Items: items}
		if len(items) > want {
			page.Items = items[:want]
			last := page.Items[want-1]
			page.Next = &Cursor{CreatedAt: last.CreatedAt, ID: last.ID}
		}
		return nil
	})
	return page, err
}

// GetTransaction returns one of the caller's transactions, or ErrNotFound when it is not the
// caller's (another user's transaction is indistinguishable from none).
func (db *DB) GetTransaction(ctx context.Context, caller Party, id uuid.UUID) (Transaction, error) {
	page, err := db.ListTransactions(ctx, caller, HistoryFilter{ID: id, Limit: 1})
	if err != nil {
		return Transaction{}, err
	}
	if len(page.Items) == 0 {
		return Transaction{}, fmt.Errorf("transaction %s: %w", id, ErrNotFound)
	}
	return page.Items[0], nil
}

// The two sources of a caller's history, with the same columns:
//   - settled movements, from the caller's ledger entries, joined to the transaction row only
//     when it lives in the caller's region too (always for what the caller initiated; for an
//     incoming transfer from another region the entry alone says what is shown). An exchange
//     shows once, by its outgoing leg.
//   - cash-outs not (yet) settled, which have no entries, from the caller's transaction rows.
//
// $1 region, $2 user.
const historyUnionSQL = `
SELECT e.transaction_id AS id, e.created_at, e.tx_type AS type,
       CASE WHEN e.amount < 0 THEN 'outgoing' ELSE 'incoming' END AS direction,
       CASE WHEN t.sender_id = $2 AND e.amount < 0 THEN t.amount ELSE abs(e.amount) END AS amount,
       CASE WHEN t.sender_id = $2 AND e.amount < 0 THEN t.asset_symbol ELSE e.asset_symbol END AS asset,
       CASE WHEN t.sender_id = $2 AND e.amount < 0 THEN t.fee ELSE 0 END AS fee,
       t.to_asset_symbol AS to_asset, t.to_amount, t.exchange_rate, t.rate_as_of,
       COALESCE(t.status, 'completed') AS status,
       CASE WHEN t.sender_id = $2 THEN t.reference END AS reference,
       e.note, e.counterparty_id, e.counterparty_display,
       COALESCE(t.completed_at, e.created_at) AS completed_at, t.created_at AS tx_created_at,
       c.method, c.provider, c.pickup_code_enc, c.expires_at, c.collected_at, c.cancelled_at
FROM ledger_entries e
LEFT JOIN transactions t ON t.region = $1 AND t.id = e.transaction_id
LEFT JOIN cash_out_details c ON c.region = $1 AND c.transaction_id = e.transaction_id AND t.sender_id = $2
WHERE e.region = $1 AND e.user_id = $2 AND NOT (e.tx_type = 'exchange' AND e.amount > 0){A}
UNION ALL
SELECT t.id, t.created_at, t.type, 'outgoing', t.amount, t.asset_symbol, t.fee,
       t.to_asset_symbol, t.to_amount, t.exchange_rate, t.rate_as_of, t.status, t.reference,
       t.note, NULL::uuid, NULL::bytea, t.completed_at, t.created_at,
       c.method, c.provider, c.pickup_code_enc, c.expires_at, c.collected_at, c.cancelled_at
FROM transactions t
LEFT JOIN cash_out_details c ON c.region = $1 AND c.transaction_id = t.id
WHERE t.region = $1 AND t.sender_id = $2 AND t.type = 'cash_out' AND t.status <> 'completed'{B}`

// historyQuery builds the history statement for f, with numbered parameters.
func historyQuery(caller Party, f HistoryFilter) (string, []any) {
	args := []any{caller.Region, caller.UserID}
	var where []string
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	if f.Type != "" {
		add("v.type = ?", f.Type)
	}
	if f.Status != "" {
		add("v.status = ?", f.Status)
	}
	if f.Asset != "" {
		add("v.asset = ?", f.Asset)
	}
	if f.Direction != "" {
		add("v.direction = ?", f.Direction)
	}
	if !f.From.IsZero() {
		add("v.created_at >= ?", f.From)
	}
	if !f.To.IsZero() {
		add("v.created_at < ?", f.To)
	}
	// One transaction, by id or by the caller's reference: the conditions go inside each branch,
	// where they use the entries' transaction index and the transactions' keys, so finding one
	// transaction does not read the caller's whole history (PostgreSQL does not push a qual
	// with a sub-select through UNION ALL).
	branchA, branchB := "", ""
	if f.ID != uuid.Nil {
		args = append(args, f.ID)
		n := len(args)
		branchA += fmt.Sprintf(" AND e.transaction_id = $%d", n)
		branchB += fmt.Sprintf(" AND t.id = $%d", n)
	}
	if f.Reference != "" {
		args = append(args, f.Reference)
		n := len(args)
		branchA += fmt.Sprintf(" AND e.transaction_id = (SELECT r.id FROM transactions r WHERE r.region = $1 AND r.sender_id = $2 AND r.reference = $%d)", n)
		branchB += fmt.Sprintf(" AND t.reference = $%d", n)
	}
	if c := f.Cursor; c != nil {
		args = append(args, c.CreatedAt, c.ID)
		n := len(args)
		where = append(where, fmt.Sprintf("(v.created_at < $%d OR (v.created_at = $%d AND v.id < $%d))", n-1, n-1, n))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 20
	}
	q := "SELECT v.id, v.created_at, v.type, v.direction, v.amount, v.asset, ad.decimals, v.fee, v.to_asset, tad.decimals, " +
		"v.to_amount, v.exchange_rate, v.rate_as_of, v.status, v.reference, v.note, v.counterparty_id, v.counterparty_display, " +
		"v.completed_at, v.method, v.provider, v.pickup_code_enc, v.expires_at, v.collected_at, v.cancelled_at\n" +
		"FROM (" + strings.NewReplacer("{A}", branchA, "{B}", branchB).Replace(historyUnionSQL) + ") v\n" +
		"LEFT JOIN supported_assets ad ON ad.symbol = v.asset\n" +
		"LEFT JOIN supported_assets tad ON tad.symbol = v.to_asset\n"
	if len(where) > 0 {
		q += "WHERE " + strings.Join(where, " AND ") + "\n"
	}
	q += fmt.Sprintf("ORDER BY v.created_at DESC, v.id DESC LIMIT %d", limit)
	return q, args
}

// scanHistory reads history rows, opening the counterparty copies (bound to the caller's
// entries) and pickup codes (shown to their owner while pending).
func (db *DB) scanHistory(rows pgx.Rows, caller Party) ([]Transaction, error) {
	defer rows.Close()
	var out []Transaction
	for rows.Next() {
		var (
			t                              Transaction
			decimals, toDecimals           *int
			toAsset, reference, note       *string
			cpID                           *uuid.UUID
			cpDisplay, codeEnc             []byte
			method, provider               *string
			expiresAt                      *time.Time
			collectedAt, cancelledAt, asOf *time.Time
			completedAt                    *time.Time
		)
		if err := rows.Scan(&t.ID, &t.CreatedAt, &t.Type, &t.Direction, &t.Amount, &t.Asset, &decimals, &t.Fee,
			&toAsset, &toDecimals, &t.ToAmount, &t.ExchangeRate, &asOf, &t.Status, &reference, &note, &cpID, &cpDisplay,
			&completedAt, &method, &provider, &codeEnc, &expiresAt, &collectedAt, &cancelledAt); err != nil {
			return nil, err
		}
		t.CreatedAt = t.CreatedAt.UTC()
		if decimals != nil {
			t.Decimals = *decimals
		}
		if toAsset != nil {
			t.ToAsset = *toAsset
		}
		if toDecimals != nil {
			t.ToDecimals = *toDecimals
		}
		if asOf != nil {
			u := asOf.UTC()
			t.RateAsOf = &u
		}
		if reference != nil {
			t.Reference = *reference
		}
		if note != nil {
			t.Note = *note
		}
		if t.Status == StatusCompleted && completedAt != nil {
			u := completedAt.UTC()
			t.CompletedAt = &u
		}
		if cpID != nil && cpDisplay != nil {
			raw, err := db.keys.Decrypt(cpDisplay, "ledger_entries", "counterparty_display", caller.UserID.String())
			if err != nil {
				return nil, err
			}
			cp := &Counterparty{UserID: *cpID}
			if err := json.Unmarshal(raw, cp); err != nil {
				return nil, fmt.Errorf("counterparty display of %s: %w", t.ID, err)
			}
			cp.UserID = *cpID
			t.Counterparty = cp
		}
		if method != nil && expiresAt != nil {
			co := &CashOut{Method: *method, ExpiresAt: expiresAt.UTC(), CollectedAt: utcPtr(collectedAt), CancelledAt: utcPtr(cancelledAt)}
			if provider != nil {
				co.Provider = *provider
			}
			if t.Status == StatusPending && codeEnc != nil {
				code, err := db.keys.DecryptString(codeEnc, "cash_out_details", "pickup_code_enc", caller.UserID.String())
				if err != nil {
					return nil, err
				}
				co.PickupCode = code
			}
			t.CashOut = co
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
