package driver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/shopspring/decimal"
)

// fakeAPI is a small in-memory stand-in for the parts of the 7awel API the driver calls, so
// the driver's own logic (accounting, retries, replays, conservation) can be tested against
// answers we control, including wrong ones. The real API is exercised by the end-to-end test
// in loadtest/.
type fakeAPI struct {
	t   *testing.T
	srv *httptest.Server

	fee decimal.Decimal
	// leak makes every credit 0.01 short: a server that loses money.
	leak bool
	// retryEvery sets X-Tx-Retries: 1 on every n-th created transfer.
	retryEvery int
	// cutFirst closes the connection, without an answer, on the first cutFirst attempts of
	// every transfer whose reference ends in cutSuffix, after committing it.
	cutFirst  int
	cutSuffix string
	// busyCashIns answers the first n cash-ins 503 busy (Retry-After: 0), committing nothing.
	busyCashIns int
	// busySuffix answers the first attempt of transfers whose reference ends in it 503 busy.
	busySuffix string

	mu         sync.Mutex
	users      map[string]*fakeUser // by id
	byPhone    map[string]*fakeUser
	byToken    map[string]*fakeUser
	txs        map[string]fakeTx // by sender id + reference
	attempts   map[string]int    // by reference
	created    int
	txRetries  int
	cashIns    map[string]bool
	cutAnswers int
}

type fakeUser struct {
	id, phone string
	balances  map[string]decimal.Decimal
}

type fakeTx struct {
	id, reference, body string
	fee                 decimal.Decimal
}

func newFakeAPI(t *testing.T) *fakeAPI {
	f := &fakeAPI{t: t, users: map[string]*fakeUser{}, byPhone: map[string]*fakeUser{}, byToken: map[string]*fakeUser{},
		txs: map[string]fakeTx{}, attempts: map[string]int{}, cashIns: map[string]bool{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPI) json(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeAPI) problem(w http.ResponseWriter, status int, code string) {
	f.json(w, status, map[string]any{"status": status, "code": code})
}

func (f *fakeAPI) serve(w http.ResponseWriter, r *http.Request) {
	var in map[string]string
	if r.Body != nil && r.Method == "POST" {
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			f.problem(w, 400, "invalid_json")
			return
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	me := f.byToken[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	switch r.Method + " " + r.URL.Path {
	case "POST /auth/otp/send":
		f.json(w, 202, map[string]any{"dev_code": "123456", "expires_in": 300, "resend_after": 60})
	case "POST /auth/otp/verify":
		if in["code"] != "123456" {
			f.problem(w, 401, "otp_invalid")
			return
		}
		f.json(w, 200, map[string]any{"verification_token": "vt|" + in["phone"] + "|" + in["purpose"]})
	case "POST /user":
		parts := strings.Split(in["verification_token"], "|")
		if len(parts) != 3 || parts[2] != "register" {
			f.problem(w, 401, "invalid_verification_token")
			return
		}
		if f.byPhone[parts[1]] != nil {
			f.problem(w, 409, "phone_taken")
			return
		}
		u := &fakeUser{id: fmt.Sprintf("u%04d", len(f.users)), phone: parts[1],
			balances: map[string]decimal.Decimal{"USD": decimal.Zero, "EUR": decimal.Zero}}
		f.users[u.id], f.byPhone[u.phone], f.byToken["tok-"+u.id] = u, u, u
		f.json(w, 201, map[string]any{"user": map[string]any{"id": u.id, "phone": u.phone}, "tokens": map[string]any{"access_token": "tok-" + u.id}})
	case "POST /auth/login":
		u := f.byPhone[in["phone"]]
		if u == nil || in["verification_token"] != "vt|"+in["phone"]+"|login" {
			f.problem(w, 401, "invalid_credentials")
			return
		}
		f.json(w, 200, map[string]any{"user": map[string]any{"id": u.id, "phone": u.phone}, "tokens": map[string]any{"access_token": "tok-" + u.id}})
	case "POST /ops/cash-in":
		if r.Header.Get("X-Ops-Key") != "k" {
			f.problem(w, 401, "invalid_ops_key")
			return
		}
		if f.busyCashIns > 0 {
			f.busyCashIns--
			w.Header().Set("Retry-After", "0")
			f.problem(w, 503, "busy")
			return
		}
		if f.cashIns[in["reference"]] {
			f.json(w, 200, map[string]any{"id": "c-" + in["reference"], "reference": in["reference"]})
			return
		}
		f.cashIns[in["reference"]] = true
		u := f.users[in["user_id"]]
		u.balances[in["asset"]] = u.balances[in["asset"]].Add(decimal.RequireFromString(in["amount"]))
		f.json(w, 201, map[string]any{"id": "c-" + in["reference"], "reference": in["reference"]})
	case "GET /wallet/balances":
		if me == nil {
			f.problem(w, 401, "unauthorized")
			return
		}
		var list []map[string]string
		for a, b := range me.balances {
			list = append(list, map[string]string{"asset": a, "total": b.StringFixed(8)})
		}
		f.json(w, 200, map[string]any{"wallet_id": "w-" + me.id, "balances": list})
	case "GET /transactions":
		f.json(w, 200, map[string]any{"items": []any{}, "next_cursor": nil})
	case "GET /user":
		f.json(w, 200, map[string]any{"id": me.id, "phone": me.phone})
	case "POST /transactions/send":
		f.send(w, me, in)
	default:
		f.problem(w, 404, "route_not_found")
	}
}

func (f *fakeAPI) send(w http.ResponseWriter, me *fakeUser, in map[string]string) {
	if me == nil {
		f.problem(w, 401, "unauthorized")
		return
	}
	ref := in["reference"]
	f.attempts[ref]++
	key := me.id + "/" + ref
	cut := f.cutFirst > 0 && strings.HasSuffix(ref, f.cutSuffix) && f.attempts[ref] <= f.cutFirst
	if f.busySuffix != "" && strings.HasSuffix(ref, f.busySuffix) && f.attempts[ref] == 1 {
		w.Header().Set("Retry-After", "0")
		f.problem(w, 503, "busy")
		return
	}
	if tx, ok := f.txs[key]; ok {
		if cut {
			f.hangUp(w)
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(200)
		_, _ = w.Write([]byte(tx.body))
		return
	}
	to := f.users[in["recipient_id"]]
	if in["recipient_phone"] != "" {
		to = f.byPhone[in["recipient_phone"]]
	}
	if to == nil {
		f.problem(w, 404, "recipient_not_found")
		return
	}
	amount := decimal.RequireFromString(in["amount"])
	asset := in["asset"]
	debit := amount.Add(f.fee)
	if me.balances[asset].LessThan(debit) {
		f.problem(w, 422, "insufficient_funds")
		return
	}
	me.balances[asset] = me.balances[asset].Sub(debit)
	credit := amount
	if f.leak {
		credit = credit.Sub(decimal.RequireFromString("0.01"))
	}
	to.balances[asset] = to.balances[asset].Add(credit)
	f.created++
	body, _ := json.Marshal(map[string]any{"id": fmt.Sprintf("t%d", f.created), "reference": ref,
		"amount": amount.String(), "fee": f.fee.StringFixed(2), "asset": asset})
	f.txs[key] = fakeTx{id: fmt.Sprintf("t%d", f.created), reference: ref, body: string(body), fee: f.fee}
	if cut {
		f.hangUp(w)
		return
	}
	if f.retryEvery > 0 && f.created%f.retryEvery == 0 {
		w.Header().Set("X-Tx-Retries", "1")
		f.txRetries++
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	_, _ = w.Write(body)
}

// hangUp closes the connection without an answer: what a client sees when a server dies
// after its commit.
func (f *fakeAPI) hangUp(w http.ResponseWriter) {
	f.cutAnswers++
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		f.t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}
