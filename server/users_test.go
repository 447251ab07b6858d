package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/7awel/wallet/migrations"
	"github.com/7awel/wallet/storage"
)

func TestGetAndPatchUser(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	userID, access := signUpUser(t, env, randomPhone(t, "AE"))
	auth := bearer(access)
	email := "Patch-" + randDigits(8) + "@Example.com"
	r := env.do("PATCH", "/user", map[string]string{
		"first_name": " Nour ", "last_name": "Khalil", "email": email, "date_of_birth": "1988-12-31",
		"gender": "other", "country": "EG", "address": "12 Nile St, Cairo", "avatar_url": "https://cdn.example.com/a.png",
	}, auth...)
	if r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	p := r.JSON["profile"].(map[string]any)
	if r.JSON["email"] != strings.ToLower(email) || r.JSON["email_verified"] != false || p["first_name"] != "Nour" ||
		p["address"] != "12 Nile St, Cairo" || p["country"] != "EG" || p["avatar_url"] != "https://cdn.example.com/a.png" {
		t.Fatalf("patched user = %s", r.Body)
	}
	// Partial: an absent field is kept, an empty string clears an optional one.
	r = env.do("PATCH", "/user", map[string]string{"address": ""}, auth...)
	p = r.JSON["profile"].(map[string]any)
	if r.Status != 200 || p["address"] != nil || p["first_name"] != "Nour" {
		t.Fatalf("clear address: %d %s", r.Status, r.Body)
	}
	if g := env.do("GET", "/user", nil, auth...); g.JSON["id"] != userID || g.JSON["profile"].(map[string]any)["last_name"] != "Khalil" {
		t.Fatalf("GET /user = %s", g.Body)
	}

	// Mass assignment: server-owned fields are refused, and nothing changes.
	for _, field := range []string{"status", "kyc_level", "home_region", "id", "phone", "phone_verified", "email_verified"} {
		r := env.do("PATCH", "/user", map[string]any{field: "full", "first_name": "Mallory"}, auth...)
		wantProblem(t, r, 400, "unknown_field")
	}
	if g := env.do("GET", "/user", nil, auth...); g.JSON["status"] != "active" || g.JSON["kyc_level"] != "none" ||
		g.JSON["home_region"] != "me-central1" || g.JSON["profile"].(map[string]any)["first_name"] != "Nour" {
		t.Fatalf("mass assignment changed the user: %s", g.Body)
	}
	for body, code := range map[string]string{
		`{"email":"nope"}`:                                  "invalid_email",
		`{"gender":"robot"}`:                                "validation_failed",
		`{"date_of_birth":"31-12-1988"}`:                    "validation_failed",
		`{"avatar_url":"javascript:alert(1)"}`:              "validation_failed",
		`{"first_name":""}`:                                 "validation_failed",
		`{"country":"egypt"}`:                               "validation_failed",
		`{"first_name":"` + strings.Repeat("a", 101) + `"}`: "validation_failed",
	} {
		wantProblem(t, env.do("PATCH", "/user", body, auth...), 422, code)
	}

	// Another user's email is taken; dropping it frees it.
	_, access2 := signUpUser(t, env, randomPhone(t, "AE"))
	wantProblem(t, env.do("PATCH", "/user", map[string]string{"email": email}, bearer(access2)...), 409, "email_taken")
	if r := env.do("PATCH", "/user", map[string]string{"email": ""}, auth...); r.Status != 200 || r.JSON["email"] != nil {
		t.Fatalf("drop email: %d %s", r.Status, r.Body)
	}
	if r := env.do("PATCH", "/user", map[string]string{"email": email}, bearer(access2)...); r.Status != 200 {
		t.Fatalf("email after it was freed: %d %s", r.Status, r.Body)
	}
	acts, err := env.db.ListActivity(context.Background(), "me-central1", uuid.MustParse(userID), 10)
	if err != nil || acts[0].Action != storage.ActionProfileUpdated {
		t.Fatalf("activity = %+v, %v", acts, err)
	}
}

func TestSettings(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	_, access := signUpUser(t, env, randomPhone(t, "AE"))
	auth := bearer(access)
	r := env.do("GET", "/user/settings", nil, auth...)
	n, _ := r.JSON["notifications"].(map[string]any)
	if r.Status != 200 || r.JSON["language"] != "en" || r.JSON["theme"] != "light" || r.JSON["daily_limit"] != nil || n["push_enabled"] != true {
		t.Fatalf("defaults: %d %s", r.Status, r.Body)
	}
	r = env.do("PATCH", "/user/settings", `{"theme":"dark","daily_limit":"500.5","language":"ar","notifications":{"promotions":false}}`, auth...)
	n, _ = r.JSON["notifications"].(map[string]any)
	if r.Status != 200 || r.JSON["theme"] != "dark" || r.JSON["daily_limit"] != "500.50" || r.JSON["language"] != "ar" ||
		n["promotions"] != false || n["security_alerts"] != true {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	r = env.do("PATCH", "/user/settings", `{"daily_limit":null}`, auth...)
	if r.Status != 200 || r.JSON["daily_limit"] != nil || r.JSON["theme"] != "dark" {
		t.Fatalf("clear limit: %d %s", r.Status, r.Body)
	}
	for _, body := range []string{`{"theme":"neon"}`, `{"daily_limit":"-5"}`, `{"daily_limit":"1e9"}`, `{"language":"not a tag!"}`} {
		wantProblem(t, env.do("PATCH", "/user/settings", body, auth...), 422, "validation_failed")
	}
	wantProblem(t, env.do("PATCH", "/user/settings", `{"notifications":{"push_enabled":true,"beep":true}}`, auth...), 400, "unknown_field")
	wantProblem(t, env.do("GET", "/user/settings", nil), 401, "unauthorized")
}

// TestSessionsBelongToTheirUser: a user lists and ends their own sessions; another user's
// session answers 404 and stays alive.
func TestSessionsBelongToTheirUser(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phoneA := randomPhone(t, "AE")
	_, accessA := signUpUser(t, env, phoneA)
	accessA2, _ := loginTokens(t, env, phoneA, testPIN)
	_, accessB := signUpUser(t, env, randomPhone(t, "AE"))

	r := env.do("GET", "/user/sessions", nil, bearer(accessA)...)
	items, _ := r.JSON["items"].([]any)
	if r.Status != 200 || len(items) != 2 {
		t.Fatalf("sessions: %d %s", r.Status, r.Body)
	}
	var current, other string
	for _, it := range items {
		s := it.(map[string]any)
		if s["current"] == true {
			current = s["id"].(string)
		} else {
			other = s["id"].(string)
		}
	}
	if current == "" || other == "" {
		t.Fatalf("no current/other session: %s", r.Body)
	}
	// B cannot see or end A's sessions.
	wantProblem(t, env.do("DELETE", "/user/sessions/"+other, nil, bearer(accessB)...), 404, "not_found")
	wantProblem(t, env.do("DELETE", "/user/sessions/not-a-uuid", nil, bearer(accessB)...), 404, "not_found")
	if r := env.do("GET", "/user/sessions", nil, bearer(accessB)...); len(r.JSON["items"].([]any)) != 1 {
		t.Fatalf("B sees %s", r.Body)
	}
	if r := env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, bearer(accessA2)...); r.Status != 200 {
		t.Fatalf("A's session after B's attempt: %d %s", r.Status, r.Body)
	}
	// A ends the other device.
	if r := env.do("DELETE", "/user/sessions/"+other, nil, bearer(accessA)...); r.Status != 204 {
		t.Fatalf("delete own session: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, bearer(accessA2)...), 401, "unauthorized")
	wantProblem(t, env.do("DELETE", "/user/sessions/"+other, nil, bearer(accessA)...), 404, "not_found")
	if r := env.do("GET", "/user/sessions", nil, bearer(accessA)...); len(r.JSON["items"].([]any)) != 1 {
		t.Fatalf("after delete: %s", r.Body)
	}
}

func TestChangePIN(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	_, access := signUpUser(t, env, phone)
	otherDevice, _ := loginTokens(t, env, phone, testPIN)
	auth := bearer(access)
	r := env.do("PUT", "/user/pin", map[string]string{"current_pin": "9753", "new_pin": "8024"}, auth...)
	wantProblem(t, r, 401, "invalid_pin")
	if r.JSON["attempts_left"] != float64(4) {
		t.Fatalf("attempts_left = %v", r.JSON["attempts_left"])
	}
	wantProblem(t, env.do("PUT", "/user/pin", map[string]string{"current_pin": testPIN, "new_pin": "5555"}, auth...), 422, "weak_pin")
	if r := env.do("PUT", "/user/pin", map[string]string{"current_pin": testPIN, "new_pin": "8024"}, auth...); r.Status != 204 {
		t.Fatalf("change: %d %s", r.Status, r.Body)
	}
	// The other device is signed out; this one stays.
	wantProblem(t, env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, bearer(otherDevice)...), 401, "unauthorized")
	if r := env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, auth...); r.Status != 200 {
		t.Fatalf("own session after change: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("PUT", "/user/pin", map[string]string{"current_pin": testPIN, "new_pin": "8025"}, auth...), 401, "invalid_pin")
	allowResend(t, phone)
	if r := loginUser(t, env, phone, "8024"); r.Status != 200 {
		t.Fatalf("login with the new PIN: %d %s", r.Status, r.Body)
	}
}

// TestParallelWrongPINsNeverExceedTheLimit: 20 wrong PINs at once are evaluated at most five
// times; the rest find the PIN locked, and the correct PIN is then refused too.
func TestParallelWrongPINsNeverExceedTheLimit(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	userID, access := signUpUser(t, env, randomPhone(t, "AE"))
	var wg sync.WaitGroup
	codes := make(chan string, 20)
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := env.do("PUT", "/user/pin", map[string]string{"current_pin": "9753", "new_pin": "8024"}, bearer(access)...)
			codes <- r.JSON["code"].(string)
		}()
	}
	wg.Wait()
	close(codes)
	count := map[string]int{}
	for c := range codes {
		count[c]++
	}
	if count["invalid_pin"] != 4 || count["pin_locked"] != 16 {
		t.Fatalf("answers = %v, want 4 invalid_pin and 16 pin_locked", count)
	}
	wantProblem(t, env.do("PUT", "/user/pin", map[string]string{"current_pin": testPIN, "new_pin": "8024"}, bearer(access)...), 423, "pin_locked")
	acts, err := env.db.ListActivity(context.Background(), "me-central1", uuid.MustParse(userID), 50)
	if err != nil {
		t.Fatal(err)
	}
	evaluated := 0
	for _, a := range acts {
		if a.Action == storage.ActionPINFailed || a.Action == storage.ActionPINLocked {
			evaluated++
		}
	}
	if evaluated != 5 {
		t.Fatalf("%d PIN evaluations recorded, want 5", evaluated)
	}
}

func TestDeleteUser(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	userID, access := signUpUser(t, env, phone)
	auth := bearer(access)
	email := "gone-" + randDigits(8) + "@example.com"
	env.do("PATCH", "/user", map[string]string{"email": email, "address": "Somewhere 1"}, auth...)
	conn := sqlConn(t)
	ctx := context.Background()
	if _, err := conn.Exec(ctx, `UPDATE asset_balances SET available = 5, total = 5
WHERE region = 'me-central1' AND user_id = $1 AND asset_symbol = 'AED'`, userID); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, env.do("DELETE", "/user", map[string]string{"pin": "9753"}, auth...), 401, "invalid_pin")
	wantProblem(t, env.do("DELETE", "/user", map[string]string{"pin": testPIN}, auth...), 409, "balance_not_empty")
	if _, err := conn.Exec(ctx, `UPDATE asset_balances SET available = 0, total = 0
WHERE region = 'me-central1' AND user_id = $1 AND asset_symbol = 'AED'`, userID); err != nil {
		t.Fatal(err)
	}
	if r := env.do("DELETE", "/user", map[string]string{"pin": testPIN}, auth...); r.Status != 204 {
		t.Fatalf("delete: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("GET", "/user", nil, auth...), 404, "not_found")
	wantProblem(t, env.do("PATCH", "/user", map[string]string{"first_name": "Zombie"}, auth...), 401, "unauthorized")
	var status string
	var pii int
	if err := conn.QueryRow(ctx, `SELECT u.status,
    (CASE WHEN u.phone_enc IS NULL AND u.phone_bidx IS NULL AND u.email_enc IS NULL AND u.email_bidx IS NULL THEN 0 ELSE 1 END) +
    (CASE WHEN p.first_name_enc IS NULL AND p.last_name_enc IS NULL AND p.address_enc IS NULL AND p.date_of_birth_enc IS NULL THEN 0 ELSE 1 END)
FROM users u JOIN user_profiles p ON p.region = u.region AND p.user_id = u.id WHERE u.region = 'me-central1' AND u.id = $1`, userID).Scan(&status, &pii); err != nil {
		t.Fatal(err)
	}
	var dirs, live int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM phone_directory WHERE user_id = $1) + (SELECT count(*) FROM email_directory WHERE user_id = $1),
    (SELECT count(*) FROM user_sessions WHERE region = 'me-central1' AND user_id = $1 AND revoked_at IS NULL)`, userID).Scan(&dirs, &live); err != nil {
		t.Fatal(err)
	}
	if status != "deleted" || pii != 0 || dirs != 0 || live != 0 {
		t.Fatalf("after delete: status %s, PII groups left %d, directory entries %d, live sessions %d", status, pii, dirs, live)
	}
	acts, _ := env.db.ListActivity(ctx, "me-central1", uuid.MustParse(userID), 1)
	if len(acts) != 1 || acts[0].Action != storage.ActionAccountDeleted {
		t.Fatalf("activity = %+v", acts)
	}
	// The phone and email are free for a new account.
	r := env.do("POST", "/auth/check-availability", map[string]string{"phone": phone, "email": email})
	if r.JSON["phone_available"] != true || r.JSON["email_available"] != true {
		t.Fatalf("availability after delete: %s", r.Body)
	}
}

// TestNoPlainPIIAtRest: a dump of every table, and the captured logs, hold none of a user's
// phone number, email or names in clear text.
func TestNoPlainPIIAtRest(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	first, last := "Zuhairq"+randDigits(4), "Quxbarrow"+randDigits(4)
	email := "pii-" + randDigits(10) + "@example.net"
	vt := verifyPhone(t, env, phone, "register")
	r := env.do("POST", "/user", map[string]string{"verification_token": vt, "first_name": first, "last_name": last,
		"pin": testPIN, "device_id": "pii-device", "email": email, "date_of_birth": "1979-07-07"})
	if r.Status != 201 {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	access := r.JSON["tokens"].(map[string]any)["access_token"].(string)
	env.do("PATCH", "/user", map[string]string{"address": "Flat 9, Tower Qwzx"}, bearer(access)...)
	env.do("PUT", "/user/pin", map[string]string{"current_pin": "0000", "new_pin": "8024"}, bearer(access)...)
	allowResend(t, phone)
	loginUser(t, env, phone, testPIN)

	secrets := []string{phone, strings.TrimPrefix(phone, "+"), phone[len(phone)-9:], email, first, last, "Tower Qwzx", "1979-07-07"}
	conn := sqlConn(t)
	var dump strings.Builder
	for _, table := range migrations.Tables {
		rows, err := conn.Query(context.Background(), `SELECT row_to_json(t)::TEXT FROM `+table.Name+` t`)
		if err != nil {
			t.Fatal(table.Name, err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			dump.WriteString(s)
			dump.WriteByte('\n')
		}
		rows.Close()
	}
	if !strings.Contains(dump.String(), "pii-device") {
		t.Fatal("the dump does not hold the test's rows")
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "/auth/otp/send") {
		t.Fatal("no request logs captured")
	}
	for _, s := range secrets {
		if strings.Contains(dump.String(), s) {
			t.Errorf("database dump holds %q in clear text", s)
		}
		if strings.Contains(logs, s) {
			t.Errorf("logs hold %q", s)
		}
	}
	// Tokens are long enough to search for as they are; a 4-digit PIN is searched for as a JSON
	// string, since its digits turn up inside durations and request ids by chance.
	for _, s := range []string{access, vt, `"` + testPIN + `"`, `"pin"`, `"current_pin"`} {
		if strings.Contains(logs, s) {
			t.Errorf("logs hold a secret (%d chars)", len(s))
		}
	}
	if !strings.Contains(logs, maskPhone(phone)) {
		t.Errorf("the development SMS line should show the masked phone")
	}
}

// TestAuthedLiveNeedsAToken covers the middleware's refusals on every protected route.
func TestProtectedRoutesNeedAToken(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	for _, rt := range []struct{ method, path string }{
		{"GET", "/user"}, {"PATCH", "/user"}, {"DELETE", "/user"}, {"PUT", "/user/pin"}, {"GET", "/user/settings"},
		{"PATCH", "/user/settings"}, {"GET", "/user/sessions"}, {"DELETE", "/user/sessions/" + uuid.NewString()}, {"POST", "/auth/logout"},
	} {
		r := env.do(rt.method, rt.path, nil)
		if r.Status != http.StatusUnauthorized || r.JSON["code"] != "unauthorized" {
			t.Errorf("%s %s: %d %s", rt.method, rt.path, r.Status, r.Body)
		}
	}
}
