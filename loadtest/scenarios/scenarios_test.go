package scenarios

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestEmbeddedDefinesTheFourScenarios(t *testing.T) {
	f, err := Embedded()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		script   string
		executor string
	}{
		"uniform": {"transfers.js", ConstantArrivalRate},
		"hot":     {"transfers.js", ConstantArrivalRate},
		"mixed":   {"mixed.js", RampingArrivalRate},
		"signup":  {"signup.js", ConstantVUs},
	}
	if got := strings.Join(f.Names(), ","); got != "hot,mixed,signup,uniform" {
		t.Fatalf("scenario names = %s", got)
	}
	for name, w := range want {
		s := f.Scenarios[name]
		if s.Script != w.script || s.Load.Executor != w.executor {
			t.Errorf("%s: script %s executor %s, want %s %s", name, s.Script, s.Load.Executor, w.script, w.executor)
		}
		// Every script named must exist beside the scenarios, in loadtest/k6.
		if _, err := os.Stat(filepath.Join("..", "k6", s.Script)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		// Latency is judged on the scenario's own requests, not on setup's sign-ups.
		if len(s.Thresholds["http_req_duration{scenario:"+name+"}"]) == 0 {
			t.Errorf("%s: no latency threshold scoped to the scenario", name)
		}
		for _, metric := range []string{"http_req_failed", "checks"} {
			if len(s.Thresholds[metric]) == 0 {
				t.Errorf("%s: no threshold on %s", name, metric)
			}
		}
		if s.Load.Executor != ConstantVUs && len(s.Thresholds["dropped_iterations"]) == 0 {
			t.Errorf("%s: arrival-rate scenario without a dropped_iterations threshold", name)
		}
	}
	if hot := f.Scenarios["hot"]; hot.Merchants != 1 {
		t.Errorf("hot has %d merchants, want the one everybody pays", hot.Merchants)
	}
	// The retry budget of hot is the target, 0.05 retries per transfer.
	hot := f.Scenarios["hot"]
	th, err := ParseThreshold("wallet_tx_retries", hot.Thresholds["wallet_tx_retries"][0])
	if err != nil {
		t.Fatal(err)
	}
	if budget := 0.05 * float64(hot.Load.ExpectedIterations()); th.Value != budget {
		t.Errorf("hot retry budget %v, want 0.05 × %d iterations = %v", th.Value, hot.Load.ExpectedIterations(), budget)
	}
	if _, err := Get("nope"); err == nil || !strings.Contains(err.Error(), "uniform") {
		t.Errorf("Get(nope) = %v, want an error naming the scenarios there are", err)
	}
}

func TestJSONIsACopy(t *testing.T) {
	b := JSON()
	b[0] = 'x'
	if JSON()[0] == 'x' {
		t.Fatal("JSON() hands out the embedded bytes")
	}
}

// mutate decodes the embedded file, lets fn change the uniform scenario through a generic
// map (so that fields the Go type lacks can be added) and decodes the result.
func mutate(t *testing.T, fn func(s map[string]any)) error {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(JSON(), &doc); err != nil {
		t.Fatal(err)
	}
	fn(doc["scenarios"].(map[string]any)["uniform"].(map[string]any))
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode(strings.NewReader(string(b)))
	return err
}

func TestDecodeRefuses(t *testing.T) {
	load := func(s map[string]any) map[string]any { return s["load"].(map[string]any) }
	cases := []struct {
		name string
		fn   func(s map[string]any)
		want string
	}{
		{"unknown field", func(s map[string]any) { s["userz"] = 3 }, "unknown field"},
		{"unknown load field", func(s map[string]any) { load(s)["preAllocatedVU"] = 3 }, "unknown field"},
		{"unknown executor", func(s map[string]any) { load(s)["executor"] = "per-vu-iterations" }, "executor"},
		{"rate missing", func(s map[string]any) { delete(load(s), "rate") }, "rate must be positive"},
		{"bad duration", func(s map[string]any) { load(s)["duration"] = "60" }, "duration"},
		{"stages on constant", func(s map[string]any) {
			load(s)["stages"] = []any{map[string]any{"target": 1, "duration": "1s"}}
		}, "stages does not apply"},
		{"maxVUs below preallocated", func(s map[string]any) { load(s)["maxVUs"] = 1 }, "maxVUs"},
		{"zero amount", func(s map[string]any) { s["amount"] = "0.00" }, "amount"},
		{"float amount", func(s map[string]any) { s["amount"] = "1e3" }, "amount"},
		{"one user", func(s map[string]any) { s["users"] = 1 }, "at least one payer"},
		{"bad recipient", func(s map[string]any) { s["recipient"] = "email" }, "recipient"},
		{"duplicate asset", func(s map[string]any) { s["assets"] = []any{"USD", "USD"} }, "asset"},
		{"mix op", func(s map[string]any) { s["mix"] = map[string]any{"cashout": 1} }, "mix"},
		{"k6 tag", func(s map[string]any) { s["tags"] = map[string]any{"scenario": "x"} }, "set by k6"},
		{"no thresholds", func(s map[string]any) { s["thresholds"] = map[string]any{} }, "no thresholds"},
		{"bad threshold", func(s map[string]any) {
			s["thresholds"] = map[string]any{"http_req_duration": []any{"p99<250"}}
		}, "aggregation"},
		{"aggregation of another type", func(s map[string]any) {
			s["thresholds"] = map[string]any{"http_req_failed": []any{"p(99)<1"}}
		}, "rate metric has no p"},
		{"another scenario's filter", func(s map[string]any) {
			s["thresholds"] = map[string]any{"http_req_duration{scenario:hot}": []any{"p(99)<1"}}
		}, "not this one"},
		{"bad filter", func(s map[string]any) {
			s["thresholds"] = map[string]any{"http_req_duration{op}": []any{"p(99)<1"}}
		}, "tag:value"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := mutate(t, c.fn)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
	if _, err := Decode(strings.NewReader(string(JSON()) + "{}")); err == nil {
		t.Error("trailing data accepted")
	}
	if err := mutate(t, func(map[string]any) {}); err != nil {
		t.Errorf("unchanged file refused: %v", err)
	}
}

func TestParseThreshold(t *testing.T) {
	th, err := ParseThreshold("http_req_duration{op:balance, scenario:mixed}", " p(99.9) <= 100 ")
	if err != nil {
		t.Fatal(err)
	}
	if th.Metric != "http_req_duration" || th.Tags["op"] != "balance" || th.Tags["scenario"] != "mixed" ||
		th.Agg != "p" || th.Percentile != 99.9 || th.Op != "<=" || th.Value != 100 {
		t.Fatalf("parsed %+v", th)
	}
	if !th.Holds(100) || th.Holds(100.5) {
		t.Error("<= 100 evaluated wrongly")
	}
	for expr, holds := range map[string][2]bool{ // {at 1, at 2}
		"rate==1": {true, false}, "rate!=1": {false, true}, "count>1": {false, true},
		"count>=2": {false, true}, "count<2": {true, false}, "rate===1": {true, false},
	} {
		th, err := ParseThreshold("custom_metric", expr)
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		if th.Holds(1) != holds[0] || th.Holds(2) != holds[1] {
			t.Errorf("%s at 1,2 = %v,%v want %v", expr, th.Holds(1), th.Holds(2), holds)
		}
	}
	for _, bad := range []string{"p(101)<1", "avg<", "avg<x", "sum<1", "avg < 1 2"} {
		if _, err := ParseThreshold("custom_metric", bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestLoadArithmetic(t *testing.T) {
	ramp := Load{Executor: RampingArrivalRate, StartRate: 0, TimeUnit: "1s", PreAllocatedVUs: 1,
		Stages: []Stage{{Target: 10, Duration: "10s"}, {Target: 10, Duration: "5s"}, {Target: 0, Duration: "2s"}}}
	if err := ramp.validate(); err != nil {
		t.Fatal(err)
	}
	// 0→10 over 10 s is 50, then 50 at 10/s, then 10→0 over 2 s is 10.
	if got := ramp.ExpectedIterations(); got != 110 {
		t.Errorf("ramping iterations = %d, want 110", got)
	}
	if got := ramp.TotalDuration(); got != 17*time.Second {
		t.Errorf("ramping duration = %v", got)
	}
	perMinute := Load{Executor: ConstantArrivalRate, Rate: 30, TimeUnit: "1m", Duration: "2m", PreAllocatedVUs: 1}
	if got := perMinute.ExpectedIterations(); got != 60 {
		t.Errorf("30/min for 2 min = %d, want 60", got)
	}
	if got := (Load{Executor: ConstantVUs, VUs: 3, Duration: "1s"}).ExpectedIterations(); got != 0 {
		t.Errorf("closed loop expected iterations = %d, want 0", got)
	}
}
