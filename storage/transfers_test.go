package storage

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// submitTogether runs reqs through the batcher as one submission, so that they share a batch
// (the test's DB has no other traffic), and returns each outcome in order.
func submitTogether(db *DB, reqs ...TransferRequest) ([]Result, []error) {
	items := make([]*transferItem, len(reqs))
	for i, r := range reqs {
		items[i] = &transferItem{ctx: context.Background(), req: r, done: make(chan struct{})}
	}
	db.transfers.submit(db, items...)
	res, errs := make([]Result, len(items)), make([]error, len(items))
	for i, it := range items {
		<-it.done
		res[i], errs[i] = it.res, it.err
	}
	return res, errs
}

// TestTransferBatchIsolatesAFailedWrite: three transfers share a batch; between its reads and its
// writes one sender's money disappears behind the batch's back (a direct UPDATE that takes no
// wallet lock), so the batch's write fails the balance CHECK. The batch must roll back whole and
// run each transfer alone: that sender is refused for insufficient funds, the other two commit,
// and nothing of the refused one remains.
func TestTransferBatchIsolatesAFailedWrite(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := isolatedDB(t)
	region := testRegions.Primary()
	rcpt := newMoneyUser(t, db, region, "Rita", "Receiver")
	senders := make([]moneyUser, 3)
	for i := range senders {
		senders[i] = newMoneyUser(t, db, region, "Sam", "Sender")
		fund(t, db, senders[i], "USD", "50")
	}
	var calls []int
	db.transfers.beforeWrites = func(accepted int) {
		calls = append(calls, accepted)
		if len(calls) == 1 {
			if _, err := db.pool.Exec(ctx, `UPDATE asset_balances SET available = 0, total = pending
WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, senders[1].Region, senders[1].UserID); err != nil {
				t.Error(err)
			}
		}
	}
	reqs := make([]TransferRequest, len(senders))
	for i, s := range senders {
		reqs[i] = TransferRequest{Sender: s.Party, Recipient: Recipient{UserID: rcpt.UserID}, Asset: "USD",
			Amount: dec("20"), Reference: newRef()}
	}
	res, errs := submitTogether(db, reqs...)
	if len(calls) == 0 || calls[0] != 3 {
		t.Fatalf("the three transfers did not share a batch: writes of %v", calls)
	}
	if len(calls) != 3 {
		t.Errorf("after the failed batch, want two single writes (the third refused before writing): %v", calls)
	}
	for i, err := range errs {
		switch {
		case i == 1 && !errors.Is(err, ErrInsufficientFunds):
			t.Errorf("the robbed sender: %v, want insufficient funds", err)
		case i != 1 && (err != nil || res[i].Replayed || res[i].Status != StatusCompleted):
			t.Errorf("sender %d: %v %+v", i, err, res[i])
		}
	}
	wantBalance(t, db, rcpt.Party, "USD", "40", "40", "0")
	wantBalance(t, db, senders[0].Party, "USD", "30", "30", "0")
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE region = $1 AND sender_id = $2 AND reference = $3`,
		senders[1].Region, senders[1].UserID, reqs[1].Reference).Scan(&n); err != nil || n != 0 {
		t.Errorf("the refused transfer left %d rows (%v)", n, err)
	}
}

// TestTransferBatchSameReferenceTwice: the same request twice in one batch applies once; the
// second waits for the next batch and replays the first.
func TestTransferBatchSameReferenceTwice(t *testing.T) {
	t.Parallel()
	db := isolatedDB(t)
	region := testRegions.Primary()
	a := newMoneyUser(t, db, region, "Ali", "Twice")
	b := newMoneyUser(t, db, region, "Bea", "Once")
	fund(t, db, a, "USD", "10")
	fees, err := ParseFeeSchedule("transfer=0.10+1%")
	if err != nil {
		t.Fatal(err)
	}
	req := TransferRequest{Sender: a.Party, Recipient: Recipient{UserID: b.UserID}, Asset: "USD", Amount: dec("2.5"),
		Reference: newRef(), Note: "twice", Fees: fees}
	res, errs := submitTogether(db, req, req)
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if res[0].Replayed || !res[1].Replayed || res[0].ID != res[1].ID {
		t.Errorf("first replayed=%v, second replayed=%v, ids %s %s", res[0].Replayed, res[1].Replayed, res[0].ID, res[1].ID)
	}
	// The fresh answer is built in Go, the replay read back: they must be the same.
	if !reflect.DeepEqual(res[0].Transaction, res[1].Transaction) {
		t.Errorf("fresh answer and replay differ:\n%#v\n%#v", res[0].Transaction, res[1].Transaction)
	}
	if !res[0].Fee.Equal(dec("0.13")) { // 0.10 + 1% of 2.50, rounded up to cents
		t.Errorf("fee %s", res[0].Fee)
	}
	wantBalance(t, db, a.Party, "USD", "7.37", "7.37", "0")
	requireReconciled(t, db)
}

// TestTransferBatchesCrossingPairsTakeLocksInOrder: two batches in flight at once, one paying
// a→b and the other b→a, both held at the point between their reads and their writes and then
// released together, so that their balance UPDATEs (each locking the rows of a and b) run at the
// same moment, round after round. If the batch locked the rows in any order but their keys',
// some round would deadlock (40P01, retried and counted); in order, none does, and every
// transfer lands once.
func TestTransferBatchesCrossingPairsTakeLocksInOrder(t *testing.T) {
	t.Parallel()
	db := isolatedDB(t)
	if db.transfers.limit < 2 {
		t.Skipf("the batcher runs %d batch at a time", db.transfers.limit)
	}
	// The first batch waits for the second at its writes: every runner counts as stalled at
	// once, so the second transfer gets a runner of its own.
	db.transfers.setStallAfter(0)
	region := testRegions.Primary()
	a := newMoneyUser(t, db, region, "Ann", "Cross")
	b := newMoneyUser(t, db, region, "Ben", "Cross")
	fund(t, db, a, "USD", "100")
	fund(t, db, b, "USD", "100")
	// Per round, the first batch to reach its writes waits there for the second; a batch that
	// comes back (a retry) goes straight on.
	var (
		mu       sync.Mutex
		arrivals int
		release  chan struct{}
	)
	db.transfers.beforeWrites = func(int) {
		mu.Lock()
		arrivals++
		n, ch := arrivals, release
		mu.Unlock()
		switch n {
		case 1:
			<-ch
		case 2:
			close(ch)
		}
	}
	arrived := func() int {
		mu.Lock()
		defer mu.Unlock()
		return arrivals
	}
	const rounds = 30
	ctx := WithRetryCounter(context.Background())
	for r := range rounds {
		mu.Lock()
		arrivals, release = 0, make(chan struct{})
		mu.Unlock()
		var wg sync.WaitGroup
		errs := make([]error, 2)
		for i, p := range [][2]moneyUser{{a, b}, {b, a}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = db.Transfer(ctx, TransferRequest{Sender: p[0].Party, Recipient: Recipient{UserID: p[1].UserID},
					Asset: "USD", Amount: dec("1"), Reference: newRef()})
			}()
			// The second starts once the first is waiting: a batch of its own.
			for i == 0 && arrived() == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v, %v", r, errs[0], errs[1])
		}
	}
	if n := Retries(ctx); n != 0 {
		t.Errorf("%d retries: crossing batches deadlocked, their locks are not taken in one order", n)
	}
	wantBalance(t, db, a.Party, "USD", "100", "100", "0")
	wantBalance(t, db, b.Party, "USD", "100", "100", "0")
	requireReconciled(t, db)
}

// TestTransferBatcherOneRunnerUnlessStalled drives the batcher's policy through the real batch:
// a transfer that arrives while a batch runs waits for it and joins the next batch (one runner),
// unless the running batch stalls for longer than stallAfter, when the stall timer gives it a
// runner of its own and it commits while the stalled batch still waits.
func TestTransferBatcherOneRunnerUnlessStalled(t *testing.T) {
	t.Parallel()
	db := isolatedDB(t)
	if db.transfers.limit < 2 {
		t.Skipf("the batcher runs %d batch at a time", db.transfers.limit)
	}
	region := testRegions.Primary()
	a := newMoneyUser(t, db, region, "Amy", "Stall")
	b := newMoneyUser(t, db, region, "Bob", "Stall")
	c := newMoneyUser(t, db, region, "Cat", "Stall")
	fund(t, db, a, "USD", "100")
	fund(t, db, c, "USD", "100")
	send := func(from moneyUser) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := db.Transfer(context.Background(), TransferRequest{Sender: from.Party, Recipient: Recipient{UserID: b.UserID},
				Asset: "USD", Amount: dec("1"), Reference: newRef()})
			done <- err
		}()
		return done
	}
	state := func() (running, queued int) {
		db.transfers.mu.Lock()
		defer db.transfers.mu.Unlock()
		return len(db.transfers.runners), len(db.transfers.queue)
	}
	// waitState polls state until want holds, for up to 10 s.
	waitState := func(want func(running, queued int) bool, fail string) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			running, queued := state()
			if want(running, queued) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf(fail, running, queued)
			}
		}
	}

	extra := func() float64 { return testutil.ToFloat64(db.metrics.extraRunners.WithLabelValues("stalled")) }
	for _, stalled := range []bool{false, true} {
		// The last round's runner may still be between its batch and its exit.
		waitState(func(running, _ int) bool { return running == 0 }, "%d runners (%d queued) left from the last round")
		before := extra()
		// The first batch holds at its writes until released.
		held, hold := make(chan struct{}), make(chan struct{})
		release := sync.OnceFunc(func() { close(hold) })
		t.Cleanup(release) // a failed check must not leave the batch holding
		var heldOnce atomic.Bool
		stall := time.Hour
		if stalled {
			// The second arrives while the first batch is still young: the stall timer, not
			// the second's own arrival, finds the first batch stalled.
			stall = 50 * time.Millisecond
		}
		db.transfers.setStallAfter(stall)
		db.transfers.mu.Lock()
		db.transfers.beforeWrites = func(int) {
			if heldOnce.CompareAndSwap(false, true) { // only the first batch holds
				close(held)
				<-hold
			}
		}
		db.transfers.mu.Unlock()
		first := send(a)
		select {
		case <-held:
		case err := <-first:
			t.Fatalf("the first transfer did not reach its writes: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("the first transfer did not reach its writes")
		}
		second := send(c)
		if !stalled {
			// Not stalled: the second waits in the queue behind the one runner.
			waitState(func(running, queued int) bool { return running == 1 && queued == 1 },
				"not stalled: %d runners, %d queued; want 1 runner and the second transfer queued")
			release()
			if err := <-first; err != nil {
				t.Fatal(err)
			}
			if err := <-second; err != nil {
				t.Fatal(err)
			}
			if n := extra() - before; n != 0 {
				t.Errorf("not stalled: %v extra runners counted", n)
			}
			continue
		}
		// Stalled: the second commits while the first still holds.
		select {
		case err := <-second:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("stalled: the second transfer waited for the stalled batch")
		}
		select {
		case err := <-first:
			t.Fatalf("the held batch finished before its release: %v", err)
		default:
		}
		release()
		if err := <-first; err != nil {
			t.Fatal(err)
		}
		if n := extra() - before; n != 1 {
			t.Errorf("stalled: %v extra runners counted, want 1", n)
		}
	}
	if running, queued := state(); queued != 0 {
		t.Errorf("%d runners left with %d queued", running, queued)
	}
	wantBalance(t, db, a.Party, "USD", "98", "98", "0")
	wantBalance(t, db, b.Party, "USD", "4", "4", "0")
	requireReconciled(t, db)
}
