package server

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// HTTP tests of the Wallet, Transactions and Operators sections of api.md, on the real router
// and database. Users come from the real sign-up flow (PIN testPIN).

const opsKey = "test-ops-key"

func opsHeaders() []string { return []string{"X-Ops-Key", opsKey} }

// execSQL changes state the API has no endpoint for (freezing a wallet, a daily limit).
func execSQL(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, testURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatal(err)
	}
}

// cashIn funds a user through the operator endpoint and returns the answer.
func cashIn(t *testing.T, env *testEnv, userID, asset, amount string) *response {
	t.Helper()
	r := env.do("POST", "/ops/cash-in", map[string]string{"user_id": userID, "asset": asset, "amount": amount,
		"reference": uuid.NewString()}, opsHeaders()...)
	if r.Status != http.StatusCreated {
		t.Fatalf("cash-in: %d %s", r.Status, r.Body)
	}
	return r
}

func balanceJSONOf(t *testing.T, env *testEnv, token, asset string) map[string]any {
	t.Helper()
	r := env.do("GET", "/wallet/balances", nil, bearer(token)...)
	if r.Status != http.StatusOK {
		t.Fatalf("balances: %d %s", r.Status, r.Body)
	}
	for _, b := range r.JSON["balances"].([]any) {
		if m := b.(map[string]any); m["asset"] == asset {
			return m
		}
	}
	t.Fatalf("no %s balance: %s", asset, r.Body)
	return nil
}

func wantAvailable(t *testing.T, env *testEnv, token, asset, want string) {
	t.Helper()
	if got := balanceJSONOf(t, env, token, asset)["available"]; got != want {
		t.Fatalf("%s available = %v, want %s", asset, got, want)
	}
}

func TestAssetsAndRates(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	r := env.do("GET", "/assets", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("assets: %d %s", r.Status, r.Body)
	}
	items := r.JSON["items"].([]any)
	first := items[0].(map[string]any)
	if len(items) < 8 || first["symbol"] != "USD" || first["decimals"] != float64(2) || first["min_amount"] != "0.01" ||
		first["max_amount"] != "50000" || first["network"] != nil || first["asset_type"] != "fiat" {
		t.Fatalf("assets: %s", r.Body)
	}

	_, token := signUpUser(t, env, randomPhone(t, "AE"))
	wantProblem(t, env.do("GET", "/exchange-rates?base=USD", nil), http.StatusUnauthorized, "unauthorized")
	r = env.do("GET", "/exchange-rates?base=USD", nil, bearer(token)...)
	rates, _ := r.JSON["rates"].(map[string]any)
	if r.Status != http.StatusOK || r.JSON["base"] != "USD" || rates["AED"] != "3.6725" || rates["USD"] != nil || r.JSON["as_of"] == nil {
		t.Fatalf("rates: %d %s", r.Status, r.Body)
	}
	// Cross rates go through USD: 1 AED = 3.75 / 3.6725 SAR.
	r = env.do("GET", "/exchange-rates?base=AED", nil, bearer(token)...)
	rates, _ = r.JSON["rates"].(map[string]any)
	if r.Status != http.StatusOK || rates["SAR"] != "1.021102791014295439" || rates["AED"] != nil {
		t.Fatalf("AED rates: %s", r.Body)
	}
	wantProblem(t, env.do("GET", "/exchange-rates?base=XYZ", nil, bearer(token)...), http.StatusUnprocessableEntity, "asset_unavailable")
}

func TestWalletBalances(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	wantProblem(t, env.do("GET", "/wallet/balance", nil), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, env.do("GET", "/wallet/balances", nil, bearer("nonsense")...), http.StatusUnauthorized, "unauthorized")
	id, token := signUpUser(t, env, randomPhone(t, "AE"))
	r := env.do("GET", "/wallet/balance", nil, bearer(token)...)
	if r.Status != http.StatusOK || r.JSON["asset"] != "AED" || r.JSON["total"] != "0.00" || r.JSON["available"] != "0.00" ||
		r.JSON["pending"] != "0.00" || r.JSON["updated_at"] == nil {
		t.Fatalf("balance: %d %s", r.Status, r.Body)
	}
	cashIn(t, env, id, "AED", "250.5")
	cashIn(t, env, id, "BTC", "0.00012")
	r = env.do("GET", "/wallet/balance", nil, bearer(token)...)
	if r.JSON["total"] != "250.50" || r.JSON["available"] != "250.50" {
		t.Fatalf("balance after cash-in: %s", r.Body)
	}
	r = env.do("GET", "/wallet/balances", nil, bearer(token)...)
	if r.Status != http.StatusOK || r.JSON["wallet_id"] == "" || len(r.JSON["balances"].([]any)) < 8 {
		t.Fatalf("balances: %s", r.Body)
	}
	if b := balanceJSONOf(t, env, token, "BTC"); b["total"] != "0.00012000" {
		t.Fatalf("BTC: %v", b)
	}
}

func TestSendFlowAndErrors(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	alicePhone, bobPhone := randomPhone(t, "AE"), randomPhone(t, "GB")
	alice, aliceToken := signUpUser(t, env, alicePhone)
	bob, bobToken := signUpUser(t, env, bobPhone)
	cashIn(t, env, alice, "USD", "100")
	auth := bearer(aliceToken)

	body := map[string]string{"recipient_phone": bobPhone, "amount": "12.50", "asset": "USD",
		"reference": uuid.NewString(), "pin": testPIN, "note": "dinner"}
	r := env.do("POST", "/transactions/send", body, auth...)
	if r.Status != http.StatusCreated || r.Header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	cp, _ := r.JSON["counterparty"].(map[string]any)
	if r.JSON["type"] != "transfer" || r.JSON["status"] != "completed" || r.JSON["direction"] != "outgoing" ||
		r.JSON["amount"] != "12.50" || r.JSON["fee"] != "0.00" || r.JSON["asset"] != "USD" || r.JSON["note"] != "dinner" ||
		r.JSON["reference"] != body["reference"] || r.JSON["exchange_rate"] != nil || r.JSON["completed_at"] == nil ||
		cp["user_id"] != bob || cp["display_name"] != "Test U." || cp["phone"] != "•••• "+bobPhone[len(bobPhone)-4:] {
		t.Fatalf("send body: %s", r.Body)
	}
	if strings.Contains(string(r.Body), bobPhone) {
		t.Fatal("the recipient's phone leaked unmasked")
	}
	wantAvailable(t, env, aliceToken, "USD", "87.50")
	wantAvailable(t, env, bobToken, "USD", "12.50")

	// Replay: same reference and body → 200, the same body, header set, nothing applied twice.
	again := env.do("POST", "/transactions/send", body, auth...)
	if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("replay: %d %s\nfirst: %s", again.Status, again.Body, r.Body)
	}
	// After a restart (a new server over the same database) the replay is the same.
	env2 := newTestEnv(t)
	restarted := env2.do("POST", "/transactions/send", body, auth...)
	if restarted.Status != http.StatusOK || !bytes.Equal(restarted.Body, r.Body) {
		t.Fatalf("replay after restart: %d %s", restarted.Status, restarted.Body)
	}
	wantAvailable(t, env, aliceToken, "USD", "87.50")
	changed := map[string]string{}
	for k, v := range body {
		changed[k] = v
	}
	changed["amount"] = "13"
	wantProblem(t, env.do("POST", "/transactions/send", changed, auth...), http.StatusConflict, "idempotency_conflict")

	send := func(change func(map[string]string)) *response {
		b := map[string]string{"recipient_id": bob, "amount": "1", "asset": "USD", "reference": uuid.NewString(), "pin": testPIN}
		change(b)
		return env.do("POST", "/transactions/send", b, auth...)
	}
	for _, c := range []struct {
		name   string
		change func(map[string]string)
		status int
		code   string
	}{
		{"overdraft", func(b map[string]string) { b["amount"] = "87.51" }, 422, "insufficient_funds"},
		{"self by id", func(b map[string]string) { b["recipient_id"] = alice }, 422, "invalid_recipient"},
		{"self by phone", func(b map[string]string) { delete(b, "recipient_id"); b["recipient_phone"] = alicePhone }, 422, "invalid_recipient"},
		{"unknown phone", func(b map[string]string) { delete(b, "recipient_id"); b["recipient_phone"] = randomPhone(t, "AE") }, 404, "recipient_not_found"},
		{"unknown id", func(b map[string]string) { b["recipient_id"] = uuid.NewString() }, 404, "recipient_not_found"},
		{"malformed id", func(b map[string]string) { b["recipient_id"] = "not-a-uuid" }, 404, "recipient_not_found"},
		{"both recipients", func(b map[string]string) { b["recipient_phone"] = bobPhone }, 422, "validation_failed"},
		{"no recipient", func(b map[string]string) { delete(b, "recipient_id") }, 422, "validation_failed"},
		{"bad phone", func(b map[string]string) { delete(b, "recipient_id"); b["recipient_phone"] = "12" }, 422, "invalid_phone"},
		{"zero", func(b map[string]string) { b["amount"] = "0" }, 422, "invalid_amount"},
		{"zero decimals", func(b map[string]string) { b["amount"] = "0.00" }, 422, "invalid_amount"},
		{"negative", func(b map[string]string) { b["amount"] = "-1" }, 422, "invalid_amount"},
		{"exponent", func(b map[string]string) { b["amount"] = "1e2" }, 422, "invalid_amount"},
		{"NaN", func(b map[string]string) { b["amount"] = "NaN" }, 422, "invalid_amount"},
		{"Infinity", func(b map[string]string) { b["amount"] = "Infinity" }, 422, "invalid_amount"},
		{"scale", func(b map[string]string) { b["amount"] = "1.001" }, 422, "invalid_amount"},
		{"leading zero", func(b map[string]string) { b["amount"] = "01" }, 422, "invalid_amount"},
		{"space", func(b map[string]string) { b["amount"] = " 1" }, 422, "invalid_amount"},
		{"empty", func(b map[string]string) { b["amount"] = "" }, 422, "invalid_amount"},
		{"over max", func(b map[string]string) { b["amount"] = "50000.01" }, 422, "invalid_amount"},
		{"under min", func(b map[string]string) { b["asset"] = "EGP"; b["amount"] = "0.50" }, 422, "invalid_amount"},
		{"unknown asset", func(b map[string]string) { b["asset"] = "XYZ" }, 422, "asset_unavailable"},
		{"wrong pin", func(b map[string]string) { b["pin"] = "2468" }, 401, "invalid_pin"},
		{"malformed pin", func(b map[string]string) { b["pin"] = "abc" }, 401, "invalid_pin"},
		{"bad reference", func(b map[string]string) { b["reference"] = "has space" }, 422, "validation_failed"},
		{"long note", func(b map[string]string) { b["note"] = strings.Repeat("n", 201) }, 422, "validation_failed"},
	} {
		wantProblem(t, send(c.change), c.status, c.code)
	}
	// A number instead of a string is malformed JSON for this field; unknown fields are refused.
	wantProblem(t, env.do("POST", "/transactions/send", `{"recipient_id":"`+bob+`","amount":1,"asset":"USD","reference":"r1","pin":"1357"}`, auth...),
		http.StatusBadRequest, "malformed_json")
	wantProblem(t, env.do("POST", "/transactions/send", `{"recipient_id":"`+bob+`","amount":"1","asset":"USD","reference":"r1","pin":"1357","fee":"0"}`, auth...),
		http.StatusBadRequest, "unknown_field")
	wantProblem(t, env.do("POST", "/transactions/send", body), http.StatusUnauthorized, "unauthorized")
	wantAvailable(t, env, aliceToken, "USD", "87.50")

	// The daily limit counts today's outgoing amounts in the asset.
	execSQL(t, `UPDATE user_settings SET daily_limit = 20 WHERE region = $1 AND user_id = $2`, testRegions.Primary(), alice)
	wantProblem(t, send(func(b map[string]string) { b["amount"] = "7.51" }), 422, "daily_limit_exceeded")
	if r := send(func(b map[string]string) { b["amount"] = "7.50" }); r.Status != http.StatusCreated {
		t.Fatalf("within the limit: %d %s", r.Status, r.Body)
	}
	// A frozen wallet cannot send.
	execSQL(t, `UPDATE wallets SET status = 'frozen' WHERE region = $1 AND user_id = $2`, testRegions.Primary(), alice)
	wantProblem(t, send(func(b map[string]string) {}), http.StatusForbidden, "wallet_frozen")
}

func TestTransactionsHistory(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	bobPhone := randomPhone(t, "US")
	alice, aliceToken := signUpUser(t, env, randomPhone(t, "AE"))
	bob, bobToken := signUpUser(t, env, bobPhone)
	_, eveToken := signUpUser(t, env, randomPhone(t, "AE"))
	cashIn(t, env, alice, "USD", "100")
	var lastID string
	for i := 0; i < 5; i++ {
		r := env.do("POST", "/transactions/send", map[string]string{"recipient_id": bob, "amount": "2", "asset": "USD",
			"reference": uuid.NewString(), "pin": testPIN}, bearer(aliceToken)...)
		if r.Status != http.StatusCreated {
			t.Fatalf("send: %d %s", r.Status, r.Body)
		}
		lastID = r.JSON["id"].(string)
	}
	// Pages of 2 over 6 items (1 cash-in + 5 transfers), newest first.
	var ids []string
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		path := "/transactions?limit=2"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		r := env.do("GET", path, nil, bearer(aliceToken)...)
		if r.Status != http.StatusOK {
			t.Fatalf("list: %d %s", r.Status, r.Body)
		}
		for _, it := range r.JSON["items"].([]any) {
			ids = append(ids, it.(map[string]any)["id"].(string))
		}
		next, _ := r.JSON["next_cursor"].(string)
		if next == "" {
			if _, ok := r.JSON["next_cursor"]; !ok {
				t.Fatal("next_cursor missing, want null")
			}
			break
		}
		cursor = next
	}
	if len(ids) != 6 || ids[0] != lastID {
		t.Fatalf("pages: %v (last sent %s)", ids, lastID)
	}
	r := env.do("GET", "/transactions?direction=incoming&type=cash_in&status=completed&asset=USD", nil, bearer(aliceToken)...)
	if items := r.JSON["items"].([]any); r.Status != http.StatusOK || len(items) != 1 {
		t.Fatalf("filtered: %s", r.Body)
	}
	r = env.do("GET", "/transactions?from=2000-01-01T00:00:00Z&to=2001-01-01T00:00:00Z", nil, bearer(aliceToken)...)
	if items := r.JSON["items"].([]any); len(items) != 0 {
		t.Fatalf("time window: %s", r.Body)
	}
	// Bob sees incoming transfers with Alice masked, and no reference of hers.
	r = env.do("GET", "/transactions/"+lastID, nil, bearer(bobToken)...)
	cp, _ := r.JSON["counterparty"].(map[string]any)
	if r.Status != http.StatusOK || r.JSON["direction"] != "incoming" || r.JSON["reference"] != nil || cp["display_name"] != "Test U." {
		t.Fatalf("bob's view: %s", r.Body)
	}
	// Someone else's transaction, an unknown and a malformed id: 404.
	wantProblem(t, env.do("GET", "/transactions/"+lastID, nil, bearer(eveToken)...), http.StatusNotFound, "not_found")
	wantProblem(t, env.do("GET", "/transactions/"+uuid.NewString(), nil, bearer(aliceToken)...), http.StatusNotFound, "not_found")
	wantProblem(t, env.do("GET", "/transactions/xyz", nil, bearer(aliceToken)...), http.StatusNotFound, "not_found")
	for _, q := range []string{"type=gift", "status=done", "direction=up", "asset=usd", "from=yesterday", "limit=0", "limit=101", "limit=x", "type=transfer&type=cash_in"} {
		wantProblem(t, env.do("GET", "/transactions?"+q, nil, bearer(aliceToken)...), http.StatusUnprocessableEntity, "validation_failed")
	}
	wantProblem(t, env.do("GET", "/transactions?cursor=bogus", nil, bearer(aliceToken)...), http.StatusBadRequest, "invalid_cursor")
	wantProblem(t, env.do("GET", "/transactions", nil), http.StatusUnauthorized, "unauthorized")
}

func TestCashOutAndOps(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "SA")
	user, token := signUpUser(t, env, phone)
	auth := bearer(token)

	// Operator key.
	in := map[string]string{"phone": phone, "asset": "SAR", "amount": "300", "reference": uuid.NewString()}
	wantProblem(t, env.do("POST", "/ops/cash-in", in), http.StatusUnauthorized, "invalid_ops_key")
	wantProblem(t, env.do("POST", "/ops/cash-in", in, "X-Ops-Key", "wrong"), http.StatusUnauthorized, "invalid_ops_key")
	first := env.do("POST", "/ops/cash-in", in, opsHeaders()...)
	cp, _ := first.JSON["counterparty"].(map[string]any)
	if first.Status != http.StatusCreated || first.JSON["type"] != "cash_in" || first.JSON["amount"] != "300.00" || cp["user_id"] != user {
		t.Fatalf("cash-in: %d %s", first.Status, first.Body)
	}
	again := env.do("POST", "/ops/cash-in", in, opsHeaders()...)
	if again.Status != http.StatusOK || again.Header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.Body, first.Body) {
		t.Fatalf("cash-in replay: %d %s", again.Status, again.Body)
	}
	in2 := map[string]string{"phone": phone, "asset": "SAR", "amount": "301", "reference": in["reference"]}
	wantProblem(t, env.do("POST", "/ops/cash-in", in2, opsHeaders()...), http.StatusConflict, "idempotency_conflict")
	wantProblem(t, env.do("POST", "/ops/cash-in", map[string]string{"phone": randomPhone(t, "SA"), "asset": "SAR", "amount": "1",
		"reference": uuid.NewString()}, opsHeaders()...), http.StatusNotFound, "recipient_not_found")
	wantProblem(t, env.do("POST", "/ops/cash-in", map[string]string{"user_id": user, "asset": "SAR", "amount": "0.01",
		"reference": uuid.NewString()}, opsHeaders()...), http.StatusUnprocessableEntity, "invalid_amount")
	wantAvailable(t, env, token, "SAR", "300.00")

	hold := func(amount string) *response {
		return env.do("POST", "/transactions/cashout", map[string]string{"amount": amount, "asset": "SAR", "method": "agent",
			"provider": "acme", "reference": uuid.NewString(), "pin": testPIN}, auth...)
	}
	r := hold("100")
	tx, _ := r.JSON["transaction"].(map[string]any)
	co, _ := r.JSON["cash_out"].(map[string]any)
	code, _ := co["pickup_code"].(string)
	if r.Status != http.StatusCreated || tx["status"] != "pending" || tx["type"] != "cash_out" || co["method"] != "agent" ||
		co["provider"] != "acme" || len(code) != 8 || co["expires_at"] == nil {
		t.Fatalf("cash-out: %d %s", r.Status, r.Body)
	}
	if b := balanceJSONOf(t, env, token, "SAR"); b["available"] != "200.00" || b["pending"] != "100.00" || b["total"] != "300.00" {
		t.Fatalf("after hold: %v", b)
	}
	id := tx["id"].(string)
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+id+"/collect", nil), http.StatusUnauthorized, "invalid_ops_key")
	c := env.do("POST", "/ops/cash-outs/"+id+"/collect", nil, opsHeaders()...)
	if c.Status != http.StatusOK || c.JSON["status"] != "completed" {
		t.Fatalf("collect: %d %s", c.Status, c.Body)
	}
	if b := balanceJSONOf(t, env, token, "SAR"); b["available"] != "200.00" || b["pending"] != "0.00" || b["total"] != "200.00" {
		t.Fatalf("after collect: %v", b)
	}
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+id+"/collect", nil, opsHeaders()...), http.StatusConflict, "cash_out_not_pending")
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+id+"/cancel", nil, opsHeaders()...), http.StatusConflict, "cash_out_not_pending")
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+uuid.NewString()+"/cancel", nil, opsHeaders()...), http.StatusNotFound, "not_found")
	wantProblem(t, env.do("POST", "/ops/cash-outs/nope/cancel", nil, opsHeaders()...), http.StatusNotFound, "not_found")

	r = hold("50")
	id = r.JSON["transaction"].(map[string]any)["id"].(string)
	c = env.do("POST", "/ops/cash-outs/"+id+"/cancel", nil, opsHeaders()...)
	if c.Status != http.StatusOK || c.JSON["status"] != "cancelled" {
		t.Fatalf("cancel: %d %s", c.Status, c.Body)
	}
	wantAvailable(t, env, token, "SAR", "200.00")
	wantProblem(t, hold("200.01"), http.StatusUnprocessableEntity, "insufficient_funds")
	r = env.do("POST", "/transactions/cashout", map[string]string{"amount": "1", "asset": "SAR", "method": "pigeon",
		"reference": uuid.NewString(), "pin": testPIN}, auth...)
	wantProblem(t, r, http.StatusUnprocessableEntity, "validation_failed")

	// Without a configured key the operator routes do not exist.
	closed := newTestEnv(t, func(c *Config) { c.OpsAPIKey = "" })
	wantProblem(t, closed.do("POST", "/ops/cash-in", in, "X-Ops-Key", ""), http.StatusNotFound, "route_not_found")
}

func TestExchangeHTTP(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	user, token := signUpUser(t, env, randomPhone(t, "AE"))
	cashIn(t, env, user, "USD", "100")
	body := map[string]string{"from_asset": "USD", "to_asset": "AED", "amount": "10", "reference": uuid.NewString(), "pin": testPIN}
	r := env.do("POST", "/transactions/exchange", body, bearer(token)...)
	if r.Status != http.StatusCreated || r.JSON["type"] != "exchange" || r.JSON["exchange_rate"] != "3.6725" ||
		r.JSON["to_amount"] != "36.72" || r.JSON["to_asset"] != "AED" || r.JSON["amount"] != "10.00" {
		t.Fatalf("exchange: %d %s", r.Status, r.Body)
	}
	wantAvailable(t, env, token, "USD", "90.00")
	wantAvailable(t, env, token, "AED", "36.72")
	again := env.do("POST", "/transactions/exchange", body, bearer(token)...)
	if again.Status != http.StatusOK || !bytes.Equal(again.Body, r.Body) {
		t.Fatalf("replay: %d %s", again.Status, again.Body)
	}
	body["to_asset"] = "USD"
	body["reference"] = uuid.NewString()
	wantProblem(t, env.do("POST", "/transactions/exchange", body, bearer(token)...), http.StatusUnprocessableEntity, "validation_failed")
	body["to_asset"], body["amount"] = "BTC", "1000"
	wantProblem(t, env.do("POST", "/transactions/exchange", body, bearer(token)...), http.StatusUnprocessableEntity, "insufficient_funds")
	body["to_asset"] = "XYZ"
	wantProblem(t, env.do("POST", "/transactions/exchange", body, bearer(token)...), http.StatusUnprocessableEntity, "asset_unavailable")
}
