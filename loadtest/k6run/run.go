// Package k6run runs k6 scripts without the k6 binary, so that a Go test can prove that the
// scripts in loadtest/k6 parse, wire up and talk to the real API correctly.
//
// esbuild bundles a script and its local imports into one CommonJS file; goja runs it with
// minimal Go versions of the k6 modules (k6, k6/http, k6/metrics, k6/data, k6/execution) and
// the globals open, __ENV, __VU, __ITER and console. The life cycle is k6's: init context
// (once per VU, each VU with its own runtime), setup, a fixed number of iterations of every
// scenario's exec function spread over a few VUs, teardown and handleSummary. Setup data
// crosses runtimes as JSON, as in k6.
//
// It is not k6: there is no executor timing (arrival rates, durations and stages are ignored;
// scenarios run one after another), no dropped iterations, no exit code 99 (thresholds are
// parsed, checked against the metrics the script defines and evaluated for information only),
// no cookies, TLS options or async APIs. It proves a script's logic, not k6's timing. Modules
// it does not know fail loudly instead of being skipped. It shares no code with k6 (AGPL).
package k6run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dop251/goja"
	"github.com/evanw/esbuild/pkg/api"

	"github.com/7awel/wallet/loadtest/scenarios"
)

// Script says what to run and how much of it.
type Script struct {
	// Path is the k6 script (an ES module); relative imports and open() resolve from its
	// directory.
	Path string
	// Env is the script's __ENV. The process environment is not passed on, so a run
	// depends only on what the caller says.
	Env map[string]string
	// Iterations is how many times each scenario's exec function runs (default 1).
	Iterations int
	// VUs is how many VUs share those iterations, each with its own runtime (default 1).
	VUs int
	// Client makes the HTTP requests; nil uses a client with a 60 s timeout.
	Client *http.Client
	// Log receives console output; nil discards it.
	Log io.Writer

	initOnly bool // set by Inspect
}

// Result is what a run observed.
type Result struct {
	// Options is the script's exported options, as JSON would decode them.
	Options map[string]any
	// Scenarios lists the scenarios run, with their exec function and iteration count.
	Scenarios []ScenarioRun
	// Checks counts passes and fails per check, keyed by its group path and name
	// ("name" at the root, "::group::name" inside groups, as k6 names them).
	Checks map[string]*CheckCount
	// Metrics holds every sample recorded, built-in and custom, by metric name.
	Metrics map[string]*Metric
	// Thresholds are the script's thresholds, evaluated on these few iterations for
	// information only.
	Thresholds []ThresholdResult
	// SetupData is what setup returned, as JSON.
	SetupData json.RawMessage
	// IterationErrors are the exceptions that ended iterations (k6 logs them and goes on).
	IterationErrors []string
	// TeardownCalled and SummaryCalled say whether those functions ran.
	TeardownCalled, SummaryCalled bool
	// Summary holds handleSummary's outputs by name ("stdout", "summary.json", ...); no
	// file is written.
	Summary map[string]string
}

// ScenarioRun is one scenario as run.
type ScenarioRun struct {
	Name, Executor, Exec string
	Iterations           int
}

// CheckCount is one check's tally.
type CheckCount struct {
	Name, Path    string
	Passes, Fails int
}

// ThresholdResult is one threshold expression and its value on this run.
type ThresholdResult struct {
	Metric, Expr string
	Observed     float64
	// HasData is false when no sample matched, so Observed means nothing.
	HasData, OK bool
}

// Problems lists what should fail a test of a script: iteration errors and failed checks.
// Thresholds are left out because a few iterations say nothing about latency.
func (r *Result) Problems() []string {
	var p []string
	p = append(p, r.IterationErrors...)
	keys := make([]string, 0, len(r.Checks))
	for k := range r.Checks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if c := r.Checks[k]; c.Fails > 0 {
			p = append(p, fmt.Sprintf("check %q failed %d of %d times", k, c.Fails, c.Fails+c.Passes))
		}
	}
	return p
}

// bundle turns the script and its local imports into one CommonJS program. k6 modules and
// remote imports stay as require() calls, which our require answers or refuses by name.
func bundle(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	res := api.Build(api.BuildOptions{
		EntryPoints:   []string{abs},
		AbsWorkingDir: filepath.Dir(abs),
		Bundle:        true,
		Write:         false,
		Outfile:       filepath.Join(filepath.Dir(abs), "k6run-bundle.js"),
		Format:        api.FormatCommonJS,
		Platform:      api.PlatformNeutral,
		Target:        api.ES2017,
		External:      []string{"k6", "k6/*", "https://*", "http://*"},
		// Inline source maps make goja's stack traces name the original file and line.
		Sourcemap: api.SourceMapInline,
		LogLevel:  api.LogLevelSilent,
	})
	if len(res.Errors) > 0 {
		var msgs []string
		for _, m := range res.Errors {
			loc := ""
			if m.Location != nil {
				loc = fmt.Sprintf("%s:%d:%d: ", m.Location.File, m.Location.Line, m.Location.Column)
			}
			msgs = append(msgs, loc+m.Text)
		}
		return "", fmt.Errorf("k6run: bundle %s: %s", path, strings.Join(msgs, "; "))
	}
	if len(res.OutputFiles) != 1 {
		return "", fmt.Errorf("k6run: bundle %s: %d output files", path, len(res.OutputFiles))
	}
	return string(res.OutputFiles[0].Contents), nil
}

// runner is the state shared by the VUs of one run.
type runner struct {
	ctx     context.Context
	script  Script
	dir     string
	prog    *goja.Program
	client  *http.Client
	log     io.Writer
	logMu   sync.Mutex
	metrics *registry

	checksMu sync.Mutex
	checks   map[string]*CheckCount

	sharedMu sync.Mutex
	shared   map[string]string // SharedArray contents by name, as JSON

	iterationsDone atomic.Int64
	start          time.Time
	aborted        atomic.Pointer[string]
}

// Run runs the script's whole life cycle and returns what it observed. The error is set when
// the script cannot be loaded, setup or teardown throws, or the test is aborted; the Result is
// filled as far as the run got.
func Run(ctx context.Context, s Script) (*Result, error) {
	if s.Iterations <= 0 {
		s.Iterations = 1
	}
	if s.VUs <= 0 {
		s.VUs = 1
	}
	r := &runner{ctx: ctx, script: s, dir: filepath.Dir(s.Path), client: s.Client, log: s.Log,
		metrics: newRegistry(), checks: map[string]*CheckCount{}, shared: map[string]string{}, start: time.Now()}
	if r.client == nil {
		r.client = &http.Client{Timeout: 60 * time.Second,
			Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: s.VUs + 2, IdleConnTimeout: 30 * time.Second}}
	}
	if r.log == nil {
		r.log = io.Discard
	}
	res := &Result{Checks: r.checks, Summary: map[string]string{}}
	defer func() { res.Metrics = r.metrics.snapshot() }()

	v0, thresholds, plan, err := r.load(res)
	if err != nil || s.initOnly {
		return res, err
	}

	setupJSON := "null"
	if fn, ok := goja.AssertFunction(v0.exports.Get("setup")); ok {
		var out goja.Value
		err := v0.call("setup", func() (err error) { out, err = fn(goja.Undefined()); return err })
		if err != nil {
			return res, fmt.Errorf("k6run: setup: %w", err)
		}
		if setupJSON, err = v0.stringify(out); err != nil {
			return res, fmt.Errorf("k6run: setup returned a value JSON cannot hold: %w", err)
		}
		res.SetupData = json.RawMessage(setupJSON)
	}
	if err := r.abortErr(); err != nil {
		return res, err
	}

	vus := []*vu{}
	for _, sc := range plan {
		for len(vus) < s.VUs {
			v, err := r.newVU(len(vus) + 1)
			if err != nil {
				return res, err
			}
			vus = append(vus, v)
		}
		errs := r.runScenario(sc, vus, setupJSON)
		res.IterationErrors = append(res.IterationErrors, errs...)
		if err := r.abortErr(); err != nil {
			return res, err
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
	}

	if fn, ok := goja.AssertFunction(v0.exports.Get("teardown")); ok {
		res.TeardownCalled = true
		data, err := v0.parseJSON(setupJSON)
		if err != nil {
			return res, err
		}
		if err := v0.call("teardown", func() error { _, err := fn(goja.Undefined(), data); return err }); err != nil {
			return res, fmt.Errorf("k6run: teardown: %w", err)
		}
		if err := r.abortErr(); err != nil {
			return res, err
		}
	}

	res.Thresholds = r.evaluate(thresholds)
	if fn, ok := goja.AssertFunction(v0.exports.Get("handleSummary")); ok {
		res.SummaryCalled = true
		if err := r.handleSummary(v0, fn, res, thresholds); err != nil {
			return res, err
		}
	}
	return res, nil
}

// Inspect evaluates the script's init context only (no request is sent, no setup runs) and
// returns its options and the scenarios it would run; thresholds are checked as Run checks
// them. It is how a test proves a script loads without a server.
func Inspect(s Script) (*Result, error) {
	s.initOnly = true
	return Run(context.Background(), s)
}

// load bundles and compiles the script, evaluates VU 0's init context and reads the options,
// thresholds and scenarios. VU 0 then runs setup, teardown and handleSummary, like the VUs
// k6 keeps apart for them.
func (r *runner) load(res *Result) (*vu, []parsedThreshold, []plannedScenario, error) {
	code, err := bundle(r.script.Path)
	if err != nil {
		return nil, nil, nil, err
	}
	r.prog, err = goja.Compile(r.script.Path, code, false)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("k6run: compile %s: %w", r.script.Path, err)
	}
	v0, err := r.newVU(0)
	if err != nil {
		return nil, nil, nil, err
	}
	res.Options, err = v0.exportJSON(v0.exports.Get("options"))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("k6run: options: %w", err)
	}
	thresholds, err := r.parseThresholds(res.Options)
	if err != nil {
		return nil, nil, nil, err
	}
	plan, err := scenarioPlan(res.Options, r.script.Iterations)
	if err != nil {
		return nil, nil, nil, err
	}
	for _, sc := range plan {
		if fn, _ := goja.AssertFunction(v0.exports.Get(sc.Exec)); fn == nil {
			return nil, nil, nil, fmt.Errorf("k6run: scenario %s: exec function %q is not exported", sc.Name, sc.Exec)
		}
		res.Scenarios = append(res.Scenarios, sc.ScenarioRun)
	}
	return v0, thresholds, plan, nil
}

func (r *runner) abortErr() error {
	if msg := r.aborted.Load(); msg != nil {
		return fmt.Errorf("k6run: test aborted: %s", *msg)
	}
	return nil
}

type plannedScenario struct {
	ScenarioRun
	tags map[string]string
}

// scenarioPlan reads options.scenarios (or k6's implicit "default" scenario) in name order.
func scenarioPlan(opts map[string]any, iterations int) ([]plannedScenario, error) {
	raw, ok := opts["scenarios"]
	if !ok || raw == nil {
		return []plannedScenario{{ScenarioRun: ScenarioRun{Name: "default", Executor: "per-vu-iterations", Exec: "default", Iterations: iterations}}}, nil
	}
	m, ok := raw.(map[string]any)
	if !ok || len(m) == 0 {
		return nil, errors.New("k6run: options.scenarios must be a non-empty object")
	}
	var plan []plannedScenario
	for name, v := range m {
		sc, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("k6run: scenario %s is not an object", name)
		}
		p := plannedScenario{ScenarioRun: ScenarioRun{Name: name, Exec: "default", Iterations: iterations}}
		p.Executor, _ = sc["executor"].(string)
		if p.Executor == "" {
			return nil, fmt.Errorf("k6run: scenario %s has no executor", name)
		}
		if e, ok := sc["exec"].(string); ok && e != "" {
			p.Exec = e
		}
		if t, ok := sc["tags"].(map[string]any); ok {
			p.tags = map[string]string{}
			for k, v := range t {
				p.tags[k] = fmt.Sprint(v)
			}
		}
		plan = append(plan, p)
	}
	sort.Slice(plan, func(i, j int) bool { return plan[i].Name < plan[j].Name })
	return plan, nil
}

// runScenario spreads the scenario's iterations over the VUs and returns the errors that
// ended iterations.
func (r *runner) runScenario(sc plannedScenario, vus []*vu, setupJSON string) []string {
	var (
		next   atomic.Int64
		mu     sync.Mutex
		errs   []string
		wg     sync.WaitGroup
		stopCh = make(chan struct{})
	)
	stop := context.AfterFunc(r.ctx, func() {
		close(stopCh)
		for _, v := range vus {
			v.rt.Interrupt(r.ctx.Err())
		}
	})
	defer stop()
	for _, v := range vus {
		wg.Add(1)
		go func(v *vu) {
			defer wg.Done()
			data, err := v.parseJSON(setupJSON)
			if err != nil {
				mu.Lock()
				errs = append(errs, err.Error())
				mu.Unlock()
				return
			}
			fn, _ := goja.AssertFunction(v.exports.Get(sc.Exec))
			v.beginScenario(sc)
			for {
				i := next.Add(1) - 1
				if int(i) >= sc.Iterations || r.aborted.Load() != nil {
					return
				}
				select {
				case <-stopCh:
					return
				default:
				}
				if err := v.iteration(sc, i, fn, data); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Sprintf("scenario %s iteration %d (VU %d): %v", sc.Name, i, v.id, err))
					mu.Unlock()
				}
			}
		}(v)
	}
	wg.Wait()
	return errs
}

func (r *runner) addCheck(path, name string, ok bool) {
	key := name
	if path != "" {
		key = path + "::" + name
	}
	r.checksMu.Lock()
	defer r.checksMu.Unlock()
	c := r.checks[key]
	if c == nil {
		c = &CheckCount{Name: name, Path: path}
		r.checks[key] = c
	}
	if ok {
		c.Passes++
	} else {
		c.Fails++
	}
}

func (r *runner) logf(format string, args ...any) {
	r.logMu.Lock()
	defer r.logMu.Unlock()
	fmt.Fprintf(r.log, format, args...)
}

// open reads a file as k6's open() does, relative to the script's directory.
func (r *runner) open(name string) ([]byte, error) {
	if !filepath.IsAbs(name) {
		name = filepath.Join(r.dir, name)
	}
	return os.ReadFile(name)
}

type parsedThreshold struct {
	key string
	th  scenarios.Threshold
}

// parseThresholds reads options.thresholds and refuses what k6 refuses at start: a
// threshold on a metric that is neither built in nor created in the init context, or an
// aggregation the metric's type lacks.
func (r *runner) parseThresholds(opts map[string]any) ([]parsedThreshold, error) {
	raw, ok := opts["thresholds"].(map[string]any)
	if !ok {
		return nil, nil
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var out []parsedThreshold
	for _, key := range keys {
		list, ok := raw[key].([]any)
		if !ok {
			list = []any{raw[key]}
		}
		for _, item := range list {
			expr, ok := item.(string)
			if obj, isObj := item.(map[string]any); isObj {
				expr, ok = obj["threshold"].(string)
			}
			if !ok {
				return nil, fmt.Errorf("k6run: threshold %s: %v is neither a string nor {threshold: string}", key, item)
			}
			th, err := scenarios.ParseThreshold(key, expr)
			if err != nil {
				return nil, fmt.Errorf("k6run: %w", err)
			}
			typ := scenarios.BuiltinMetricType(th.Metric)
			if typ == "" {
				typ = r.metrics.typeOf(th.Metric)
			}
			if typ == "" {
				return nil, fmt.Errorf("k6run: threshold on %s: no such metric (neither built in nor created in the init context)", key)
			}
			if !scenarios.AggregationFits(typ, th.Agg) {
				return nil, fmt.Errorf("k6run: threshold %s %q: a %s has no %s", key, expr, typ, th.Agg)
			}
			out = append(out, parsedThreshold{key: key, th: th})
		}
	}
	return out, nil
}

func (r *runner) evaluate(ths []parsedThreshold) []ThresholdResult {
	var out []ThresholdResult
	for _, p := range ths {
		v, ok := r.metrics.aggregate(p.th.Metric, p.th.Tags, p.th.Agg, p.th.Percentile, time.Since(r.start))
		out = append(out, ThresholdResult{Metric: p.key, Expr: p.th.Source, Observed: v, HasData: ok, OK: ok && p.th.Holds(v)})
	}
	return out
}

// handleSummary calls the script's handleSummary with k6's summary shape and keeps what it
// returns by output name.
func (r *runner) handleSummary(v *vu, fn goja.Callable, res *Result, ths []parsedThreshold) error {
	trendStats := []string{"avg", "min", "med", "max", "p(90)", "p(95)"}
	if raw, ok := res.Options["summaryTrendStats"].([]any); ok {
		trendStats = trendStats[:0]
		for _, s := range raw {
			trendStats = append(trendStats, fmt.Sprint(s))
		}
	}
	elapsed := time.Since(r.start)
	var setupData any
	_ = json.Unmarshal(res.SetupData, &setupData)
	data := map[string]any{
		"root_group": checkGroup("", res.Checks),
		"options":    map[string]any{"summaryTrendStats": trendStats, "summaryTimeUnit": "", "noColor": true},
		"state":      map[string]any{"isStdOutTTY": false, "isStdErrTTY": false, "testRunDurationMs": float64(elapsed) / float64(time.Millisecond)},
		"metrics":    summaryMetrics(r.metrics.snapshot(), elapsed, ths, res.Thresholds, trendStats),
		"setup_data": setupData,
	}
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("k6run: summary data: %w", err)
	}
	arg, err := v.parseJSON(string(b))
	if err != nil {
		return err
	}
	var out goja.Value
	if err := v.call(phaseSummary, func() (err error) { out, err = fn(goja.Undefined(), arg); return err }); err != nil {
		return fmt.Errorf("k6run: handleSummary: %w", err)
	}
	obj, ok := out.(*goja.Object)
	if !ok {
		return fmt.Errorf("k6run: handleSummary returned %v, want an object of outputs", out)
	}
	for _, k := range obj.Keys() {
		val := obj.Get(k)
		if ab, ok := val.Export().(goja.ArrayBuffer); ok {
			res.Summary[k] = string(ab.Bytes())
			continue
		}
		res.Summary[k] = val.String()
	}
	return nil
}

// checkGroup builds k6's root_group: checks and nested groups from the check paths.
func checkGroup(path string, checks map[string]*CheckCount) map[string]any {
	name := path
	if i := strings.LastIndex(path, "::"); i >= 0 {
		name = path[i+2:]
	}
	g := map[string]any{"name": name, "path": path, "id": path, "checks": []any{}, "groups": []any{}}
	sub := map[string]bool{}
	var keys []string
	for k := range checks {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		c := checks[k]
		if c.Path == path {
			g["checks"] = append(g["checks"].([]any), map[string]any{
				"name": c.Name, "path": path + "::" + c.Name, "id": k, "passes": c.Passes, "fails": c.Fails})
			continue
		}
		if strings.HasPrefix(c.Path, path+"::") {
			rest := strings.TrimPrefix(c.Path, path+"::")
			child, _, _ := strings.Cut(rest, "::")
			sub[path+"::"+child] = true
		}
	}
	var children []string
	for c := range sub {
		children = append(children, c)
	}
	sort.Strings(children)
	for _, c := range children {
		g["groups"] = append(g["groups"].([]any), checkGroup(c, checks))
	}
	return g
}
