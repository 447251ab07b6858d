package server

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net/http"
	"testing"
)

// Test helpers for every test of the package: unique phone numbers and the real sign-up and
// login flows through HTTP (otp/send → dev_code → otp/verify → POST /user or /auth/login).

// testPIN is the PIN the helpers sign users up with.
const testPIN = "1357"

// helperFirstName is the first name of every user the helpers sign up.
const helperFirstName = "Test"

func randDigits(n int) string {
	s := ""
	for range n {
		d, _ := rand.Int(rand.Reader, big.NewInt(10))
		s += d.String()
	}
	return s
}

// randomPhone returns a fresh mobile number of country: "AE" (+97150…, me-central1), "SA"
// (+96655…, me-central1), "GB" (+447400…, eu-west1), "US" (+1 201 …, us-east1), "FR" (+3361…,
// eu-west1, EUR wallet). Each call is unique with overwhelming probability, so tests run in
// parallel on one database.
func randomPhone(t testing.TB, country string) string {
	t.Helper()
	var p string
	switch country {
	case "AE":
		p = "+97150" + randDigits(7)
	case "SA":
		p = "+96655" + randDigits(7)
	case "GB":
		p = "+447400" + randDigits(6)
	case "FR":
		p = "+3361" + randDigits(7)
	case "US":
		p = "+1201" + fmt.Sprint(2+randDigitsInt(8)) + randDigits(6)
	default:
		t.Fatalf("randomPhone: no pattern for %s", country)
	}
	if _, _, err := parsePhone(p); err != nil {
		t.Fatalf("randomPhone(%s) = %s: %v", country, p, err)
	}
	suitePII.add("phone", p)
	return p
}

// randLetters returns n random lower-case letters.
func randLetters(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + randDigitsInt(26))
	}
	return string(b)
}

func randDigitsInt(n int64) int64 {
	d, _ := rand.Int(rand.Reader, big.NewInt(n))
	return d.Int64()
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// sendOTP asks for a code and returns the dev_code.
func sendOTP(t testing.TB, env *testEnv, phone, purpose string) string {
	t.Helper()
	r := env.do("POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": purpose})
	if r.Status != http.StatusAccepted {
		t.Fatalf("otp/send %s: %d %s", purpose, r.Status, r.Body)
	}
	code, _ := r.JSON["dev_code"].(string)
	if len(code) != 6 {
		t.Fatalf("otp/send: no dev_code: %s", r.Body)
	}
	return code
}

// verifyPhone runs otp/send and otp/verify and returns the verification token.
func verifyPhone(t testing.TB, env *testEnv, phone, purpose string) string {
	t.Helper()
	code := sendOTP(t, env, phone, purpose)
	r := env.do("POST", "/auth/otp/verify", map[string]string{"phone": phone, "purpose": purpose, "code": code})
	if r.Status != http.StatusOK {
		t.Fatalf("otp/verify %s: %d %s", purpose, r.Status, r.Body)
	}
	return r.JSON["verification_token"].(string)
}

// signUpWith signs a user up with pin and returns the user id and both tokens.
func signUpWith(t testing.TB, env *testEnv, phone, pin string) (userID, access, refresh string) {
	t.Helper()
	vt := verifyPhone(t, env, phone, "register")
	r := env.do("POST", "/user", map[string]string{
		// A unique last name (display name still "Test U."), so the log PII audit can tell a
		// leaked name from a common word.
		"verification_token": vt, "first_name": helperFirstName, "last_name": "User" + randLetters(6), "pin": pin,
		"device_id": "test-device",
	})
	if r.Status != http.StatusCreated {
		t.Fatalf("sign-up: %d %s", r.Status, r.Body)
	}
	user := r.JSON["user"].(map[string]any)
	tokens := r.JSON["tokens"].(map[string]any)
	return user["id"].(string), tokens["access_token"].(string), tokens["refresh_token"].(string)
}

// signUpUser signs a user up through the real HTTP flow with PIN testPIN ("1357") and returns
// the user id and an access token.
func signUpUser(t testing.TB, env *testEnv, phone string) (userID string, accessToken string) {
	t.Helper()
	id, access, _ := signUpWith(t, env, phone, testPIN)
	return id, access
}

// signUpUserWithRefresh is signUpUser that also returns the refresh token.
func signUpUserWithRefresh(t testing.TB, env *testEnv, phone string) (userID, accessToken, refreshToken string) {
	t.Helper()
	return signUpWith(t, env, phone, testPIN)
}

// loginUser logs in through otp (purpose login) and returns the login response.
func loginUser(t testing.TB, env *testEnv, phone, pin string) *response {
	t.Helper()
	vt := verifyPhone(t, env, phone, "login")
	return env.do("POST", "/auth/login", map[string]string{
		"phone": phone, "pin": pin, "device_id": "second-device", "verification_token": vt,
	})
}

// loginTokens logs in and returns the access and refresh tokens, failing the test otherwise.
func loginTokens(t testing.TB, env *testEnv, phone, pin string) (access, refresh string) {
	t.Helper()
	r := loginUser(t, env, phone, pin)
	if r.Status != http.StatusOK {
		t.Fatalf("login: %d %s", r.Status, r.Body)
	}
	tokens := r.JSON["tokens"].(map[string]any)
	return tokens["access_token"].(string), tokens["refresh_token"].(string)
}
