package driver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/7awel/wallet/loadtest/scenarios"
)

func transferDef(users, merchants, replayEvery int) *scenarios.Scenario {
	return &scenarios.Scenario{Description: "test transfers", Script: "transfers.js", Users: users, Merchants: merchants,
		Assets: []string{"USD"}, Funding: "100000.00", Amount: "1.00", Recipient: "id", ReplayEvery: replayEvery,
		Load: scenarios.Load{Executor: scenarios.ConstantArrivalRate, Rate: 100, Duration: "1s", PreAllocatedVUs: 4},
		Thresholds: map[string][]string{
			"wallet_money_conserved":   {"rate==1"},
			"dropped_iterations":       {"count<1"},
			"wallet_transfer_duration": {"p(99)<5000"},
			"http_req_connecting":      {"p(99)<5"},
		}}
}

func baseConfig(f *fakeAPI, def *scenarios.Scenario) Config {
	return Config{BaseURL: f.srv.URL, OpsKey: "k", Scenario: "test", Def: def, Mode: Closed, Workers: 4,
		Duration: 150 * time.Millisecond, RunID: 7, SetupWorkers: 3}
}

func TestClosedRunAccountsForEveryTransfer(t *testing.T) {
	f := newFakeAPI(t)
	f.fee = decimal.RequireFromString("0.01")
	f.retryEvery = 3
	rep, err := Run(context.Background(), baseConfig(f, transferDef(10, 0, 5)))
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = rep.Text(&text)
	if !rep.Passed {
		t.Fatalf("run failed:\n%s", text.String())
	}
	f.mu.Lock()
	created, retries := f.created, f.txRetries
	f.mu.Unlock()
	if rep.Committed == 0 || rep.Committed != int64(created) {
		t.Errorf("committed %d, the server created %d", rep.Committed, created)
	}
	if rep.TxRetries != int64(retries) || rep.RetriedRequests != int64(retries) {
		t.Errorf("tx retries %d on %d requests, the server reported %d", rep.TxRetries, rep.RetriedRequests, retries)
	}
	if rep.ReplaysSent == 0 || rep.ReplaysConfirmed != rep.ReplaysSent {
		t.Errorf("replays %d sent, %d confirmed", rep.ReplaysSent, rep.ReplaysConfirmed)
	}
	c := rep.Conservation
	if !c.Checked || !c.OK || !c.PerUser || c.FundingChecked != 10 || len(c.Assets) != 1 {
		t.Fatalf("conservation %+v", c)
	}
	wantFees := decimal.RequireFromString("0.01").Mul(decimal.NewFromInt(rep.Committed)).StringFixed(8)
	if c.Assets[0].Fees != wantFees || c.Assets[0].Before != "1000000.00000000" {
		t.Errorf("asset %+v, want fees %s of 1000000", c.Assets[0], wantFees)
	}
	if rep.Latency["transfer"].Count != int(rep.Committed) {
		t.Errorf("%d transfer samples for %d transfers", rep.Latency["transfer"].Count, rep.Committed)
	}
	if rep.Throughput <= 0 || rep.ThroughputOf != "committed transfers" {
		t.Errorf("throughput %v %s", rep.Throughput, rep.ThroughputOf)
	}
	for _, th := range rep.Thresholds {
		switch th.Metric {
		case "wallet_money_conserved":
			if !th.Measured || th.Observed != 1 || !th.OK {
				t.Errorf("threshold %+v", th)
			}
		case "http_req_connecting":
			if th.Measured || th.Note == "" {
				t.Errorf("a threshold the driver cannot measure must say so: %+v", th)
			}
		}
	}
	if !strings.Contains(text.String(), "PASSED") || !strings.Contains(text.String(), "conserved") {
		t.Errorf("text report:\n%s", text.String())
	}
}

func TestLostMoneyFailsTheRun(t *testing.T) {
	f := newFakeAPI(t)
	f.leak = true
	rep, err := Run(context.Background(), baseConfig(f, transferDef(5, 1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed || rep.Conservation.OK || rep.Conservation.Assets[0].OK {
		t.Fatalf("a server that loses money passed: %+v", rep.Conservation)
	}
	if len(rep.Conservation.PerUserMismatches) == 0 {
		t.Error("no per-user mismatch listed")
	}
	if !strings.Contains(strings.Join(rep.Failures, ";"), "money not conserved") {
		t.Errorf("failures %v", rep.Failures)
	}
}

// A transfer whose answer is lost after the server committed it is sent again with the same
// reference; the server answers with the stored transaction and the money moves once.
func TestTransportRetryResendsTheSameReference(t *testing.T) {
	f := newFakeAPI(t)
	f.cutFirst, f.cutSuffix = 1, "3" // references ending in 3: the first answer is lost
	rep, err := Run(context.Background(), baseConfig(f, transferDef(6, 0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed {
		t.Fatalf("failures %v, errors %v", rep.Failures, rep.Errors)
	}
	f.mu.Lock()
	cut, created := f.cutAnswers, f.created
	f.mu.Unlock()
	if cut == 0 || rep.TransportRetries != int64(cut) {
		t.Errorf("transport retries %d, answers cut %d", rep.TransportRetries, cut)
	}
	if rep.Committed != int64(created) || !rep.Conservation.PerUser || !rep.Conservation.OK {
		t.Errorf("committed %d of %d created; conservation %+v", rep.Committed, created, rep.Conservation)
	}
}

// A transfer that gets no answer at all during the load is asked again at teardown, so its
// outcome (here: committed) still counts in the balances; the run fails for the lost answers.
func TestUnknownOutcomeIsResolvedAtTeardown(t *testing.T) {
	f := newFakeAPI(t)
	f.cutFirst, f.cutSuffix = 3, "-5" // 1 send + 2 retries all cut; teardown's fourth attempt is answered
	rep, err := Run(context.Background(), baseConfig(f, transferDef(6, 0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	c := rep.Conservation
	if c.Resolved != 1 || c.Unresolved != 0 || !c.OK || !c.PerUser {
		t.Fatalf("conservation %+v", c)
	}
	f.mu.Lock()
	created := f.created
	f.mu.Unlock()
	if rep.Committed != int64(created) {
		t.Errorf("committed %d, created %d", rep.Committed, created)
	}
	if rep.Passed || rep.Errors["transfer transport: connection reset"] != 1 {
		t.Errorf("passed %v, errors %v", rep.Passed, rep.Errors)
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return ctx.Err()
}

// An open run on a fake clock dispatches the whole schedule at once: every iteration is
// either started (and then committed) or dropped, never lost.
func TestOpenRunStartsOrDropsEveryScheduledIteration(t *testing.T) {
	f := newFakeAPI(t)
	cfg := baseConfig(f, transferDef(6, 1, 0))
	cfg.Mode, cfg.Rate, cfg.Duration, cfg.Workers = Open, 2000, 50*time.Millisecond, 3
	cfg.Clock = &fakeClock{now: time.Unix(1000, 0)}
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.ScheduledIterations != 100 || rep.Iterations+rep.Dropped != 100 {
		t.Fatalf("scheduled %d, started %d, dropped %d", rep.ScheduledIterations, rep.Iterations, rep.Dropped)
	}
	if rep.Committed != rep.Iterations || !rep.Conservation.OK || rep.Failed != 0 {
		t.Errorf("committed %d of %d started, conservation %+v, failed %d", rep.Committed, rep.Iterations, rep.Conservation, rep.Failed)
	}
	// The hot shape: every credit went to the one merchant.
	f.mu.Lock()
	m := f.byPhone[userPhone(7, 6)]
	got := m.balances["USD"]
	f.mu.Unlock()
	if !got.Equal(decimal.NewFromInt(rep.Committed)) {
		t.Errorf("merchant has %s after %d transfers of 1.00", got, rep.Committed)
	}
}

func TestMixedAndSignupScenarios(t *testing.T) {
	f := newFakeAPI(t)
	mixed := &scenarios.Scenario{Description: "mixed", Script: "mixed.js", Users: 5, Assets: []string{"USD", "EUR"},
		Funding: "100000.00", Amount: "1.00", Recipient: "phone", Mix: map[string]int{"balance": 1, "history": 1, "transfer": 2},
		Load:       scenarios.Load{Executor: scenarios.ConstantArrivalRate, Rate: 10, Duration: "1s", PreAllocatedVUs: 2},
		Thresholds: map[string][]string{"checks": {"rate>0.99"}}}
	rep, err := Run(context.Background(), baseConfig(f, mixed))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Latency["balance"].Count == 0 || rep.Latency["history"].Count == 0 || rep.Committed == 0 {
		t.Fatalf("mixed: passed %v failures %v latency %v", rep.Passed, rep.Failures, rep.Latency)
	}
	if len(rep.Conservation.Assets) != 2 || !rep.Conservation.OK {
		t.Errorf("mixed conservation %+v", rep.Conservation)
	}

	signup := &scenarios.Scenario{Description: "signup", Script: "signup.js", Assets: []string{},
		Load:       scenarios.Load{Executor: scenarios.ConstantVUs, VUs: 2, Duration: "1s"},
		Thresholds: map[string][]string{"wallet_signup_duration": {"p(99)<3000"}}}
	cfg := baseConfig(f, signup)
	cfg.Workers = 0 // the scenario's vus
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || rep.Workers != 2 || rep.Latency["signup"].Count == 0 || rep.Conservation.Checked {
		t.Fatalf("signup: %+v", rep)
	}
}

func TestReportJSON(t *testing.T) {
	f := newFakeAPI(t)
	rep, err := Run(context.Background(), baseConfig(f, transferDef(4, 0, 0)))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := rep.JSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"throughput_per_s", "latency", "errors", "retries_per_committed_transfer", "memory", "conservation", "passed", "dropped"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON report has no %q", k)
		}
	}
	lat := m["latency"].(map[string]any)["transfer"].(map[string]any)
	for _, k := range []string{"p50_ms", "p90_ms", "p99_ms", "max_ms"} {
		if _, ok := lat[k]; !ok {
			t.Errorf("latency has no %s", k)
		}
	}
	var back Report
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Committed != rep.Committed || back.Passed != rep.Passed || back.Latency["transfer"] != rep.Latency["transfer"] {
		t.Errorf("report does not survive JSON: %+v", back)
	}
}

func TestRefusesRemoteTargets(t *testing.T) {
	_, err := Run(context.Background(), Config{BaseURL: "https://api.example.com", Scenario: "uniform"})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("err = %v", err)
	}
	for base, want := range map[string]bool{"http://127.0.0.1:8080": true, "http://localhost:1": true, "http://[::1]:2": true,
		"http://10.0.0.1:8080": false, "http://127.0.0.1.example.com": false} {
		if IsLoopback(base) != want {
			t.Errorf("IsLoopback(%s) = %v", base, !want)
		}
	}
}

func TestReconcileHookDecidesTheRun(t *testing.T) {
	f := newFakeAPI(t)
	cfg := baseConfig(f, transferDef(4, 0, 0))
	calls := 0
	cfg.Reconcile = func(context.Context) (string, error) { calls++; return "7 balances, 3 transactions", nil }
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	var text bytes.Buffer
	_ = rep.Text(&text)
	if calls != 1 || !rep.Passed || rep.Reconcile == nil || !rep.Reconcile.OK || !strings.Contains(text.String(), "reconcile: clean (7 balances") {
		t.Fatalf("calls %d passed %v reconcile %+v\n%s", calls, rep.Passed, rep.Reconcile, text.String())
	}
	cfg.Reconcile = func(context.Context) (string, error) { return "", errors.New("asset USD: balances sum to 1, want 0") }
	cfg.RunID = 8
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed || rep.Reconcile.OK || !strings.Contains(strings.Join(rep.Failures, ";"), "balances sum to 1") {
		t.Fatalf("a failed reconcile passed: %+v %v", rep.Reconcile, rep.Failures)
	}
}

func TestReusedPopulation(t *testing.T) {
	f := newFakeAPI(t)
	cfg := baseConfig(f, transferDef(5, 0, 0))
	first, err := Run(context.Background(), cfg)
	if err != nil || !first.Passed || first.Population == nil {
		t.Fatalf("first run: %v %+v", err, first)
	}
	f.mu.Lock()
	users := len(f.users)
	f.mu.Unlock()
	cfg.Population, cfg.RunID = first.Population, 9
	second, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	after := len(f.users)
	f.mu.Unlock()
	c := second.Conservation
	if !second.Passed || after != users || c.FundingChecked != 0 || !c.OK || !c.PerUser || second.Committed == 0 {
		t.Fatalf("second run: passed %v, users %d → %d, conservation %+v", second.Passed, users, after, c)
	}
	// The balances the second run started from are what the first left.
	if c.Assets[0].Before != first.Conservation.Assets[0].After {
		t.Errorf("second run started from %s, the first ended at %s", c.Assets[0].Before, first.Conservation.Assets[0].After)
	}
	// A population of another shape is refused.
	cfg.Def = transferDef(5, 1, 0)
	if _, err := Run(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "does not fit") {
		t.Fatalf("err = %v", err)
	}
}

// Setup waits out a busy server (503 means rolled back, retry the same request); the load
// phase reports a 503 as a failure and teardown learns the transfer's outcome.
func TestBusyAnswers(t *testing.T) {
	f := newFakeAPI(t)
	f.busyCashIns = 5
	f.busySuffix = "-4"
	rep, err := Run(context.Background(), baseConfig(f, transferDef(4, 0, 0)))
	if err != nil {
		t.Fatalf("setup did not wait out 503s: %v", err)
	}
	c := rep.Conservation
	if rep.Errors["transfer 503 busy"] != 1 || rep.Passed || c.Resolved != 1 || !c.OK || !c.PerUser {
		t.Fatalf("errors %v, passed %v, conservation %+v", rep.Errors, rep.Passed, c)
	}
	f.mu.Lock()
	created := f.created
	f.mu.Unlock()
	// The busy transfer was created at teardown, and counted.
	if rep.Committed != int64(created) {
		t.Errorf("committed %d, created %d", rep.Committed, created)
	}
}

func TestWarmupIsAccountedButNotMeasured(t *testing.T) {
	f := newFakeAPI(t)
	cfg := baseConfig(f, transferDef(5, 1, 0))
	cfg.Warmup = true
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	created := f.created
	merchant := f.byPhone[userPhone(7, 5)].balances["USD"]
	f.mu.Unlock()
	if !rep.Passed || rep.WarmupTransfers != 5 || rep.Committed != int64(created-5) || rep.Latency["transfer"].Count != int(rep.Committed) {
		t.Fatalf("passed %v, warm-up %d, committed %d of %d created, %d samples", rep.Passed, rep.WarmupTransfers, rep.Committed, created, rep.Latency["transfer"].Count)
	}
	// Every transfer, warm-up included, credited the merchant, and the ledger check saw them all.
	if !merchant.Equal(decimal.NewFromInt(int64(created))) || !rep.Conservation.PerUser || !rep.Conservation.OK {
		t.Errorf("merchant %s after %d transfers; conservation %+v", merchant, created, rep.Conservation)
	}
}
