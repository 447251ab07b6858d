package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/7awel/wallet/storage"
)

// scrape reads /metrics as Prometheus would and parses it.
func scrape(t *testing.T, env *testEnv) map[string]*dto.MetricFamily {
	t.Helper()
	r := env.do("GET", "/metrics", nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(r.Body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// metricValue is the value of the series of name whose labels are exactly region plus pairs
// (name, value, …); 0 when there is none, as Prometheus would read an absent counter.
func metricValue(t *testing.T, env *testEnv, fams map[string]*dto.MetricFamily, name string, pairs ...string) float64 {
	t.Helper()
	want := map[string]string{"region": env.cfg.Region}
	for i := 0; i+1 < len(pairs); i += 2 {
		want[pairs[i]] = pairs[i+1]
	}
	f, ok := fams[name]
	if !ok {
		return 0
	}
	for _, m := range f.GetMetric() {
		got := labelsOf(m)
		if len(got) != len(want) {
			continue
		}
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue()
		case m.Gauge != nil:
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// failingSMS is a provider that is down.
type failingSMS struct{}

func (failingSMS) Send(context.Context, string, string) error { return errors.New("provider down") }
func (failingSMS) ExposesCode() bool                          { return false }

// TestBusinessMetrics drives sign-ups, OTPs, money movements, wrong PINs up to a lock-out and a
// refresh-token reuse through the real API and reads the counters from /metrics.
func TestBusinessMetrics(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	type want struct {
		name  string
		pairs []string
		value float64
	}
	check := func(step string, wants ...want) {
		t.Helper()
		fams := scrape(t, env)
		for _, w := range wants {
			if got := metricValue(t, env, fams, w.name, w.pairs...); got != w.value {
				t.Errorf("%s: %s%v = %v, want %v", step, w.name, w.pairs, got, w.value)
			}
		}
	}
	mv := func(typ, outcome, reason string, v float64) want {
		return want{"wallet_money_movements_total", []string{"type", typ, "outcome", outcome, "reason", reason}, v}
	}

	// Sign-ups: two codes sent and verified, two sessions.
	phoneA, phoneB := randomPhone(t, "AE"), randomPhone(t, "AE")
	userA, accessA, refreshA := signUpUserWithRefresh(t, env, phoneA)
	userB, accessB := signUpUser(t, env, phoneB)
	check("sign-up",
		want{"wallet_otp_sends_total", []string{"purpose", "register", "outcome", "sent"}, 2},
		want{"wallet_otp_verifications_total", []string{"purpose", "register", "outcome", "ok"}, 2},
		want{"wallet_sessions_created_total", nil, 2},
	)

	// OTP refusals: a resend inside the cool-down, a wrong code, a code never sent, a lock.
	phoneC := randomPhone(t, "AE")
	code := sendOTP(t, env, phoneC, "login")
	wantProblem(t, env.do("POST", "/auth/otp/send", map[string]string{"phone": phoneC, "purpose": "login"}), 429, "otp_rate_limited")
	wrong := "000000"
	if code == wrong {
		wrong = "000001"
	}
	for range 5 {
		wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phoneC, "purpose": "login", "code": wrong}), 401, "otp_invalid")
	}
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": phoneC, "purpose": "login", "code": code}), 429, "otp_locked")
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "reset_pin", "code": "123456"}), 401, "otp_expired")
	// Invalid requests are not OTP traffic.
	wantProblem(t, env.do("POST", "/auth/otp/send", map[string]string{"phone": "nope", "purpose": "login"}), 422, "invalid_phone")
	check("otp",
		want{"wallet_otp_sends_total", []string{"purpose", "login", "outcome", "sent"}, 1},
		want{"wallet_otp_sends_total", []string{"purpose", "login", "outcome", "rate_limited"}, 1},
		want{"wallet_otp_verifications_total", []string{"purpose", "login", "outcome", "invalid"}, 5},
		want{"wallet_otp_verifications_total", []string{"purpose", "login", "outcome", "locked"}, 1},
		want{"wallet_otp_verifications_total", []string{"purpose", "reset_pin", "outcome", "expired"}, 1},
	)

	// Money: committed, replayed and refused movements of every type.
	in := map[string]string{"user_id": userA, "asset": "AED", "amount": "100", "reference": uuid.NewString()}
	if r := env.do("POST", "/ops/cash-in", in, opsHeaders()...); r.Status != http.StatusCreated {
		t.Fatalf("cash-in: %d %s", r.Status, r.Body)
	}
	env.do("POST", "/ops/cash-in", in, opsHeaders()...)
	wantProblem(t, env.do("POST", "/ops/cash-in", in), 401, "invalid_ops_key") // not a movement attempt
	cashIn(t, env, userA, "USD", "50")
	send := map[string]string{"recipient_id": userB, "amount": "10", "asset": "AED", "reference": uuid.NewString(), "pin": testPIN}
	if r := env.do("POST", "/transactions/send", send, bearer(accessA)...); r.Status != http.StatusCreated {
		t.Fatalf("send: %d %s", r.Status, r.Body)
	}
	env.do("POST", "/transactions/send", send, bearer(accessA)...)
	wantProblem(t, env.do("POST", "/transactions/send", map[string]string{"recipient_id": userB, "amount": "1000", "asset": "AED",
		"reference": uuid.NewString(), "pin": testPIN}, bearer(accessA)...), 422, "insufficient_funds")
	wantProblem(t, env.do("POST", "/transactions/send", send), 401, "unauthorized") // no session: not counted
	if r := env.do("POST", "/transactions/exchange", map[string]string{"from_asset": "USD", "to_asset": "AED", "amount": "10",
		"reference": uuid.NewString(), "pin": testPIN}, bearer(accessA)...); r.Status != http.StatusCreated {
		t.Fatalf("exchange: %d %s", r.Status, r.Body)
	}
	hold := func() string {
		r := env.do("POST", "/transactions/cashout", map[string]string{"amount": "5", "asset": "AED", "method": "agent",
			"reference": uuid.NewString(), "pin": testPIN}, bearer(accessA)...)
		if r.Status != http.StatusCreated {
			t.Fatalf("cash-out: %d %s", r.Status, r.Body)
		}
		return r.JSON["transaction"].(map[string]any)["id"].(string)
	}
	id := hold()
	env.do("POST", "/ops/cash-outs/"+id+"/collect", nil, opsHeaders()...)
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+id+"/collect", nil, opsHeaders()...), 409, "cash_out_not_pending")
	wantProblem(t, env.do("POST", "/ops/cash-outs/"+id+"/cancel", nil, opsHeaders()...), 409, "cash_out_not_pending")
	env.do("POST", "/ops/cash-outs/"+hold()+"/cancel", nil, opsHeaders()...)
	check("money",
		mv("cash_in", "committed", "", 2), mv("cash_in", "replayed", "", 1),
		mv("transfer", "committed", "", 1), mv("transfer", "replayed", "", 1), mv("transfer", "refused", "insufficient_funds", 1),
		mv("exchange", "committed", "", 1),
		mv("cash_out", "committed", "", 2),
		mv("cash_out_collect", "committed", "", 1), mv("cash_out_collect", "refused", "cash_out_not_pending", 1),
		mv("cash_out_cancel", "committed", "", 1), mv("cash_out_cancel", "refused", "cash_out_not_pending", 1),
	)

	// Wrong PINs: four refusals, then the fifth locks the PIN (one lock-out), then the lock refuses
	// without a PIN check (no further failure).
	wrongPIN := map[string]string{"recipient_id": userA, "amount": "1", "asset": "AED", "pin": "9999"}
	for i := range 6 {
		wrongPIN["reference"] = uuid.NewString()
		r := env.do("POST", "/transactions/send", wrongPIN, bearer(accessB)...)
		switch {
		case i < 4:
			wantProblem(t, r, 401, "invalid_pin")
		default:
			wantProblem(t, r, 423, "pin_locked")
		}
	}
	check("pin",
		want{"wallet_pin_failures_total", nil, 5},
		want{"wallet_pin_lockouts_total", nil, 1},
		mv("transfer", "refused", "invalid_pin", 4), mv("transfer", "refused", "pin_locked", 2),
	)

	// Refresh: a rotation, then the spent token again is a reuse.
	r := env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refreshA})
	if r.Status != http.StatusOK {
		t.Fatalf("refresh: %d %s", r.Status, r.Body)
	}
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refreshA}), 401, "invalid_refresh_token")
	wantProblem(t, env.do("POST", "/auth/refresh", map[string]string{"refresh_token": "rt.nope"}), 401, "invalid_refresh_token")
	check("refresh",
		want{"wallet_refresh_token_reuse_total", nil, 1},
		want{"wallet_sessions_created_total", nil, 2},
	)

	// A provider outage is a failed send.
	down := newTestEnv(t, func(c *Config) { c.SMS = failingSMS{} })
	wantProblem(t, down.do("POST", "/auth/otp/send", map[string]string{"phone": randomPhone(t, "GB"), "purpose": "register"}), 502, "sms_failed")
	if got := metricValue(t, down, scrape(t, down), "wallet_otp_sends_total", "purpose", "register", "outcome", "failed"); got != 1 {
		t.Errorf("failed sends = %v, want 1", got)
	}

	// No label value is a user id or a phone (amounts have no label to go in).
	fams := scrape(t, env)
	for name, f := range fams {
		if !strings.HasPrefix(name, "wallet_") {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				for _, pii := range []string{userA, userB, phoneA, phoneB, phoneC, strings.TrimPrefix(phoneA, "+")} {
					if strings.Contains(l.GetValue(), pii) {
						t.Errorf("%s{%s=%q} holds a user id, phone or amount", name, l.GetName(), l.GetValue())
					}
				}
			}
		}
	}
	lintWallet(t, env)
}

// lintWallet runs the Prometheus linter over every wallet_* metric of the env's registry.
func lintWallet(t *testing.T, env *testEnv) {
	t.Helper()
	problems, err := testutil.GatherAndLint(env.server.registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "wallet_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestMovementOutcomes covers countMovement's classification on its own, including the 5xx
// outcome no healthy database produces on demand.
func TestMovementOutcomes(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cases := []struct {
		fn      handlerFunc
		outcome string
		reason  string
	}{
		{func(w http.ResponseWriter, r *http.Request) error { respond(w, 201, map[string]string{}); return nil }, "committed", ""},
		{func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Idempotent-Replayed", "true")
			respond(w, 200, map[string]string{})
			return nil
		}, "replayed", ""},
		{func(w http.ResponseWriter, r *http.Request) error { return errors.New("the disk is on fire") }, "error", "internal_error"},
		{func(w http.ResponseWriter, r *http.Request) error { return fmt.Errorf("transfer: %w", storage.ErrBusy) }, "error", "busy"},
		{func(w http.ResponseWriter, r *http.Request) error { return errInvalidPhone("phone") }, "refused", "invalid_phone"},
	}
	for _, c := range cases {
		h := env.server.handle(env.server.countMovement(movementTransfer, c.fn))
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/x", nil))
		got := testutil.ToFloat64(env.server.business.movements.WithLabelValues(movementTransfer, c.outcome, c.reason))
		if got != 1 {
			t.Errorf("%s/%s counted %v times, want 1", c.outcome, c.reason, got)
		}
	}
}

// TestErrorsLoggedOnce: s.handle logs a 5xx once, at error level with its cause, and a 4xx once
// at debug level; the access log line comes on top, at info.
func TestErrorsLoggedOnce(t *testing.T) {
	t.Parallel()
	env := newTestEnv(t)
	cause := "cause-" + uuid.NewString()
	probe := env.server.outer(env.server.handle(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/fail" {
			return errors.New(cause)
		}
		return Errorf(http.StatusConflict, "conflict", "No.")
	}))
	ts := httptest.NewServer(probe)
	defer ts.Close()
	env.http = ts
	fail := env.do("GET", "/fail", nil)
	wantProblem(t, fail, 500, "internal_error")
	refuse := env.do("GET", "/refuse", nil)
	wantProblem(t, refuse, 409, "conflict")

	lines := map[string][]map[string]any{} // request id → lines
	for _, l := range strings.Split(strings.TrimSpace(env.logs.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("log line is not JSON: %s", l)
		}
		if id, ok := m["request_id"].(string); ok {
			lines[id] = append(lines[id], m)
		}
	}
	levels := func(id string) map[string]int {
		n := map[string]int{}
		for _, m := range lines[id] {
			n[m["level"].(string)+" "+m["msg"].(string)]++
		}
		return n
	}
	if got := levels(fail.Header.Get("X-Request-Id")); len(got) != 2 || got["error request failed"] != 1 || got["info request"] != 1 {
		t.Errorf("5xx lines: %v, want one error line and one access line", got)
	}
	if n := strings.Count(env.logs.String(), cause); n != 1 {
		t.Errorf("the 5xx cause is logged %d times, want once", n)
	}
	if got := levels(refuse.Header.Get("X-Request-Id")); len(got) != 2 || got["debug request refused"] != 1 || got["info request"] != 1 {
		t.Errorf("4xx lines: %v, want one debug line and one access line", got)
	}
	for _, m := range lines[refuse.Header.Get("X-Request-Id")] {
		if m["msg"] == "request" && (m["status"] != 409.0 || m["route"] == nil) {
			t.Errorf("access line: %v", m)
		}
	}
}
