package storage

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// The bank test (reference/security.md §4): users send random transfers at each other from many
// goroutines for a bounded time, including overdrafts, self-transfers and bad amounts, retrying
// the same reference after a transient error and sometimes re-sending an accepted one. Then:
// money per asset is conserved exactly, nothing is negative, every accepted reference applied
// exactly once, every refused one is absent, and the ledger reconciles.

type bankOutcome struct {
	sender   moneyUser
	ref      string
	amount   decimal.Decimal
	accepted bool
}

type bankConfig struct {
	users, workers int
	duration       time.Duration
	hot            bool // every payer pays users[0]
}

func TestBank(t *testing.T) {
	t.Parallel()
	runBank(t, bankConfig{users: 12, workers: 24, duration: 3 * time.Second})
}

func TestBankHotRecipient(t *testing.T) {
	t.Parallel()
	runBank(t, bankConfig{users: 12, workers: 24, duration: 3 * time.Second, hot: true})
}

// transient errors are retried with the same reference: nothing was applied, or (ambiguous
// commit) the reference makes a second attempt safe.
func transient(err error) bool {
	return errors.Is(err, ErrBusy) || errors.Is(err, ErrAmbiguousCommit) || errors.Is(err, ErrUnavailable)
}

func runBank(t *testing.T, cfg bankConfig) {
	ctx := WithRetryCounter(context.Background())
	db := isolatedDB(t)
	names := testRegions.Names()
	const asset, initial = "USD", "1000"
	users := make([]moneyUser, cfg.users)
	for i := range users {
		// Users spread over the regions, so some transfers cross regions.
		users[i] = newMoneyUser(t, db, names[i%len(names)], fmt.Sprintf("User%d", i), "Bank")
		fund(t, db, users[i], asset, initial)
	}

	var (
		mu       sync.Mutex
		outcomes []bankOutcome
		refused  = map[string]int{}
	)
	deadline := time.Now().Add(cfg.duration)
	var wg sync.WaitGroup
	for w := 0; w < cfg.workers; w++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, seed*7+1))
			var mine []bankOutcome
			for time.Now().Before(deadline) {
				from := users[rng.IntN(len(users))]
				to := users[rng.IntN(len(users))]
				if cfg.hot {
					to = users[0]
					if from.UserID == to.UserID && rng.IntN(10) > 0 {
						from = users[1+rng.IntN(len(users)-1)]
					}
				}
				// Mostly fair amounts, some overdrafts, some bad ones.
				var amount decimal.Decimal
				switch k := rng.IntN(20); {
				case k == 0:
					amount = decimal.Zero
				case k == 1:
					amount = dec("-5")
				case k == 2:
					amount = dec("0.001")
				case k == 3:
					amount = dec("5000")
				default:
					amount = decimal.New(int64(1+rng.IntN(15000)), -2) // 0.01 .. 150.00
				}
				req := TransferRequest{Sender: from.Party, Asset: asset, Amount: amount, Reference: newRef()}
				if rng.IntN(2) == 0 {
					req.Recipient = Recipient{UserID: to.UserID}
				} else {
					req.Recipient = Recipient{Phone: to.Phone}
				}
				var err error
				var res Result
				for attempt := 0; ; attempt++ {
					res, err = db.Transfer(ctx, req)
					if !transient(err) || attempt > 50 {
						break
					}
				}
				switch {
				case err == nil:
					if res.Replayed {
						t.Errorf("first send of %s was a replay", req.Reference)
					}
					mine = append(mine, bankOutcome{sender: from, ref: req.Reference, amount: amount, accepted: true})
					// Sometimes the client never saw the answer and sends it again.
					if rng.IntN(8) == 0 {
						again, err := db.Transfer(ctx, req)
						for attempt := 0; transient(err) && attempt < 50; attempt++ {
							again, err = db.Transfer(ctx, req)
						}
						if err != nil || !again.Replayed || again.ID != res.ID {
							t.Errorf("re-send of %s: %v replayed=%v", req.Reference, err, again.Replayed)
						}
					}
				case errors.Is(err, ErrInsufficientFunds), errors.Is(err, ErrInvalidAmount),
					errors.Is(err, ErrInvalidRecipient), errors.Is(err, ErrDailyLimitExceeded):
					mine = append(mine, bankOutcome{sender: from, ref: req.Reference, amount: amount})
					mu.Lock()
					refused[refusalName(err)]++
					mu.Unlock()
				default:
					t.Errorf("transfer %s: unexpected %v", req.Reference, err)
					return
				}
				if from.UserID == to.UserID && err == nil {
					t.Errorf("self transfer %s accepted", req.Reference)
				}
			}
			mu.Lock()
			outcomes = append(outcomes, mine...)
			mu.Unlock()
		}(uint64(w + 1))
	}
	wg.Wait()
	if t.Failed() {
		return
	}

	// Every accepted reference is one transaction row with entries summing to zero; every
	// refused one left nothing.
	accepted := 0
	sent := map[string]decimal.Decimal{}
	for _, o := range outcomes {
		var rows, entries int
		var sum decimal.Decimal
		err := db.pool.QueryRow(ctx, `
SELECT count(*),
       (SELECT count(*) FROM ledger_entries e, transactions t
         WHERE e.region = ANY($4::crdb_internal_region[]) AND e.transaction_id = t.id
           AND t.region = $1 AND t.sender_id = $2 AND t.reference = $3),
       (SELECT COALESCE(sum(e.amount), 0) FROM ledger_entries e, transactions t
         WHERE e.region = ANY($4::crdb_internal_region[]) AND e.transaction_id = t.id
           AND t.region = $1 AND t.sender_id = $2 AND t.reference = $3)
FROM transactions t WHERE t.region = $1 AND t.sender_id = $2 AND t.reference = $3`,
			o.sender.Region, o.sender.UserID, o.ref, names).Scan(&rows, &entries, &sum)
		if err != nil {
			t.Fatal(err)
		}
		if o.accepted {
			accepted++
			sent[o.sender.UserID.String()] = sent[o.sender.UserID.String()].Add(o.amount)
			if rows != 1 || entries != 2 || !sum.IsZero() {
				t.Errorf("accepted %s: %d rows, %d entries summing to %s", o.ref, rows, entries, sum)
			}
		} else if rows != 0 || entries != 0 {
			t.Errorf("refused %s left %d rows, %d entries", o.ref, rows, entries)
		}
	}
	if accepted < 50 {
		t.Errorf("only %d transfers accepted; the test proves little", accepted)
	}
	// Conservation among these users (no fees): their totals still add up to what came in, and
	// nothing is negative.
	total := decimal.Zero
	for _, u := range users {
		b := balanceOf(t, db, u.Party, asset)
		if b.Available.Sign() < 0 || b.Pending.Sign() < 0 || !b.Total.Equal(b.Available.Add(b.Pending)) {
			t.Errorf("balance of %s: %+v", u.UserID, b)
		}
		total = total.Add(b.Total)
	}
	want := dec(initial).Mul(decimal.NewFromInt(int64(len(users))))
	if !total.Equal(want) {
		t.Errorf("users hold %s, want %s: money created or destroyed", total, want)
	}
	requireReconciled(t, db)
	// On PostgreSQL the transfer batch takes every row lock in key order (senders' wallets,
	// then balance rows) under READ COMMITTED, where a lock wait never ends in 40001: any
	// retry here would be a deadlock (40P01), i.e. two batches locking the same rows in
	// different orders, which crossing random pairs provoke within seconds if the order breaks.
	if db.Engine() == Postgres {
		if n := Retries(ctx); n != 0 {
			t.Errorf("%d retries on PostgreSQL: the batch's locks are not taken in one order", n)
		}
	}
	t.Logf("%d outcomes, %d accepted, refusals %v", len(outcomes), accepted, refused)
}

func refusalName(err error) string {
	for _, s := range []error{ErrInsufficientFunds, ErrInvalidAmount, ErrInvalidRecipient, ErrDailyLimitExceeded} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return err.Error()
}

// BenchmarkTransfer measures uniform transfers between 256 users from 16 clients (one transaction,
// four round trips each: BEGIN, the read batch, the write batch, COMMIT), for the performance
// work to compare against (reference/performance.md). `go test -run='^$' -bench=Transfer ./storage`
func BenchmarkTransfer(b *testing.B) {
	ctx := context.Background()
	db := testDB(b)
	region := testRegions.Primary()
	const n = 256 // enough users that two transfers rarely touch one balance
	users := make([]moneyUser, n)
	for i := range users {
		users[i] = newMoneyUser(b, db, region, "Bench", "User")
		fund(b, db, users[i], "USD", "40000")
	}
	var next atomic.Uint64
	ctx = WithRetryCounter(ctx)
	b.SetParallelism(8) // 16 clients on 2 cores: transfers wait on the database, not the CPU
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			from, to := users[i%n], users[(i*7+1)%n]
			if from.UserID == to.UserID {
				to = users[(i+1)%n]
			}
			req := TransferRequest{Sender: from.Party, Recipient: Recipient{UserID: to.UserID}, Asset: "USD",
				Amount: dec("0.01"), Reference: newRef()}
			for {
				_, err := db.Transfer(ctx, req)
				if err == nil {
					break
				}
				if !transient(err) {
					b.Fatal(err)
				}
			}
		}
	})
	b.ReportMetric(float64(Retries(ctx))/float64(b.N), "retries/op")
}
