package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/shopspring/decimal"

	"github.com/7awel/wallet/migrations"
	"github.com/7awel/wallet/regions"
)

// TestRelocationPlanCoversEveryRegionalTable: every REGIONAL BY ROW table has a relocation
// rule, a table added to the declaration without one fails, and a rule for a table that is not
// regional fails; each move pins the old region and names the user.
func TestRelocationPlanCoversEveryRegionalTable(t *testing.T) {
	t.Parallel()
	tables := migrations.RegionalTables()
	steps, err := relocationPlan(tables)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) == 0 {
		t.Fatal("empty plan")
	}
	for _, s := range steps {
		if !strings.Contains(s.sql, "WHERE region = $1 AND ") || !strings.Contains(s.sql, "SET region = $2") ||
			!strings.Contains(s.sql, "$3") {
			t.Errorf("%s: %s does not pin the old region and name the user", s.table, s.sql)
		}
	}
	if _, err := relocationPlan(append(slicesClone(tables), "merchant_payouts")); err == nil ||
		!strings.Contains(err.Error(), "merchant_payouts") {
		t.Errorf("a regional table without a rule: %v", err)
	}
	var without []string
	for _, tb := range tables {
		if tb != "wallets" {
			without = append(without, tb)
		}
	}
	if _, err := relocationPlan(without); err == nil || !strings.Contains(err.Error(), "wallets") {
		t.Errorf("a rule for a table that is not regional: %v", err)
	}
}

func slicesClone(s []string) []string { return append([]string(nil), s...) }

// TestRelocateUserUnderConcurrentTransfers: transfers and cash-ins (by phone, READ COMMITTED
// on PostgreSQL) into a user race its relocation; every one that succeeded is in the balance
// afterwards, every row of the user is in the target, and the books reconcile. The refusals and
// the no-op are checked too.
func TestRelocateUserUnderConcurrentTransfers(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	a := newMoneyUser(t, db, "me-central1", "Rana", "Haddad")
	b := newMoneyUser(t, db, "eu-west1", "Tom", "Reed")
	fund(t, db, a, "AED", "100")
	fund(t, db, b, "AED", "1000")
	if _, err := db.CashOut(ctx, CashOutRequest{Sender: a.Party, Asset: "AED", Amount: dec("10"), Method: "agent", Reference: newRef()}); err != nil {
		t.Fatal(err)
	}

	var sent, cashed atomic.Int64 // in whole AED
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := db.CashIn(ctx, CashInRequest{Recipient: Recipient{Phone: a.Phone}, Asset: "AED", Amount: dec("1"), Reference: newRef()})
			if err != nil && !errors.Is(err, ErrBusy) {
				t.Errorf("cash-in during relocation: %v", err)
				return
			}
			if err == nil {
				cashed.Add(1)
			}
		}
	}()
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, err := db.Transfer(ctx, TransferRequest{Sender: b.Party, Recipient: Recipient{UserID: a.UserID},
				Asset: "AED", Amount: dec("1"), Reference: newRef()})
			if err != nil && !errors.Is(err, ErrBusy) {
				t.Errorf("transfer during relocation: %v", err)
				return
			}
			if err == nil {
				sent.Add(1)
			}
		}
	}()
	// Transfers land before, during and after the move.
	waitSent := func(n int64) {
		deadline := time.Now().Add(20 * time.Second)
		for sent.Load() < n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	waitSent(3)
	from, err := db.RelocateUser(ctx, a.UserID, "us-east1")
	waitSent(sent.Load() + 3)
	close(stop)
	wg.Wait()
	if sent.Load() < 6 || cashed.Load() < 1 {
		t.Fatalf("only %d transfers and %d cash-ins went through", sent.Load(), cashed.Load())
	}
	if err != nil || from != "me-central1" {
		t.Fatalf("relocate: from %q, %v", from, err)
	}
	moved := Party{UserID: a.UserID, Region: "us-east1"}
	total := dec("100").Add(dec("1").Mul(decimal.NewFromInt(sent.Load() + cashed.Load())))
	wantBalance(t, db, moved, "AED", total.String(), total.Sub(dec("10")).String(), "10")
	if _, err := db.GetWallet(ctx, a.UserID, "me-central1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("wallet still readable in the old region: %v", err)
	}
	for table, owner := range map[string]string{
		"users": "id = $1", "wallets": "user_id = $1", "asset_balances": "user_id = $1",
		"ledger_entries": "user_id = $1", "transactions": "sender_id = $1",
		"cash_out_details": "transaction_id IN (SELECT id FROM transactions WHERE sender_id = $1)",
	} {
		var stray, all int
		if err := db.pool.QueryRow(ctx, "SELECT count(*) FILTER (WHERE region <> 'us-east1'), count(*) FROM "+table+" WHERE "+owner,
			a.UserID).Scan(&stray, &all); err != nil {
			t.Fatal(err)
		}
		if stray != 0 || all == 0 {
			t.Errorf("%s: %d of %d rows outside the target", table, stray, all)
		}
	}
	requireReconciled(t, db)

	if again, err := db.RelocateUser(ctx, a.UserID, "us-east1"); err != nil || again != "us-east1" {
		t.Errorf("relocating to the current home: %q, %v", again, err)
	}
	if _, err := db.RelocateUser(ctx, a.UserID, "mars-north1"); !errors.Is(err, regions.ErrUnknownRegion) {
		t.Errorf("unknown region: %v", err)
	}
	if _, err := db.RelocateUser(ctx, uuid.New(), "eu-west1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
	if _, err := db.RelocateUser(ctx, SystemUserID("eu-west1", SystemFees), "us-east1"); !errors.Is(err, ErrSystemAccount) {
		t.Errorf("system account: %v", err)
	}
}

// TestSettleCashOutsDuringRelocations: cash-outs are collected and cancelled while their owner
// is relocated from region to region. Each settles exactly once, the settlements never retry
// (the owner's user row is locked first, in the relocation's order, so the two queue instead of
// deadlocking), the balance is what the settlements say, and the books reconcile.
func TestSettleCashOutsDuringRelocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	u := newMoneyUser(t, db, "me-central1", "Moving", "Owner")
	fund(t, db, u, "AED", "400")
	var ids []uuid.UUID
	for range 20 {
		res, err := db.CashOut(ctx, CashOutRequest{Sender: u.Party, Asset: "AED", Amount: dec("10"), Method: "agent", Reference: newRef()})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	settleCtx := WithRetryCounter(ctx)
	var wg sync.WaitGroup
	var collected atomic.Int64
	for k := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := k; i < len(ids); i += 2 {
				var err error
				if i%2 == 0 {
					_, err = db.CollectCashOut(settleCtx, ids[i], "eu-west1")
					collected.Add(1)
				} else {
					_, err = db.CancelCashOut(settleCtx, ids[i], "us-east1")
				}
				if err != nil {
					t.Errorf("settle %d: %v", i, err)
				}
			}
		}()
	}
	home := "me-central1"
	for _, to := range []string{"eu-west1", "us-east1", "me-central1", "eu-west1"} {
		if _, err := db.RelocateUser(ctx, u.UserID, to); err != nil {
			t.Fatalf("relocate to %s: %v", to, err)
		}
		home = to
	}
	wg.Wait()
	if n := Retries(settleCtx); n != 0 {
		t.Errorf("settlements retried %d times", n)
	}
	left := dec("400").Sub(dec("10").Mul(decimal.NewFromInt(collected.Load())))
	wantBalance(t, db, Party{UserID: u.UserID, Region: home}, "AED", left.String(), left.String(), "0")
	requireReconciled(t, db)
}

// TestCashInRetriedAfterRelocation: a cash-in whose answer the operator lost is retried, with
// the same reference and body, after its recipient moved to another region. It is replayed, not
// credited again; the same reference with another body to that recipient is a conflict; another
// region's recipient may still use the reference, as references are per issuance account.
func TestCashInRetriedAfterRelocation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	a := newMoneyUser(t, db, "me-central1", "Rana", "Haddad")
	c := newMoneyUser(t, db, "eu-west1", "Tom", "Reed")
	req := CashInRequest{Recipient: Recipient{Phone: a.Phone}, Asset: "AED", Amount: dec("25"), Reference: newRef()}
	first, err := db.CashIn(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.RelocateUser(ctx, a.UserID, "us-east1"); err != nil {
		t.Fatal(err)
	}
	again, err := db.CashIn(ctx, req)
	if err != nil {
		t.Fatalf("retry after the relocation: %v", err)
	}
	if !again.Replayed || again.Transaction.ID != first.Transaction.ID {
		t.Fatalf("retry: replayed %v, id %s, want the first cash-in %s", again.Replayed, again.Transaction.ID, first.Transaction.ID)
	}
	wantBalance(t, db, Party{UserID: a.UserID, Region: "us-east1"}, "AED", "25", "25", "0")

	other := req
	other.Amount = dec("26")
	if _, err := db.CashIn(ctx, other); !errors.Is(err, ErrIdempotencyConflict) {
		t.Fatalf("same reference, other amount, same recipient: %v, want ErrIdempotencyConflict", err)
	}
	// cashInTo sends the reference to u, whose region's issuance account has not used it: a
	// new credit, not a replay.
	cashInTo := func(u moneyUser, where string) {
		t.Helper()
		r := req
		r.Recipient = Recipient{Phone: u.Phone}
		if res, err := db.CashIn(ctx, r); err != nil || res.Replayed {
			t.Fatalf("same reference to a recipient of %s: replayed %v, %v", where, res.Replayed, err)
		}
		wantBalance(t, db, u.Party, "AED", "25", "25", "0")
	}
	cashInTo(c, "another region")

	// The reference used again in the recipient's new home, for someone else there: allowed
	// (another issuance account), and the first recipient's retry is still a replay.
	d := newMoneyUser(t, db, "us-east1", "Dana", "Nasser")
	cashInTo(d, "the new home")
	if again, err := db.CashIn(ctx, req); err != nil || !again.Replayed || again.Transaction.ID != first.Transaction.ID {
		t.Fatalf("retry after the reference was used in the new home: %+v, %v", again, err)
	}
	wantBalance(t, db, Party{UserID: a.UserID, Region: "us-east1"}, "AED", "25", "25", "0")
	requireReconciled(t, db)
}

// TestCashInRetriesDuringRelocations: one cash-in is sent again and again by several operators'
// retry loops while its recipient moves from region to region. It is credited exactly once, and
// every answer is that one transaction.
func TestCashInRetriesDuringRelocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := testDB(t)
	a := newMoneyUser(t, db, "me-central1", "Rana", "Haddad")
	req := CashInRequest{Recipient: Recipient{UserID: a.UserID}, Asset: "AED", Amount: dec("25"), Reference: newRef()}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		ids   = map[uuid.UUID]int{}
		stop  = make(chan struct{})
		tries atomic.Int64
		alive atomic.Int64
	)
	stopped := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopped) // a failed assertion below still stops the workers
	// waitTries waits for n more answers while a worker still runs.
	waitTries := func(n int64) {
		deadline := time.Now().Add(30 * time.Second)
		for want := tries.Load() + n; tries.Load() < want; {
			if alive.Load() == 0 || time.Now().After(deadline) {
				t.Fatalf("no answers: %d workers running, %d answers", alive.Load(), tries.Load())
			}
			time.Sleep(time.Millisecond)
		}
	}
	for range 4 {
		alive.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer alive.Add(-1)
			for {
				select {
				case <-stop:
					return
				default:
				}
				res, err := db.CashIn(ctx, req)
				if errors.Is(err, ErrBusy) {
					continue
				}
				if err != nil {
					t.Errorf("cash-in: %v", err)
					return
				}
				tries.Add(1)
				mu.Lock()
				ids[res.Transaction.ID]++
				mu.Unlock()
			}
		}()
	}
	home := "me-central1"
	for _, to := range []string{"us-east1", "eu-west1", "me-central1", "us-east1", "eu-west1"} {
		waitTries(3)
		from, err := db.RelocateUser(ctx, a.UserID, to)
		if err != nil || from != home {
			t.Fatalf("relocate to %s: from %q, %v", to, from, err)
		}
		home = to
	}
	waitTries(3)
	stopped()
	if len(ids) != 1 {
		t.Fatalf("%d answers named %d different transactions: %v", tries.Load(), len(ids), ids)
	}
	wantBalance(t, db, Party{UserID: a.UserID, Region: home}, "AED", "25", "25", "0")
	requireReconciled(t, db)
}
