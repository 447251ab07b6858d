package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/migrations"
)

// Multi-region tests (issue 5): pods of different regions over one database, and the rows of a
// user, wherever they are, read behind the API's back.

// userRowRules says, independently of storage's relocation rules, which rows of each REGIONAL
// BY ROW table belong to a user: $1 is the user id, or the phone's blind index for byPhone.
// TestUserRowRulesCoverEveryRegionalTable keeps it complete.
var userRowRules = map[string]struct {
	pred    string
	byPhone bool
}{
	"users":                  {pred: "id = $1"},
	"user_profiles":          {pred: "user_id = $1"},
	"user_auth":              {pred: "user_id = $1"},
	"user_settings":          {pred: "user_id = $1"},
	"notification_settings":  {pred: "user_id = $1"},
	"user_sessions":          {pred: "user_id = $1"},
	"refresh_tokens":         {pred: "user_id = $1"},
	"activity_logs":          {pred: "user_id = $1"},
	"wallets":                {pred: "user_id = $1"},
	"asset_balances":         {pred: "user_id = $1"},
	"ledger_entries":         {pred: "user_id = $1"},
	"transactions":           {pred: "sender_id = $1"},
	"transaction_details":    {pred: "transaction_id IN (SELECT id FROM transactions WHERE sender_id = $1)"},
	"cash_out_details":       {pred: "transaction_id IN (SELECT id FROM transactions WHERE sender_id = $1)"},
	"contacts_with_accounts": {pred: "owner_id = $1"},
	"contact_sync_status":    {pred: "user_id = $1"},
	"payment_requests":       {pred: "requestor_id = $1"},
	"promotion_views":        {pred: "user_id = $1"},
	"otp_codes":              {pred: "phone_bidx = $1", byPhone: true},
}

// notUserRows are the regional tables whose rows belong to no user.
var notUserRows = map[string]string{
	"rate_limits": "counters of the region that counts them",
}

func TestUserRowRulesCoverEveryRegionalTable(t *testing.T) {
	t.Parallel()
	for _, table := range migrations.RegionalTables() {
		_, rule := userRowRules[table]
		_, none := notUserRows[table]
		if rule == none {
			t.Errorf("%s: needs exactly one of a row rule or a reason it holds no user's rows", table)
		}
	}
	if len(userRowRules)+len(notUserRows) != len(migrations.RegionalTables()) {
		t.Errorf("rules for tables that are not regional: %d rules, %d regional tables",
			len(userRowRules)+len(notUserRows), len(migrations.RegionalTables()))
	}
}

// userRows counts a user's rows per table and region, read directly (outside the audited
// pools: these reads do not pin a region on purpose, to find rows wherever they are).
func userRows(t *testing.T, userID, phone string) map[string]map[string]int {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	id := uuid.MustParse(userID)
	bidx := testKeys.BlindIndex("phone", phone)
	out := map[string]map[string]int{}
	for table, rule := range userRowRules {
		var arg any = id
		if rule.byPhone {
			arg = bidx
		}
		rows, err := conn.Query(ctx, "SELECT region::TEXT, count(*) FROM "+table+" WHERE "+rule.pred+" GROUP BY 1", arg)
		if err != nil {
			t.Fatalf("%s: %v", table, err)
		}
		out[table] = map[string]int{}
		for rows.Next() {
			var region string
			var n int
			if err := rows.Scan(&region, &n); err != nil {
				t.Fatal(err)
			}
			out[table][region] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// wantAllRowsIn fails unless every row of the user counted in rows is in region; it returns the
// tables that have rows.
func wantAllRowsIn(t *testing.T, rows map[string]map[string]int, region string) []string {
	t.Helper()
	var with []string
	for table, byRegion := range rows {
		for r, n := range byRegion {
			if r != region {
				t.Errorf("%s: %d rows in %s, want every row in %s", table, n, r, region)
			}
		}
		if byRegion[region] > 0 {
			with = append(with, table)
		}
	}
	sort.Strings(with)
	return with
}

// tokenRegion is the region claim of an access token (read, not verified: the server verifies).
func tokenRegion(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct {
		Region string `json:"region"`
	}
	if err := json.Unmarshal(raw, &claims); err != nil {
		t.Fatal(err)
	}
	return claims.Region
}

// TestThreeRegionPods: three API processes, one per region, over one database. A UAE user signed
// up through the eu-west1 pod is homed in me-central1; every pod serves them (user, balances,
// history, transfers) and names itself in X-Region; every row of the user is in me-central1; a
// transfer from them to a UK user (eu-west1) leaves the transaction with the sender and each
// ledger entry with its owner.
func TestThreeRegionPods(t *testing.T) {
	t.Parallel()
	pods := map[string]*testEnv{}
	for _, region := range testRegions.Names() {
		pods[region] = newTestEnv(t, func(c *Config) { c.Region = region })
	}
	eu, me, us := pods["eu-west1"], pods["me-central1"], pods["us-east1"]

	uaePhone, ukPhone := randomPhone(t, "AE"), randomPhone(t, "GB")
	uae, uaeToken := signUpUser(t, eu, uaePhone)
	uk, ukToken := signUpUser(t, us, ukPhone)
	if got := tokenRegion(t, uaeToken); got != "me-central1" {
		t.Fatalf("UAE user signed up through eu-west1: token region %q, want me-central1", got)
	}
	cashIn(t, me, uae, "AED", "300")

	var history []any
	for _, region := range testRegions.Names() {
		pod := pods[region]
		auth := bearer(uaeToken)
		r := pod.do("GET", "/user", nil, auth...)
		if r.Status != http.StatusOK || r.JSON["id"] != uae || r.JSON["home_region"] != "me-central1" || r.JSON["phone"] != uaePhone {
			t.Fatalf("%s pod: GET /user: %d %s", region, r.Status, r.Body)
		}
		if r.Header.Get("X-Region") != region {
			t.Fatalf("%s pod answered X-Region %q", region, r.Header.Get("X-Region"))
		}
		if b := balanceJSONOf(t, pod, uaeToken, "AED"); b["total"] != "300.00" {
			t.Fatalf("%s pod: AED balance %v", region, b)
		}
		r = pod.do("GET", "/transactions", nil, auth...)
		items, _ := r.JSON["items"].([]any)
		if r.Status != http.StatusOK || len(items) != 1 || r.Header.Get("X-Region") != region {
			t.Fatalf("%s pod: history %d %s", region, r.Status, r.Body)
		}
		if history != nil && !reflect.DeepEqual(history, items) {
			t.Fatalf("%s pod: history differs between pods:\n%v\n%v", region, history, items)
		}
		history = items
	}

	// A cross-region transfer from each pod: UAE (me-central1) → UK (eu-west1).
	var txIDs []string
	for i, region := range testRegions.Names() {
		r := pods[region].do("POST", "/transactions/send", map[string]string{"recipient_phone": ukPhone, "amount": "10",
			"asset": "AED", "reference": uuid.NewString(), "pin": testPIN}, bearer(uaeToken)...)
		if r.Status != http.StatusCreated || r.Header.Get("X-Region") != region {
			t.Fatalf("%s pod: send: %d %s", region, r.Status, r.Body)
		}
		txIDs = append(txIDs, r.JSON["id"].(string))
		want := []string{"290.00", "280.00", "270.00"}[i]
		for _, other := range testRegions.Names() {
			if b := balanceJSONOf(t, pods[other], uaeToken, "AED"); b["available"] != want {
				t.Fatalf("after a send through %s, %s pod shows %v, want %s", region, other, b["available"], want)
			}
		}
	}
	if b := balanceJSONOf(t, me, ukToken, "AED"); b["total"] != "30.00" {
		t.Fatalf("UK user's AED seen through me-central1: %v", b)
	}
	// The recipient sees each transfer from any pod, from their own ledger entries.
	r := us.do("GET", "/transactions/"+txIDs[0], nil, bearer(ukToken)...)
	if r.Status != http.StatusOK || r.JSON["direction"] != "incoming" || r.JSON["amount"] != "10.00" {
		t.Fatalf("recipient's view: %d %s", r.Status, r.Body)
	}

	// Behind the API: every row of the UAE user is in me-central1, the UK user's in eu-west1.
	tables := wantAllRowsIn(t, userRows(t, uae, uaePhone), "me-central1")
	for _, want := range []string{"users", "user_profiles", "user_auth", "user_settings", "notification_settings",
		"user_sessions", "refresh_tokens", "activity_logs", "wallets", "asset_balances", "ledger_entries",
		"transactions", "otp_codes"} {
		if !contains(tables, want) {
			t.Errorf("the UAE user has no %s rows: the check proved nothing there", want)
		}
	}
	wantAllRowsIn(t, userRows(t, uk, ukPhone), "eu-west1")

	// The transfers: the transaction with the sender, each entry with its owner.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, id := range txIDs {
		var txRegion string
		if err := conn.QueryRow(ctx, `SELECT region::TEXT FROM transactions WHERE id = $1`, id).Scan(&txRegion); err != nil {
			t.Fatal(err)
		}
		if txRegion != "me-central1" {
			t.Errorf("transaction %s homed in %s, want the sender's me-central1", id, txRegion)
		}
		rows, err := conn.Query(ctx, `SELECT user_id::TEXT, region::TEXT FROM ledger_entries WHERE transaction_id = $1`, id)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for rows.Next() {
			var u, reg string
			if err := rows.Scan(&u, &reg); err != nil {
				t.Fatal(err)
			}
			got[u] = reg
		}
		rows.Close()
		if want := map[string]string{uae: "me-central1", uk: "eu-west1"}; !reflect.DeepEqual(got, want) {
			t.Errorf("entries of %s: %v, want %v", id, got, want)
		}
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}
