package k6run

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// testServer answers the requests of testdata/full.js and remembers what it was sent.
type testServer struct {
	*httptest.Server
	mu       sync.Mutex
	refs     []string
	vus      map[float64]bool
	teardown map[string]any
}

func newTestServer(t *testing.T) *testServer {
	s := &testServer{vus: map[float64]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo", func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.refs = append(s.refs, body["ref"].(string))
		s.vus[body["vu"].(float64)] = true
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Tx-Retries", "2")
		headers := map[string]string{}
		for k := range r.Header {
			headers[k] = r.Header.Get(k)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"body": body, "headers": headers})
	})
	mux.HandleFunc("GET /status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
	})
	mux.HandleFunc("POST /teardown", func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		_ = json.NewDecoder(r.Body).Decode(&s.teardown)
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func TestFullLifeCycle(t *testing.T) {
	srv := newTestServer(t)
	var log strings.Builder
	res, err := Run(context.Background(), Script{
		Path:       filepath.Join("testdata", "full.js"),
		Env:        map[string]string{"BASE_URL": srv.URL},
		Iterations: 6,
		VUs:        3,
		Log:        &log,
	})
	if err != nil {
		t.Fatalf("run: %v\nlog:\n%s", err, log.String())
	}
	if len(res.IterationErrors) > 0 {
		t.Fatalf("iteration errors: %v", res.IterationErrors)
	}

	t.Run("options", func(t *testing.T) {
		sc := res.Options["scenarios"].(map[string]any)
		if sc["writes"].(map[string]any)["executor"] != "constant-arrival-rate" ||
			sc["reads"].(map[string]any)["executor"] != "ramping-arrival-rate" {
			t.Errorf("scenarios = %v", sc)
		}
		th := res.Options["thresholds"].(map[string]any)
		if fmt.Sprint(th["http_req_duration"]) != "[p(99)<5000]" {
			t.Errorf("thresholds = %v", th)
		}
		got := []string{}
		for _, s := range res.Scenarios {
			got = append(got, fmt.Sprintf("%s/%s/%s/%d", s.Name, s.Executor, s.Exec, s.Iterations))
		}
		if want := "reads/ramping-arrival-rate/read/6 writes/constant-arrival-rate/write/6"; strings.Join(got, " ") != want {
			t.Errorf("scenarios run = %v, want %s", got, want)
		}
	})

	t.Run("checks", func(t *testing.T) {
		want := map[string][2]int{ // passes, fails
			"::pay::status is 200":     {6, 0},
			"::pay::token passed":      {6, 0},
			"::pay::header sent":       {6, 0},
			"::pay::iteration is even": {3, 3},
			"batch 404":                {6, 0},
			"batch 409":                {6, 0},
		}
		for k, w := range want {
			c := res.Checks[k]
			if c == nil || c.Passes != w[0] || c.Fails != w[1] {
				t.Errorf("check %q = %+v, want %d passes %d fails", k, c, w[0], w[1])
			}
		}
		if len(res.Checks) != len(want) {
			t.Errorf("checks = %v", res.Checks)
		}
		p := res.Problems()
		if len(p) != 1 || !strings.Contains(p[0], "iteration is even") || !strings.Contains(p[0], "3 of 6") {
			t.Errorf("problems = %v", p)
		}
	})

	t.Run("execution context", func(t *testing.T) {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		// Every iteration of the scenario has its own iterationInTest, whichever VU ran it.
		var iters []int
		for _, ref := range srv.refs {
			parts := strings.Split(ref, "-")
			if parts[0] != "writes" {
				t.Errorf("reference %q does not start with the scenario name", ref)
			}
			n, _ := strconv.Atoi(parts[1])
			iters = append(iters, n)
			if vu, _ := strconv.Atoi(parts[2]); vu < 1 || vu > 3 {
				t.Errorf("reference %q has VU %d", ref, vu)
			}
		}
		sort.Ints(iters)
		if fmt.Sprint(iters) != "[0 1 2 3 4 5]" {
			t.Errorf("iterationInTest values = %v", iters)
		}
		for vu := range srv.vus {
			if vu < 1 || vu > 3 {
				t.Errorf("__VU = %v", vu)
			}
		}
	})

	t.Run("setup data reaches iterations and teardown", func(t *testing.T) {
		if string(res.SetupData) != `{"token":"tok-2","names":["alice","bob"]}` {
			t.Errorf("setup data = %s", res.SetupData)
		}
		if !res.TeardownCalled {
			t.Fatal("teardown not called")
		}
		srv.mu.Lock()
		defer srv.mu.Unlock()
		if fmt.Sprint(srv.teardown) != "map[names:[alice bob] token:tok-2]" {
			t.Errorf("teardown got %v", srv.teardown)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := res.Metrics
		if got := m["test_retries"].Sum(nil); got != 12 {
			t.Errorf("test_retries = %v, want 6 × 2 from X-Tx-Retries", got)
		}
		if m["test_retries"].Type != "counter" || m["test_latency"].Type != "trend" || !m["test_latency"].IsTime ||
			m["test_ok"].Type != "rate" || m["test_last"].Type != "gauge" {
			t.Errorf("metric types wrong")
		}
		if n := len(m["test_latency"].Values(map[string]string{"kind": "write", "scenario": "writes", "group": "::pay"})); n != 6 {
			t.Errorf("test_latency has %d samples tagged with scenario, scenario tags and group; want 6", n)
		}
		if got := m["http_reqs"].Sum(nil); got != 1+6+12+1 {
			t.Errorf("http_reqs = %v, want setup 1 + writes 6 + batch 12 + teardown 1", got)
		}
		if n := len(m["http_reqs"].Values(map[string]string{"name": "POST /echo", "method": "POST", "status": "200"})); n != 6 {
			t.Errorf("POST /echo samples by name tag = %d", n)
		}
		// 404 counts as failed, 409 was expected by its callback.
		failed := m["http_req_failed"]
		if got := failed.Sum(map[string]string{"name": "missing"}); got != 6 {
			t.Errorf("404s counted failed = %v, want 6", got)
		}
		if got := failed.Sum(map[string]string{"status": "409"}); got != 0 {
			t.Errorf("expected 409s counted failed = %v", got)
		}
		if got := m["iterations"].Sum(nil); got != 12 {
			t.Errorf("iterations = %v", got)
		}
		if len(m["checks"].Samples) != 6*4+6*2 {
			t.Errorf("checks samples = %d", len(m["checks"].Samples))
		}
	})

	t.Run("thresholds", func(t *testing.T) {
		got := map[string]bool{}
		for _, th := range res.Thresholds {
			got[th.Metric+" "+th.Expr] = th.OK
		}
		want := map[string]bool{
			"http_req_duration p(99)<5000":      true,
			"test_latency{kind:write} max<5000": true,
			"test_retries count>0":              true,
			"test_ok rate>0.9":                  true,
			"checks rate==1":                    false, // the odd iterations failed a check
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("thresholds = %v, want %v", got, want)
		}
	})

	t.Run("handleSummary", func(t *testing.T) {
		if !res.SummaryCalled {
			t.Fatal("handleSummary not called")
		}
		if res.Summary["stdout"] != "checks: 33 passed\n" {
			t.Errorf("stdout = %q", res.Summary["stdout"])
		}
		var data struct {
			RootGroup struct {
				Checks []struct{ Name string }
				Groups []struct {
					Name   string
					Checks []struct {
						Name          string
						Passes, Fails int
					}
				}
			} `json:"root_group"`
			Metrics map[string]struct {
				Type       string
				Values     map[string]float64
				Thresholds map[string]struct{ OK bool }
			}
			SetupData map[string]any `json:"setup_data"`
		}
		if err := json.Unmarshal([]byte(res.Summary["summary.json"]), &data); err != nil {
			t.Fatal(err)
		}
		if len(data.RootGroup.Checks) != 2 || len(data.RootGroup.Groups) != 1 || data.RootGroup.Groups[0].Name != "pay" ||
			len(data.RootGroup.Groups[0].Checks) != 4 {
			t.Errorf("root_group = %+v", data.RootGroup)
		}
		lat := data.Metrics["test_latency"]
		if _, ok := lat.Values["p(99)"]; !ok || len(lat.Values) != 2 {
			t.Errorf("trend values follow summaryTrendStats: %v", lat.Values)
		}
		if data.Metrics["test_retries"].Values["count"] != 12 {
			t.Errorf("summary counter = %v", data.Metrics["test_retries"].Values)
		}
		sub := data.Metrics["test_latency{kind:write}"]
		if !sub.Thresholds["max<5000"].OK {
			t.Errorf("sub-metric threshold missing: %+v", sub)
		}
		if data.Metrics["checks"].Thresholds["rate==1"].OK {
			t.Error("failed checks threshold reported ok")
		}
		if data.SetupData["token"] != "tok-2" {
			t.Errorf("setup_data = %v", data.SetupData)
		}
	})
}

func TestLoudFailures(t *testing.T) {
	cases := []struct {
		script string
		want   []string
	}{
		{"unknown_module.js", []string{`unknown module "k6/x/sql"`, "k6/http"}},
		{"remote_module.js", []string{`unknown module "https://jslib.k6.io/k6-summary/0.0.2/index.js"`}},
		{"init_http.js", []string{"init context is not supported", "init_http.js:2"}},
		{"unknown_threshold.js", []string{"wallet_not_defined", "no such metric"}},
		{"setup_throws.js", []string{"setup", "no users could be created", "setup_throws.js:3"}},
		{"abort.js", []string{"test aborted: money not conserved"}},
		{"missing.js", []string{"bundle", "missing.js"}},
	}
	for _, c := range cases {
		t.Run(c.script, func(t *testing.T) {
			_, err := Run(context.Background(), Script{Path: filepath.Join("testdata", c.script)})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestIterationErrorsAreCollectedAndTheRunGoesOn(t *testing.T) {
	res, err := Run(context.Background(), Script{Path: filepath.Join("testdata", "iteration_throws.js"), Iterations: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IterationErrors) != 1 || !strings.Contains(res.IterationErrors[0], "boom in iteration 1") ||
		!strings.Contains(res.IterationErrors[0], "iteration_throws.js:4") {
		t.Fatalf("iteration errors = %q", res.IterationErrors)
	}
	if got := res.Metrics["iterations"].Sum(nil); got != 3 {
		t.Errorf("iterations = %v, want all 3 run", got)
	}
	if len(res.Problems()) != 1 {
		t.Errorf("problems = %v", res.Problems())
	}
}

func TestInitOnlyAPIsRefusedLater(t *testing.T) {
	res, err := Run(context.Background(), Script{Path: filepath.Join("testdata", "init_rules.js")})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.IterationErrors) != 0 {
		t.Fatal(res.IterationErrors)
	}
}

func TestContextCancelStopsTheRun(t *testing.T) {
	blocked := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-blocked:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(blocked)
	dir := t.TempDir()
	path := filepath.Join(dir, "slow.js")
	writeFile(t, path, `import http from 'k6/http';
export default function () { http.get(__ENV.BASE_URL); }`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, Script{Path: path, Env: map[string]string{"BASE_URL": srv.URL}, Iterations: 1000, VUs: 2})
	if err == nil {
		t.Fatal("no error after cancel")
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("run took %v after cancel", time.Since(start))
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestMoneyHelpers runs the scripts' exact decimal sums, on which the conservation check
// rests, through the runtime.
func TestMoneyHelpers(t *testing.T) {
	res, err := Run(context.Background(), Script{Path: filepath.Join("testdata", "money_check.js")})
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Problems(); len(p) > 0 {
		t.Fatal(p)
	}
	if len(res.Checks) != 6 {
		t.Fatalf("checks = %v", res.Checks)
	}
}
