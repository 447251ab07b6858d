package storage

// The movement engine: transfers, cash-in, cash-out (hold, collect, cancel, expire) and
// exchange on a double-entry ledger (design.md, Money).
//
// Every movement is one exported method = one transaction = one retry unit. Inside it,
// statements are pipelined with pgx batches: one batch of reads (idempotency, sender state,
// recipient via the GLOBAL directory, both profiles), one batch of writes (balance updates in a
// fixed order, the transaction row, one ledger entry per side, the activity log, and the
// caller's view of the result). Transfers on PostgreSQL go further (transfers.go): BEGIN and
// COMMIT ride in those two batches, the session and PIN checks in the first, and concurrent
// transfers coalesce into one transaction, which is what keeps a hot merchant as fast as a cold
// one. Isolation: SERIALIZABLE on CockroachDB; on PostgreSQL the debiting movements run READ
// COMMITTED behind a lock on the debited user's wallet row (the argument is in transfers.go).
//
// Rules every movement keeps:
//   - idempotency by (region, sender_id, reference) with a SHA-256 fingerprint of the request;
//     the key is written in the same transaction as the balances, so an ambiguous commit retried
//     with the same reference can never apply twice (reference/security.md §3.3);
//   - debits are guarded updates (`AND available >= $amount`; no row = insufficient funds), and
//     the CHECK constraints are the last line of defence (security.md §4.2);
//   - balances are updated in (region, user_id, asset) order so concurrent movements lock rows
//     in the same order and do not deadlock;
//   - one statement never modifies asset_balances twice: each balance is its own UPDATE
//     (reference/cockroachdb.md §11);
//   - every statement on a regional table pins its region (a join pins it through the GLOBAL
//     directory's home_region, which is the row's region by definition);
//   - the entries of a transaction sum to zero per asset.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"
)

// Party is a user and the region their rows live in.
type Party struct {
	UserID uuid.UUID
	Region string
}

// Recipient names the other side of a transfer or cash-in: an E.164 phone number or a user id.
type Recipient struct {
	Phone  string // E.164, normalised by the caller
	UserID uuid.UUID
}

func (r Recipient) String() string {
	if r.UserID != uuid.Nil {
		return "user " + r.UserID.String()
	}
	return "phone"
}

// FeeRule is a fee: Fixed plus Percent of the amount, in the movement's asset.
type FeeRule struct {
	Fixed   decimal.Decimal
	Percent decimal.Decimal
}

// FeeSchedule maps a movement type ("transfer", "cash_out", "exchange"), or a type and asset
// ("transfer/EGP", which wins), to its fee. The zero schedule charges nothing.
type FeeSchedule map[string]FeeRule

// Fee returns the fee for a movement, rounded up to the asset's decimals (a fee is never less
// than the rule says).
func (f FeeSchedule) Fee(kind, asset string, amount decimal.Decimal, decimals int) decimal.Decimal {
	rule, ok := f[kind+"/"+asset]
	if !ok {
		rule, ok = f[kind]
	}
	if !ok {
		return decimal.Zero
	}
	fee := rule.Fixed.Add(amount.Mul(rule.Percent).Div(decimal.NewFromInt(100)))
	if fee.Sign() <= 0 {
		return decimal.Zero
	}
	return fee.RoundCeil(int32(decimals))
}

// ParseFeeSchedule reads a schedule from configuration: comma-separated rules
// "kind[/ASSET]=fixed[+percent%]" or "kind[/ASSET]=percent%", e.g.
// "transfer=0.10+1%,cash_out/EGP=5,exchange=0.5%". Empty is the zero schedule.
func ParseFeeSchedule(s string) (FeeSchedule, error) {
	out := FeeSchedule{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	kinds := map[string]bool{TypeTransfer: true, TypeCashOut: true, TypeExchange: true, "payment": true}
	for _, part := range strings.Split(s, ",") {
		key, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		kind, asset, _ := strings.Cut(key, "/")
		if !ok || val == "" || !kinds[kind] || asset != "" && !assetSymbol.MatchString(asset) {
			return nil, fmt.Errorf("fee rule %q: want kind[/ASSET]=fixed[+percent%%], kind one of transfer, cash_out, exchange, payment", part)
		}
		var rule FeeRule
		fixed, pct := val, ""
		if f, p, ok := strings.Cut(val, "+"); ok {
			if f == "" || p == "" {
				return nil, fmt.Errorf("fee rule %q: want fixed+percent%%", part)
			}
			fixed, pct = f, p
		} else if strings.HasSuffix(val, "%") {
			fixed, pct = "", val
		}
		var err error
		if fixed != "" {
			if rule.Fixed, err = decimal.NewFromString(fixed); err != nil || rule.Fixed.Sign() < 0 || !plainNumber.MatchString(fixed) {
				return nil, fmt.Errorf("fee rule %q: fixed part %q is not a non-negative decimal", part, fixed)
			}
		}
		if pct != "" {
			num := strings.TrimSuffix(pct, "%")
			if rule.Percent, err = decimal.NewFromString(num); err != nil || num == pct || !plainNumber.MatchString(num) ||
				rule.Percent.GreaterThan(decimal.NewFromInt(100)) {
				return nil, fmt.Errorf("fee rule %q: percent part %q is not a decimal percentage from 0%% to 100%%", part, pct)
			}
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("fee rule %q: %s given twice", part, key)
		}
		out[key] = rule
	}
	return out, nil
}

var (
	assetSymbol = regexp.MustCompile(`^[A-Z0-9]{2,10}$`)
	plainNumber = regexp.MustCompile(`^[0-9]+(\.[0-9]+)?$`)
)

// Transaction types and statuses as stored and shown.
const (
	TypeTransfer = "transfer"
	TypeCashOut  = "cash_out"
	TypeCashIn   = "cash_in"
	TypeExchange = "exchange"

	StatusPending   = "pending"
	StatusCompleted = "completed"
	StatusCancelled = "cancelled"
)

// Transaction is a movement as one party sees it (api.md, Transactions).
type Transaction struct {
	ID           uuid.UUID
	Reference    string // the caller's own reference; empty when someone else initiated it
	Type         string
	Status       string
	Direction    string // incoming or outgoing, seen from the caller
	Amount       decimal.Decimal
	Asset        string
	Decimals     int
	Fee          decimal.Decimal
	ToAsset      string
	ToAmount     decimal.NullDecimal
	ToDecimals   int
	ExchangeRate decimal.NullDecimal
	RateAsOf     *time.Time
	Note         string
	Counterparty *Counterparty
	CreatedAt    time.Time
	CompletedAt  *time.Time
	CashOut      *CashOut
}

// Counterparty is the other party as shown: first name and last initial, masked phone. It is a
// copy made when the movement happened, so history never reads another region.
type Counterparty struct {
	UserID      uuid.UUID
	DisplayName string `json:"display_name"`
	Phone       string `json:"phone"`
}

// CashOut is what the sender needs to collect a cash-out.
type CashOut struct {
	Method      string
	Provider    string
	PickupCode  string // only while pending
	ExpiresAt   time.Time
	CollectedAt *time.Time
	CancelledAt *time.Time
}

// Result is a movement's outcome: the transaction as the initiator sees it, and whether it was
// a replay of an earlier request with the same reference and body.
type Result struct {
	Transaction
	Replayed bool
}

// TransferRequest moves Amount of Asset from Sender to Recipient.
type TransferRequest struct {
	Sender    Party
	Recipient Recipient
	Asset     string
	Amount    decimal.Decimal
	Reference string
	Note      string
	Fees      FeeSchedule
	// Auth, when set, is checked with the transfer: the session must be live and the PIN right
	// (MovementAuth). The API sets it; internal callers that checked already leave it nil.
	Auth *MovementAuth
}

// CashOutRequest holds Amount (plus fee) for pickup.
type CashOutRequest struct {
	Sender    Party
	Asset     string
	Amount    decimal.Decimal
	Method    string // atm, agent, bank
	Provider  string
	Reference string
	Fees      FeeSchedule
	// TTL is how long the pickup code is valid (default 24 hours).
	TTL time.Duration
	// Auth, from the API, is checked with the movement (authorized); nil checks nothing.
	Auth *MovementAuth
}

// ExchangeRequest converts Amount of From into To at Rate (1 From = Rate To), quoted at AsOf
// by a RateProvider before the transaction.
type ExchangeRequest struct {
	User      Party
	From, To  string
	Amount    decimal.Decimal
	Rate      decimal.Decimal
	AsOf      time.Time
	Reference string
	Fees      FeeSchedule
	// Auth, from the API, is checked with the movement (authorized); nil checks nothing.
	Auth *MovementAuth
}

// CashInRequest funds a wallet from outside (an operator). The initiator is the recipient's
// region's issuance account, so the transaction is homed with the recipient.
type CashInRequest struct {
	Recipient Recipient
	Asset     string
	Amount    decimal.Decimal
	Reference string
	Note      string
}

// debitIsolation is the isolation of a movement that debits a user's available balance:
// READ COMMITTED behind the wallet lock on PostgreSQL (transfers.go argues why that is as safe
// as SERIALIZABLE there, and it stops hot rows from aborting), SERIALIZABLE on CockroachDB.
func (db *DB) debitIsolation() isolation {
	if db.engine == Postgres {
		return readCommitted
	}
	return serializable
}

// lockSender is the statement that serializes a user's debits: on PostgreSQL it also holds the
// user row KEY SHARE against a relocation (transfers.go); CockroachDB runs these movements
// SERIALIZABLE, where the wallet lock alone makes writers queue.
func (db *DB) lockSender() string {
	if db.engine == Postgres {
		return lockSenderSQL
	}
	return lockWalletSQL
}

// DefaultCashOutTTL is how long a pickup code is valid unless the request says otherwise.
const DefaultCashOutTTL = 24 * time.Hour

// Transfer moves money between two users in one serializable transaction that may be retried.
// Returns ErrIdempotencyConflict, ErrRecipientNotFound, ErrInvalidRecipient, ErrInvalidAmount,
// ErrAssetUnavailable, ErrWalletFrozen, ErrDailyLimitExceeded, ErrInsufficientFunds, ErrNotFound
// (no sender wallet).
//
// A transfer between users homed in different regions (design.md, Regions and PII): the
// transaction row and the sender's balance and entry live in the sender's region, the
// recipient's balance and entry in the recipient's; the recipient is found through the GLOBAL
// phone directory, a local read everywhere. On CockroachDB the transaction therefore writes two
// regions: the recipient's balance UPDATE and ledger INSERT go to leaseholders in the
// recipient's region, and the commit waits until those writes are replicated there. That is at
// least one inter-region round trip, in practice about two (roughly 100-300 ms between the Gulf,
// Europe and the US), where a transfer inside one region, served by a pod in that region, pays
// none, and the recipient's balance row stays locked for that long (reference/cockroachdb.md §7.5; the numbers are inference, not
// measured). Under a REGION survival goal every write pays a round trip to another region anyway
// (§1.1). It is acceptable: it is one movement between two people in different places, it
// stays serializable and correct, it costs once per transfer, and afterwards each party reads
// balance and history in their own region without fanning out (each party's ledger entry carries
// the copy the history shows). What would not be acceptable, and is avoided, is making every
// transfer or read cross regions: a global UNIQUE check, a foreign key to the recipient's row
// (transactions.recipient_id has none), or a history that joins the other party's rows.
func (db *DB) Transfer(ctx context.Context, req TransferRequest) (Result, error) {
	if req.Recipient.UserID != uuid.Nil && req.Recipient.UserID == req.Sender.UserID {
		return Result{}, fmt.Errorf("%w: cannot send to yourself", ErrInvalidRecipient)
	}
	var bidx []byte
	if req.Recipient.UserID == uuid.Nil {
		bidx = db.keys.BlindIndex("phone", req.Recipient.Phone)
	}
	batched := db.engine == Postgres && !db.serialTransfers
	return db.authorized(ctx, req.Sender, req.Auth, batched, func(auth *MovementAuth) (Result, error) {
		req.Auth = auth
		if batched {
			return db.transferPostgres(ctx, req, bidx)
		}
		return db.idempotent(ctx, func() (Result, error) {
			var res Result
			err := db.inTx(ctx, "transfer", serializable, func(tx pgx.Tx) error {
				var err error
				res, err = db.transferTx(ctx, tx, req, bidx)
				return err
			})
			return res, err
		})
	})
}

func (db *DB) transferTx(ctx context.Context, tx pgx.Tx, req TransferRequest, bidx []byte) (Result, error) {
	s := req.Sender
	b := &pgx.Batch{}
	// The sender's wallet lock first: one sender's movements queue instead of retrying.
	b.Queue(lockWalletSQL, s.Region, s.UserID)
	b.Queue(findReferenceSQL, s.Region, s.UserID, req.Reference)
	b.Queue(senderStateSQL, s.Region, s.UserID, req.Asset)
	queueRecipient(b, req.Recipient, bidx, req.Asset)
	br := tx.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return Result{}, err
	}
	existing, err := scanReference(br.QueryRow())
	if err != nil {
		br.Close()
		return Result{}, err
	}
	sender, err := scanSenderState(br.QueryRow())
	if err != nil {
		br.Close()
		return Result{}, fmt.Errorf("sender %s: %w", s.UserID, err)
	}
	rcpt, rerr := scanRecipient(br.QueryRow())
	if err := br.Close(); err != nil {
		return Result{}, err
	}
	if rerr != nil && !errors.Is(rerr, ErrRecipientNotFound) {
		return Result{}, rerr
	}

	// Idempotency first: a replay answers even if the balance, the limits or the recipient
	// changed since (a recipient who left since is the one the transaction names).
	recipientID := rcpt.userID
	if recipientID == uuid.Nil {
		recipientID = req.Recipient.UserID
	}
	if recipientID == uuid.Nil && existing.recipient != nil {
		recipientID = *existing.recipient
	}
	hash := requestHash(TypeTransfer, req.Asset, req.Amount.String(), recipientID.String(), req.Note)
	if existing.found {
		return db.replay(ctx, tx, s, req.Reference, existing.hash, hash)
	}
	if rerr != nil {
		return Result{}, rerr
	}
	if rcpt.userID == s.UserID {
		return Result{}, fmt.Errorf("%w: cannot send to yourself", ErrInvalidRecipient)
	}
	if !rcpt.canReceive() {
		return Result{}, fmt.Errorf("%w: the recipient's wallet cannot receive", ErrInvalidRecipient)
	}
	if err := sender.check(req.Asset, req.Amount); err != nil {
		return Result{}, err
	}
	fee := req.Fees.Fee(TypeTransfer, req.Asset, req.Amount, sender.decimals)
	debit := req.Amount.Add(fee)
	if err := sender.checkLimit(debit); err != nil {
		return Result{}, err
	}

	fees := Party{SystemUserID(s.Region, SystemFees), s.Region}
	rp := Party{rcpt.userID, rcpt.region}
	senderView, err := db.display(rcpt.userID, rcpt.profile, s.UserID)
	if err != nil {
		return Result{}, err
	}
	recipientView, err := db.display(s.UserID, sender.profile, rcpt.userID)
	if err != nil {
		return Result{}, err
	}
	m := movement{
		ref:    txRef{s.Region, s.UserID, req.Reference},
		viewer: s,
		insert: &txInsert{hash: hash, recipient: &rcpt.userID, typ: TypeTransfer, status: StatusCompleted,
			amount: req.Amount, asset: req.Asset, fee: fee, note: req.Note},
		ops: []balanceOp{
			{party: s, asset: req.Asset, kind: opDebit, amount: debit},
			{party: rp, asset: req.Asset, kind: opAdjust, amount: req.Amount},
		},
		entries: []entry{
			{party: s, asset: req.Asset, amount: debit.Neg(), cpID: &rcpt.userID, cpDisplay: senderView},
			{party: rp, asset: req.Asset, amount: req.Amount, cpID: &s.UserID, cpDisplay: recipientView},
		},
		activity: []activity{{party: s, action: "transfer_sent"}},
	}
	if !rcpt.hasBalance {
		m.ensure = append(m.ensure, ensureBalance{party: rp, walletID: rcpt.walletID, asset: req.Asset})
	}
	if fee.Sign() > 0 {
		m.ops = append(m.ops, balanceOp{party: fees, asset: req.Asset, kind: opAdjust, amount: fee})
		m.entries = append(m.entries, entry{party: fees, asset: req.Asset, amount: fee, cpID: &s.UserID})
	}
	t, err := db.apply(ctx, tx, m)
	return Result{Transaction: t}, err
}

// CashOut holds the amount and fee (available → pending) and issues a pickup code, in one
// serializable transaction that may be retried. No ledger entry is written until it settles:
// the total does not change. Returns the errors of Transfer but the recipient ones.
func (db *DB) CashOut(ctx context.Context, req CashOutRequest) (Result, error) {
	ttl := req.TTL
	if ttl <= 0 {
		ttl = DefaultCashOutTTL
	}
	// Made before the closure so that a retry issues the same code.
	code, err := pickupCode()
	if err != nil {
		return Result{}, err
	}
	codeEnc, err := db.keys.EncryptString(code, "cash_out_details", "pickup_code_enc", req.Sender.UserID.String())
	if err != nil {
		return Result{}, err
	}
	return db.authorized(ctx, req.Sender, req.Auth, db.engine == Postgres, func(auth *MovementAuth) (Result, error) {
		return db.idempotent(ctx, func() (Result, error) { return db.cashOutOnce(ctx, req, auth, codeEnc, ttl) })
	})
}

func (db *DB) cashOutOnce(ctx context.Context, req CashOutRequest, auth *MovementAuth, codeEnc []byte, ttl time.Duration) (Result, error) {
	var res Result
	err := db.inTx(ctx, "cash_out", db.debitIsolation(), func(tx pgx.Tx) error {
		s := req.Sender
		b := &pgx.Batch{}
		db.queueSenderReads(b, s, req.Reference, req.Asset, auth)
		br := tx.SendBatch(ctx, b)
		rd, err := db.scanSenderReads(br, s, auth)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("sender %s: %w", s.UserID, err)
		}
		if err := db.touchSession(ctx, tx, s, auth, rd.touch); err != nil {
			return err
		}
		existing, sender := rd.existing, rd.sender
		hash := requestHash(TypeCashOut, req.Asset, req.Amount.String(), req.Method, req.Provider)
		if existing.found {
			res, err = db.replay(ctx, tx, s, req.Reference, existing.hash, hash)
			return err
		}
		if err := sender.check(req.Asset, req.Amount); err != nil {
			return err
		}
		fee := req.Fees.Fee(TypeCashOut, req.Asset, req.Amount, sender.decimals)
		hold := req.Amount.Add(fee)
		if err := sender.checkLimit(hold); err != nil {
			return err
		}
		res.Transaction, err = db.apply(ctx, tx, movement{
			ref:    txRef{s.Region, s.UserID, req.Reference},
			viewer: s,
			insert: &txInsert{hash: hash, typ: TypeCashOut, status: StatusPending,
				amount: req.Amount, asset: req.Asset, fee: fee},
			cashOut:  &cashOutInsert{method: req.Method, provider: req.Provider, codeEnc: codeEnc, ttl: ttl},
			ops:      []balanceOp{{party: s, asset: req.Asset, kind: opHold, amount: hold}},
			activity: []activity{{party: s, action: "cash_out_requested"}},
		})
		return err
	})
	return res, err
}

// Exchange converts between two assets of the caller's wallet at req.Rate, against the
// region's issuance account (so each asset's entries sum to zero), in one serializable
// transaction that may be retried. The rate and its time are stored on the transaction. The
// amount received is rounded down to the target asset's decimals. Returns the errors of
// CashOut.
func (db *DB) Exchange(ctx context.Context, req ExchangeRequest) (Result, error) {
	if req.From == req.To {
		return Result{}, fmt.Errorf("%w: exchange needs two different assets", ErrInvalidAmount)
	}
	if req.Rate.Sign() <= 0 {
		return Result{}, fmt.Errorf("%w: no rate for %s/%s", ErrAssetUnavailable, req.From, req.To)
	}
	return db.authorized(ctx, req.User, req.Auth, db.engine == Postgres, func(auth *MovementAuth) (Result, error) {
		return db.idempotent(ctx, func() (Result, error) { return db.exchangeOnce(ctx, req, auth) })
	})
}

func (db *DB) exchangeOnce(ctx context.Context, req ExchangeRequest, auth *MovementAuth) (Result, error) {
	var res Result
	err := db.inTx(ctx, "exchange", db.debitIsolation(), func(tx pgx.Tx) error {
		u := req.User
		b := &pgx.Batch{}
		db.queueSenderReads(b, u, req.Reference, req.From, auth)
		b.Queue(targetAssetSQL, u.Region, u.UserID, req.To)
		br := tx.SendBatch(ctx, b)
		rd, err := db.scanSenderReads(br, u, auth)
		if err != nil {
			br.Close()
			return fmt.Errorf("user %s: %w", u.UserID, err)
		}
		existing, sender := rd.existing, rd.sender
		var toDecimals int
		var toActive, toHasBalance bool
		err = br.QueryRow().Scan(&toDecimals, &toActive, &toHasBalance)
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("%w: %s", ErrAssetUnavailable, req.To)
		}
		if err != nil {
			return err
		}
		if err := db.touchSession(ctx, tx, u, auth, rd.touch); err != nil {
			return err
		}
		hash := requestHash(TypeExchange, req.From, req.Amount.String(), req.To)
		if existing.found {
			res, err = db.replay(ctx, tx, u, req.Reference, existing.hash, hash)
			return err
		}
		if !toActive {
			return fmt.Errorf("%w: %s", ErrAssetUnavailable, req.To)
		}
		if err := sender.check(req.From, req.Amount); err != nil {
			return err
		}
		fee := req.Fees.Fee(TypeExchange, req.From, req.Amount, sender.decimals)
		debit := req.Amount.Add(fee)
		if err := sender.checkLimit(debit); err != nil {
			return err
		}
		toAmount := req.Amount.Mul(req.Rate).RoundFloor(int32(toDecimals))
		if toAmount.Sign() <= 0 {
			return fmt.Errorf("%w: the amount buys nothing at this rate", ErrInvalidAmount)
		}
		iss := Party{SystemUserID(u.Region, SystemIssuance), u.Region}
		asOf := req.AsOf
		m := movement{
			ref:    txRef{u.Region, u.UserID, req.Reference},
			viewer: u,
			insert: &txInsert{hash: hash, typ: TypeExchange, status: StatusCompleted, amount: req.Amount,
				asset: req.From, fee: fee, toAsset: req.To, toAmount: &toAmount, rate: &req.Rate, rateAsOf: &asOf},
			ops: []balanceOp{
				{party: u, asset: req.From, kind: opDebit, amount: debit},
				{party: u, asset: req.To, kind: opAdjust, amount: toAmount},
				{party: iss, asset: req.From, kind: opAdjust, amount: req.Amount},
				{party: iss, asset: req.To, kind: opAdjust, amount: toAmount.Neg()},
			},
			entries: []entry{
				{party: u, asset: req.From, amount: debit.Neg()},
				{party: u, asset: req.To, amount: toAmount},
				{party: iss, asset: req.From, amount: req.Amount, cpID: &u.UserID},
				{party: iss, asset: req.To, amount: toAmount.Neg(), cpID: &u.UserID},
			},
			activity: []activity{{party: u, action: "exchange"}},
		}
		if !toHasBalance {
			m.ensure = append(m.ensure, ensureBalance{party: u, asset: req.To})
		}
		if fee.Sign() > 0 {
			fees := Party{SystemUserID(u.Region, SystemFees), u.Region}
			m.ops = append(m.ops, balanceOp{party: fees, asset: req.From, kind: opAdjust, amount: fee})
			m.entries = append(m.entries, entry{party: fees, asset: req.From, amount: fee, cpID: &u.UserID})
		}
		res.Transaction, err = db.apply(ctx, tx, m)
		return err
	})
	return res, err
}

// CashIn credits a wallet from the issuance account of the recipient's home region (money
// entering 7awel), idempotent by (that account, reference), in one transaction that may be
// retried. The result is the issuance account's view. Returns ErrRecipientNotFound,
// ErrInvalidRecipient (wallet frozen), ErrInvalidAmount, ErrAssetUnavailable,
// ErrIdempotencyConflict.
//
// The region's issuance balance is a hot row: every cash-in of the region writes it. Under
// SERIALIZABLE on PostgreSQL, concurrent cash-ins aborted each other on it with 40001 (hundreds a
// minute in make bench's setup, eight at a time). On PostgreSQL a cash-in therefore runs READ
// COMMITTED, as transfers do: nothing it decides on can be invalidated by a concurrent writer.
// The issuance balance may go negative (no guard to re-check) and its UPDATE, x = x + delta,
// re-applies to the newest version after waiting; the recipient's balance is only credited;
// the reference is backed by its unique index (a twin loses on the INSERT and replays); and the
// recipient's user row is held KEY SHARE from the first read (recipientLockedColumns), so a
// relocation cannot move the recipient's rows between our read and our write. CockroachDB keeps
// SERIALIZABLE (reference/cockroachdb.md §7.4).
func (db *DB) CashIn(ctx context.Context, req CashInRequest) (Result, error) {
	var bidx []byte
	if req.Recipient.UserID == uuid.Nil {
		bidx = db.keys.BlindIndex("phone", req.Recipient.Phone)
	}
	iso := serializable
	if db.engine == Postgres {
		iso = readCommitted
	}
	return db.idempotent(ctx, func() (Result, error) {
		var res Result
		err := db.inTx(ctx, "cash_in", iso, func(tx pgx.Tx) error {
			// The recipient's region decides the initiator, so the recipient is read first.
			b := &pgx.Batch{}
			if db.engine == Postgres {
				queueRecipientLocked(b, req.Recipient, bidx, req.Asset)
			} else {
				queueRecipient(b, req.Recipient, bidx, req.Asset)
			}
			b.Queue(getAssetSQL, req.Asset)
			br := tx.SendBatch(ctx, b)
			rcpt, err := scanRecipient(br.QueryRow())
			if errors.Is(err, ErrRecipientNotFound) && db.engine == Postgres {
				br.Close()
				if rcpt, err = relockRecipient(ctx, tx, req.Recipient, bidx, req.Asset); err != nil {
					return err
				}
				b = &pgx.Batch{}
				b.Queue(getAssetSQL, req.Asset)
				br = tx.SendBatch(ctx, b)
			} else if err != nil {
				br.Close()
				return err
			}
			var a Asset
			var network *string
			err = br.QueryRow().Scan(&a.Symbol, &a.Name, &a.AssetType, &a.Decimals, &a.MinAmount, &a.MaxAmount,
				&network, &a.IsActive, &a.SortOrder)
			if cerr := br.Close(); err == nil {
				err = cerr
			}
			if errors.Is(err, pgx.ErrNoRows) || err == nil && !a.IsActive {
				return fmt.Errorf("%w: %s", ErrAssetUnavailable, req.Asset)
			}
			if err != nil {
				return err
			}
			iss := Party{SystemUserID(rcpt.region, SystemIssuance), rcpt.region}
			existing, twin, err := db.findCashIn(ctx, tx, iss, rcpt.userID, req.Reference)
			if err != nil {
				return err
			}
			if twin != nil {
				iss = *twin
			}
			hash := requestHash(TypeCashIn, req.Asset, req.Amount.String(), rcpt.userID.String(), req.Note)
			if existing.found {
				res, err = db.replay(ctx, tx, iss, req.Reference, existing.hash, hash)
				return err
			}
			if err := checkAmount(req.Amount, a.Decimals, a.MinAmount, a.MaxAmount); err != nil {
				return err
			}
			if !rcpt.canReceive() {
				return fmt.Errorf("%w: the wallet cannot receive", ErrInvalidRecipient)
			}
			rp := Party{rcpt.userID, rcpt.region}
			view, err := db.display(rcpt.userID, rcpt.profile, iss.UserID)
			if err != nil {
				return err
			}
			m := movement{
				ref:    txRef{iss.Region, iss.UserID, req.Reference},
				viewer: iss,
				insert: &txInsert{hash: hash, recipient: &rcpt.userID, typ: TypeCashIn, status: StatusCompleted,
					amount: req.Amount, asset: req.Asset, note: req.Note},
				ops: []balanceOp{
					{party: iss, asset: req.Asset, kind: opAdjust, amount: req.Amount.Neg()},
					{party: rp, asset: req.Asset, kind: opAdjust, amount: req.Amount},
				},
				entries: []entry{
					{party: iss, asset: req.Asset, amount: req.Amount.Neg(), cpID: &rcpt.userID, cpDisplay: view},
					{party: rp, asset: req.Asset, amount: req.Amount},
				},
				activity: []activity{{party: rp, action: "cash_in_received"}},
			}
			if !rcpt.hasBalance {
				m.ensure = append(m.ensure, ensureBalance{party: rp, walletID: rcpt.walletID, asset: req.Asset})
			}
			res.Transaction, err = db.apply(ctx, tx, m)
			return err
		})
		return res, err
	})
}

// findCashInTwinSQL finds a cash-in of this reference to this recipient under another region's
// issuance account.
const findCashInTwinSQL = `
SELECT request_hash, recipient_id FROM transactions
WHERE region = $1 AND sender_id = $2 AND reference = $3 AND type = 'cash_in' AND recipient_id = $4`

// findCashIn looks the cash-in's reference up under the issuance account of the recipient's home
// region (iss), and, in the same round trip, under every other region's for a cash-in to the
// same recipient (twin: the issuance account where it was found). A cash-in is homed with the
// issuance account of the region its recipient lived in when it committed, and a relocation
// moves the recipient but not the cash-ins it received; without the second lookup, a cash-in
// whose answer was lost (an ambiguous commit, a timeout) and that the operator retried after the
// recipient moved would be credited a second time. A twin to another recipient is another
// region's use of the reference and is ignored, as it always was; a twin to this recipient wins
// over a home row of another recipient (the reference used again in the new home after the
// move), so that the retry is still replayed rather than refused as a conflict. On PostgreSQL the lookups run
// after the recipient's user row is held KEY SHARE, so a relocation cannot commit between them
// and the write; under SERIALIZABLE (CockroachDB) a concurrent twin aborts one of the two. The
// price on CockroachDB is a point read of each other region per cash-in, an operator call, not
// a hot path (transfers never pay it).
func (db *DB) findCashIn(ctx context.Context, tx pgx.Tx, iss Party, recipient uuid.UUID, reference string) (refState, *Party, error) {
	b := &pgx.Batch{}
	b.Queue(findReferenceSQL, iss.Region, iss.UserID, reference)
	var others []Party
	for _, region := range db.regions.Names() {
		if region != iss.Region {
			o := Party{SystemUserID(region, SystemIssuance), region}
			others = append(others, o)
			b.Queue(findCashInTwinSQL, o.Region, o.UserID, reference, recipient)
		}
	}
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	home, err := scanReference(br.QueryRow())
	if err != nil {
		return home, nil, err
	}
	var twin *Party
	var found refState
	for i := range others {
		r, err := scanReference(br.QueryRow())
		if err != nil {
			return r, nil, err
		}
		if r.found && twin == nil {
			found, twin = r, &others[i]
		}
	}
	if err := br.Close(); err != nil {
		return home, nil, err
	}
	// The home row wins when it is this recipient's; a twin to this recipient wins over a home
	// row of another recipient (the reference was used again in the new home after the move:
	// the retry is still this recipient's cash-in, not a conflict).
	if twin != nil && (!home.found || home.recipient == nil || *home.recipient != recipient) {
		return found, twin, nil
	}
	return home, nil, nil
}

// CollectCashOut settles a pending cash-out: the held money leaves (pending and total go down)
// against the issuance account, the fee goes to the fee account, with ledger entries, in one
// transaction that may be retried (isolation: settleCashOut). The cash-out is found by id in the serving
// region first, then in the others (operators do not know where it is homed; this is not a hot
// path). Returns the sender's view; ErrNotFound, ErrCashOutNotPending.
func (db *DB) CollectCashOut(ctx context.Context, id uuid.UUID, serving string) (Transaction, error) {
	return db.settleCashOut(ctx, id, serving, true, time.Time{})
}

// CancelCashOut returns a pending cash-out's hold to the available balance, in one
// transaction that may be retried (isolation: settleCashOut). Returns ErrNotFound, ErrCashOutNotPending.
func (db *DB) CancelCashOut(ctx context.Context, id uuid.UUID, serving string) (Transaction, error) {
	return db.settleCashOut(ctx, id, serving, false, time.Time{})
}

// ExpireCashOuts cancels every open cash-out of every region whose pickup code expired at now,
// each in its own transaction, and returns how many it expired. The lead runs it
// periodically; running it in several processes at once is safe (a cash-out is released once).
func (db *DB) ExpireCashOuts(ctx context.Context, now time.Time) (int, error) {
	total := 0
	for _, region := range db.regions.Names() {
		n, err := db.ExpireCashOutsIn(ctx, region, now)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// ExpireCashOutsIn is ExpireCashOuts for one region.
func (db *DB) ExpireCashOutsIn(ctx context.Context, region string, now time.Time) (int, error) {
	expired := 0
	for {
		before := expired
		var ids []uuid.UUID
		err := db.inTx(ctx, "find_expired_cash_outs", readCommitted, func(tx pgx.Tx) error {
			ids = ids[:0]
			rows, err := tx.Query(ctx, expiredCashOutsSQL, region, now)
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var id uuid.UUID
				if err := rows.Scan(&id); err != nil {
					return err
				}
				ids = append(ids, id)
			}
			return rows.Err()
		})
		if err != nil {
			return expired, err
		}
		for _, id := range ids {
			_, err := db.settleCashOut(ctx, id, region, false, now)
			if errors.Is(err, ErrCashOutNotPending) {
				continue // settled concurrently
			}
			if err != nil {
				return expired, err
			}
			expired++
		}
		if len(ids) < expireBatch || expired == before {
			// A full batch that expired nothing was all settled concurrently; the next run
			// picks up anything left.
			return expired, nil
		}
	}
}

const expireBatch = 100

const expiredCashOutsSQL = `
SELECT transaction_id FROM cash_out_details
WHERE region = $1 AND expires_at <= $2 AND collected_at IS NULL AND cancelled_at IS NULL
ORDER BY expires_at LIMIT 100`

// settleCashOut collects (collect) or returns (!collect) a pending cash-out. A non-zero expireAt
// marks an expiry: it only applies if the code expired by then.
//
// Isolation: SERIALIZABLE on CockroachDB; READ COMMITTED on PostgreSQL, where a collect writes
// the region's issuance balance, the row every cash-in writes (READ COMMITTED there), and a
// SERIALIZABLE collect failed with 40001 whenever a cash-in had committed to it since the
// collect began. It is as safe: the transaction row is locked FOR UPDATE before anything is
// decided, so settlements of one cash-out (collect, cancel, expiry) are serialized and the
// status read after the lock is the latest; the hold's balance UPDATEs are guarded (pending >=
// the hold) and must each find their row; the issuance and fee balances are only adjusted. A
// relocation of the owner (which locks the user, wallet and balances, then moves the rows) is
// kept out by the owner's user row, held KEY SHARE before the transaction row is locked (the
// relocation's lock order, so the two wait for each other instead of deadlocking): it waits
// for the settlement, or the settlement waits for it and then finds the cash-out in its new
// region.
func (db *DB) settleCashOut(ctx context.Context, id uuid.UUID, serving string, collect bool, expireAt time.Time) (Transaction, error) {
	regions := db.regions.Names()
	sort.SliceStable(regions, func(i, j int) bool { return regions[i] == serving && regions[j] != serving })
	op := "cancel_cash_out"
	if collect {
		op = "collect_cash_out"
	}
	var out Transaction
	err := db.inTx(ctx, op, db.debitIsolation(), func(tx pgx.Tx) error {
		var (
			found             bool
			sender            Party
			reference, asset  string
			status            string
			amount, fee       decimal.Decimal
			expiresAt, heldOn time.Time
		)
		// Two passes: under READ COMMITTED a relocation that committed while the first pass
		// looked elsewhere can leave the row where the first pass already looked.
		for pass := 0; pass < 2 && !found; pass++ {
			for _, region := range regions {
				if db.engine == Postgres {
					// The owner's user row KEY SHARE first, the relocation's lock order (user,
					// then its rows): a relocation in progress is waited for, one that starts
					// waits for us, and neither deadlocks. No row: not here, or it moved.
					tag, err := tx.Exec(ctx, lockCashOutOwnerSQL, region, id)
					if err != nil {
						return err
					}
					if tag.RowsAffected() == 0 {
						continue
					}
				}
				err := tx.QueryRow(ctx, findCashOutSQL, region, id).Scan(&sender.UserID, &reference, &status,
					&amount, &fee, &asset, &expiresAt, &heldOn)
				if errors.Is(err, pgx.ErrNoRows) {
					continue
				}
				if err != nil {
					return err
				}
				found, sender.Region = true, region
				break
			}
		}
		if !found {
			return fmt.Errorf("cash-out %s: %w", id, ErrNotFound)
		}
		if status != StatusPending {
			return fmt.Errorf("%w: cash-out %s is %s", ErrCashOutNotPending, id, status)
		}
		now := time.Now()
		if !expireAt.IsZero() {
			now = expireAt
		}
		if collect && !expiresAt.After(now) {
			return fmt.Errorf("%w: cash-out %s expired", ErrCashOutNotPending, id)
		}
		if !expireAt.IsZero() && expiresAt.After(expireAt) {
			return fmt.Errorf("%w: cash-out %s has not expired", ErrCashOutNotPending, id)
		}
		held := amount.Add(fee)
		m := movement{
			ref:    txRef{sender.Region, sender.UserID, reference},
			viewer: sender,
			update: &txUpdate{id: id},
		}
		if collect {
			iss := Party{SystemUserID(sender.Region, SystemIssuance), sender.Region}
			m.update.status, m.update.collected = StatusCompleted, true
			m.ops = []balanceOp{
				{party: sender, asset: asset, kind: opCollect, amount: held},
				{party: iss, asset: asset, kind: opAdjust, amount: amount},
			}
			m.entries = []entry{
				{party: sender, asset: asset, amount: held.Neg()},
				{party: iss, asset: asset, amount: amount, cpID: &sender.UserID},
			}
			if fee.Sign() > 0 {
				fees := Party{SystemUserID(sender.Region, SystemFees), sender.Region}
				m.ops = append(m.ops, balanceOp{party: fees, asset: asset, kind: opAdjust, amount: fee})
				m.entries = append(m.entries, entry{party: fees, asset: asset, amount: fee, cpID: &sender.UserID})
			}
			m.activity = []activity{{party: sender, action: "cash_out_collected"}}
		} else {
			m.update.status = StatusCancelled
			m.ops = []balanceOp{{party: sender, asset: asset, kind: opRelease, amount: held, heldOn: heldOn}}
			action := "cash_out_cancelled"
			if !expireAt.IsZero() {
				action = "cash_out_expired"
				m.update.expired = true
			}
			m.activity = []activity{{party: sender, action: action}}
		}
		var err error
		out, err = db.apply(ctx, tx, m)
		return err
	})
	return out, err
}

// lockCashOutOwnerSQL holds the cash-out's owner's user row KEY SHARE (settleCashOut). A row
// that moved while we waited fails the join on its new version: no row.
const lockCashOutOwnerSQL = `
SELECT 1 FROM transactions t JOIN users u ON u.region = t.region AND u.id = t.sender_id
WHERE t.region = $1 AND t.id = $2 AND t.type = 'cash_out' FOR KEY SHARE OF u`

const findCashOutSQL = `
SELECT t.sender_id, t.reference, t.status, t.amount, t.fee, t.asset_symbol, c.expires_at,
       (t.created_at AT TIME ZONE 'UTC')::date
FROM transactions t
JOIN cash_out_details c ON c.region = $1 AND c.transaction_id = t.id
WHERE t.region = $1 AND t.id = $2 AND t.type = 'cash_out'
FOR UPDATE OF t`

// idempotent runs a movement; if it lost a race on its own reference (two requests with the same
// reference at once: a unique violation rather than a serialization failure), it runs once more,
// which then finds the winner's row and replays or refuses it.
func (db *DB) idempotent(ctx context.Context, run func() (Result, error)) (Result, error) {
	res, err := run()
	if errors.Is(err, ErrConflict) && strings.Contains(err.Error(), "transactions_region_sender_reference_key") {
		res, err = run()
	}
	return res, err
}

// replay answers a repeated reference: the same body gets the transaction as it is now, a
// different body ErrIdempotencyConflict.
func (db *DB) replay(ctx context.Context, tx pgx.Tx, viewer Party, reference string, stored, hash []byte) (Result, error) {
	if !bytes.Equal(stored, hash) {
		return Result{}, fmt.Errorf("%w: reference %q was used with another request", ErrIdempotencyConflict, reference)
	}
	q, args := historyQuery(viewer, HistoryFilter{Reference: reference, Limit: 1})
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return Result{}, err
	}
	items, err := db.scanHistory(rows, viewer)
	if err != nil {
		return Result{}, err
	}
	if len(items) == 0 {
		return Result{}, fmt.Errorf("replay of %q: %w", reference, ErrNotFound)
	}
	return Result{Transaction: items[0], Replayed: true}, nil
}

// requestHash is the request's fingerprint: SHA-256 over a versioned, NUL-separated list of the
// fields that define the movement (reference/security.md §3.3). Amounts are canonical decimal
// strings, so "10" and "10.00" are the same request.
func requestHash(fields ...string) []byte {
	h := sha256.New()
	h.Write([]byte("v1"))
	for _, f := range fields {
		h.Write([]byte{0})
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// pickupCode is 8 random digits from crypto/rand.
func pickupCode() (string, error) {
	n, err := rand.Int(rand.Reader, big.NewInt(100_000_000))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%08d", n.Int64()), nil
}

// checkAmount refuses what the asset does not allow: not positive, more decimals than the
// asset, outside [min, max]. The server checks the same first, for a clear answer; this is the
// data layer not trusting it.
func checkAmount(amount decimal.Decimal, decimals int, minS, maxS string) error {
	if amount.Sign() <= 0 {
		return fmt.Errorf("%w: must be positive", ErrInvalidAmount)
	}
	if !amount.Equal(amount.Truncate(int32(decimals))) {
		return fmt.Errorf("%w: at most %d decimals", ErrInvalidAmount, decimals)
	}
	lo, err1 := decimal.NewFromString(minS)
	hi, err2 := decimal.NewFromString(maxS)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("asset limits %q..%q: %v %v", minS, maxS, err1, err2)
	}
	if amount.LessThan(lo) || amount.GreaterThan(hi) {
		return fmt.Errorf("%w: must be between %s and %s", ErrInvalidAmount, lo, hi)
	}
	return nil
}

// --- reads of the first batch ---

const findReferenceSQL = `
SELECT request_hash, recipient_id FROM transactions WHERE region = $1 AND sender_id = $2 AND reference = $3`

type refState struct {
	found     bool
	hash      []byte
	recipient *uuid.UUID
}

// queueSenderReads queues what every debiting movement reads first: the sender's wallet lock
// (first of all, see transfers.go), the reference lookup, the sender's state in asset, and,
// given a MovementAuth (PostgreSQL, see authorized), the session and PIN rows it checks.
func (db *DB) queueSenderReads(b *pgx.Batch, s Party, reference, asset string, auth *MovementAuth) {
	b.Queue(db.lockSender(), s.Region, s.UserID)
	b.Queue(findReferenceSQL, s.Region, s.UserID, reference)
	b.Queue(senderStateSQL, s.Region, s.UserID, asset)
	if auth != nil {
		b.Queue(movementAuthSQL, s.Region, pgUUID(s.UserID), pgUUID(auth.SessionID))
	}
}

// senderReads is what queueSenderReads read.
type senderReads struct {
	existing refState
	sender   senderState
	// touch: the session's last_activity is over a minute old; the movement refreshes it.
	touch bool
}

// scanSenderReads reads the results of queueSenderReads, in order, and applies the
// MovementAuth it was given: its refusal comes first, before the sender's own errors. The
// caller closes br.
func (db *DB) scanSenderReads(br pgx.BatchResults, s Party, auth *MovementAuth) (senderReads, error) {
	var rd senderReads
	if _, err := br.Exec(); err != nil {
		return rd, err
	}
	var err error
	if rd.existing, err = scanReference(br.QueryRow()); err != nil {
		return rd, err
	}
	rd.sender, err = scanSenderState(br.QueryRow())
	if err != nil && !errors.Is(err, ErrNotFound) {
		return rd, err
	}
	if auth != nil {
		ss, pin, aerr := scanMovementAuth(br.QueryRow())
		if aerr != nil {
			return rd, aerr
		}
		if aerr := db.checkMovementAuth(s, auth, ss, pin); aerr != nil {
			return rd, aerr
		}
		rd.touch = ss.stale
	}
	return rd, err
}

// movementAuthSQL reads the session and PIN rows a MovementAuth is checked against, the columns
// transferSenderSQL reads for the same purpose: no row when there is no such user, and a
// session without its user's user_auth row counts as not found, as sessionLiveSQL's inner join
// has it.
const movementAuthSQL = `
SELECT ` + movementAuthColumns + `
FROM users u
LEFT JOIN user_auth ua ON ua.region = $1 AND ua.user_id = $2
LEFT JOIN user_sessions ss ON ss.region = $1 AND ss.id = $3 AND ss.user_id = $2
WHERE u.region = $1 AND u.id = $2`

// movementAuthColumns are the session's and the PIN's columns, over users u, user_auth ua and
// user_sessions ss, in the order movementAuthDest scans them (movementAuthSQL and
// transferSenderSQL alike).
const movementAuthColumns = `ss.id IS NOT NULL AND ua.user_id IS NOT NULL,
       COALESCE(ss.is_active AND ss.revoked_at IS NULL AND ss.expires_at > now(), false),
       u.status, ua.tokens_not_before, COALESCE(ss.last_activity < now() - INTERVAL '1 minute', false),
       ua.pin_hash, COALESCE(ua.pin_attempts, 0), ua.pin_locked_until, ua.pin_locked_until > now()`

func movementAuthDest(ss *sessionRow, pin *pinRow) []any {
	return []any{&ss.found, &ss.live, &ss.status, &ss.notBefore, &ss.stale,
		&pin.phc, &pin.attempts, &pin.lockedUntil, &pin.locked}
}

func scanMovementAuth(row pgx.Row) (sessionRow, pinRow, error) {
	var ss sessionRow
	var pin pinRow
	err := row.Scan(movementAuthDest(&ss, &pin)...)
	if errors.Is(err, pgx.ErrNoRows) {
		return sessionRow{}, pinRow{}, nil // not found: the session check refuses it
	}
	return ss, pin, err
}

// touchSession marks the session's last activity, at most once a minute, as SessionLive does.
func (db *DB) touchSession(ctx context.Context, tx pgx.Tx, s Party, auth *MovementAuth, stale bool) error {
	if auth == nil || !stale {
		return nil
	}
	_, err := tx.Exec(ctx, touchSessionSQL, s.Region, pgUUID(auth.SessionID))
	return err
}

// checkMovementAuth applies the session rules (sessionRow.check) and the PIN's fast path
// (pinFast: errPINSlowPath when the cache cannot decide), in the order the transfer batch does.
func (db *DB) checkMovementAuth(s Party, a *MovementAuth, ss sessionRow, pin pinRow) error {
	if err := ss.check(s.UserID, a.SessionID, a.IssuedAt); err != nil {
		return err
	}
	if a.pinChecked {
		return nil
	}
	return db.pinFast(s.UserID, a.PIN, pin)
}

// authorized runs a debiting movement (transfer, cash-out, exchange) under its MovementAuth,
// with the answers of SessionLive and VerifyPIN. When inMovement (PostgreSQL's READ COMMITTED
// movements) the checks ride in the movement's first round trip (run gets auth and passes it to
// its reads): a PIN the cache cannot decide takes VerifyPIN's counted slow path in its own
// transaction, and the movement runs again with the PIN settled. Otherwise (CockroachDB) the
// checks run first in their own transactions, so that the movement's SERIALIZABLE read set does
// not include the session row every request of the session touches; run then gets nil. A nil
// auth (internal callers) checks nothing.
func (db *DB) authorized(ctx context.Context, s Party, auth *MovementAuth, inMovement bool, run func(*MovementAuth) (Result, error)) (Result, error) {
	if auth == nil {
		return run(nil)
	}
	if !inMovement {
		if err := db.SessionLive(ctx, s.Region, s.UserID, auth.SessionID, auth.IssuedAt); err != nil {
			return Result{}, err
		}
		if err := db.VerifyPIN(ctx, s.UserID, s.Region, auth.PIN); err != nil {
			return Result{}, err
		}
		return run(nil)
	}
	a := *auth
	for {
		res, err := run(&a)
		if errors.Is(err, errPINSlowPath) && !a.pinChecked {
			if err := db.VerifyPIN(ctx, s.UserID, s.Region, a.PIN); err != nil {
				return Result{}, err
			}
			a.pinChecked = true
			continue
		}
		return res, err
	}
}

func scanReference(row pgx.Row) (refState, error) {
	var r refState
	err := row.Scan(&r.hash, &r.recipient)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, nil
	}
	r.found = err == nil
	return r, err
}

// senderStateSQL reads what a debit checks: wallet status, the asset's rules, the daily limit
// (NULL: the asset's maximum) and what was already sent today in the asset (spentTodaySQL), and
// the sender's profile for the recipient's copy of the display. One row; none without a wallet.
const senderStateSQL = `
SELECT w.status, a.decimals, a.min_amount::text, a.max_amount::text, a.is_active,
       COALESCE(s.daily_limit, a.max_amount), ` + spentTodaySQL + `,
       p.first_name_enc, p.last_name_enc, u.phone_enc
FROM wallets w
LEFT JOIN supported_assets a ON a.symbol = $3
LEFT JOIN user_settings s ON s.region = $1 AND s.user_id = $2
LEFT JOIN users u ON u.region = $1 AND u.id = $2
LEFT JOIN user_profiles p ON p.region = $1 AND p.user_id = $2
LEFT JOIN asset_balances b ON b.region = $1 AND b.user_id = $2 AND b.asset_symbol = $3
WHERE w.region = $1 AND w.user_id = $2`

// The daily limit's counter (migrations/000014_daily_spent): asset_balances.daily_spent is what
// the owner sent in the asset on the UTC day daily_spent_on, amount + fee of every transfer,
// payment, cash-out and exchange not failed or cancelled. "Today" is the day of the
// transaction's now(), the same instant its transactions row takes as created_at, so the
// counter and the rows it sums agree on which day a movement belongs to (Reconcile proves them
// equal), except for the midnight case addSpentSQL describes.
const todaySQL = `(now() AT TIME ZONE 'UTC')::date`

// spentTodaySQL is the counter as of today, read through the alias b of the balance row (NULL
// row or another day: nothing spent yet).
const spentTodaySQL = `COALESCE(CASE WHEN b.daily_spent_on = ` + todaySQL + ` THEN b.daily_spent END, 0)`

// addSpentSQL is the SET clause that adds the debit in parameter amount to today's counter,
// starting a new day over. The counter never goes back a day: "today" is the transaction's start, so a movement
// that began just before midnight and waited for a lock may write after one that began after
// it; its debit then counts for neither day's counter (it is a transaction of the earlier day,
// whose counter is gone) rather than wiping the new day's.
func addSpentSQL(amount string) string {
	return `daily_spent = ` + spentAfterSQL(amount) + `,
    daily_spent_on = ` + spentOnAfterSQL
}

// addSpentIfSQL is addSpentSQL for a statement that updates many rows, some of which had no
// debit: where amount is NULL the counter stays as it is.
func addSpentIfSQL(amount string) string {
	return `daily_spent = CASE WHEN ` + amount + ` IS NULL THEN daily_spent ELSE ` + spentAfterSQL(amount) + ` END,
    daily_spent_on = CASE WHEN ` + amount + ` IS NULL THEN daily_spent_on ELSE ` + spentOnAfterSQL + ` END`
}

// spentAfterSQL and spentOnAfterSQL are the counter and its day after a debit of amount (the
// rules of addSpentSQL).
func spentAfterSQL(amount string) string {
	return `CASE WHEN daily_spent_on = ` + todaySQL + ` THEN daily_spent + ` + amount + `
                       WHEN daily_spent_on > ` + todaySQL + ` THEN daily_spent ELSE ` + amount + ` END`
}

const spentOnAfterSQL = `CASE WHEN daily_spent_on > ` + todaySQL + ` THEN daily_spent_on ELSE ` + todaySQL + ` END`

type profile struct {
	first, last, phone []byte // ciphertexts
}

type senderState struct {
	walletStatus string
	assetFound   bool
	decimals     int
	min, max     string
	active       bool
	limit, spent decimal.Decimal
	profile      profile
}

func scanSenderState(row pgx.Row) (senderState, error) {
	var s senderState
	var decimals *int
	var minS, maxS *string
	var active *bool
	var limit decimal.NullDecimal
	err := row.Scan(&s.walletStatus, &decimals, &minS, &maxS, &active, &limit, &s.spent,
		&s.profile.first, &s.profile.last, &s.profile.phone)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, fmt.Errorf("wallet: %w", ErrNotFound)
	}
	if err != nil {
		return s, err
	}
	if decimals != nil {
		s.assetFound, s.decimals, s.min, s.max, s.active, s.limit = true, *decimals, *minS, *maxS, *active, limit.Decimal
	}
	return s, nil
}

// check refuses a debit the wallet or the asset does not allow.
func (s senderState) check(asset string, amount decimal.Decimal) error {
	if !s.assetFound || !s.active {
		return fmt.Errorf("%w: %s", ErrAssetUnavailable, asset)
	}
	if s.walletStatus != "active" {
		return fmt.Errorf("%w: wallet is %s", ErrWalletFrozen, s.walletStatus)
	}
	return checkAmount(amount, s.decimals, s.min, s.max)
}

// checkLimit refuses a debit that takes the day's outgoing total in the asset over the limit.
func (s senderState) checkLimit(debit decimal.Decimal) error {
	if s.spent.Add(debit).GreaterThan(s.limit) {
		return fmt.Errorf("%w: %s of %s used today", ErrDailyLimitExceeded, s.spent, s.limit)
	}
	return nil
}

const targetAssetSQL = `
SELECT a.decimals, a.is_active,
       EXISTS (SELECT 1 FROM asset_balances b WHERE b.region = $1 AND b.user_id = $2 AND b.asset_symbol = a.symbol)
FROM supported_assets a WHERE a.symbol = $3`

// The recipient through the GLOBAL phone directory, joined to its rows in its home region: the
// directory's home_region IS the region of those rows, so each join pins the region.
const recipientColumns = `
SELECT d.user_id, d.home_region::text, u.status, w.id, w.status,
       EXISTS (SELECT 1 FROM asset_balances b WHERE b.region = d.home_region AND b.user_id = d.user_id AND b.asset_symbol = $2),
       p.first_name_enc, p.last_name_enc, u.phone_enc
FROM phone_directory d
LEFT JOIN users u ON u.region = d.home_region AND u.id = d.user_id
LEFT JOIN wallets w ON w.region = d.home_region AND w.user_id = d.user_id
LEFT JOIN user_profiles p ON p.region = d.home_region AND p.user_id = d.user_id`

const recipientByPhoneSQL = recipientColumns + `
WHERE d.phone_bidx = $1`

// By id: the directory's user_id index (migration 000020). A user with two directory rows (a
// phone change in flight) has one home region, so any row answers.
const recipientByIDSQL = recipientColumns + `
WHERE d.user_id = $1 LIMIT 1`

func queueRecipient(b *pgx.Batch, r Recipient, bidx []byte, asset string) {
	if r.UserID != uuid.Nil {
		b.Queue(recipientByIDSQL, r.UserID, asset)
	} else {
		b.Queue(recipientByPhoneSQL, bidx, asset)
	}
}

// queueRecipientLocked is queueRecipient holding the recipient's user row KEY SHARE until
// COMMIT (PostgreSQL, READ COMMITTED; see recipientLockedColumns).
func queueRecipientLocked(b *pgx.Batch, r Recipient, bidx []byte, asset string) {
	if r.UserID != uuid.Nil {
		b.Queue(recipientLockedByIDSQL, pgUUID(r.UserID), asset)
	} else {
		b.Queue(recipientLockedByPhoneSQL, bidx, asset)
	}
}

// relockRecipient runs after a locking read of the recipient found no row. Either there is no
// such recipient, or the read waited for a relocation that moved the user's rows away from the
// home its snapshot knew. Under READ COMMITTED a new statement has a new snapshot, so: if the
// recipient exists now, it moved, and the locking read runs once more at the new home.
func relockRecipient(ctx context.Context, tx pgx.Tx, r Recipient, bidx []byte, asset string) (recipientState, error) {
	q, arg := recipientLockedByPhoneSQL, any(bidx)
	if r.UserID != uuid.Nil {
		q, arg = recipientLockedByIDSQL, pgUUID(r.UserID)
	}
	for range 3 { // a user relocated again while we waited: look again
		if _, err := recipientUnlocked(ctx, tx, r, bidx, asset); err != nil {
			return recipientState{}, err
		}
		rc, err := scanRecipient(tx.QueryRow(ctx, q, arg, asset))
		if !errors.Is(err, ErrRecipientNotFound) {
			return rc, err
		}
	}
	return recipientState{}, fmt.Errorf("%w: the recipient kept moving", ErrBusy)
}

// recipientUnlocked reads the recipient without a lock: after a locking read found no row, it
// tells "no such recipient" from "moved while we waited".
func recipientUnlocked(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, r Recipient, bidx []byte, asset string) (recipientState, error) {
	if r.UserID != uuid.Nil {
		return scanRecipient(q.QueryRow(ctx, recipientByIDSQL, pgUUID(r.UserID), asset))
	}
	return scanRecipient(q.QueryRow(ctx, recipientByPhoneSQL, bidx, asset))
}

type recipientState struct {
	userID       uuid.UUID
	region       string
	userStatus   *string
	walletID     *uuid.UUID
	walletStatus *string
	hasBalance   bool
	profile      profile
}

func (r recipientState) canReceive() bool {
	return r.walletStatus != nil && *r.walletStatus == "active"
}

func scanRecipient(row pgx.Row) (recipientState, error) {
	var r recipientState
	err := row.Scan(&r.userID, &r.region, &r.userStatus, &r.walletID, &r.walletStatus, &r.hasBalance,
		&r.profile.first, &r.profile.last, &r.profile.phone)
	if errors.Is(err, pgx.ErrNoRows) {
		return r, fmt.Errorf("%w: no such user", ErrRecipientNotFound)
	}
	if err != nil {
		return r, err
	}
	if r.userStatus == nil || *r.userStatus != "active" || r.walletID == nil {
		return r, fmt.Errorf("%w: user %s has no active wallet", ErrRecipientNotFound, r.userID)
	}
	return r, nil
}

// display encrypts, for owner's ledger entry, how the counterparty is shown: first name and last
// initial, phone masked to its last four digits. The profile is decrypted with the AAD of its
// own row (CONTRACTS.md); the copy is bound to the owner's entries.
func (db *DB) display(counterparty uuid.UUID, p profile, owner uuid.UUID) ([]byte, error) {
	_, enc, err := db.displayBoth(counterparty, p, owner)
	return enc, err
}

// displayBoth is display that also returns the plain copy (with its user id), which a fresh
// transfer shows its sender without reading it back (transfers.go).
func (db *DB) displayBoth(counterparty uuid.UUID, p profile, owner uuid.UUID) (Counterparty, []byte, error) {
	id := counterparty.String()
	first, err := db.keys.DecryptString(p.first, "user_profiles", "first_name_enc", id)
	if err != nil {
		return Counterparty{}, nil, err
	}
	last, err := db.keys.DecryptString(p.last, "user_profiles", "last_name_enc", id)
	if err != nil {
		return Counterparty{}, nil, err
	}
	phone, err := db.keys.DecryptString(p.phone, "users", "phone_enc", id)
	if err != nil {
		return Counterparty{}, nil, err
	}
	cp := Counterparty{DisplayName: DisplayName(first, last), Phone: MaskPhone(phone)}
	raw, err := json.Marshal(cp)
	if err != nil {
		return Counterparty{}, nil, err
	}
	enc, err := db.keys.Encrypt(raw, "ledger_entries", "counterparty_display", owner.String())
	cp.UserID = counterparty
	return cp, enc, err
}

// DisplayName is how a user is shown to others: first name and last initial ("Sara K.").
func DisplayName(first, last string) string {
	first = strings.TrimSpace(first)
	last = strings.TrimSpace(last)
	if last == "" {
		return first
	}
	r := []rune(last)
	return strings.TrimSpace(first + " " + strings.ToUpper(string(r[0])) + ".")
}

// MaskPhone shows only the last four digits of a phone number ("•••• 4567").
func MaskPhone(phone string) string {
	var digits []rune
	for _, r := range phone {
		if r >= '0' && r <= '9' {
			digits = append(digits, r)
		}
	}
	if len(digits) < 4 {
		return ""
	}
	return "•••• " + string(digits[len(digits)-4:])
}

// --- the write batch ---

type opKind int

const (
	opDebit   opKind = iota // available and total down, guarded: available >= amount; counts as spent today
	opAdjust                // available and total by a signed amount, unguarded (credits; system accounts)
	opHold                  // available → pending, guarded; counts as spent today
	opCollect               // pending and total down, guarded: pending >= amount
	opRelease               // pending → available, guarded: pending >= amount; no longer spent on its day
)

var opSQL = map[opKind]string{
	opDebit: `UPDATE asset_balances SET available = available - $4, total = total - $4, last_updated = now(),
    ` + addSpentSQL("$4") + `
WHERE region = $1 AND user_id = $2 AND asset_symbol = $3 AND available >= $4 RETURNING total`,
	opAdjust: `UPDATE asset_balances SET available = available + $4, total = total + $4, last_updated = now()
WHERE region = $1 AND user_id = $2 AND asset_symbol = $3 RETURNING total`,
	opHold: `UPDATE asset_balances SET available = available - $4, pending = pending + $4, last_updated = now(),
    ` + addSpentSQL("$4") + `
WHERE region = $1 AND user_id = $2 AND asset_symbol = $3 AND available >= $4 RETURNING total`,
	opCollect: `UPDATE asset_balances SET pending = pending - $4, total = total - $4, last_updated = now()
WHERE region = $1 AND user_id = $2 AND asset_symbol = $3 AND pending >= $4 RETURNING total`,
	// A released hold leaves the daily counter if the counter is still on the hold's day ($5),
	// never below zero: a counter short of the hold (a debit lost at midnight, see addSpentSQL,
	// or made by an older version during an upgrade) must not block cancels and expiries with
	// the CHECK; Reconcile reports the shortfall.
	opRelease: `UPDATE asset_balances SET pending = pending - $4, available = available + $4, last_updated = now(),
    daily_spent = CASE WHEN daily_spent_on = $5::date THEN GREATEST(daily_spent - $4, 0) ELSE daily_spent END
WHERE region = $1 AND user_id = $2 AND asset_symbol = $3 AND pending >= $4 RETURNING total`,
}

type balanceOp struct {
	party  Party
	asset  string
	kind   opKind
	amount decimal.Decimal
	heldOn time.Time // opRelease: the UTC day the hold was made (its transaction's created_at)
}

type ensureBalance struct {
	party    Party
	walletID *uuid.UUID // nil: look it up by user
	asset    string
}

type entry struct {
	party     Party
	asset     string
	amount    decimal.Decimal // signed change of the total
	cpID      *uuid.UUID
	cpDisplay []byte
}

type activity struct {
	party  Party
	action string
}

// txRef finds a movement's transaction row by its idempotency key, which is known before the
// row exists (its id comes from the gen_random_uuid() default).
type txRef struct {
	region    string
	senderID  uuid.UUID
	reference string
}

type txInsert struct {
	hash      []byte
	recipient *uuid.UUID
	typ       string
	status    string
	amount    decimal.Decimal
	asset     string
	fee       decimal.Decimal
	toAsset   string
	toAmount  *decimal.Decimal
	rate      *decimal.Decimal
	rateAsOf  *time.Time
	note      string
}

type txUpdate struct {
	id        uuid.UUID
	status    string
	collected bool
	expired   bool
}

type cashOutInsert struct {
	method, provider string
	codeEnc          []byte
	ttl              time.Duration
}

type movement struct {
	ref      txRef
	viewer   Party
	insert   *txInsert
	update   *txUpdate
	cashOut  *cashOutInsert
	ensure   []ensureBalance
	ops      []balanceOp
	entries  []entry
	activity []activity
}

const ensureBalanceSQL = `
INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol)
SELECT w.region, w.id, w.user_id, $3 FROM wallets w WHERE w.region = $1 AND w.user_id = $2
ON CONFLICT (region, user_id, asset_symbol) DO NOTHING`

const insertTxSQL = `
INSERT INTO transactions (region, reference, request_hash, sender_id, recipient_id, type, status,
    amount, asset_symbol, fee, to_asset_symbol, to_amount, exchange_rate, rate_as_of, note, completed_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
    CASE WHEN $7::text = 'completed' THEN now() END)`

const updateTxSQL = `
UPDATE transactions SET status = $3, updated_at = now(),
    completed_at = CASE WHEN $3::text = 'completed' THEN now() ELSE completed_at END,
    metadata = CASE WHEN $4::boolean THEN '{"reason": "expired"}'::jsonb ELSE metadata END
WHERE region = $1 AND id = $2 AND status = 'pending'`

const insertCashOutSQL = `
INSERT INTO cash_out_details (transaction_id, region, method, provider, pickup_code_enc, expires_at)
SELECT t.id, t.region, $4, $5, $6, now() + $7::interval
FROM transactions t WHERE t.region = $1 AND t.sender_id = $2 AND t.reference = $3`

const settleCashOutSQL = `
UPDATE cash_out_details
SET collected_at = CASE WHEN $3::boolean THEN now() END,
    cancelled_at = CASE WHEN $3::boolean THEN NULL ELSE now() END
WHERE region = $1 AND transaction_id = $2 AND collected_at IS NULL AND cancelled_at IS NULL`

// The entry takes its wallet and balance_after from the balance row this transaction just
// updated (a statement sees its transaction's earlier writes), and its transaction id from the
// row found by idempotency key, so the whole write batch is sent before any answer is read.
const insertEntrySQL = `
INSERT INTO ledger_entries (region, wallet_id, user_id, transaction_id, asset_symbol, amount, balance_after,
    tx_type, counterparty_id, counterparty_display, note)
SELECT b.region, b.wallet_id, b.user_id, t.id, b.asset_symbol, $4, b.total, t.type, $8, $9, t.note
FROM asset_balances b, transactions t
WHERE b.region = $1 AND b.user_id = $2 AND b.asset_symbol = $3
  AND t.region = $5 AND t.sender_id = $6 AND t.reference = $7`

// Activity details are ids and codes only, never PII.
const insertActivitySQL = `
INSERT INTO activity_logs (region, user_id, action, details)
SELECT $1, $2, $3, jsonb_build_object('transaction_id', t.id::text, 'type', t.type, 'asset', t.asset_symbol)
FROM transactions t WHERE t.region = $4 AND t.sender_id = $5 AND t.reference = $6`

// apply sends a movement's writes as one batch, ending with the viewer's view of the
// transaction, and checks every answer. Balance updates run in (region, user_id, asset) order.
func (db *DB) apply(ctx context.Context, tx pgx.Tx, m movement) (Transaction, error) {
	ops := append([]balanceOp(nil), m.ops...)
	sort.SliceStable(ops, func(i, j int) bool {
		a, b := ops[i], ops[j]
		if a.party.Region != b.party.Region {
			return a.party.Region < b.party.Region
		}
		if c := bytes.Compare(a.party.UserID[:], b.party.UserID[:]); c != 0 {
			return c < 0
		}
		return a.asset < b.asset
	})
	r := m.ref
	b := &pgx.Batch{}
	for _, e := range m.ensure {
		b.Queue(ensureBalanceSQL, e.party.Region, e.party.UserID, e.asset)
	}
	if in := m.insert; in != nil {
		b.Queue(insertTxSQL, r.region, r.reference, in.hash, r.senderID, in.recipient, in.typ, in.status,
			in.amount, in.asset, in.fee, nullIfEmpty(in.toAsset), in.toAmount, in.rate, in.rateAsOf,
			nullIfEmpty(in.note))
	}
	if up := m.update; up != nil {
		b.Queue(updateTxSQL, r.region, up.id, up.status, up.expired)
		b.Queue(settleCashOutSQL, r.region, up.id, up.collected)
	}
	if c := m.cashOut; c != nil {
		b.Queue(insertCashOutSQL, r.region, r.senderID, r.reference, c.method, nullIfEmpty(c.provider), c.codeEnc,
			fmt.Sprintf("%d seconds", int64(c.ttl/time.Second)))
	}
	for _, op := range ops {
		if op.kind == opRelease {
			b.Queue(opSQL[op.kind], op.party.Region, op.party.UserID, op.asset, op.amount, op.heldOn)
			continue
		}
		b.Queue(opSQL[op.kind], op.party.Region, op.party.UserID, op.asset, op.amount)
	}
	for _, e := range m.entries {
		b.Queue(insertEntrySQL, e.party.Region, e.party.UserID, e.asset, e.amount, r.region, r.senderID, r.reference,
			e.cpID, e.cpDisplay)
	}
	for _, a := range m.activity {
		b.Queue(insertActivitySQL, a.party.Region, a.party.UserID, a.action, r.region, r.senderID, r.reference)
	}
	q, args := historyQuery(m.viewer, HistoryFilter{Reference: r.reference, Limit: 1})
	b.Queue(q, args...)

	br := tx.SendBatch(ctx, b)
	defer br.Close()
	for range m.ensure {
		if _, err := br.Exec(); err != nil {
			return Transaction{}, fmt.Errorf("ensure balance: %w", err)
		}
	}
	if m.insert != nil {
		if _, err := br.Exec(); err != nil {
			return Transaction{}, fmt.Errorf("insert transaction: %w", err)
		}
	}
	if m.update != nil {
		for _, what := range []string{"transaction", "cash-out"} {
			tag, err := br.Exec()
			if err != nil {
				return Transaction{}, fmt.Errorf("settle %s: %w", what, err)
			}
			if tag.RowsAffected() != 1 {
				return Transaction{}, fmt.Errorf("%w: %s %s was settled concurrently", ErrCashOutNotPending, what, m.update.id)
			}
		}
	}
	if m.cashOut != nil {
		if err := execOne(br, "insert cash-out details"); err != nil {
			return Transaction{}, err
		}
	}
	for _, op := range ops {
		var total decimal.Decimal
		err := br.QueryRow().Scan(&total)
		if errors.Is(err, pgx.ErrNoRows) {
			switch op.kind {
			case opDebit, opHold:
				return Transaction{}, fmt.Errorf("%w: %s", ErrInsufficientFunds, op.asset)
			case opCollect, opRelease:
				return Transaction{}, fmt.Errorf("%w: hold of %s on %s is missing", ErrConstraint, op.asset, op.party.UserID)
			}
			return Transaction{}, fmt.Errorf("%w: no %s balance for %s", ErrConstraint, op.asset, op.party.UserID)
		}
		if err != nil {
			return Transaction{}, fmt.Errorf("update balance: %w", err)
		}
	}
	for _, e := range m.entries {
		if err := execOne(br, "insert ledger entry for "+e.party.UserID.String()); err != nil {
			return Transaction{}, err
		}
	}
	for range m.activity {
		if _, err := br.Exec(); err != nil {
			return Transaction{}, fmt.Errorf("insert activity: %w", err)
		}
	}
	rows, err := br.Query()
	if err != nil {
		return Transaction{}, err
	}
	items, err := db.scanHistory(rows, m.viewer)
	if err != nil {
		return Transaction{}, err
	}
	if len(items) != 1 {
		return Transaction{}, fmt.Errorf("view of %q: %d rows: %w", r.reference, len(items), ErrNotFound)
	}
	return items[0], nil
}

// execOne reads the next batch result, which must have written exactly one row: each of these
// statements finds its transaction and balance by key, so anything else is a broken invariant.
func execOne(br pgx.BatchResults, what string) error {
	tag, err := br.Exec()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("%w: %s wrote %d rows", ErrConstraint, what, tag.RowsAffected())
	}
	return nil
}
