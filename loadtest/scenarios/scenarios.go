// Package scenarios holds the load scenarios (uniform, hot, mixed, signup) defined once in
// scenarios.json, which both the k6 scripts (through open() at init) and the Go load driver
// read, so the two runners cannot drift apart.
//
// It decodes strictly (unknown fields, trailing data and impossible values are errors) and
// parses k6 threshold expressions so that Go code can evaluate the same thresholds the k6
// scripts declare. It is not a runner: it sends no request and measures nothing.
package scenarios

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

//go:embed scenarios.json
var embedded []byte

// JSON returns the embedded scenarios.json as the k6 scripts read it.
func JSON() []byte { return bytes.Clone(embedded) }

// File is the whole of scenarios.json.
type File struct {
	Version   int                 `json:"version"`
	Scenarios map[string]Scenario `json:"scenarios"`
}

// Scenario is one named load shape: who takes part, what they do and how hard.
type Scenario struct {
	Description string `json:"description"`
	// Script is the k6 script under loadtest/k6 that runs this scenario.
	Script string `json:"script"`
	// Users is how many users setup signs up and funds (the payers).
	Users int `json:"users"`
	// Merchants is how many extra users only receive; with one merchant every transfer
	// credits the same balance (the hot scenario).
	Merchants int `json:"merchants"`
	// Assets are the symbols users are funded in and transfer.
	Assets []string `json:"assets"`
	// Funding is the cash-in per user and asset at setup, a decimal string.
	Funding string `json:"funding"`
	// Amount is the amount of every transfer, a decimal string.
	Amount string `json:"amount"`
	// Recipient says how transfers name the recipient: "id" (recipient_id) or "phone"
	// (recipient_phone, which also exercises the phone directory).
	Recipient string `json:"recipient"`
	// ReplayEvery makes every Nth transfer be sent twice with the same reference, to check
	// that the repeat is answered as a replay and moves no money; 0 disables it.
	ReplayEvery int `json:"replay_every"`
	// Mix weighs the operations of the mixed scenario: balance, history, transfer.
	Mix map[string]int `json:"mix,omitempty"`
	// Tags are added to every sample of the scenario (k6 scenario tags).
	Tags map[string]string `json:"tags"`
	// Load is the k6 scenario object, in k6's own field names, so the scripts pass it on
	// unchanged.
	Load Load `json:"load"`
	// Thresholds map a k6 metric (optionally with a {tag:value} filter) to k6 threshold
	// expressions.
	Thresholds map[string][]string `json:"thresholds"`
}

// Executors are the k6 executors scenarios may use.
const (
	ConstantArrivalRate = "constant-arrival-rate"
	RampingArrivalRate  = "ramping-arrival-rate"
	ConstantVUs         = "constant-vus"
)

// Load is a k6 scenario's executor and its parameters.
type Load struct {
	Executor        string  `json:"executor"`
	Rate            int     `json:"rate,omitempty"`
	StartRate       int     `json:"startRate,omitempty"`
	TimeUnit        string  `json:"timeUnit,omitempty"`
	Duration        string  `json:"duration,omitempty"`
	PreAllocatedVUs int     `json:"preAllocatedVUs,omitempty"`
	MaxVUs          int     `json:"maxVUs,omitempty"`
	VUs             int     `json:"vus,omitempty"`
	Stages          []Stage `json:"stages,omitempty"`
}

// Stage is one step of a ramping-arrival-rate: reach Target iterations per time unit
// linearly over Duration.
type Stage struct {
	Target   int    `json:"target"`
	Duration string `json:"duration"`
}

// Embedded decodes the scenarios.json built into the binary.
func Embedded() (File, error) { return Decode(bytes.NewReader(embedded)) }

// Get returns one embedded scenario by name.
func Get(name string) (Scenario, error) {
	f, err := Embedded()
	if err != nil {
		return Scenario{}, err
	}
	s, ok := f.Scenarios[name]
	if !ok {
		return Scenario{}, fmt.Errorf("scenarios: no scenario %q (have %s)", name, strings.Join(f.Names(), ", "))
	}
	return s, nil
}

// Names lists the scenario names in a stable order.
func (f File) Names() []string {
	names := make([]string, 0, len(f.Scenarios))
	for n := range f.Scenarios {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Decode reads a scenarios file strictly: unknown fields, trailing data and invalid
// scenarios are errors, because a typo here would silently change a benchmark.
func Decode(r io.Reader) (File, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var f File
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("scenarios: decode: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return File{}, errors.New("scenarios: trailing data after the JSON object")
	}
	if f.Version != 1 {
		return File{}, fmt.Errorf("scenarios: version %d, want 1", f.Version)
	}
	if len(f.Scenarios) == 0 {
		return File{}, errors.New("scenarios: no scenarios")
	}
	for _, name := range f.Names() {
		if err := f.Scenarios[name].validate(name); err != nil {
			return File{}, fmt.Errorf("scenarios: %s: %w", name, err)
		}
	}
	return f, nil
}

var (
	nameRE    = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	assetRE   = regexp.MustCompile(`^[A-Z0-9]{2,10}$`)
	decimalRE = regexp.MustCompile(`^[0-9]+(\.[0-9]{1,8})?$`)
)

func (s Scenario) validate(name string) error {
	if s.Description == "" {
		return errors.New("no description")
	}
	if !strings.HasSuffix(s.Script, ".js") || strings.ContainsAny(s.Script, `/\`) {
		return fmt.Errorf("script %q is not a file name in loadtest/k6", s.Script)
	}
	if s.Users < 0 || s.Merchants < 0 || s.ReplayEvery < 0 {
		return errors.New("users, merchants and replay_every must not be negative")
	}
	moves := s.Amount != ""
	if moves {
		// Transfers need a payer and someone else to pay.
		if s.Users+s.Merchants < 2 || s.Users < 1 {
			return fmt.Errorf("transfers need at least one payer and two users, have %d users and %d merchants", s.Users, s.Merchants)
		}
		if len(s.Assets) == 0 {
			return errors.New("transfers need at least one asset")
		}
		if !decimalRE.MatchString(s.Amount) || isZero(s.Amount) {
			return fmt.Errorf("amount %q is not a positive decimal", s.Amount)
		}
		if !decimalRE.MatchString(s.Funding) || isZero(s.Funding) {
			return fmt.Errorf("funding %q is not a positive decimal", s.Funding)
		}
		if s.Recipient != "id" && s.Recipient != "phone" {
			return fmt.Errorf(`recipient %q: want "id" or "phone"`, s.Recipient)
		}
	} else if s.Funding != "" || s.Recipient != "" || s.ReplayEvery != 0 {
		return errors.New("funding, recipient and replay_every need an amount")
	}
	seen := map[string]bool{}
	for _, a := range s.Assets {
		if !assetRE.MatchString(a) || seen[a] {
			return fmt.Errorf("asset %q is not a distinct asset symbol", a)
		}
		seen[a] = true
	}
	if s.Mix != nil {
		total := 0
		for op, w := range s.Mix {
			if op != "balance" && op != "history" && op != "transfer" {
				return fmt.Errorf("mix: unknown operation %q", op)
			}
			if w < 0 {
				return fmt.Errorf("mix: negative weight for %q", op)
			}
			total += w
		}
		if total == 0 {
			return errors.New("mix: weights add up to zero")
		}
		if s.Mix["transfer"] > 0 && !moves {
			return errors.New("mix: transfers need an amount")
		}
	}
	for k, v := range s.Tags {
		if !nameRE.MatchString(k) || v == "" {
			return fmt.Errorf("tag %q=%q: want a snake_case name and a value", k, v)
		}
		if k == "scenario" || k == "name" || k == "group" {
			return fmt.Errorf("tag %q is set by k6 itself", k)
		}
	}
	if err := s.Load.validate(); err != nil {
		return fmt.Errorf("load: %w", err)
	}
	if len(s.Thresholds) == 0 {
		return errors.New("no thresholds")
	}
	for metric, exprs := range s.Thresholds {
		if len(exprs) == 0 {
			return fmt.Errorf("threshold %s: no expressions", metric)
		}
		for _, e := range exprs {
			th, err := ParseThreshold(metric, e)
			if err != nil {
				return err
			}
			// A filter on another scenario would match nothing when this one runs.
			if sc, ok := th.Tags["scenario"]; ok && sc != name {
				return fmt.Errorf("threshold %s filters on scenario %q, not this one", metric, sc)
			}
		}
	}
	return nil
}

func isZero(d string) bool { return strings.Trim(d, "0.") == "" }

func (l Load) validate() error {
	positive := func(field string, v int) error {
		if v <= 0 {
			return fmt.Errorf("%s must be positive for %s", field, l.Executor)
		}
		return nil
	}
	unused := func(fields map[string]bool) error {
		for f, set := range fields {
			if set {
				return fmt.Errorf("%s does not apply to %s", f, l.Executor)
			}
		}
		return nil
	}
	switch l.Executor {
	case ConstantArrivalRate:
		if err := errors.Join(positive("rate", l.Rate), positive("preAllocatedVUs", l.PreAllocatedVUs)); err != nil {
			return err
		}
		if _, err := positiveDuration("duration", l.Duration); err != nil {
			return err
		}
		if err := unused(map[string]bool{"startRate": l.StartRate != 0, "stages": l.Stages != nil, "vus": l.VUs != 0}); err != nil {
			return err
		}
	case RampingArrivalRate:
		if l.StartRate < 0 {
			return errors.New("startRate must not be negative")
		}
		if err := positive("preAllocatedVUs", l.PreAllocatedVUs); err != nil {
			return err
		}
		if len(l.Stages) == 0 {
			return errors.New("ramping-arrival-rate needs stages")
		}
		for i, st := range l.Stages {
			if st.Target < 0 {
				return fmt.Errorf("stage %d: negative target", i)
			}
			if _, err := positiveDuration(fmt.Sprintf("stage %d duration", i), st.Duration); err != nil {
				return err
			}
		}
		if err := unused(map[string]bool{"rate": l.Rate != 0, "duration": l.Duration != "", "vus": l.VUs != 0}); err != nil {
			return err
		}
	case ConstantVUs:
		if err := positive("vus", l.VUs); err != nil {
			return err
		}
		if _, err := positiveDuration("duration", l.Duration); err != nil {
			return err
		}
		if err := unused(map[string]bool{"rate": l.Rate != 0, "startRate": l.StartRate != 0, "timeUnit": l.TimeUnit != "",
			"preAllocatedVUs": l.PreAllocatedVUs != 0, "maxVUs": l.MaxVUs != 0, "stages": l.Stages != nil}); err != nil {
			return err
		}
		return nil
	default:
		return fmt.Errorf("executor %q: want %s, %s or %s", l.Executor, ConstantArrivalRate, RampingArrivalRate, ConstantVUs)
	}
	// Arrival-rate executors only.
	if l.MaxVUs != 0 && l.MaxVUs < l.PreAllocatedVUs {
		return fmt.Errorf("maxVUs %d is below preAllocatedVUs %d", l.MaxVUs, l.PreAllocatedVUs)
	}
	if l.TimeUnit != "" {
		if _, err := positiveDuration("timeUnit", l.TimeUnit); err != nil {
			return err
		}
	}
	return nil
}

func positiveDuration(field, s string) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q is not a positive duration like 30s or 1m30s", field, s)
	}
	return d, nil
}

// TimeUnitDuration is the arrival-rate time unit, 1s when unset as in k6.
func (l Load) TimeUnitDuration() time.Duration {
	if l.TimeUnit == "" {
		return time.Second
	}
	d, _ := time.ParseDuration(l.TimeUnit)
	return d
}

// TotalDuration is how long the scenario runs (the sum of the stages when ramping).
func (l Load) TotalDuration() time.Duration {
	if l.Executor == RampingArrivalRate {
		var total time.Duration
		for _, st := range l.Stages {
			d, _ := time.ParseDuration(st.Duration)
			total += d
		}
		return total
	}
	d, _ := time.ParseDuration(l.Duration)
	return d
}

// ExpectedIterations is how many iterations an arrival-rate scenario starts if none is
// dropped (stages ramp linearly, as in k6). Closed-loop executors have no such number: 0.
func (l Load) ExpectedIterations() int {
	unit := l.TimeUnitDuration().Seconds()
	switch l.Executor {
	case ConstantArrivalRate:
		return int(math.Round(float64(l.Rate) * l.TotalDuration().Seconds() / unit))
	case RampingArrivalRate:
		from, total := float64(l.StartRate), 0.0
		for _, st := range l.Stages {
			d, _ := time.ParseDuration(st.Duration)
			total += (from + float64(st.Target)) / 2 * d.Seconds() / unit
			from = float64(st.Target)
		}
		return int(math.Round(total))
	}
	return 0
}

// Threshold is one parsed k6 threshold expression such as `p(99)<250` on
// `http_req_duration{op:balance}`.
type Threshold struct {
	Metric string
	// Tags is the sub-metric filter; nil for the whole metric.
	Tags map[string]string
	// Agg is count, rate, value, avg, min, med, max or p; Percentile is set for p.
	Agg        string
	Percentile float64
	Op         string
	Value      float64
	Source     string
}

var (
	metricKeyRE = regexp.MustCompile(`^([a-zA-Z_][a-zA-Z0-9_]*)(?:\{([^{}]*)\})?$`)
	thresholdRE = regexp.MustCompile(`^\s*(count|rate|value|avg|min|med|max|p\(\s*([0-9]+(?:\.[0-9]+)?)\s*\))\s*(<=|>=|===|==|!=|<|>)\s*(-?[0-9]+(?:\.[0-9]+)?)\s*$`)
)

// metricTypes are k6's built-in metrics and their types; thresholds on them must use an
// aggregation their type has. Custom metrics are checked where the script is run.
var metricTypes = map[string]string{
	"http_reqs": "counter", "http_req_failed": "rate", "http_req_duration": "trend",
	"http_req_blocked": "trend", "http_req_connecting": "trend", "http_req_tls_handshaking": "trend",
	"http_req_sending": "trend", "http_req_waiting": "trend", "http_req_receiving": "trend",
	"iterations": "counter", "iteration_duration": "trend", "dropped_iterations": "counter",
	"checks": "rate", "group_duration": "trend", "vus": "gauge", "vus_max": "gauge",
	"data_sent": "counter", "data_received": "counter",
}

// BuiltinMetricType is the type of a k6 built-in metric ("counter", "rate", "trend",
// "gauge"), or "" for a name k6 does not define.
func BuiltinMetricType(name string) string { return metricTypes[name] }

var aggsByType = map[string]string{
	"counter": "count rate",
	"rate":    "rate",
	"gauge":   "value",
	"trend":   "avg min med max p",
}

// AggregationFits says whether a metric of type typ ("counter", "rate", "gauge", "trend")
// has aggregation agg, as k6 requires of a threshold.
func AggregationFits(typ, agg string) bool {
	for _, a := range strings.Fields(aggsByType[typ]) {
		if a == agg {
			return true
		}
	}
	return false
}

// ParseThreshold parses a k6 threshold: metricKey is the key of the thresholds object,
// expr one of its expressions.
func ParseThreshold(metricKey, expr string) (Threshold, error) {
	m := metricKeyRE.FindStringSubmatch(metricKey)
	if m == nil {
		return Threshold{}, fmt.Errorf("threshold metric %q: want name or name{tag:value}", metricKey)
	}
	t := Threshold{Metric: m[1], Source: expr}
	if strings.Contains(metricKey, "{") {
		t.Tags = map[string]string{}
		for _, kv := range strings.Split(m[2], ",") {
			k, v, ok := strings.Cut(kv, ":")
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			if !ok || k == "" || v == "" {
				return Threshold{}, fmt.Errorf("threshold metric %q: filter %q is not tag:value", metricKey, kv)
			}
			t.Tags[k] = v
		}
	}
	e := thresholdRE.FindStringSubmatch(expr)
	if e == nil {
		return Threshold{}, fmt.Errorf("threshold %s: %q is not `aggregation operator number`", metricKey, expr)
	}
	t.Agg, t.Op = e[1], e[3]
	if e[2] != "" {
		t.Agg = "p"
		t.Percentile, _ = strconv.ParseFloat(e[2], 64)
		if t.Percentile < 0 || t.Percentile > 100 {
			return Threshold{}, fmt.Errorf("threshold %s: percentile %v outside 0..100", metricKey, t.Percentile)
		}
	}
	t.Value, _ = strconv.ParseFloat(e[4], 64)
	if typ := metricTypes[t.Metric]; typ != "" && !AggregationFits(typ, t.Agg) {
		return Threshold{}, fmt.Errorf("threshold %s: %s metric has no %s aggregation", metricKey, typ, t.Agg)
	}
	return t, nil
}

// Holds says whether an observed aggregate satisfies the threshold.
func (t Threshold) Holds(observed float64) bool {
	switch t.Op {
	case "<":
		return observed < t.Value
	case "<=":
		return observed <= t.Value
	case ">":
		return observed > t.Value
	case ">=":
		return observed >= t.Value
	case "==", "===":
		return observed == t.Value
	case "!=":
		return observed != t.Value
	}
	return false
}
