package storage

import (
	"context"
	"errors"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/7awel/wallet/migrations"
)

// TestDailyLimitCounter drives the daily limit's counter (migrations/000014_daily_spent) through
// every movement that counts, a released hold, a new day, tampering and the upgrade's backfill,
// on both transfer paths: PostgreSQL's batches and the SERIALIZABLE path CockroachDB runs.
func TestDailyLimitCounter(t *testing.T) {
	t.Parallel()
	for _, serial := range []bool{false, true} {
		name := "batched"
		if serial {
			name = "serializable"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testDailyLimitCounter(t, serial)
		})
	}
}

func testDailyLimitCounter(t *testing.T, serial bool) {
	ctx := context.Background()
	db := isolatedDB(t)
	db.serialTransfers = serial
	region := testRegions.Primary()
	alice := newMoneyUser(t, db, region, "Alice", "A")
	bob := newMoneyUser(t, db, region, "Bob", "B")
	fund(t, db, alice, "USD", "1000")
	fund(t, db, bob, "USD", "10")
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.pool.Exec(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`UPDATE user_settings SET daily_limit = 100 WHERE region = $1 AND user_id = $2`, region, alice.UserID)
	counter := func(want string) {
		t.Helper()
		var spent string
		var today bool
		if err := db.pool.QueryRow(ctx, `SELECT daily_spent::text, daily_spent_on = `+todaySQL+` FROM asset_balances
WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID).Scan(&spent, &today); err != nil {
			t.Fatal(err)
		}
		if !dec(spent).Equal(dec(want)) || !today {
			t.Fatalf("daily counter %s (today: %v), want %s today", spent, today, want)
		}
		requireReconciled(t, db)
	}
	send := func(amount string) error {
		t.Helper()
		_, err := db.Transfer(ctx, TransferRequest{Sender: alice.Party, Recipient: Recipient{UserID: bob.UserID},
			Asset: "USD", Amount: dec(amount), Reference: newRef()})
		return err
	}
	cashOut := func(amount string) Result {
		t.Helper()
		res, err := db.CashOut(ctx, CashOutRequest{Sender: alice.Party, Asset: "USD", Amount: dec(amount),
			Method: "agent", Reference: newRef(), TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}

	// Bob's own transfer does not count against Alice, and credits never count.
	if _, err := db.Transfer(ctx, TransferRequest{Sender: bob.Party, Recipient: Recipient{UserID: alice.UserID},
		Asset: "USD", Amount: dec("5"), Reference: newRef()}); err != nil {
		t.Fatal(err)
	}
	if err := send("30"); err != nil {
		t.Fatal(err)
	}
	counter("30")
	rates, err := NewTableRates(db, time.Minute).Rates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rate, err := rates.Cross("USD", "AED")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exchange(ctx, ExchangeRequest{User: alice.Party, From: "USD", To: "AED", Amount: dec("20"),
		Rate: rate, AsOf: rates.AsOf, Reference: newRef()}); err != nil {
		t.Fatal(err)
	}
	counter("50")
	held := cashOut("40")
	counter("90")
	if err := send("20"); !errors.Is(err, ErrDailyLimitExceeded) {
		t.Fatalf("over the limit with a hold: %v", err)
	}
	// A cancelled hold gives its share of the day back.
	if _, err := db.CancelCashOut(ctx, held.ID, region); err != nil {
		t.Fatal(err)
	}
	counter("50")
	if err := send("20"); err != nil {
		t.Fatal(err)
	}
	counter("70")
	collected := cashOut("10")
	if _, err := db.CollectCashOut(ctx, collected.ID, region); err != nil {
		t.Fatal(err)
	}
	counter("80") // a collected cash-out stays spent
	yesterdays := cashOut("10")
	counter("90")

	// Midnight: move Alice's day back by one, rows and counter alike; the books still agree,
	// and today starts from nothing.
	exec(`UPDATE transactions SET created_at = created_at - INTERVAL '1 day' WHERE region = $1 AND sender_id = $2`, region, alice.UserID)
	exec(`UPDATE asset_balances SET daily_spent_on = daily_spent_on - 1 WHERE region = $1 AND user_id = $2`, region, alice.UserID)
	requireReconciled(t, db)
	if err := send("100"); err != nil {
		t.Fatalf("a new day's full limit: %v", err)
	}
	counter("100")
	// Yesterday's hold released today does not give today's limit back.
	if _, err := db.CancelCashOut(ctx, yesterdays.ID, region); err != nil {
		t.Fatal(err)
	}
	counter("100")
	if err := send("0.01"); !errors.Is(err, ErrDailyLimitExceeded) {
		t.Fatalf("over today's limit: %v", err)
	}

	// The upgrade's backfill (000015) computes the same counter from the transactions.
	up, err := fs.ReadFile(migrations.Shared(), "000015_daily_spent_backfill.up.sql")
	if err != nil {
		t.Fatal(err)
	}
	exec(`UPDATE asset_balances SET daily_spent = 0, daily_spent_on = NULL WHERE region = $1`, region)
	exec(string(up))
	counter("100")

	// A release short of its hold stops at zero instead of failing the cancel.
	exec(`UPDATE user_settings SET daily_limit = NULL WHERE region = $1 AND user_id = $2`, region, alice.UserID)
	short := cashOut("5")
	counter("105")
	exec(`UPDATE asset_balances SET daily_spent = 1 WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID)
	if _, err := db.CancelCashOut(ctx, short.ID, region); err != nil {
		t.Fatalf("cancel with a short counter: %v", err)
	}
	var spent string
	if err := db.pool.QueryRow(ctx, `SELECT daily_spent::text FROM asset_balances WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`,
		region, alice.UserID).Scan(&spent); err != nil || !dec(spent).IsZero() {
		t.Fatalf("counter after a short release: %s, %v", spent, err)
	}
	// A movement whose day is behind the counter's (it began before midnight and waited for a
	// lock) leaves the newer day's counter alone.
	exec(`UPDATE asset_balances SET daily_spent = 7, daily_spent_on = `+todaySQL+` + 1 WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID)
	if err := send("1"); err != nil {
		t.Fatal(err)
	}
	cashOut("1")
	var tomorrow bool
	if err := db.pool.QueryRow(ctx, `SELECT daily_spent::text, daily_spent_on = `+todaySQL+` + 1 FROM asset_balances
WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID).Scan(&spent, &tomorrow); err != nil ||
		!dec(spent).Equal(dec("7")) || !tomorrow {
		t.Fatalf("a late movement moved the counter: %s (tomorrow: %v), %v", spent, tomorrow, err)
	}

	// Reconcile catches a counter that lies.
	exec(`UPDATE asset_balances SET daily_spent = 99 WHERE region = $1 AND user_id = $2 AND asset_symbol = 'USD'`, region, alice.UserID)
	rep, err := db.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if joined := strings.Join(rep.Differences, "\n"); !strings.Contains(joined, "daily counter 99") {
		t.Fatalf("a wrong counter not reported: %v", rep.Differences)
	}
}
