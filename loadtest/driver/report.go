package driver

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// Report is what one run measured. Its JSON form is the machine-readable result.
type Report struct {
	Scenario    string `json:"scenario"`
	Description string `json:"description"`
	Target      string `json:"target"`
	Started     string `json:"started"`
	RunID       int    `json:"run_id"`
	Mode        string `json:"mode"`
	// Workers is the concurrency (closed) or the most iterations in flight (open).
	Workers int `json:"workers"`
	// TargetRate and ScheduledIterations describe an open run's schedule.
	TargetRate          float64 `json:"target_rate_per_s,omitempty"`
	ScheduledIterations int64   `json:"scheduled_iterations,omitempty"`
	Users               int     `json:"users"`
	Merchants           int     `json:"merchants"`
	SetupSeconds        float64 `json:"setup_s"`
	// WarmupTransfers were sent before the load phase (Config.Warmup), in WarmupSeconds.
	WarmupTransfers int     `json:"warmup_transfers,omitempty"`
	WarmupSeconds   float64 `json:"warmup_s,omitempty"`
	DurationSeconds float64 `json:"duration_s"`
	// Iterations were started; Dropped found no free worker (open runs only).
	Iterations int64 `json:"iterations"`
	Dropped    int64 `json:"dropped"`
	// Throughput is ThroughputOf per second of the load phase: committed transfers for the
	// transfer scenarios, successful operations for mixed, finished journeys for signup.
	Throughput   float64 `json:"throughput_per_s"`
	ThroughputOf string  `json:"throughput_of"`
	// Latency per operation (transfer, replay, balance, history, signup), from every sample.
	Latency map[string]Summary `json:"latency"`
	// Requests are operations sent in the load phase (a journey counts once); Failed did
	// not get the answer they should have.
	Requests  int64            `json:"requests"`
	Failed    int64            `json:"failed"`
	ErrorRate float64          `json:"error_rate"`
	Errors    map[string]int64 `json:"errors"`
	// Committed transfers, including those whose outcome teardown had to learn.
	Committed int64 `json:"committed_transfers"`
	// TxRetries is the sum of X-Tx-Retries (the server's database retries); RetriedRequests
	// had at least one; RetriesPerTransfer is TxRetries / Committed.
	TxRetries          int64   `json:"tx_retries"`
	RetriedRequests    int64   `json:"retried_requests"`
	RetriesPerTransfer float64 `json:"retries_per_committed_transfer"`
	// TransportRetries are requests sent again after a broken connection (same reference).
	TransportRetries int64 `json:"transport_retries"`
	// Replays: transfers sent twice on purpose, and repeats answered as the same transaction.
	ReplaysSent      int64  `json:"replays_sent"`
	ReplaysConfirmed int64  `json:"replays_confirmed"`
	Memory           Memory `json:"memory"`
	// CPU is where the processor time went during the load phase.
	CPU          CPU          `json:"cpu"`
	Conservation Conservation `json:"conservation"`
	// Reconcile is the database-wide ledger check, when the caller gave one.
	Reconcile *ReconcileResult `json:"reconcile,omitempty"`
	// Thresholds are the scenario's k6 thresholds evaluated on what the driver measures,
	// for information: they do not decide Passed.
	Thresholds []Threshold `json:"thresholds"`
	Passed     bool        `json:"passed"`
	Failures   []string    `json:"failures,omitempty"`
	// Population is the run's users, for Config.Population of a later run.
	Population *Population `json:"-"`
	good       int64
}

// Conservation is teardown's account of the money.
type Conservation struct {
	// Checked is false for scenarios that move no money.
	Checked bool           `json:"checked"`
	Assets  []AssetBalance `json:"assets,omitempty"`
	// PerUser says whether every user's balance was recomputed from the committed
	// transfers, and lists the first users that did not match.
	PerUser           bool     `json:"per_user_checked"`
	PerUserMismatches []string `json:"per_user_mismatches,omitempty"`
	// Funded users (signed up by this run) whose balance after setup was not the funding.
	FundingChecked    int      `json:"funding_checked"`
	FundingMismatches []string `json:"funding_mismatches,omitempty"`
	// Resolved transfers had an unknown outcome and were asked again with the same
	// reference; Unresolved still have none, which makes the per-user check impossible.
	Resolved   int  `json:"resolved"`
	Unresolved int  `json:"unresolved"`
	OK         bool `json:"ok"`
}

// ReconcileResult is the outcome of Config.Reconcile.
type ReconcileResult struct {
	OK      bool   `json:"ok"`
	Summary string `json:"summary,omitempty"`
	Error   string `json:"error,omitempty"`
}

// AssetBalance is one asset's money before and after: Before - Fees must equal After.
type AssetBalance struct {
	Asset  string `json:"asset"`
	Before string `json:"before"`
	After  string `json:"after"`
	Fees   string `json:"fees"`
	OK     bool   `json:"ok"`
}

// Threshold is one k6 threshold of the scenario and the driver's value for it.
type Threshold struct {
	Metric   string  `json:"metric"`
	Expr     string  `json:"expr"`
	Measured bool    `json:"measured"`
	Observed float64 `json:"observed,omitempty"`
	OK       bool    `json:"ok"`
	// Note says what the driver measured instead, or why it could not.
	Note string `json:"note,omitempty"`
}

func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

func (rep *Report) fill(st *stats, elapsed time.Duration, started, dropped int64, p *plan) {
	rep.DurationSeconds = round3(elapsed.Seconds())
	rep.Iterations, rep.Dropped = started, dropped
	rep.Latency = map[string]Summary{}
	for op, s := range st.lat {
		rep.Latency[op] = s.Summarize()
	}
	rep.Requests, rep.Failed = st.requests, st.failed
	if st.requests > 0 {
		rep.ErrorRate = float64(st.failed) / float64(st.requests)
	}
	rep.Errors = st.errors
	rep.TxRetries, rep.RetriedRequests = st.txRetries, st.retried
	rep.TransportRetries = st.transportRetries
	rep.ReplaysSent, rep.ReplaysConfirmed = st.replaysSent, st.replaysOK
	var good int64
	switch {
	case p.def.Mix != nil:
		rep.ThroughputOf = "successful operations"
		for op, n := range st.ok {
			if op != "replay" {
				good += n
			}
		}
	case p.def.Amount != "":
		rep.ThroughputOf = "committed transfers"
		good = st.committed
	default:
		rep.ThroughputOf = "finished sign-up journeys"
		good = st.ok["signup"]
	}
	rep.good = good
	if elapsed > 0 {
		rep.Throughput = math.Round(float64(good)/elapsed.Seconds()*10) / 10
	}
	rep.Committed = st.committed
}

// finish evaluates the thresholds and decides whether the run passed: money conserved,
// no failed request, every replay confirmed.
func (rep *Report) finish(def scenarios.Scenario) {
	if rep.Committed > 0 {
		rep.RetriesPerTransfer = float64(rep.TxRetries) / float64(rep.Committed)
	}
	rep.Thresholds = rep.evaluate(def)
	if rep.Conservation.Checked && !rep.Conservation.OK {
		rep.Failures = append(rep.Failures, "money not conserved (see conservation)")
	}
	if rep.Failed > 0 {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d of %d requests failed", rep.Failed, rep.Requests))
	}
	if rep.ReplaysConfirmed != rep.ReplaysSent {
		rep.Failures = append(rep.Failures, fmt.Sprintf("%d of %d replays were not answered with the stored transaction",
			rep.ReplaysSent-rep.ReplaysConfirmed, rep.ReplaysSent))
	}
	if rep.Requests == 0 {
		rep.Failures = append(rep.Failures, "no request was sent")
	}
	rep.Passed = len(rep.Failures) == 0
}

func (rep *Report) evaluate(def scenarios.Scenario) []Threshold {
	keys := make([]string, 0, len(def.Thresholds))
	for k := range def.Thresholds {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []Threshold
	for _, key := range keys {
		for _, expr := range def.Thresholds[key] {
			t := Threshold{Metric: key, Expr: expr}
			th, err := scenarios.ParseThreshold(key, expr)
			if err != nil {
				t.Note = err.Error()
				out = append(out, t)
				continue
			}
			v, note, ok := rep.observe(th)
			t.Note = note
			if ok {
				t.Measured, t.Observed, t.OK = true, round3(v), th.Holds(v)
			}
			out = append(out, t)
		}
	}
	return out
}

// observe maps a k6 threshold onto what the driver measured.
func (rep *Report) observe(th scenarios.Threshold) (float64, string, bool) {
	lat := func(op string) (float64, string, bool) {
		s, ok := rep.Latency[op]
		if !ok || s.Count == 0 {
			return 0, "no " + op + " samples", false
		}
		switch th.Agg {
		case "avg":
			return s.Mean, "", true
		case "min":
			return s.Min, "", true
		case "med":
			return s.P50, "", true
		case "max":
			return s.Max, "", true
		case "p":
			switch th.Percentile {
			case 50:
				return s.P50, "", true
			case 90:
				return s.P90, "", true
			case 99:
				return s.P99, "", true
			}
		}
		return 0, "the driver keeps p50, p90, p99 only", false
	}
	failRate := 0.0
	if rep.Requests > 0 {
		failRate = float64(rep.Failed) / float64(rep.Requests)
	}
	switch th.Metric {
	case "wallet_transfer_duration":
		return lat("transfer")
	case "wallet_signup_duration":
		return lat("signup")
	case "http_req_duration":
		if op := th.Tags["op"]; op != "" {
			v, note, ok := lat(op)
			if op == "signup" && ok {
				note = "whole journey latency, not POST /user alone"
			}
			return v, note, ok
		}
		if _, ok := rep.Latency["transfer"]; ok && rep.ThroughputOf == "committed transfers" {
			v, _, ok := lat("transfer")
			return v, "transfer latency", ok
		}
		if _, ok := rep.Latency["signup"]; ok {
			v, _, ok := lat("signup")
			return v, "whole journey latency (the driver does not time each request)", ok
		}
		return 0, "the driver does not time every request of a mixed run together", false
	case "http_req_failed":
		return failRate, "failed operations / operations", true
	case "checks":
		return 1 - failRate, "1 - failed operations / operations", true
	case "dropped_iterations":
		if th.Agg == "count" {
			return float64(rep.Dropped), "", true
		}
	case "wallet_tx_retries":
		if th.Agg == "count" {
			return float64(rep.TxRetries), "", true
		}
	case "wallet_money_conserved":
		if rep.Conservation.Checked {
			if rep.Conservation.OK {
				return 1, "", true
			}
			return 0, "", true
		}
		return 0, "no money moved", false
	}
	return 0, "not measured by the driver", false
}

// JSON writes the report as indented JSON.
func (rep *Report) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// Text writes the report for people.
func (rep *Report) Text(w io.Writer) error {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("scenario %s: %s\n", rep.Scenario, rep.Description)
	switch rep.Mode {
	case Open:
		p("open loop: %.1f iterations/s scheduled (%d), at most %d in flight, against %s (run %03d)\n",
			rep.TargetRate, rep.ScheduledIterations, rep.Workers, rep.Target, rep.RunID)
	default:
		p("closed loop: %d workers, against %s (run %03d)\n", rep.Workers, rep.Target, rep.RunID)
	}
	p("setup: %d users, %d merchants in %.1fs\n", rep.Users, rep.Merchants, rep.SetupSeconds)
	if rep.WarmupTransfers > 0 {
		p("warm-up: %d transfers (one per payer, unmeasured) in %.1fs\n", rep.WarmupTransfers, rep.WarmupSeconds)
	}
	p("load: %.2fs, %d iterations started, %d dropped\n", rep.DurationSeconds, rep.Iterations, rep.Dropped)
	p("throughput: %.1f %s/s\n", rep.Throughput, rep.ThroughputOf)
	ops := make([]string, 0, len(rep.Latency))
	for op := range rep.Latency {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	p("latency (ms)      count      p50      p90      p99      max     mean\n")
	for _, op := range ops {
		s := rep.Latency[op]
		p("  %-12s %8d %8.2f %8.2f %8.2f %8.2f %8.2f\n", op, s.Count, s.P50, s.P90, s.P99, s.Max, s.Mean)
	}
	p("errors: %d of %d requests (%.4f%%)\n", rep.Failed, rep.Requests, rep.ErrorRate*100)
	keys := make([]string, 0, len(rep.Errors))
	for k := range rep.Errors {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		p("  %-48s %d\n", k, rep.Errors[k])
	}
	p("server retries (X-Tx-Retries): %d on %d requests, %.4f per committed transfer (%d committed)\n",
		rep.TxRetries, rep.RetriedRequests, rep.RetriesPerTransfer, rep.Committed)
	p("transport retries (same reference): %d\n", rep.TransportRetries)
	p("replays: %d sent, %d answered with the stored transaction\n", rep.ReplaysSent, rep.ReplaysConfirmed)
	m := rep.Memory
	switch {
	case m.Source == "":
		p("server memory: not measured (give -server-pid or -metrics-url)\n")
	case m.Samples == 0:
		p("server memory: no sample from %s: %s\n", m.Source, m.Error)
	default:
		p("server memory: peak RSS %.1f MiB during the load (%d samples)", float64(m.PeakRSSBytes)/(1<<20), m.Samples)
		if m.HWMBytes > 0 {
			p(", VmHWM %.1f MiB", float64(m.HWMBytes)/(1<<20))
		}
		p(" from %s\n", m.Source)
	}
	cpu := rep.CPU
	p("cpu during the load: machine %.0f%% busy (%d cores); driver %.2fs (%.3f ms per op)", cpu.MachineBusy*100, cpu.Cores, cpu.DriverSeconds, cpu.DriverMsPerOp)
	if cpu.ServerSeconds > 0 {
		p("; server %.2fs (%.3f ms per op)", cpu.ServerSeconds, cpu.ServerMsPerOp)
	}
	p("\n")
	c := rep.Conservation
	if !c.Checked {
		p("money: not checked (the scenario moves no money)\n")
	} else {
		for _, a := range c.Assets {
			p("money %s: before %s, after %s, fees %s: %s\n", a.Asset, a.Before, a.After, a.Fees, okWord(a.OK, "conserved", "NOT CONSERVED"))
		}
		if c.PerUser {
			p("per-user balances recomputed from the committed transfers: %s\n", okWord(len(c.PerUserMismatches) == 0, "all exact", "MISMATCH"))
		} else {
			p("per-user balances: not recomputed, %d transfers have no known outcome\n", c.Unresolved)
		}
		for _, m := range c.PerUserMismatches {
			p("  %s\n", m)
		}
		if c.FundingChecked > 0 {
			p("funding: %d new users checked after setup: %s\n", c.FundingChecked, okWord(len(c.FundingMismatches) == 0, "exact", "MISMATCH"))
		}
		for _, m := range c.FundingMismatches {
			p("  %s\n", m)
		}
		if c.Resolved > 0 {
			p("transfers with an unknown outcome, asked again with the same reference: %d\n", c.Resolved)
		}
	}
	if rc := rep.Reconcile; rc != nil {
		if rc.OK {
			p("reconcile: clean (%s)\n", rc.Summary)
		} else {
			p("reconcile: FAILED: %s\n", rc.Error)
		}
	}
	p("k6 thresholds of the scenario (information; the driver's measure):\n")
	for _, t := range rep.Thresholds {
		if !t.Measured {
			p("  --   %s %s: %s\n", t.Metric, t.Expr, t.Note)
			continue
		}
		note := ""
		if t.Note != "" {
			note = " (" + t.Note + ")"
		}
		p("  %s %s %s: %v%s\n", okWord(t.OK, "ok  ", "FAIL"), t.Metric, t.Expr, t.Observed, note)
	}
	if rep.Passed {
		p("PASSED\n")
	} else {
		p("FAILED: %s\n", strings.Join(rep.Failures, "; "))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func okWord(ok bool, yes, no string) string {
	if ok {
		return yes
	}
	return no
}
