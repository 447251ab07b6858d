package server

import (
	"context"
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// TestMovementsCheckSessionAndPINInTransaction: POST /transactions/send, /cashout and
// /exchange check the session and the PIN inside the movement (authedMovement +
// storage.MovementAuth), with the answers authedLive and VerifyPIN give: a wrong PIN is counted
// and refused, the next right one clears the count, five wrong ones lock the PIN against the
// right one too, and a session ended by logout or by a PIN change elsewhere cannot move money
// even with a token that has not expired. Nothing refused moves money.
func TestMovementsCheckSessionAndPINInTransaction(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	// Each movement takes 1 AED out of the caller's available balance.
	bodies := map[string]func(recipient string) map[string]string{
		"/transactions/send": func(recipient string) map[string]string {
			return map[string]string{"recipient_id": recipient, "amount": "1", "asset": "AED"}
		},
		"/transactions/cashout": func(string) map[string]string {
			return map[string]string{"amount": "1", "asset": "AED", "method": "agent"}
		},
		"/transactions/exchange": func(string) map[string]string {
			return map[string]string{"from_asset": "AED", "to_asset": "USD", "amount": "1"}
		},
	}
	for path, body := range bodies {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			testMovementAuth(t, env, path, body)
		})
	}
}

func testMovementAuth(t *testing.T, env *testEnv, path string, body func(recipient string) map[string]string) {
	phoneA := randomPhone(t, "AE")
	userA, accessA := signUpUser(t, env, phoneA)
	userB, _ := signUpUser(t, env, randomPhone(t, "AE"))
	cashIn(t, env, userA, "AED", "100")

	send := func(token, pin string) *response {
		b := body(userB)
		b["reference"], b["pin"] = uuid.NewString(), pin
		return env.do("POST", path, b, bearer(token)...)
	}
	if r := send(accessA, testPIN); r.Status != http.StatusCreated {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	r := send(accessA, "918273")
	wantProblem(t, r, http.StatusUnauthorized, "invalid_pin")
	if r.JSON["attempts_left"] != float64(4) {
		t.Errorf("attempts_left = %v, want 4", r.JSON["attempts_left"])
	}
	// The right PIN (cached) with a failed attempt pending takes the slow path and clears it.
	if r := send(accessA, testPIN); r.Status != http.StatusCreated {
		t.Fatalf("send after a wrong PIN: %d %s", r.Status, r.Body)
	}
	if r := send(accessA, "918273"); r.JSON["attempts_left"] != float64(4) {
		t.Errorf("the right PIN did not reset the count: %s", r.Body)
	}
	for range 3 {
		send(accessA, "918273")
	}
	wantProblem(t, send(accessA, "918273"), http.StatusLocked, "pin_locked")
	wantProblem(t, send(accessA, testPIN), http.StatusLocked, "pin_locked")
	wantAvailable(t, env, accessA, "AED", "98.00")

	// A second user, two sessions: a PIN change in one ends the other at once; logout ends the
	// one that changed it.
	phoneC := randomPhone(t, "AE")
	userC, accessC1 := signUpUser(t, env, phoneC)
	cashIn(t, env, userC, "AED", "100")
	accessC2, _ := loginTokens(t, env, phoneC, testPIN)
	if r := send(accessC1, testPIN); r.Status != http.StatusCreated {
		t.Fatalf("send from the first session: %d %s", r.Status, r.Body)
	}
	if r := env.do("PUT", "/user/pin", map[string]string{"current_pin": testPIN, "new_pin": "729461"},
		bearer(accessC2)...); r.Status != http.StatusNoContent && r.Status != http.StatusOK {
		t.Fatalf("change PIN: %d %s", r.Status, r.Body)
	}
	wantProblem(t, send(accessC1, "729461"), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, send(accessC2, testPIN), http.StatusUnauthorized, "invalid_pin") // the old PIN
	if r := send(accessC2, "729461"); r.Status != http.StatusCreated {
		t.Fatalf("send with the new PIN: %d %s", r.Status, r.Body)
	}
	if r := env.do("POST", "/auth/logout", nil, bearer(accessC2)...); r.Status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.Status, r.Body)
	}
	wantProblem(t, send(accessC2, "729461"), http.StatusUnauthorized, "unauthorized")
	// An ended session is told so even when its request is refused before the movement: a
	// malformed body, a malformed PIN, a missing field.
	b := body(userB)
	b["reference"], b["pin"], b["amount"] = uuid.NewString(), "729461", "abc"
	wantProblem(t, env.do("POST", path, b, bearer(accessC2)...), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, send(accessC2, "12"), http.StatusUnauthorized, "unauthorized")
	wantProblem(t, env.do("POST", path, map[string]string{"pin": "729461"}, bearer(accessC2)...), http.StatusUnauthorized, "unauthorized")
	b = body(userB) // an unknown asset (refused by the handler's asset lookup)
	b["reference"], b["pin"], b["asset"], b["from_asset"] = uuid.NewString(), "729461", "XYZ", "XYZ"
	wantProblem(t, env.do("POST", path, b, bearer(accessC2)...), http.StatusUnauthorized, "unauthorized")
	if _, ok := body(userB)["recipient_id"]; ok { // a recipient id that is no id
		b = body("nope")
		b["reference"], b["pin"] = uuid.NewString(), "729461"
		wantProblem(t, env.do("POST", path, b, bearer(accessC2)...), http.StatusUnauthorized, "unauthorized")
	}
	wantAvailable(t, env, accessC2, "AED", "98.00") // reads trust the unexpired token
	// A suspended account is told so, whether the movement ran or the request was refused first.
	userS, accessS := signUpUser(t, env, randomPhone(t, "AE"))
	cashIn(t, env, userS, "AED", "100")
	if _, err := sqlConn(t).Exec(context.Background(), `UPDATE users SET status = 'suspended' WHERE region = 'me-central1' AND id = $1`, userS); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, send(accessS, testPIN), http.StatusForbidden, "account_suspended")
	b = body(userB)
	b["reference"], b["pin"], b["amount"] = uuid.NewString(), testPIN, "abc"
	wantProblem(t, env.do("POST", path, b, bearer(accessS)...), http.StatusForbidden, "account_suspended")
	// A live session gets the request's own problem.
	b = body(userB)
	b["reference"], b["pin"], b["amount"] = uuid.NewString(), testPIN, "abc"
	if r := env.do("POST", path, b, bearer(accessA)...); r.Status != http.StatusBadRequest && r.Status != http.StatusUnprocessableEntity {
		t.Errorf("malformed amount from a live session: %d %s", r.Status, r.Body)
	}
}
