package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"
)

// moneyUser is a user made by the fixture, with the phone it can be found by.
type moneyUser struct {
	Party
	Phone string
	First string
	Last  string
}

var phoneSeq atomic.Int64

func init() { phoneSeq.Store(rand.Int64N(1_000_000)) }

// newMoneyUser writes a user the way sign-up does (users, profile with encrypted names, settings,
// wallet, a zero balance per active asset, the phone directory entry), directly, so storage
// tests need no OTP flow. The phone is unique per call.
func newMoneyUser(t testing.TB, db *DB, region, first, last string) moneyUser {
	t.Helper()
	ctx := context.Background()
	id := uuid.New()
	phone := fmt.Sprintf("+9715%08d", phoneSeq.Add(1)%100_000_000)
	k := db.Keys()
	enc := func(v, table, col string) []byte {
		b, err := k.EncryptString(v, table, col, id.String())
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	bidx := k.BlindIndex("phone", phone)
	stmts := []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO users (id, region, phone_enc, phone_bidx, phone_country, phone_verified) VALUES ($1, $2, $3, $4, 'AE', true)`,
			[]any{id, region, enc(phone, "users", "phone_enc"), bidx}},
		{`INSERT INTO user_profiles (user_id, region, first_name_enc, last_name_enc) VALUES ($1, $2, $3, $4)`,
			[]any{id, region, enc(first, "user_profiles", "first_name_enc"), enc(last, "user_profiles", "last_name_enc")}},
		{`INSERT INTO user_settings (user_id, region) VALUES ($1, $2)`, []any{id, region}},
		{`INSERT INTO wallets (region, user_id, primary_asset) VALUES ($1, $2, 'AED')`, []any{region, id}},
		{`INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol)
SELECT $1, w.id, $2, a.symbol FROM wallets w, supported_assets a WHERE w.region = $1 AND w.user_id = $2 AND a.is_active`, []any{region, id}},
		{`INSERT INTO phone_directory (phone_bidx, user_id, home_region) VALUES ($1, $2, $3)`, []any{bidx, id, region}},
	}
	for _, s := range stmts {
		if _, err := db.pool.Exec(ctx, s.sql, s.args...); err != nil {
			t.Fatalf("fixture %q: %v", strings.Fields(s.sql)[2], err)
		}
	}
	return moneyUser{Party: Party{UserID: id, Region: region}, Phone: phone, First: first, Last: last}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func newRef() string { return uuid.NewString() }

// fund cashes amount of asset in to u.
func fund(t testing.TB, db *DB, u moneyUser, asset, amount string) {
	t.Helper()
	if _, err := db.CashIn(context.Background(), CashInRequest{Recipient: Recipient{UserID: u.UserID},
		Asset: asset, Amount: dec(amount), Reference: newRef()}); err != nil {
		t.Fatalf("cash-in %s %s: %v", amount, asset, err)
	}
}

func balanceOf(t testing.TB, db *DB, u Party, asset string) Balance {
	t.Helper()
	w, err := db.GetWallet(context.Background(), u.UserID, u.Region)
	if err != nil {
		t.Fatal(err)
	}
	b, ok := w.Balance(asset)
	if !ok {
		t.Fatalf("no %s balance for %s", asset, u.UserID)
	}
	return b
}

func wantBalance(t testing.TB, db *DB, u Party, asset, total, available, pending string) {
	t.Helper()
	b := balanceOf(t, db, u, asset)
	if !b.Total.Equal(dec(total)) || !b.Available.Equal(dec(available)) || !b.Pending.Equal(dec(pending)) {
		t.Fatalf("%s balance of %s: total %s available %s pending %s; want %s %s %s",
			asset, u.UserID, b.Total, b.Available, b.Pending, total, available, pending)
	}
}

// requireReconciled fails the test unless the whole database reconciles.
func requireReconciled(t testing.TB, db *DB) {
	t.Helper()
	rep, err := db.Reconcile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("reconcile: %d differences:\n%s", len(rep.Differences), strings.Join(rep.Differences, "\n"))
	}
}

func TestTransferMovesMoneyWithEntriesAndDisplay(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "smith")
	bob := newMoneyUser(t, db, region, "Bob", "Jones")
	fund(t, db, alice, "USD", "100")

	res, err := db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{Phone: bob.Phone},
		Asset: "USD", Amount: dec("12.5"), Reference: newRef(), Note: "lunch"})
	if err != nil {
		t.Fatal(err)
	}
	tx := res.Transaction
	if res.Replayed || tx.Type != TypeTransfer || tx.Status != StatusCompleted || tx.Direction != "outgoing" ||
		!tx.Amount.Equal(dec("12.5")) || tx.Asset != "USD" || tx.Decimals != 2 || !tx.Fee.IsZero() || tx.Note != "lunch" ||
		tx.CompletedAt == nil {
		t.Fatalf("sender's view: %+v", tx)
	}
	if tx.Counterparty == nil || tx.Counterparty.UserID != bob.UserID || tx.Counterparty.DisplayName != "Bob J." ||
		tx.Counterparty.Phone != "•••• "+bob.Phone[len(bob.Phone)-4:] {
		t.Fatalf("counterparty: %+v", tx.Counterparty)
	}
	wantBalance(t, db, alice.Party, "USD", "87.5", "87.5", "0")
	wantBalance(t, db, bob.Party, "USD", "12.5", "12.5", "0")

	in, err := db.GetTransaction(ctx, bob.Party, tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	if in.Direction != "incoming" || !in.Amount.Equal(dec("12.5")) || in.Reference != "" ||
		in.Counterparty == nil || in.Counterparty.DisplayName != "Alice S." || in.Note != "lunch" {
		t.Fatalf("recipient's view: %+v %+v", in, in.Counterparty)
	}
	// balance_after on each side.
	var after []string
	rows, err := db.pool.Query(ctx, `SELECT balance_after::text FROM ledger_entries WHERE region = $1 AND transaction_id = $2 ORDER BY amount`, region, tx.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var s string
		_ = rows.Scan(&s)
		after = append(after, trimAmount(s))
	}
	if rows.Err() != nil || !reflect.DeepEqual(after, []string{"87.5", "12.5"}) {
		t.Fatalf("balance_after = %v, %v", after, rows.Err())
	}
	// A stranger sees nothing.
	stranger := newMoneyUser(t, db, region, "Eve", "X")
	if _, err := db.GetTransaction(ctx, stranger.Party, tx.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("stranger: %v", err)
	}
}

func TestTransferByIDAcrossRegions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	names := testRegions.Names()
	alice := newMoneyUser(t, db, names[0], "Alice", "A")
	bob := newMoneyUser(t, db, names[1], "Bob", "B")
	fund(t, db, alice, "EUR", "50")
	res, err := db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID},
		Asset: "EUR", Amount: dec("20"), Reference: newRef()})
	if err != nil {
		t.Fatal(err)
	}
	wantBalance(t, db, bob.Party, "EUR", "20", "20", "0")
	// Bob's entry is homed in Bob's region, and his history reads only it.
	page, err := db.ListTransactions(ctx, bob.Party, HistoryFilter{})
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != res.ID || page.Items[0].Direction != "incoming" {
		t.Fatalf("bob's history: %+v %v", page, err)
	}
	var region string
	if err := db.pool.QueryRow(ctx, `SELECT region::text FROM ledger_entries WHERE region = $1 AND user_id = $2 AND transaction_id = $3`,
		bob.Region, bob.UserID, res.ID).Scan(&region); err != nil || region != names[1] {
		t.Fatalf("bob's entry region %q, %v", region, err)
	}
}

func TestTransferIdempotency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "100")
	req := TransferRequest{Sender: alice.Party, Recipient: Recipient{Phone: bob.Phone}, Asset: "USD",
		Amount: dec("10"), Reference: newRef(), Note: "x"}
	first, err := db.Transfer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// The same amount written differently and the recipient named by id are the same request.
	again := req
	again.Amount = dec("10.00")
	again.Recipient = Recipient{UserID: bob.UserID}
	second, err := db.Transfer(ctx, again)
	if err != nil {
		t.Fatal(err)
	}
	if !second.Replayed || !reflect.DeepEqual(first.Transaction, second.Transaction) {
		t.Fatalf("replay differs:\n%+v\n%+v", first.Transaction, second.Transaction)
	}
	for _, change := range []func(*TransferRequest){
		func(r *TransferRequest) { r.Amount = dec("11") },
		func(r *TransferRequest) { r.Note = "y" },
		func(r *TransferRequest) { r.Asset = "EUR" },
	} {
		r := req
		change(&r)
		if _, err := db.Transfer(ctx, r); !errors.Is(err, ErrIdempotencyConflict) {
			t.Fatalf("changed body: %v, want ErrIdempotencyConflict", err)
		}
	}
	wantBalance(t, db, alice.Party, "USD", "90", "90", "0")
	// The recipient leaves (their directory entry is gone): the same request still replays.
	if _, err := db.pool.Exec(ctx, `DELETE FROM phone_directory WHERE user_id = $1`, bob.UserID); err != nil {
		t.Fatal(err)
	}
	third, err := db.Transfer(ctx, req)
	if err != nil || !third.Replayed || third.ID != first.ID {
		t.Fatalf("replay after the recipient left: %+v %v", third, err)
	}
	fresh := req
	fresh.Reference = newRef()
	if _, err := db.Transfer(ctx, fresh); !errors.Is(err, ErrRecipientNotFound) {
		t.Fatalf("new transfer to a departed recipient: %v", err)
	}
}

func TestTransferRefusals(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "100")
	base := TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID}, Asset: "USD", Amount: dec("1")}
	cases := []struct {
		name   string
		change func(*TransferRequest)
		want   error
	}{
		{"self by id", func(r *TransferRequest) { r.Recipient = Recipient{UserID: alice.UserID} }, ErrInvalidRecipient},
		{"self by phone", func(r *TransferRequest) { r.Recipient = Recipient{Phone: alice.Phone} }, ErrInvalidRecipient},
		{"unknown phone", func(r *TransferRequest) { r.Recipient = Recipient{Phone: "+971500000000"} }, ErrRecipientNotFound},
		{"unknown id", func(r *TransferRequest) { r.Recipient = Recipient{UserID: uuid.New()} }, ErrRecipientNotFound},
		{"overdraft", func(r *TransferRequest) { r.Amount = dec("100.01") }, ErrInsufficientFunds},
		{"zero", func(r *TransferRequest) { r.Amount = dec("0") }, ErrInvalidAmount},
		{"negative", func(r *TransferRequest) { r.Amount = dec("-1") }, ErrInvalidAmount},
		{"too many decimals", func(r *TransferRequest) { r.Amount = dec("1.001") }, ErrInvalidAmount},
		{"below min", func(r *TransferRequest) { r.Asset = "EGP"; r.Amount = dec("0.5") }, ErrInvalidAmount},
		{"above max", func(r *TransferRequest) { r.Amount = dec("50000.01") }, ErrInvalidAmount},
		{"unknown asset", func(r *TransferRequest) { r.Asset = "XYZ" }, ErrAssetUnavailable},
	}
	for _, c := range cases {
		r := base
		r.Reference = newRef()
		c.change(&r)
		_, err := db.Transfer(ctx, r)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		var n int
		_ = db.pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE region = $1 AND sender_id = $2 AND reference = $3`,
			region, alice.UserID, r.Reference).Scan(&n)
		if n != 0 {
			t.Errorf("%s: refused transfer left a row", c.name)
		}
	}
	wantBalance(t, db, alice.Party, "USD", "100", "100", "0")

	// Daily limit: 30 a day, 25 sent, 10 more refused, 5 accepted.
	if _, err := db.pool.Exec(ctx, `UPDATE user_settings SET daily_limit = 30 WHERE region = $1 AND user_id = $2`, region, alice.UserID); err != nil {
		t.Fatal(err)
	}
	send := func(amount string) error {
		r := base
		r.Reference, r.Amount = newRef(), dec(amount)
		_, err := db.Transfer(ctx, r)
		return err
	}
	if err := send("25"); err != nil {
		t.Fatal(err)
	}
	if err := send("10"); !errors.Is(err, ErrDailyLimitExceeded) {
		t.Fatalf("over the limit: %v", err)
	}
	if err := send("5"); err != nil {
		t.Fatal(err)
	}
	// Frozen wallet.
	if _, err := db.pool.Exec(ctx, `UPDATE wallets SET status = 'frozen' WHERE region = $1 AND user_id = $2`, region, alice.UserID); err != nil {
		t.Fatal(err)
	}
	if err := send("1"); !errors.Is(err, ErrWalletFrozen) {
		t.Fatalf("frozen: %v", err)
	}
	// A frozen recipient cannot receive.
	r := TransferRequest{Sender: bob.Party, Recipient: Recipient{UserID: alice.UserID}, Asset: "USD", Amount: dec("1"), Reference: newRef()}
	if _, err := db.Transfer(ctx, r); !errors.Is(err, ErrInvalidRecipient) {
		t.Fatalf("to a frozen wallet: %v", err)
	}
}

// TestConcurrentCashInsShareTheIssuanceRow: every cash-in and every cash-out collection of a
// region writes the region's issuance balance. Sixteen cash-ins at a time into eight wallets,
// while their cash-outs are collected and cancelled, all land, exactly once each, without a
// single retry on PostgreSQL (READ COMMITTED queues them on the row instead of aborting them),
// and the issuance account mirrors what came in and went out.
func TestConcurrentCashInsShareTheIssuanceRow(t *testing.T) {
	t.Parallel()
	ctx := WithRetryCounter(context.Background())
	db := isolatedDB(t)
	region := testRegions.Names()[1]
	users := make([]moneyUser, 8)
	var outs []Result
	for i := range users {
		users[i] = newMoneyUser(t, db, region, "Cash", fmt.Sprint("In", i))
		fund(t, db, users[i], "USD", "100")
		for range 2 {
			res, err := db.CashOut(context.Background(), CashOutRequest{Sender: users[i].Party, Asset: "USD", Amount: dec("10"),
				Method: "agent", Reference: newRef()})
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, res)
		}
	}
	const workers, each = 16, 10
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < len(outs); i += 4 {
				var err error
				if i%2 == 0 {
					_, err = db.CollectCashOut(ctx, outs[i].ID, region)
				} else {
					_, err = db.CancelCashOut(ctx, outs[i].ID, region)
				}
				if err != nil {
					t.Errorf("settle cash-out: %v", err)
					return
				}
			}
		}()
	}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				u := users[(w+i)%len(users)]
				r := Recipient{UserID: u.UserID}
				if i%2 == 1 {
					r = Recipient{Phone: u.Phone}
				}
				if _, err := db.CashIn(ctx, CashInRequest{Recipient: r, Asset: "USD", Amount: dec("1.25"), Reference: newRef()}); err != nil {
					t.Errorf("cash-in: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	sum := decimal.Zero
	for _, u := range users {
		sum = sum.Add(balanceOf(t, db, u.Party, "USD").Total)
	}
	// 800 funded, the cash-ins, minus the 8 collected cash-outs of 10 (no fees configured).
	want := dec("800").Add(dec("1.25").Mul(decimal.NewFromInt(workers * each))).Sub(dec("80"))
	if !sum.Equal(want) {
		t.Fatalf("wallets hold %s, want %s", sum, want)
	}
	iss := Party{SystemUserID(region, SystemIssuance), region}
	if got := balanceOf(t, db, iss, "USD").Total; !got.Equal(sum.Neg()) {
		t.Fatalf("issuance %s, want %s", got, sum.Neg())
	}
	if n := Retries(ctx); n != 0 {
		t.Fatalf("%d retries on the issuance row", n)
	}
	requireReconciled(t, db)
}

func TestTransferFees(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Names()[2]
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "100")
	feeParty := Party{SystemUserID(region, SystemFees), region}
	before := balanceOf(t, db, feeParty, "USD").Total
	fees := FeeSchedule{"transfer": {Fixed: dec("0.10"), Percent: dec("1")}, "transfer/EUR": {}}
	res, err := db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID},
		Asset: "USD", Amount: dec("10.05"), Reference: newRef(), Fees: fees})
	if err != nil {
		t.Fatal(err)
	}
	// 0.10 + 1% of 10.05 = 0.2005, rounded up to 0.21.
	if !res.Fee.Equal(dec("0.21")) {
		t.Fatalf("fee %s", res.Fee)
	}
	wantBalance(t, db, alice.Party, "USD", "89.74", "89.74", "0")
	wantBalance(t, db, bob.Party, "USD", "10.05", "10.05", "0")
	if got := balanceOf(t, db, feeParty, "USD").Total.Sub(before); !got.Equal(dec("0.21")) {
		t.Fatalf("fee account got %s", got)
	}
	// An asset-specific zero rule wins over the type's rule.
	if f := fees.Fee("transfer", "EUR", dec("100"), 2); !f.IsZero() {
		t.Fatalf("EUR fee %s", f)
	}
	// The fee counts against the balance: sending everything plus a fee overdraws.
	_, err = db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID},
		Asset: "USD", Amount: dec("89.74"), Reference: newRef(), Fees: fees})
	if !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("amount + fee over the balance: %v", err)
	}
}

func TestCashOutHoldCollectCancelExpire(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	fund(t, db, alice, "AED", "500")
	issuance := Party{SystemUserID(region, SystemIssuance), region}

	hold := func(amount string, ttl time.Duration) Result {
		t.Helper()
		res, err := db.CashOut(ctx, CashOutRequest{Sender: alice.Party, Asset: "AED", Amount: dec(amount),
			Method: "agent", Provider: "acme", Reference: newRef(), TTL: ttl})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a := hold("100", time.Hour)
	if a.Status != StatusPending || a.CashOut == nil || len(a.CashOut.PickupCode) != 8 || a.CashOut.Method != "agent" ||
		a.CashOut.Provider != "acme" || a.CompletedAt != nil {
		t.Fatalf("hold: %+v %+v", a.Transaction, a.CashOut)
	}
	wantBalance(t, db, alice.Party, "AED", "500", "400", "100")
	if _, err := db.CashOut(ctx, CashOutRequest{Sender: alice.Party, Asset: "AED", Amount: dec("400.05"),
		Method: "atm", Reference: newRef()}); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("hold over available: %v", err)
	}
	requireReconciled(t, db)

	issBefore := balanceOf(t, db, issuance, "AED").Total
	got, err := db.CollectCashOut(ctx, a.ID, region)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusCompleted || got.CompletedAt == nil || got.CashOut == nil || got.CashOut.CollectedAt == nil ||
		got.CashOut.PickupCode != "" {
		t.Fatalf("collected: %+v %+v", got, got.CashOut)
	}
	wantBalance(t, db, alice.Party, "AED", "400", "400", "0")
	if d := balanceOf(t, db, issuance, "AED").Total.Sub(issBefore); !d.Equal(dec("100")) {
		t.Fatalf("issuance moved %s", d)
	}
	if _, err := db.CollectCashOut(ctx, a.ID, region); !errors.Is(err, ErrCashOutNotPending) {
		t.Fatalf("second collect: %v", err)
	}
	if _, err := db.CancelCashOut(ctx, a.ID, region); !errors.Is(err, ErrCashOutNotPending) {
		t.Fatalf("cancel after collect: %v", err)
	}
	if _, err := db.CollectCashOut(ctx, uuid.New(), region); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown cash-out: %v", err)
	}

	b := hold("50", time.Hour)
	// Found from another serving region too.
	c, err := db.CancelCashOut(ctx, b.ID, testRegions.Names()[1])
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != StatusCancelled || c.CashOut.CancelledAt == nil {
		t.Fatalf("cancelled: %+v", c)
	}
	wantBalance(t, db, alice.Party, "AED", "400", "400", "0")

	e := hold("30", time.Second)
	keep := hold("20", time.Hour)
	wantBalance(t, db, alice.Party, "AED", "400", "350", "50")
	if _, err := db.ExpireCashOutsIn(ctx, region, time.Now().Add(-time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantBalance(t, db, alice.Party, "AED", "400", "350", "50")
	n, err := db.ExpireCashOuts(ctx, time.Now().Add(2*time.Second))
	if err != nil || n < 1 {
		t.Fatalf("expired %d, %v", n, err)
	}
	wantBalance(t, db, alice.Party, "AED", "400", "380", "20")
	exp, err := db.GetTransaction(ctx, alice.Party, e.ID)
	if err != nil || exp.Status != StatusCancelled {
		t.Fatalf("expired cash-out: %+v %v", exp, err)
	}
	if _, err := db.CollectCashOut(ctx, e.ID, region); !errors.Is(err, ErrCashOutNotPending) {
		t.Fatalf("collect after expiry: %v", err)
	}
	// History lists the pending, cancelled and collected cash-outs with their statuses.
	page, err := db.ListTransactions(ctx, alice.Party, HistoryFilter{Type: TypeCashOut})
	if err != nil {
		t.Fatal(err)
	}
	statuses := map[uuid.UUID]string{}
	for _, it := range page.Items {
		statuses[it.ID] = it.Status
	}
	want := map[uuid.UUID]string{a.ID: StatusCompleted, b.ID: StatusCancelled, e.ID: StatusCancelled, keep.ID: StatusPending}
	if !reflect.DeepEqual(statuses, want) {
		t.Fatalf("cash-out history %v, want %v", statuses, want)
	}
	requireReconciled(t, db)
}

func TestExchange(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	fund(t, db, alice, "USD", "100")
	rates, err := NewTableRates(db, time.Minute).Rates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rate, err := rates.Cross("USD", "AED")
	if err != nil || !rate.Equal(dec("3.6725")) {
		t.Fatalf("USD/AED = %s, %v", rate, err)
	}
	ref := newRef()
	req := ExchangeRequest{User: alice.Party, From: "USD", To: "AED", Amount: dec("10.01"), Rate: rate, AsOf: rates.AsOf, Reference: ref}
	res, err := db.Exchange(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	// 10.01 × 3.6725 = 36.761725 → 36.76 (rounded down).
	if !res.ToAmount.Decimal.Equal(dec("36.76")) || res.ToAsset != "AED" || !res.ExchangeRate.Decimal.Equal(rate) || res.RateAsOf == nil {
		t.Fatalf("exchange: %+v", res.Transaction)
	}
	wantBalance(t, db, alice.Party, "USD", "89.99", "89.99", "0")
	wantBalance(t, db, alice.Party, "AED", "36.76", "36.76", "0")
	again, err := db.Exchange(ctx, req)
	if err != nil || !again.Replayed || !reflect.DeepEqual(again.Transaction, res.Transaction) {
		t.Fatalf("replay: %+v %v", again, err)
	}
	if _, err := db.Exchange(ctx, ExchangeRequest{User: alice.Party, From: "USD", To: "BTC", Amount: dec("1000"),
		Rate: dec("0.00001"), Reference: newRef()}); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("overdraft: %v", err)
	}
	if _, err := db.Exchange(ctx, ExchangeRequest{User: alice.Party, From: "USD", To: "USD", Amount: dec("1"),
		Rate: dec("1"), Reference: newRef()}); !errors.Is(err, ErrInvalidAmount) {
		t.Fatalf("same asset: %v", err)
	}
	if _, err := db.Exchange(ctx, ExchangeRequest{User: alice.Party, From: "USD", To: "XYZ", Amount: dec("1"),
		Rate: dec("1"), Reference: newRef()}); !errors.Is(err, ErrAssetUnavailable) {
		t.Fatalf("unknown asset: %v", err)
	}
	page, err := db.ListTransactions(ctx, alice.Party, HistoryFilter{Type: TypeExchange})
	if err != nil || len(page.Items) != 1 || page.Items[0].Direction != "outgoing" {
		t.Fatalf("exchange shows once: %+v %v", page, err)
	}
	requireReconciled(t, db)
}

func TestHistoryFiltersAndPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "100")
	fund(t, db, bob, "EUR", "100")
	for i := 0; i < 7; i++ {
		if _, err := db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID},
			Asset: "USD", Amount: dec("1"), Reference: newRef()}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := db.Transfer(ctx, TransferRequest{Sender: bob.Party, Recipient: Recipient{UserID: alice.UserID},
			Asset: "EUR", Amount: dec("2"), Reference: newRef()}); err != nil {
			t.Fatal(err)
		}
	}
	// 1 cash-in + 7 out + 3 in for alice, in pages of 4, newest first, no repeats.
	var all []Transaction
	var cur *Cursor
	for pages := 0; ; pages++ {
		p, err := db.ListTransactions(ctx, alice.Party, HistoryFilter{Limit: 4, Cursor: cur})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, p.Items...)
		if p.Next == nil {
			break
		}
		dc, err := DecodeCursor(p.Next.Encode())
		if err != nil || !dc.CreatedAt.Equal(p.Next.CreatedAt) || dc.ID != p.Next.ID {
			t.Fatalf("cursor round trip: %+v %+v %v", dc, p.Next, err)
		}
		cur = &dc
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(all) != 11 {
		t.Fatalf("%d items, want 11", len(all))
	}
	seen := map[uuid.UUID]bool{}
	for i, it := range all {
		if seen[it.ID] {
			t.Fatalf("item %s repeated", it.ID)
		}
		seen[it.ID] = true
		if i > 0 && it.CreatedAt.After(all[i-1].CreatedAt) {
			t.Fatal("not newest first")
		}
	}
	count := func(f HistoryFilter) int {
		t.Helper()
		p, err := db.ListTransactions(ctx, alice.Party, f)
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Items)
	}
	for _, c := range []struct {
		name string
		f    HistoryFilter
		want int
	}{
		{"incoming", HistoryFilter{Direction: "incoming"}, 4},
		{"outgoing", HistoryFilter{Direction: "outgoing"}, 7},
		{"EUR", HistoryFilter{Asset: "EUR"}, 3},
		{"cash_in", HistoryFilter{Type: TypeCashIn}, 1},
		{"completed", HistoryFilter{Status: StatusCompleted}, 11},
		{"pending", HistoryFilter{Status: StatusPending}, 0},
		{"future", HistoryFilter{From: time.Now().Add(time.Hour)}, 0},
		{"past", HistoryFilter{To: time.Now().Add(-time.Hour)}, 0},
		{"window", HistoryFilter{From: time.Now().Add(-time.Hour), To: time.Now().Add(time.Hour)}, 11},
	} {
		if got := count(c.f); got != c.want {
			t.Errorf("%s: %d items, want %d", c.name, got, c.want)
		}
	}
	for _, bad := range []string{"", "x", "AAAA", Cursor{}.Encode() + "A"} {
		if _, err := DecodeCursor(bad); !errors.Is(err, ErrInvalidCursor) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

// isolatedDB returns a migrated, seeded database of the test's own, for tests that reconcile the
// whole ledger: the shared database also holds rows other tests write directly (schema probes),
// which a whole-database reconcile would rightly report.
func isolatedDB(t *testing.T) *DB {
	t.Helper()
	ctx := context.Background()
	url := freshDatabase(t)
	if err := MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	db, err := Open(ctx, url, testRegions, Options{Keys: sharedKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	if err := db.Seed(ctx); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestReconcileFindsTampering(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	fund(t, db, alice, "USD", "10")
	requireReconciled(t, db)
	// Money created out of nothing: the balance no longer matches its entries, nor conservation.
	if _, err := db.pool.Exec(ctx, `UPDATE asset_balances SET available = available + 1, total = total + 1
WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID); err != nil {
		t.Fatal(err)
	}
	rep, err := db.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(rep.Differences, "\n")
	if rep.OK() || !strings.Contains(joined, "sum of ledger entries") || !strings.Contains(joined, "asset USD") {
		t.Fatalf("tampering not reported: %v", rep.Differences)
	}
}

// TestSameReferenceConcurrently: a client that retries before the first answer arrives sends
// the same reference twice at once. Exactly one applies; the others replay it.
func TestSameReferenceConcurrently(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "100")
	req := TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID}, Asset: "USD",
		Amount: dec("3"), Reference: newRef()}
	const n = 8
	results := make(chan Result, n)
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		go func() {
			<-start
			var res Result
			var err error
			for attempt := 0; attempt < 20; attempt++ {
				if res, err = db.Transfer(ctx, req); !transient(err) {
					break
				}
			}
			if err != nil {
				errs <- err
				return
			}
			results <- res
		}()
	}
	close(start)
	var ids = map[uuid.UUID]bool{}
	fresh := 0
	for i := 0; i < n; i++ {
		select {
		case err := <-errs:
			t.Fatalf("concurrent same reference: %v", err)
		case res := <-results:
			ids[res.ID] = true
			if !res.Replayed {
				fresh++
			}
		}
	}
	if len(ids) != 1 || fresh != 1 {
		t.Fatalf("%d transactions, %d first answers; want 1 and 1", len(ids), fresh)
	}
	wantBalance(t, db, alice.Party, "USD", "97", "97", "0")
	wantBalance(t, db, bob.Party, "USD", "3", "3", "0")
}

func TestParseFeeSchedule(t *testing.T) {
	t.Parallel()
	fs, err := ParseFeeSchedule(" transfer=0.10+1%, cash_out/EGP=5,exchange=0.5%")
	if err != nil {
		t.Fatal(err)
	}
	want := FeeSchedule{
		"transfer":     {Fixed: dec("0.10"), Percent: dec("1")},
		"cash_out/EGP": {Fixed: dec("5")},
		"exchange":     {Percent: dec("0.5")},
	}
	if len(fs) != len(want) {
		t.Fatalf("%v", fs)
	}
	for k, w := range want {
		if g := fs[k]; !g.Fixed.Equal(w.Fixed) || !g.Percent.Equal(w.Percent) {
			t.Errorf("%s: %+v, want %+v", k, g, w)
		}
	}
	if f := fs.Fee("exchange", "USD", dec("10.01"), 2); !f.Equal(dec("0.06")) {
		t.Errorf("0.5%% of 10.01 rounded up = %s, want 0.06", f)
	}
	if f := fs.Fee("cash_out", "USD", dec("100"), 2); !f.IsZero() {
		t.Errorf("no cash_out rule for USD: %s", f)
	}
	if empty, err := ParseFeeSchedule(""); err != nil || len(empty) != 0 {
		t.Errorf("empty: %v %v", empty, err)
	}
	for _, bad := range []string{"gift=1", "transfer", "transfer=-1", "transfer=1e2", "transfer=101%", "transfer=x%",
		"transfer/usd=1", "transfer=1,transfer=2", "transfer=1+2", "transfer=+1%", "transfer="} {
		if _, err := ParseFeeSchedule(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTableRatesCacheAndCross(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	p := NewTableRates(db, time.Minute)
	clock := time.Now()
	p.now = func() time.Time { return clock }
	r1, err := p.Rates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.SetRate(ctx, "EGP", dec("50")); err != nil {
		t.Fatal(err)
	}
	clock = clock.Add(59 * time.Second)
	r2, _ := p.Rates(ctx)
	if !r2.PerBase["EGP"].Equal(r1.PerBase["EGP"]) {
		t.Fatal("the cache was bypassed within its minute")
	}
	clock = clock.Add(2 * time.Second)
	r3, _ := p.Rates(ctx)
	if !r3.PerBase["EGP"].Equal(dec("50")) {
		t.Fatalf("after the minute: EGP %s, want 50", r3.PerBase["EGP"])
	}
	// Cross through USD: 1 EUR = 50 / 0.92 EGP.
	x, err := r3.Cross("EUR", "EGP")
	if err != nil || !x.Equal(dec("54.347826086956521739")) {
		t.Fatalf("EUR/EGP = %s, %v", x, err)
	}
	if _, err := r3.Cross("EUR", "XYZ"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown quote: %v", err)
	}
}

// TestDeleteUserRacingCredits: cash-ins and transfers into a user race the user's deletion. A
// deletion that succeeds leaves nothing behind: every credit either landed before the balance
// check (and the deletion refused) or was refused; no money is ever stranded in a closed wallet.
func TestDeleteUserRacingCredits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	region := testRegions.Primary()
	payer := newMoneyUser(t, db, region, "Pay", "Er")
	fund(t, db, payer, "AED", "1000")
	deleted := 0
	for round := range 12 {
		u := newMoneyUser(t, db, region, "Gone", fmt.Sprint("Soon", round))
		var wg sync.WaitGroup
		var credited atomic.Int64
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if i%2 == 0 {
					_, err = db.CashIn(ctx, CashInRequest{Recipient: Recipient{Phone: u.Phone}, Asset: "AED", Amount: dec("1"), Reference: newRef()})
				} else {
					_, err = db.Transfer(ctx, TransferRequest{Sender: payer.Party, Recipient: Recipient{UserID: u.UserID},
						Asset: "AED", Amount: dec("1"), Reference: newRef()})
				}
				switch {
				case err == nil:
					credited.Add(1)
				case errors.Is(err, ErrRecipientNotFound), errors.Is(err, ErrInvalidRecipient):
				default:
					t.Errorf("credit: %v", err)
				}
			}()
		}
		err := db.DeleteUser(ctx, u.Region, u.UserID)
		wg.Wait()
		var sum decimal.Decimal
		if qerr := db.pool.QueryRow(ctx, `SELECT COALESCE(sum(total), 0) FROM asset_balances WHERE region = $1 AND user_id = $2`,
			u.Region, u.UserID).Scan(&sum); qerr != nil {
			t.Fatal(qerr)
		}
		switch {
		case err == nil:
			deleted++
			if !sum.IsZero() {
				t.Fatalf("round %d: deleted with %s stranded (%d credits landed)", round, sum, credited.Load())
			}
		case errors.Is(err, ErrBalanceNotEmpty):
			if sum.IsZero() {
				t.Fatalf("round %d: refused as not empty, but the balances are zero", round)
			}
		default:
			t.Fatalf("round %d: delete: %v", round, err)
		}
	}
	t.Logf("%d of 12 deletions won the race", deleted)
}
