package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/storage"
)

// sqlConn opens a direct connection to the test database, for arranging states the API cannot
// reach (a suspended user, a balance) and for reading what the API wrote.
func sqlConn(t testing.TB) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), testURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func randomIP() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return "10." + strconv.Itoa(int(b[0])) + "." + strconv.Itoa(int(b[1])) + "." + strconv.Itoa(int(b[2]))
}

func TestSignUpCreatesEverything(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	vt := verifyPhone(t, env, phone, "register")
	n := randDigits(8)
	r := env.do("POST", "/user", map[string]string{
		"verification_token": vt, "first_name": "Layla", "last_name": "Haddad", "pin": "5280",
		"device_id": "dev-1", "email": "  Layla.H" + n + "@Example.COM ", "date_of_birth": "1990-04-01",
		"gender": "female", "country": "AE", "language": "ar",
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	user := r.JSON["user"].(map[string]any)
	tokens := r.JSON["tokens"].(map[string]any)
	if user["phone"] != phone || user["email"] != "layla.h"+n+"@example.com" || user["home_region"] != "me-central1" ||
		user["status"] != "active" || user["kyc_level"] != "none" || user["phone_verified"] != true || user["email_verified"] != false {
		t.Fatalf("user = %v", user)
	}
	profile := user["profile"].(map[string]any)
	if profile["first_name"] != "Layla" || profile["date_of_birth"] != "1990-04-01" || profile["gender"] != "female" {
		t.Fatalf("profile = %v", profile)
	}
	if tokens["token_type"] != "Bearer" || tokens["expires_in"] != float64(900) || tokens["refresh_expires_in"].(float64) < 29*24*3600 {
		t.Fatalf("tokens = %v", tokens)
	}
	userID := uuid.MustParse(user["id"].(string))

	conn := sqlConn(t)
	ctx := context.Background()
	// Every row of the user, in every table, carries the home region.
	for _, table := range []string{"users", "user_profiles", "user_auth", "user_settings", "notification_settings",
		"wallets", "asset_balances", "user_sessions", "refresh_tokens", "activity_logs"} {
		col := "user_id"
		if table == "users" {
			col = "id"
		}
		var n, wrong int
		if err := conn.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE region::TEXT <> 'me-central1') FROM `+table+
			` WHERE `+col+` = $1`, userID).Scan(&n, &wrong); err != nil {
			t.Fatal(table, err)
		}
		if n == 0 || wrong != 0 {
			t.Errorf("%s: %d rows, %d outside the home region", table, n, wrong)
		}
	}
	var primary string
	var balances, activeAssets int
	if err := conn.QueryRow(ctx, `SELECT primary_asset FROM wallets WHERE region = 'me-central1' AND user_id = $1`, userID).Scan(&primary); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM asset_balances WHERE region = 'me-central1' AND user_id = $1 AND total = 0`, userID).Scan(&balances); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM supported_assets WHERE is_active`).Scan(&activeAssets); err != nil {
		t.Fatal(err)
	}
	if primary != "AED" || balances != activeAssets {
		t.Fatalf("wallet: primary %s, %d zero balances for %d active assets", primary, balances, activeAssets)
	}
	var dir string
	if err := conn.QueryRow(ctx, `SELECT home_region::TEXT FROM phone_directory WHERE user_id = $1`, userID).Scan(&dir); err != nil || dir != "me-central1" {
		t.Fatalf("phone directory: %q %v", dir, err)
	}
	acts, err := env.db.ListActivity(ctx, "me-central1", userID, 10)
	if err != nil || len(acts) != 1 || acts[0].Action != storage.ActionSignUp || acts[0].DeviceID != "dev-1" {
		t.Fatalf("activity = %+v, %v", acts, err)
	}
	// The verification token is single use.
	r = env.do("POST", "/user", map[string]string{
		"verification_token": vt, "first_name": "A", "last_name": "B", "pin": "8024", "device_id": "d"})
	wantProblem(t, r, http.StatusUnauthorized, "invalid_verification_token")
}

// TestHomeRegionFromPhoneCountry: a pod in me-central1 homes a UK number in eu-west1 and a US
// number in us-east1, with the local currency as the primary asset.
func TestHomeRegionFromPhoneCountry(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	conn := sqlConn(t)
	for _, c := range []struct{ country, region, asset string }{
		{"GB", "eu-west1", "USD"}, {"US", "us-east1", "USD"}, {"FR", "eu-west1", "EUR"}, {"SA", "me-central1", "SAR"},
	} {
		id, access := signUpUser(t, env, randomPhone(t, c.country))
		r := env.do("GET", "/user", nil, bearer(access)...)
		if r.JSON["home_region"] != c.region {
			t.Errorf("%s: home_region %v, want %s", c.country, r.JSON["home_region"], c.region)
		}
		var asset string
		if err := conn.QueryRow(context.Background(), `SELECT primary_asset FROM wallets WHERE region = $1 AND user_id = $2`,
			c.region, id).Scan(&asset); err != nil || asset != c.asset {
			t.Errorf("%s: primary asset %q (%v), want %s", c.country, asset, err, c.asset)
		}
	}
}

func TestCheckAvailability(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	r := env.do("POST", "/auth/check-availability", map[string]string{"phone": phone})
	if r.Status != 200 || r.JSON["phone_available"] != true || r.JSON["email_available"] != nil {
		t.Fatalf("free phone: %d %s", r.Status, r.Body)
	}
	_, access := signUpUser(t, env, phone)
	email := "avail-" + randDigits(8) + "@example.org"
	if r := env.do("PATCH", "/user", map[string]string{"email": email}, bearer(access)...); r.Status != 200 {
		t.Fatalf("patch email: %d %s", r.Status, r.Body)
	}
	// Another spelling of the same phone and email is the same entry.
	spaced := phone[:4] + " " + phone[4:6] + " " + phone[6:]
	r = env.do("POST", "/auth/check-availability", map[string]string{"phone": spaced, "email": strings.ToUpper(email)})
	if r.Status != 200 || r.JSON["phone_available"] != false || r.JSON["email_available"] != false {
		t.Fatalf("taken: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("POST", "/auth/check-availability", map[string]string{"phone": "+97142345678"}), 422, "invalid_phone")
	wantProblem(t, env.do("POST", "/auth/check-availability", map[string]string{}), 422, "validation_failed")
	wantProblem(t, env.do("POST", "/auth/check-availability", map[string]string{"email": "not an email"}), 422, "invalid_email")

	// Throttled per client address and per device.
	limited := newTestEnv(t, func(c *Config) { c.Limits.AvailabilityPerHour = 2 })
	ip := randomIP()
	for i := 0; i < 2; i++ {
		if r := limited.do("POST", "/auth/check-availability", map[string]string{"phone": phone}, "X-Forwarded-For", ip); r.Status != 200 {
			t.Fatalf("call %d: %d %s", i, r.Status, r.Body)
		}
	}
	r = limited.do("POST", "/auth/check-availability", map[string]string{"phone": phone}, "X-Forwarded-For", ip)
	wantProblem(t, r, 429, "rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	device := "dev-" + randDigits(10)
	for i := 0; i < 2; i++ {
		limited.do("POST", "/auth/check-availability", map[string]string{"phone": phone}, "X-Forwarded-For", randomIP(), "X-Device-Id", device)
	}
	r = limited.do("POST", "/auth/check-availability", map[string]string{"phone": phone}, "X-Forwarded-For", randomIP(), "X-Device-Id", device)
	wantProblem(t, r, 429, "rate_limited")
}

func TestOTPSendThrottles(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	wantProblem(t, env.do("POST", "/auth/otp/send", map[string]string{"phone": "+97142345678", "purpose": "register"}), 422, "invalid_phone")
	wantProblem(t, env.do("POST", "/auth/otp/send", map[string]string{"phone": "12", "purpose": "register"}), 422, "invalid_phone")
	wantProblem(t, env.do("POST", "/auth/otp/send", map[string]string{"phone": "+971501234567", "purpose": "spam"}), 422, "validation_failed")

	phone := randomPhone(t, "AE")
	r := env.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "register"})
	if r.Status != 202 || r.JSON["expires_in"].(float64) < 290 || r.JSON["resend_after"].(float64) < 55 {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	// Resend within the cooldown.
	r = env.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "register"})
	wantProblem(t, r, 429, "otp_rate_limited")
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 50 || ra > 60 {
		t.Fatalf("Retry-After = %q", r.Header.Get("Retry-After"))
	}

	// The cooldown doubles per resend up to its cap, and a phone gets at most DailyMax codes a day.
	fast := newTestEnv(t, func(c *Config) {
		c.Limits.OTP = storage.OTPLimits{TTL: 5 * time.Minute, Cooldown: 100 * time.Millisecond, MaxCooldown: 300 * time.Millisecond, DailyMax: 3}
	})
	phone = randomPhone(t, "AE")
	for i := 0; i < 3; i++ {
		if r := fast.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "login"}); r.Status != 202 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Body)
		}
		time.Sleep(350 * time.Millisecond)
	}
	rows, err := sqlConn(t).Query(context.Background(), `SELECT (EXTRACT(EPOCH FROM resend_after - created_at) * 1000)::INT
FROM otp_codes WHERE region = 'me-central1' AND phone_bidx = $1 ORDER BY created_at`, testKeys.BlindIndex("phone", phone))
	if err != nil {
		t.Fatal(err)
	}
	cooldowns, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(cooldowns) != 3 || cooldowns[0] != 100 || cooldowns[1] != 200 || cooldowns[2] != 300 {
		t.Fatalf("cooldowns (ms) = %v, %v; want 100, 200, 300", cooldowns, err)
	}
	wantProblem(t, fast.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "register"}), 429, "otp_rate_limited")

	// Per client address.
	perAddr := newTestEnv(t, func(c *Config) { c.Limits.OTPPerAddressHour = 2 })
	ip := randomIP()
	for i := 0; i < 2; i++ {
		if r := perAddr.do("POST", "/auth/otp/send", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "register"}, "X-Forwarded-For", ip); r.Status != 202 {
			t.Fatalf("send %d: %d %s", i, r.Status, r.Body)
		}
	}
	r = perAddr.do("POST", "/auth/otp/send", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "register"}, "X-Forwarded-For", ip)
	wantProblem(t, r, 429, "otp_rate_limited")
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
}

// TestOTPDeliveryOutsideDevelopment: outside development dev_code never appears, the webhook
// sender posts the code to the provider after the commit, and a failing provider is a 502.
func TestOTPDeliveryOutsideDevelopment(t *testing.T) {
	t.Parallel()
	got := make(chan map[string]string, 1)
	fail := false
	var mu sync.Mutex
	provider := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m map[string]string
		_ = json.NewDecoder(r.Body).Decode(&m)
		mu.Lock()
		defer mu.Unlock()
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got <- m
	}))
	defer provider.Close()
	sms, err := NewWebhookSMS(provider.URL + "/send?token=secret")
	if err != nil {
		t.Fatal(err)
	}
	env := newTestEnv(t, func(c *Config) { c.Development = false; c.SMS = sms })
	phone := randomPhone(t, "AE")
	r := env.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": "register"})
	if r.Status != 202 || strings.Contains(string(r.Body), "dev_code") {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	m := <-got
	code := regexp.MustCompile(`\b[0-9]{6}\b`).FindString(m["message"])
	if m["to"] != phone || code == "" {
		t.Fatalf("webhook got %v", m)
	}
	if r := env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": code}); r.Status != 200 {
		t.Fatalf("verify the delivered code: %d %s", r.Status, r.Body)
	}
	mu.Lock()
	fail = true
	mu.Unlock()
	r = env.do("POST", "/auth/otp/send", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "register"})
	wantProblem(t, r, http.StatusBadGateway, "sms_failed")
	if strings.Contains(env.logs.String(), "secret") {
		t.Fatal("the webhook URL's credentials reached the logs")
	}
	// A development sender in a non-development server does not expose codes either.
	dev := newTestEnv(t, func(c *Config) { c.Development = false })
	if r := dev.do("POST", "/auth/otp/send", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "register"}); r.Status != 202 || r.JSON["dev_code"] != nil {
		t.Fatalf("dev sender outside development: %d %s", r.Status, r.Body)
	}
}

func TestOTPVerify(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": "123456"}), 401, "otp_expired")
	code := sendOTP(t, env, phone, "register")
	wrong := "000000"
	if code == wrong {
		wrong = "111111"
	}
	r := env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": wrong})
	wantProblem(t, r, 401, "otp_invalid")
	if r.JSON["attempts_left"] != float64(4) {
		t.Fatalf("attempts_left = %v", r.JSON["attempts_left"])
	}
	// The code is bound to its purpose.
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "login", "code": code}), 401, "otp_expired")
	// Arabic-Indic digits name the same phone.
	arabic := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return '٠' + (r - '0')
		}
		return r
	}, phone)
	r = env.do("POST", "/auth/otp/verify", map[string]string{"phone": arabic, "purpose": "register", "code": code})
	if r.Status != 200 || !strings.HasPrefix(r.JSON["verification_token"].(string), "vt1.me-central1.") || r.JSON["expires_in"] != float64(600) {
		t.Fatalf("verify: %d %s", r.Status, r.Body)
	}
	// Single use: a verified code does not verify again.
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": code}), 401, "otp_expired")
}

// TestOTPBruteForceStopsAtFive: five wrong codes kill the challenge, even in parallel, and the
// right code no longer works.
func TestOTPBruteForceStopsAtFive(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	code := sendOTP(t, env, phone, "register")
	results := make(chan *response, 12)
	for i := 0; i < 12; i++ {
		go func() {
			guess := strconv.Itoa(100000 + i)
			if guess == code {
				guess = "999999"
			}
			results <- env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": guess})
		}()
	}
	invalid, locked := 0, 0
	for i := 0; i < 12; i++ {
		r := <-results
		switch r.JSON["code"] {
		case "otp_invalid":
			invalid++
		case "otp_locked":
			locked++
			if r.Status != 429 || r.Header.Get("Retry-After") == "" {
				t.Errorf("otp_locked: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("unexpected %d %s", r.Status, r.Body)
		}
	}
	if invalid != 5 || locked != 7 {
		t.Fatalf("%d otp_invalid and %d otp_locked, want 5 and 7", invalid, locked)
	}
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": "register", "code": code}), 429, "otp_locked")
}

func TestSignUpErrors(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	_, access := signUpUser(t, env, phone)
	email := "taken-" + randDigits(8) + "@example.com"
	if r := env.do("PATCH", "/user", map[string]string{"email": email}, bearer(access)...); r.Status != 200 {
		t.Fatalf("patch: %d %s", r.Status, r.Body)
	}
	body := func(vt, pin string) map[string]string {
		return map[string]string{"verification_token": vt, "first_name": "Omar", "last_name": "Said", "pin": pin, "device_id": "d1"}
	}
	// The phone is taken (its owner can verify it, which is when this is revealed).
	wantProblem(t, env.do("POST", "/user", body(verifyPhone(t, env, allowResend(t, phone), "register"), "8024")), 409, "phone_taken")

	other := randomPhone(t, "AE")
	vt := verifyPhone(t, env, other, "register")
	for _, pin := range []string{"1111", "1234", "4321", "987654", "121212", "123123", "2580", "7890"} {
		wantProblem(t, env.do("POST", "/user", body(vt, pin)), 422, "weak_pin")
	}
	for _, pin := range []string{"12", "1234567", "12a4", "١٣٥٧"} {
		wantProblem(t, env.do("POST", "/user", body(vt, pin)), 422, "validation_failed")
	}
	b := body(vt, "8024")
	b["email"] = strings.ToUpper(email)
	wantProblem(t, env.do("POST", "/user", b), 409, "email_taken")
	b["email"] = "not-an-email"
	wantProblem(t, env.do("POST", "/user", b), 422, "invalid_email")
	b["email"] = ""
	b["status"] = "active"
	wantProblem(t, env.do("POST", "/user", b), 400, "unknown_field")
	delete(b, "status")
	b["date_of_birth"] = "2999-01-01"
	wantProblem(t, env.do("POST", "/user", b), 422, "validation_failed")
	delete(b, "date_of_birth")
	b["first_name"] = "Evil\u202eName"
	wantProblem(t, env.do("POST", "/user", b), 422, "validation_failed")
	b["first_name"] = "Omar"
	wantProblem(t, env.do("POST", "/user", body("vt1.me-central1.nope", "8024")), 401, "invalid_verification_token")
	// A token of another purpose does not sign up.
	loginVT := verifyPhone(t, env, phone, "login")
	wantProblem(t, env.do("POST", "/user", body(loginVT, "8024")), 401, "invalid_verification_token")
	// The refusals above did not spend the token.
	if r := env.do("POST", "/user", b); r.Status != 201 {
		t.Fatalf("sign-up after refusals: %d %s", r.Status, r.Body)
	}
}

func TestLoginErrors(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	userID, _ := signUpUser(t, env, phone)

	// A phone without an account.
	stranger := randomPhone(t, "AE")
	vt := verifyPhone(t, env, stranger, "login")
	wantProblem(t, env.do("POST", "/auth/login", map[string]string{"phone": stranger, "pin": "1357", "device_id": "d", "verification_token": vt}), 401, "invalid_credentials")
	// A verification of another phone.
	wantProblem(t, env.do("POST", "/auth/login", map[string]string{"phone": phone, "pin": "1357", "device_id": "d", "verification_token": vt}), 401, "invalid_verification_token")

	vt = verifyPhone(t, env, phone, "login")
	login := func(pin string) *response {
		return env.do("POST", "/auth/login", map[string]string{"phone": phone, "pin": pin, "device_id": "d", "verification_token": vt})
	}
	r := login("2468")
	wantProblem(t, r, 401, "invalid_credentials")
	if r.JSON["attempts_left"] != float64(4) {
		t.Fatalf("attempts_left = %v", r.JSON["attempts_left"])
	}
	// A wrong PIN does not spend the verification; the right one still logs in, and resets.
	if r := login(testPIN); r.Status != 200 {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	wantProblem(t, login(testPIN), 401, "invalid_verification_token")

	vt = verifyPhone(t, env, allowResend(t, phone), "login")
	for i := 4; i >= 1; i-- {
		r := login("0000")
		wantProblem(t, r, 401, "invalid_credentials")
		if r.JSON["attempts_left"] != float64(i) {
			t.Fatalf("attempts_left = %v, want %d", r.JSON["attempts_left"], i)
		}
	}
	r = login("0000")
	wantProblem(t, r, 423, "pin_locked")
	until, err := time.Parse(time.RFC3339, r.JSON["locked_until"].(string))
	if err != nil || time.Until(until) < 14*time.Minute || time.Until(until) > 16*time.Minute {
		t.Fatalf("locked_until = %v (%v)", r.JSON["locked_until"], err)
	}
	if r.Header.Get("Retry-After") == "" {
		t.Fatal("no Retry-After")
	}
	// The right PIN is refused while locked.
	wantProblem(t, login(testPIN), 423, "pin_locked")
	acts, err := env.db.ListActivity(context.Background(), "me-central1", uuid.MustParse(userID), 20)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, a := range acts {
		counts[a.Action]++
	}
	if counts[storage.ActionPINFailed] != 5 || counts[storage.ActionPINLocked] != 1 || counts[storage.ActionLogin] != 1 {
		t.Fatalf("activity = %v", counts)
	}

	// A suspended account.
	sus := randomPhone(t, "AE")
	susID, _ := signUpUser(t, env, sus)
	if _, err := sqlConn(t).Exec(context.Background(), `UPDATE users SET status = 'suspended' WHERE region = 'me-central1' AND id = $1`, susID); err != nil {
		t.Fatal(err)
	}
	vt = verifyPhone(t, env, sus, "login")
	wantProblem(t, env.do("POST", "/auth/login", map[string]string{"phone": sus, "pin": testPIN, "device_id": "d", "verification_token": vt}), 403, "account_suspended")
}

// allowResend lifts the 60 s resend cooldown of a phone's codes, for tests that need a second
// code at once (the cooldown itself is TestOTPSendThrottles' subject).
func allowResend(t testing.TB, phone string) string {
	t.Helper()
	conn := sqlConn(t)
	if _, err := conn.Exec(context.Background(), `UPDATE otp_codes SET resend_after = now() WHERE region = 'me-central1' AND phone_bidx = $1`,
		testKeys.BlindIndex("phone", phone)); err != nil {
		t.Fatal(err)
	}
	return phone
}

func TestRefreshRotationAndReuse(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	_, access, refresh := signUpUserWithRefresh(t, env, randomPhone(t, "AE"))
	r := env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh})
	if r.Status != 200 {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	tokens := r.JSON["tokens"].(map[string]any)
	refresh2 := tokens["refresh_token"].(string)
	if refresh2 == refresh || tokens["access_token"] == access {
		t.Fatal("tokens not rotated")
	}
	refresh3 := env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh2}).JSON["tokens"].(map[string]any)["refresh_token"].(string)
	// The rotated token comes back: the whole session is revoked.
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_refresh_token")
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh3}), 401, "invalid_refresh_token")
	wantProblem(t, env.do("PATCH", "/user", map[string]string{"first_name": "X"}, bearer(access)...), 401, "unauthorized")
	for _, bad := range []string{"", "rt1.me-central1.short", "rt1.mars.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", newOpaqueToken(refreshPrefix, "me-central1")} {
		r := env.do("POST", "/auth/refresh", map[string]string{"refresh_token": bad})
		if r.Status != 401 && r.Status != 422 {
			t.Errorf("refresh %q: %d %s", bad, r.Status, r.Body)
		}
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	_, access, refresh := signUpUserWithRefresh(t, env, phone)
	other, _ := loginTokens(t, env, phone, testPIN)
	if r := env.do("POST", "/auth/logout", nil, bearer(access)...); r.Status != 204 {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, bearer(access)...), 401, "unauthorized")
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_refresh_token")
	// The other device stays signed in.
	if r := env.do("PATCH", "/user/settings", map[string]string{"theme": "dark"}, bearer(other)...); r.Status != 200 {
		t.Fatalf("other session: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("POST", "/auth/logout", nil), 401, "unauthorized")
}

func TestPINReset(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	phone := randomPhone(t, "AE")
	_, access, refresh := signUpUserWithRefresh(t, env, phone)
	vt := verifyPhone(t, env, phone, "reset_pin")
	wantProblem(t, env.do("POST", "/auth/pin/reset", map[string]string{"verification_token": vt, "new_pin": "0000"}), 422, "weak_pin")
	wantProblem(t, env.do("POST", "/auth/pin/reset", map[string]string{"verification_token": "x", "new_pin": "8024"}), 401, "invalid_verification_token")
	if r := env.do("POST", "/auth/pin/reset", map[string]string{"verification_token": vt, "new_pin": "8024"}); r.Status != 204 {
		t.Fatalf("reset: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("POST", "/auth/pin/reset", map[string]string{"verification_token": vt, "new_pin": "8025"}), 401, "invalid_verification_token")
	// Every session ended, access tokens included.
	wantProblem(t, env.do("PUT", "/user/pin", map[string]string{"current_pin": "8024", "new_pin": "8026"}, bearer(access)...), 401, "unauthorized")
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refresh}), 401, "invalid_refresh_token")
	r := loginUser(t, env, phone, testPIN)
	wantProblem(t, r, 401, "invalid_credentials")
	allowResend(t, phone)
	if r := loginUser(t, env, phone, "8024"); r.Status != 200 {
		t.Fatalf("login with the new PIN: %d %s", r.Status, r.Body)
	}
}

// TestAccessTokensRefused: missing, malformed, tampered, expired, alg:none, HMAC-confused,
// foreign-key and wrong-audience tokens are all 401.
func TestAccessTokensRefused(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	userID, access := signUpUser(t, env, randomPhone(t, "AE"))
	sid := uuid.New()
	claims := func(mod func(*accessClaims)) *accessClaims {
		now := time.Now()
		c := &accessClaims{SessionID: sid.String(), Region: "me-central1", RegisteredClaims: jwt.RegisteredClaims{
			Issuer: tokenIssuer, Subject: userID, Audience: jwt.ClaimStrings{tokenAudience},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: uuid.NewString()}}
		if mod != nil {
			mod(c)
		}
		return c
	}
	sign := func(c *accessClaims, key ed25519.PrivateKey) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A well-formed token of ours works (the baseline the others differ from).
	if r := env.do("GET", "/user", nil, bearer(sign(claims(nil), testJWTKey))...); r.Status != 200 {
		t.Fatalf("baseline: %d %s", r.Status, r.Body)
	}
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	none, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	hmacConfused, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte(testJWTKey.Public().(ed25519.PublicKey)))
	parts := strings.Split(access, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var m map[string]any
	_ = json.Unmarshal(payload, &m)
	m["sub"] = uuid.NewString()
	forged, _ := json.Marshal(m)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(forged) + "." + parts[2]

	cases := map[string]string{
		"garbage":       "not.a.token",
		"alg none":      none,
		"hmac confused": hmacConfused,
		"tampered":      tampered,
		"foreign key":   sign(claims(nil), otherKey),
		"expired": sign(claims(func(c *accessClaims) {
			c.ExpiresAt = jwt.NewNumericDate(time.Now().Add(-time.Hour))
			c.IssuedAt = jwt.NewNumericDate(time.Now().Add(-2 * time.Hour))
		}), testJWTKey),
		"no exp":         sign(claims(func(c *accessClaims) { c.ExpiresAt = nil }), testJWTKey),
		"wrong audience": sign(claims(func(c *accessClaims) { c.Audience = jwt.ClaimStrings{"other"} }), testJWTKey),
		"wrong issuer":   sign(claims(func(c *accessClaims) { c.Issuer = "evil" }), testJWTKey),
		"no sid":         sign(claims(func(c *accessClaims) { c.SessionID = "" }), testJWTKey),
		"no jti":         sign(claims(func(c *accessClaims) { c.ID = "" }), testJWTKey),
		"unknown region": sign(claims(func(c *accessClaims) { c.Region = "mars-north1" }), testJWTKey),
	}
	for name, tok := range cases {
		r := env.do("GET", "/user", nil, bearer(tok)...)
		if r.Status != 401 || r.JSON["code"] != "unauthorized" {
			t.Errorf("%s: %d %s", name, r.Status, r.Body)
		}
	}
	wantProblem(t, env.do("GET", "/user", nil), 401, "unauthorized")
	wantProblem(t, env.do("GET", "/user", nil, "Authorization", "Basic abc"), 401, "unauthorized")
	// A token for a session that does not exist is refused where the session is checked.
	wantProblem(t, env.do("PATCH", "/user", map[string]string{"first_name": "X"}, bearer(sign(claims(nil), testJWTKey))...), 401, "unauthorized")
}

// TestClientIPTrustsOnlyTheProxysValue: with a proxy header configured, the address is the
// value the proxy appended, not what the client put first; without one, the peer address.
func TestClientIPTrustsOnlyTheProxysValue(t *testing.T) {
	t.Parallel()
	s := &Server{cfg: Config{ClientIPHeader: "X-Forwarded-For"}}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	r.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.9")
	if got := s.clientIP(r); got != "10.0.0.9" {
		t.Fatalf("clientIP = %s", got)
	}
	r.Header.Set("X-Forwarded-For", "garbage")
	if got := s.clientIP(r); got != "192.0.2.1" {
		t.Fatalf("clientIP with a bad header = %s", got)
	}
	s.cfg.ClientIPHeader = ""
	r.Header.Set("X-Forwarded-For", "203.0.113.7")
	if got := s.clientIP(r); got != "192.0.2.1" {
		t.Fatalf("clientIP without a trusted header = %s", got)
	}
}
