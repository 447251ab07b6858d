package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Machine is what the numbers were measured on.
type Machine struct {
	CPUs       int    `json:"cpus"`
	CPUModel   string `json:"cpu_model"`
	MemTotal   string `json:"mem_total"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	PostgreSQL string `json:"postgresql"`
	PGSettings string `json:"pg_settings"`
	Pgbench    string `json:"pgbench"`
	Commit     string `json:"commit"`
	LoadAvg    string `json:"loadavg_at_start"`
}

func machine(ctx context.Context, pgURL, server string) Machine {
	m := Machine{CPUs: runtime.NumCPU(), Go: runtime.Version(), Pgbench: pgbenchVersion(ctx)}
	m.CPUModel = procField("/proc/cpuinfo", "model name")
	m.MemTotal = procField("/proc/meminfo", "MemTotal")
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		if len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	if out, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
	}
	if conn, err := pgx.Connect(ctx, pgURL); err == nil {
		defer conn.Close(ctx)
		_ = conn.QueryRow(ctx, "SELECT version()").Scan(&m.PostgreSQL)
		var fsync, syncCommit, sharedBuffers, maxConn, autovacuum, ckptTimeout, maxWAL string
		_ = conn.QueryRow(ctx, `SELECT current_setting('fsync'), current_setting('synchronous_commit'), current_setting('shared_buffers'),
       current_setting('max_connections'), current_setting('autovacuum'), current_setting('checkpoint_timeout'), current_setting('max_wal_size')`).
			Scan(&fsync, &syncCommit, &sharedBuffers, &maxConn, &autovacuum, &ckptTimeout, &maxWAL)
		m.PGSettings = fmt.Sprintf("fsync=%s synchronous_commit=%s shared_buffers=%s max_connections=%s autovacuum=%s checkpoint_timeout=%s max_wal_size=%s",
			fsync, syncCommit, sharedBuffers, maxConn, autovacuum, ckptTimeout, maxWAL)
	}
	return m
}

func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// Ratio is one of the targets, computed from this run only.
type Ratio struct {
	Name   string
	Value  float64
	Has    bool
	From   string // the numbers it is made of
	Target string
	Met    *bool
}

// pg is the unthrottled run of script; pgRate its run held to a rate.
func (r *Results) pg(script string) *PgbenchResult { return r.pgRun(script, false) }

func (r *Results) pgRate(script string) *PgbenchResult { return r.pgRun(script, true) }

func (r *Results) pgRun(script string, rated bool) *PgbenchResult {
	for i := range r.Pgbench {
		if x := &r.Pgbench[i]; x.Script == script && (x.Rate > 0) == rated && !x.After {
			return x
		}
	}
	return nil
}

// pgAfters are the unthrottled runs of script made after the API's uniform runs, in order.
func (r *Results) pgAfters(script string) []PgbenchResult {
	var out []PgbenchResult
	for _, x := range r.Pgbench {
		if x.Script == script && x.After {
			out = append(out, x)
		}
	}
	return out
}

func (r *Results) api(kind string) *APIRun {
	for i := range r.API {
		if r.API[i].Kind == kind {
			return &r.API[i]
		}
	}
	return nil
}

func met(ok bool) *bool { return &ok }

// closedUniform says a is a measured closed-loop uniform run: the first or a repeat of it.
func (a *APIRun) closedUniform() bool {
	return (a.Kind == "uniform" || a.Kind == "uniform-again") && a.Report != nil
}

// lastUniform is the API's last closed-loop uniform run: the first, or its last repeat.
func (r *Results) lastUniform() *APIRun {
	var last *APIRun
	for i := range r.API {
		if a := &r.API[i]; a.closedUniform() {
			last = a
		}
	}
	return last
}

// uniformPair is one API uniform run and pgbench's random transfer on either side of it.
type uniformPair struct {
	api, before, after float64 // TPS; after is 0 when pgbench did not run again
}

// pgbench is the TPS the API run is compared with: the mean of both sides when there are two.
func (p uniformPair) pgbench() float64 {
	if p.after > 0 {
		return (p.before + p.after) / 2
	}
	return p.before
}

func (p uniformPair) ratio() float64 { return p.api / p.pgbench() }

// uniformPairs pairs the API's uniform runs (the first, then its repeats) with pgbench's
// random transfer before and after each: the first API run follows the first pgbench run, and
// every later one the pgbench run made after the previous API run. runs counts the API's
// uniform runs, paired or not: a run left without pgbench before it (a
// pgbench run that failed) is not a pair, and the target cannot then count as met.
func (r *Results) uniformPairs() (pairs []uniformPair, runs int) {
	pgR := r.pg("transfer_random.sql")
	var apis []float64
	for _, a := range r.API {
		if a.closedUniform() {
			apis = append(apis, a.Report.Throughput)
		}
	}
	if len(apis) == 0 || pgR == nil || pgR.TPS == 0 {
		return nil, len(apis)
	}
	pgs := []float64{pgR.TPS}
	for _, x := range r.pgAfters("transfer_random.sql") {
		pgs = append(pgs, x.TPS)
	}
	for k, tps := range apis {
		if k >= len(pgs) || pgs[k] <= 0 {
			break
		}
		p := uniformPair{api: tps, before: pgs[k]}
		if k+1 < len(pgs) {
			p.after = pgs[k+1]
		}
		pairs = append(pairs, p)
	}
	return pairs, len(apis)
}

// uniformRatio is API uniform TPS / pgbench random TPS. With one pair it is that pair's ratio;
// with several, their median, and the target counts as met only if every pair meets it: a
// median over a target that one pair misses is not reliably over it.
func (r *Results) uniformRatio() Ratio {
	x := Ratio{Name: "API uniform TPS / pgbench random TPS", Target: "≥ 0.5 (aim 1.0)"}
	pairs, runs := r.uniformPairs()
	if len(pairs) == 0 {
		return x
	}
	x.Has = true
	if len(pairs) == 1 && runs == 1 {
		p := pairs[0]
		x.Value = p.ratio()
		if p.after > 0 {
			x.From = fmt.Sprintf("%.0f / %.0f (pgbench %.0f before, %.0f after)", p.api, p.pgbench(), p.before, p.after)
		} else {
			x.From = fmt.Sprintf("%.0f / %.0f", p.api, p.before)
		}
		x.Met = met(x.Value >= 0.5)
		return x
	}
	x.Target = "≥ 0.5 in every pair (aim 1.0)"
	ratios := make([]float64, len(pairs))
	parts := make([]string, len(pairs))
	every := true
	for k, p := range pairs {
		ratios[k] = p.ratio()
		every = every && ratios[k] >= 0.5
		parts[k] = fmt.Sprintf("%.3f (%.0f / %.0f)", ratios[k], p.api, p.pgbench())
	}
	sort.Float64s(ratios)
	if n := len(ratios); n%2 == 1 {
		x.Value = ratios[n/2]
	} else {
		x.Value = (ratios[n/2-1] + ratios[n/2]) / 2
	}
	x.From = fmt.Sprintf("median of %d pairs (API run / mean of pgbench's on either side): %s", len(pairs), strings.Join(parts, ", "))
	if len(pairs) < runs {
		x.From += fmt.Sprintf("; %d of %d uniform runs without pgbench before them", runs-len(pairs), runs)
		every = false
	}
	x.Met = met(every)
	return x
}

// Ratios are the targets plus the reference ratios that explain them.
func (r *Results) Ratios() []Ratio {
	pgR, pgH := r.pg("transfer_random.sql"), r.pg("transfer_hot.sql")
	uni, hot, half := r.api("uniform"), r.api("hot"), r.api("half")
	var out []Ratio
	add := func(name, target string, ok func(float64) bool, value func() (float64, string, bool)) {
		v, from, has := value()
		x := Ratio{Name: name, Target: target, Value: v, From: from, Has: has}
		if has && ok != nil {
			x.Met = met(ok(v))
		}
		out = append(out, x)
	}
	out = append(out, r.uniformRatio())
	add("API uniform WAL bytes per transfer / pgbench random's", "(reference: how much more each transfer writes)", nil, func() (float64, string, bool) {
		if uni == nil || pgR == nil || uni.WALPerTransfer() == 0 || pgR.WALPerTx() == 0 {
			return 0, "", false
		}
		return uni.WALPerTransfer() / pgR.WALPerTx(), fmt.Sprintf("%.0f B / %.0f B", uni.WALPerTransfer(), pgR.WALPerTx()), true
	})
	// Hot against the uniform run made just before it (the last pair's), not the first: the
	// machine drifts over the minutes between them.
	add("API hot TPS / API uniform TPS", "≥ 0.8", func(v float64) bool { return v >= 0.8 }, func() (float64, string, bool) {
		last := r.lastUniform()
		if last == nil || hot == nil || last.Report.Throughput == 0 {
			return 0, "", false
		}
		from := fmt.Sprintf("%.0f / %.0f", hot.Report.Throughput, last.Report.Throughput)
		if last != uni {
			from += " (" + last.Label + ", the run just before hot)"
		}
		return hot.Report.Throughput / last.Report.Throughput, from, true
	})
	add("retries per committed transfer, hot", "≤ 0.05", func(v float64) bool { return v <= 0.05 }, func() (float64, string, bool) {
		if hot == nil {
			return 0, "", false
		}
		return hot.Report.RetriesPerTransfer, fmt.Sprintf("%d / %d", hot.Report.TxRetries, hot.Report.Committed), true
	})
	add("retries per committed transfer, uniform", "(information)", nil, func() (float64, string, bool) {
		if uni == nil {
			return 0, "", false
		}
		return uni.Report.RetriesPerTransfer, fmt.Sprintf("%d / %d", uni.Report.TxRetries, uni.Report.Committed), true
	})
	add("p99 / p50 at half the peak rate (uniform, open loop)", "≤ 5", func(v float64) bool { return v <= 5 }, func() (float64, string, bool) {
		if half == nil || half.Report.Latency["transfer"].P50 == 0 {
			return 0, "", false
		}
		l := half.Report.Latency["transfer"]
		return l.P99 / l.P50, fmt.Sprintf("%.2f ms / %.2f ms at %.0f/s", l.P99, l.P50, half.Report.TargetRate), true
	})
	add("pgbench p99 / p50 at half its peak rate (random, -R)", "(reference: the machine's own tail)", nil, func() (float64, string, bool) {
		x := r.pgRate("transfer_random.sql")
		if x == nil || x.P50Ms == 0 {
			return 0, "", false
		}
		return x.P99Ms / x.P50Ms, fmt.Sprintf("%.2f ms / %.2f ms at %.0f/s", x.P99Ms, x.P50Ms, x.Rate), true
	})
	add("p99 / p50, uniform closed loop (saturated)", "(information)", nil, func() (float64, string, bool) {
		if uni == nil || uni.Report.Latency["transfer"].P50 == 0 {
			return 0, "", false
		}
		l := uni.Report.Latency["transfer"]
		return l.P99 / l.P50, fmt.Sprintf("%.2f ms / %.2f ms", l.P99, l.P50), true
	})
	add("p99 / p50, hot closed loop (saturated)", "(information)", nil, func() (float64, string, bool) {
		if hot == nil || hot.Report.Latency["transfer"].P50 == 0 {
			return 0, "", false
		}
		l := hot.Report.Latency["transfer"]
		return l.P99 / l.P50, fmt.Sprintf("%.2f ms / %.2f ms", l.P99, l.P50), true
	})
	add("server peak RSS, MiB", "≤ 128", func(v float64) bool { return v <= 128 }, func() (float64, string, bool) {
		peak := 0.0
		for _, a := range r.API {
			peak = max(peak, a.Report.Memory.PeakMiB())
		}
		if peak == 0 {
			return 0, "", false
		}
		return peak, "max over the runs of VmHWM and sampled VmRSS", true
	})
	add("API hot p99 / pgbench hot p99", "≤ 1.5 (performance.md G4)", func(v float64) bool { return v <= 1.5 }, func() (float64, string, bool) {
		if hot == nil || pgH == nil || pgH.P99Ms == 0 {
			return 0, "", false
		}
		p99 := hot.Report.Latency["transfer"].P99
		return p99 / pgH.P99Ms, fmt.Sprintf("%.2f ms / %.2f ms", p99, pgH.P99Ms), true
	})
	add("pgbench hot TPS / pgbench random TPS", "(reference: 0.36–0.38 in performance.md)", nil, func() (float64, string, bool) {
		if pgR == nil || pgH == nil || pgR.TPS == 0 {
			return 0, "", false
		}
		return pgH.TPS / pgR.TPS, fmt.Sprintf("%.0f / %.0f", pgH.TPS, pgR.TPS), true
	})
	return out
}

func (x Ratio) verdict() string {
	switch {
	case !x.Has:
		return "not measured"
	case x.Met == nil:
		return ""
	case *x.Met:
		return "met"
	}
	return "NOT met"
}

func (r *Results) ratiosText() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\nratios (one run, %d s, %d clients, %s):\n", r.Seconds, r.Clients, r.Date)
	for _, x := range r.Ratios() {
		if !x.Has {
			fmt.Fprintf(&b, "  %-55s not measured\n", x.Name)
			continue
		}
		fmt.Fprintf(&b, "  %-55s %8.3f  (%s)  target %s %s\n", x.Name, x.Value, x.From, x.Target, x.verdict())
	}
	for _, w := range r.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", w)
	}
	return b.String()
}

func (r *Results) markdown() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	m := r.Machine
	p("# Load benchmark: the last `make bench`\n\n")
	p("Written by `go run ./loadtest/bench` (`make bench`); do not edit by hand. Every number below\n")
	p("comes from one run on one machine, where PostgreSQL, the API and the load generator share the\n")
	p("cores: trust the ratios, which compare runs made minutes apart on the same box, more than the\n")
	p("absolute figures (shared/reference/performance.md saw ±20–30 %% between rounds).\n\n")
	p("- Date: %s; %d s per run; %d closed-loop clients for pgbench and the driver\n", r.Date, r.Seconds, r.Clients)
	p("- Machine: %d CPUs (%s), memory %s, Linux %s, load average at start %s\n", m.CPUs, m.CPUModel, m.MemTotal, m.Kernel, m.LoadAvg)
	p("- Go %s; %s; %s\n", m.Go, m.PostgreSQL, m.Pgbench)
	p("- PostgreSQL settings: %s\n", m.PGSettings)
	if m.Commit != "" {
		p("- Code: `%s`\n", m.Commit)
	}
	p("\n## Ratios (targets of the load issue)\n\n| ratio | value | from | target | |\n|---|---|---|---|---|\n")
	for _, x := range r.Ratios() {
		if !x.Has {
			p("| %s | – | – | %s | not measured |\n", x.Name, x.Target)
			continue
		}
		p("| %s | **%.3f** | %s | %s | %s |\n", x.Name, x.Value, x.From, x.Target, x.verdict())
	}
	p("\n## pgbench (SQL baseline: `loadtest/bench/transfer_*.sql`, `-M simple`, 10,000 accounts, `--max-tries=10`)\n\n")
	p("| script | TPS | transactions | failed | retries | avg ms | p50 ms | p99 ms | max ms | WAL B/transfer |\n|---|---|---|---|---|---|---|---|---|---|\n")
	afters := 0
	for _, x := range r.Pgbench {
		script := x.Script
		switch {
		case x.After:
			afters++
			script = x.Script + " again, right after the API's uniform run"
			if afters > 1 {
				script += fmt.Sprintf(" (pair %d)", afters)
			}
		case x.Rate > 0:
			script = fmt.Sprintf("%s at %.0f/s (-R, latency from the scheduled start)", x.Script, x.Rate)
		}
		p("| %s | %.0f | %d | %d | %d | %.2f | %.2f | %.2f | %.2f | %s |\n", script, x.TPS, x.Transactions, x.Failed, x.Retries, x.LatencyAvgMs, x.P50Ms, x.P99Ms, x.MaxMs, walCell(x.WALPerTx()))
	}
	p("\n## API (the Go driver, `loadtest/driver`, scenarios of `loadtest/scenarios`)\n\n")
	p("| run | TPS | committed | errors | retries/transfer | p50 ms | p90 ms | p99 ms | max ms | dropped | peak RSS MiB | machine busy | server CPU ms/transfer | driver CPU ms/transfer | WAL B/transfer | money |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, a := range r.API {
		rep := a.Report
		l := rep.Latency["transfer"]
		money := "conserved"
		if !rep.Conservation.OK {
			money = "NOT CONSERVED"
		}
		p("| %s (%d users%s) | %.0f | %d | %d | %.4f | %.2f | %.2f | %.2f | %.2f | %d | %.1f | %.0f %% | %.3f | %.3f | %s | %s |\n", a.Label, rep.Users,
			map[bool]string{true: fmt.Sprintf(", %d merchant", rep.Merchants), false: ""}[rep.Merchants > 0],
			rep.Throughput, rep.Committed, rep.Failed, rep.RetriesPerTransfer, l.P50, l.P90, l.P99, l.Max, rep.Dropped, rep.Memory.PeakMiB(),
			rep.CPU.MachineBusy*100, rep.CPU.ServerMsPerOp, rep.CPU.DriverMsPerOp, walCell(a.WALPerTransfer()), money)
	}
	var errLines []string
	for _, a := range r.API {
		for k, n := range a.Report.Errors {
			errLines = append(errLines, fmt.Sprintf("- %s: %s × %d", a.Label, k, n))
		}
	}
	if len(errLines) > 0 {
		p("\nErrors:\n%s\n", strings.Join(errLines, "\n"))
	}
	p("\nEvery API run ends with the driver's teardown: balances read back through the API, money per\n")
	p("asset equal before and after (minus reported fees), every user's balance recomputed from the\n")
	p("committed transfers, and the operators' ledger proof (`storage.DB.Reconcile`) over the whole\n")
	p("database. TPS counts committed transfers (201) per second of the load phase. \"Machine busy\" is\n")
	p("the share of all cores not idle during the load (/proc/stat); what the server and the driver\n")
	p("did not use went to PostgreSQL and to whatever else ran on the box. Every measured run,\n")
	p("pgbench's and the API's alike, starts with its database `VACUUM ANALYZE`d and a `CHECKPOINT`\n")
	p("(with autovacuum off, as above, nothing else vacuums), then an unmeasured warm-up (pgbench: the\n")
	if r.Warmup {
		p("same script for 3 s; the API: one transfer per payer), so that no run inherits another's dead\n")
	} else {
		p("same script for 3 s; the API: none, `-warmup=false`), so that no run inherits another's dead\n")
	}
	p("rows or lands on a timed checkpoint, and most first writes after the checkpoint (full-page\n")
	p("images) fall in the warm-up (not all: index pages keyed by random ids keep taking theirs in\n")
	p("the load). WAL B/transfer is how far the cluster's WAL advanced during the load phase, over\n")
	p("its committed transfers; the other database is idle meanwhile.\n")
	if r.Warmup {
		p("Before the load phase of every run, every payer made one unmeasured transfer (`-warmup`):\n")
		p("the first transfer of a user in a server process verifies the PIN with argon2id (~30 ms of\n")
		p("CPU), later ones hit the verified-PIN cache, so without it a 20 s run of 500 users measures\n")
		p("mostly cold caches. The repeated uniform runs (pairs 2 and later), the half-rate and the\n")
		p("profile runs reuse the `uniform` users.\n")
		for _, a := range r.API {
			if a.Report.WarmupTransfers > 0 {
				p("- warm-up before %s: %d transfers in %.1f s (8 at a time)\n", a.Label, a.Report.WarmupTransfers, a.Report.WarmupSeconds)
			}
		}
	}
	for _, a := range r.API {
		if rc := a.Report.Reconcile; rc != nil {
			state := "clean"
			if !rc.OK {
				state = "FAILED: " + rc.Error
			}
			p("- reconcile after %s: %s (%s)\n", a.Label, state, rc.Summary)
		}
	}
	if pr := r.Profile; pr != nil && pr.Flat != "" {
		p("\n## Profile: the server under `uniform` (closed loop, %d clients, %d s CPU profile, %.0f TPS while profiled)\n\n", r.Clients, pr.Seconds, pr.TPS)
		if pf := r.api("profile"); pf != nil && pf.Report.Committed > 0 {
			c := pf.Report.CPU
			ops := float64(pf.Report.Committed)
			machineMs := c.MachineBusy * float64(c.Cores) * pf.Report.DurationSeconds * 1000 / ops
			p("CPU per committed transfer in that run: server %.3f ms, driver %.3f ms, and %.3f ms for\n", c.ServerMsPerOp, c.DriverMsPerOp, machineMs-c.ServerMsPerOp-c.DriverMsPerOp)
			p("everything else (PostgreSQL, mostly) of %.3f ms the machine spent (%.0f %% of %d cores busy)", machineMs, c.MachineBusy*100, c.Cores)
			if other := machineMs - c.ServerMsPerOp - c.DriverMsPerOp; other > c.ServerMsPerOp {
				p(": the\ndatabase, not the Go process, is where most of a transfer's CPU goes")
			} else {
				p(": the\nGo server is the larger cost")
			}
			if pgR := r.pg("transfer_random.sql"); pgR != nil && pgR.TPS > 0 {
				p(" (pgbench's whole random transfer,\nclient included, took %.3f ms of machine CPU at %.0f TPS, if it kept both cores busy)", float64(c.Cores)*1000/pgR.TPS, pgR.TPS)
			}
			p(".\n\n")
		}
		p("The server used %s. Where it went (share of CPU samples whose stack includes the work;\n", pr.CPU)
		p("shares overlap, e.g. pgx's time is also inside the storage package's):\n\n| work | share of server CPU |\n|---|---|\n")
		for _, s := range pr.Shares {
			p("| %s | %.1f %% |\n", s.What, s.Percent)
		}
		p("\nTop functions by own CPU time (`go tool pprof -top`):\n\n```\n%s```\n\n", trimPprof(pr.Flat, 25))
		p("By cumulative time (what the request path spends, callees included):\n\n```\n%s```\n", trimPprof(pr.Cum, 30))
	}
	for _, w := range r.Warnings {
		p("\nWarning: %s\n", w)
	}
	p("\n## Reproduce\n\n```sh\nmake build && go run ./loadtest/bench -server bin/7awel   # or: make bench BENCH_SECONDS=20\n```\n")
	return b.String()
}

// trimPprof keeps pprof's table header and its first n rows, without the file, build id
// and time lines that differ on every run.
func trimPprof(s string, n int) string {
	var out []string
	rows := -1 // until the "flat flat% ..." header
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		switch {
		case rows < 0 && strings.HasPrefix(strings.TrimSpace(l), "flat"):
			rows = 0
			out = append(out, l)
		case rows < 0:
			if strings.HasPrefix(l, "Duration:") || strings.HasPrefix(l, "Showing nodes") {
				out = append(out, l)
			}
		case rows < n:
			out = append(out, l)
			rows++
		}
	}
	return strings.Join(out, "\n") + "\n"
}

// walCell is a WAL-per-transfer figure for a table, or a dash when it was not measured.
func walCell(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}
