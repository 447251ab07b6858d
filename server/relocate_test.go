package server

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/storage"
)

// TestRelocateUser: a UAE user with balances, history both ways, sessions, a pending cash-out,
// an OTP challenge, and rows in every table no endpoint writes yet (contacts, sync status,
// payment requests both ways, a promotion view, transaction details) moves from me-central1 to
// eu-west1 through POST /ops/users/{id}/relocate. Every row follows, nothing else changes
// (balances, history on both sides, the books), the old tokens stop working, and the next login
// carries the new region.
func TestRelocateUser(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	env := newTestEnv(t)
	aPhone, bPhone := randomPhone(t, "AE"), randomPhone(t, "SA")
	a, aAccess, aRefresh := signUpUserWithRefresh(t, env, aPhone)
	b, bToken := signUpUser(t, env, bPhone) // also me-central1: their shared rows must not move
	cashIn(t, env, a, "AED", "500")
	cashIn(t, env, b, "AED", "100")
	send := func(token, to, amount string) string {
		t.Helper()
		r := env.do("POST", "/transactions/send", map[string]string{"recipient_phone": to, "amount": amount,
			"asset": "AED", "reference": uuid.NewString(), "pin": testPIN, "note": "rent"}, bearer(token)...)
		if r.Status != http.StatusCreated {
			t.Fatalf("send: %d %s", r.Status, r.Body)
		}
		return r.JSON["id"].(string)
	}
	sentTx := send(aAccess, bPhone, "40")
	send(bToken, aPhone, "15")
	r := env.do("POST", "/transactions/cashout", map[string]string{"amount": "25", "asset": "AED", "method": "agent",
		"reference": uuid.NewString(), "pin": testPIN}, bearer(aAccess)...)
	cashOut, _ := r.JSON["transaction"].(map[string]any)
	if r.Status != http.StatusCreated || cashOut["status"] != "pending" {
		t.Fatalf("cash-out: %d %s", r.Status, r.Body)
	}
	cashOutID := cashOut["id"].(string)
	sendOTP(t, env, aPhone, "reset_pin") // a live challenge, homed with the phone (its cooldown moves too)

	// Rows the API has no endpoint for yet, written as their endpoints will write them.
	promo := uuid.New()
	for _, s := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO promotions (id, title) VALUES ($1, 'Relocation test')`, []any{promo}},
		{`INSERT INTO promotion_views (region, promotion_id, user_id) VALUES ('me-central1', $1, $2)`, []any{promo, a}},
		{`INSERT INTO contacts_with_accounts (region, owner_id, phone_bidx, linked_user_id) VALUES ('me-central1', $1, $2, $3)`,
			[]any{a, testKeys.BlindIndex("phone", bPhone), b}},
		{`INSERT INTO contact_sync_status (user_id, region, status) VALUES ($1, 'me-central1', 'completed')`, []any{a}},
		{`INSERT INTO payment_requests (region, requestor_id, recipient_id, recipient_region, amount, asset_symbol)
VALUES ('me-central1', $1, $2, 'me-central1', 5, 'AED')`, []any{a, b}},
		{`INSERT INTO payment_requests (region, requestor_id, recipient_id, recipient_region, amount, asset_symbol)
VALUES ('me-central1', $1, $2, 'me-central1', 7, 'AED')`, []any{b, a}},
		{`INSERT INTO transaction_details (transaction_id, region, network) VALUES ($1, 'me-central1', 'internal')`, []any{sentTx}},
	} {
		execSQL(t, s.sql, s.args...)
	}

	before := userRows(t, a, aPhone)
	tables := wantAllRowsIn(t, before, "me-central1")
	for table := range userRowRules {
		if !contains(tables, table) {
			t.Fatalf("the user has no %s rows: the test would prove nothing there", table)
		}
	}
	bBefore := userRows(t, b, bPhone)
	history := func(token string) []any {
		t.Helper()
		r := env.do("GET", "/transactions?limit=100", nil, bearer(token)...)
		if r.Status != http.StatusOK {
			t.Fatalf("history: %d %s", r.Status, r.Body)
		}
		return r.JSON["items"].([]any)
	}
	balances := func(token string) []any {
		t.Helper()
		r := env.do("GET", "/wallet/balances", nil, bearer(token)...)
		if r.Status != http.StatusOK {
			t.Fatalf("balances: %d %s", r.Status, r.Body)
		}
		return r.JSON["balances"].([]any)
	}
	aHistory, aBalances, bHistory := history(aAccess), balances(aAccess), history(bToken)
	if len(aHistory) != 4 { // cash-in, sent, received, pending cash-out
		t.Fatalf("history before: %v", aHistory)
	}
	if b := balanceJSONOf(t, env, aAccess, "AED"); b["total"] != "475.00" || b["pending"] != "25.00" {
		t.Fatalf("AED before: %v", b)
	}
	books := reconcile(t, env)
	if !books.OK() {
		t.Fatalf("books before relocation: %v", books.Differences)
	}

	// Refusals first: nothing may move.
	path := "/ops/users/" + a + "/relocate"
	wantProblem(t, env.do("POST", path, map[string]string{"region": "eu-west1"}), http.StatusUnauthorized, "invalid_ops_key")
	wantProblem(t, env.do("POST", path, map[string]string{"region": "mars-north1"}, opsHeaders()...), http.StatusUnprocessableEntity, "unknown_region")
	wantProblem(t, env.do("POST", path, map[string]string{}, opsHeaders()...), http.StatusUnprocessableEntity, "validation_failed")
	wantProblem(t, env.do("POST", "/ops/users/"+uuid.NewString()+"/relocate", map[string]string{"region": "eu-west1"}, opsHeaders()...),
		http.StatusNotFound, "not_found")
	wantProblem(t, env.do("POST", "/ops/users/"+storage.SystemUserID("me-central1", storage.SystemFees).String()+"/relocate",
		map[string]string{"region": "eu-west1"}, opsHeaders()...), http.StatusConflict, "system_account")
	if r := env.do("POST", path, map[string]string{"region": "me-central1"}, opsHeaders()...); r.Status != http.StatusOK ||
		r.JSON["relocated"] != false || r.JSON["from_region"] != "me-central1" {
		t.Fatalf("relocating to the current home: %d %s", r.Status, r.Body)
	}
	if got := userRows(t, a, aPhone); !reflect.DeepEqual(got, before) {
		t.Fatalf("refusals moved rows:\n%v\n%v", before, got)
	}
	wantAvailable(t, env, aAccess, "AED", "450.00") // the no-op revoked nothing either

	r = env.do("POST", path, map[string]string{"region": "eu-west1"}, opsHeaders()...)
	if r.Status != http.StatusOK || r.JSON["from_region"] != "me-central1" || r.JSON["home_region"] != "eu-west1" ||
		r.JSON["relocated"] != true || r.JSON["user_id"] != a {
		t.Fatalf("relocate: %d %s", r.Status, r.Body)
	}

	// Every row moved, and only the user's: the counts are the same (plus the audit row).
	after := userRows(t, a, aPhone)
	wantAllRowsIn(t, after, "eu-west1")
	for table, byRegion := range before {
		want := byRegion["me-central1"]
		if table == "activity_logs" {
			want++ // the relocation's own audit row
		}
		if after[table]["eu-west1"] != want {
			t.Errorf("%s: %d rows in eu-west1 after, %d in me-central1 before", table, after[table]["eu-west1"], byRegion["me-central1"])
		}
	}
	if got := userRows(t, b, bPhone); !reflect.DeepEqual(got, bBefore) {
		t.Errorf("the counterparty's rows changed:\n%v\n%v", bBefore, got)
	}
	conn, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var phoneHome, requestTo, txRegion string
	if err := conn.QueryRow(ctx, `SELECT
    (SELECT home_region::TEXT FROM phone_directory WHERE user_id = $1),
    (SELECT recipient_region::TEXT FROM payment_requests WHERE requestor_id = $2 AND recipient_id = $1),
    (SELECT region::TEXT FROM transactions WHERE recipient_id = $1 AND sender_id = $2)`, a, b).Scan(&phoneHome, &requestTo, &txRegion); err != nil {
		t.Fatal(err)
	}
	if phoneHome != "eu-west1" || requestTo != "eu-west1" || txRegion != "me-central1" {
		t.Errorf("directory %s, request addressed to the user %s (want eu-west1 both); transfer the user received %s (want its sender's me-central1)",
			phoneHome, requestTo, txRegion)
	}

	// The old tokens: money and account changes refuse them at once (sessions revoked,
	// tokens_not_before); reads that trust the token find nothing in the old region; the refresh
	// token names the old region and its session is revoked.
	wantProblem(t, env.do("POST", "/transactions/send", map[string]string{"recipient_phone": bPhone, "amount": "1",
		"asset": "AED", "reference": uuid.NewString(), "pin": testPIN}, bearer(aAccess)...), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, env.do("PATCH", "/user", map[string]string{"first_name": "X"}, bearer(aAccess)...), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, env.do("GET", "/user", nil, bearer(aAccess)...), http.StatusNotFound, "not_found")
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": aRefresh}), http.StatusUnauthorized, "invalid_refresh_token")

	// A new login is homed in eu-west1 and sees the same money and history.
	newAccess, _ := loginTokens(t, env, aPhone, testPIN)
	if got := tokenRegion(t, newAccess); got != "eu-west1" {
		t.Fatalf("new token region %q, want eu-west1", got)
	}
	r = env.do("GET", "/user", nil, bearer(newAccess)...)
	if r.Status != http.StatusOK || r.JSON["home_region"] != "eu-west1" || r.JSON["phone"] != aPhone ||
		!strings.HasPrefix(fmt.Sprint(r.JSON["profile"].(map[string]any)["first_name"]), "Test") {
		t.Fatalf("GET /user after relocation: %d %s", r.Status, r.Body)
	}
	if got := balances(newAccess); !reflect.DeepEqual(got, aBalances) {
		t.Errorf("balances changed:\n%v\n%v", aBalances, got)
	}
	if got := history(newAccess); !reflect.DeepEqual(got, aHistory) {
		t.Errorf("history changed:\n%v\n%v", aHistory, got)
	}
	if got := history(bToken); !reflect.DeepEqual(got, bHistory) {
		t.Errorf("the counterparty's history changed:\n%v\n%v", bHistory, got)
	}
	got := reconcile(t, env)
	if !got.OK() || len(got.Assets) != len(books.Assets) {
		t.Errorf("books after relocation: %v (before %v)", got, books)
	}
	for asset, sum := range books.Assets {
		if !got.Assets[asset].Equal(sum) {
			t.Errorf("%s: balances sum to %s after relocation, %s before", asset, got.Assets[asset], sum)
		}
	}

	// Money keeps moving both ways, and the pending cash-out settles in its new region.
	send(newAccess, bPhone, "10")
	send(bToken, aPhone, "3")
	if r := env.do("POST", "/ops/cash-outs/"+cashOutID+"/collect", nil, opsHeaders()...); r.Status != http.StatusOK || r.JSON["status"] != "completed" {
		t.Fatalf("collect after relocation: %d %s", r.Status, r.Body)
	}
	if b := balanceJSONOf(t, env, newAccess, "AED"); b["total"] != "443.00" || b["pending"] != "0.00" {
		t.Fatalf("AED after: %v", b)
	}
	wantAllRowsIn(t, userRows(t, a, aPhone), "eu-west1")
	if rep := reconcile(t, env); !rep.OK() {
		t.Fatalf("books: %v", rep.Differences)
	}
	// Idempotent: the same call again changes nothing and keeps the new session.
	if r := env.do("POST", path, map[string]string{"region": "eu-west1"}, opsHeaders()...); r.Status != http.StatusOK ||
		r.JSON["relocated"] != false || r.JSON["from_region"] != "eu-west1" {
		t.Fatalf("relocating again: %d %s", r.Status, r.Body)
	}
	wantAvailable(t, env, newAccess, "AED", "443.00")
}

// reconcile proves the whole database's books. Another test of the package tampers with a
// balance for a moment (TestDeleteUser's non-empty refusal), so a failing report is taken again
// a few times before it counts: a real imbalance persists.
func reconcile(t *testing.T, env *testEnv) storage.ReconcileReport {
	t.Helper()
	var rep storage.ReconcileReport
	for range 40 {
		var err error
		if rep, err = env.db.Reconcile(context.Background()); err != nil {
			t.Fatal(err)
		}
		if rep.OK() {
			return rep
		}
		time.Sleep(100 * time.Millisecond)
	}
	return rep
}
