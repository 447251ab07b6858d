// Command bench is `make bench`: on this machine and in one go, it measures pgbench's
// two-account transfer (transfer_random.sql, transfer_hot.sql) on the PostgreSQL the API
// uses, then the API's `uniform` and `hot` scenarios through the Go driver at the same
// closed-loop concurrency and duration, then `uniform` open-loop at half the peak rate (for
// p99/p50), then a CPU profile of the server under `uniform`. It prints the ratios the load
// issue sets as targets and writes them, with the raw numbers and the machine, to
// loadtest/RESULTS.md.
//
//	go run ./loadtest/bench -server bin/7awel            # BENCH_SECONDS=20 by default
//
// Only loopback PostgreSQL and a server it starts itself are used. Every database it creates
// (bench7awel_*) is dropped at the end. It is not a test: targets are reported, not asserted;
// the exit status is 1 only when a run could not be carried out or broke a correctness check
// (money not conserved, failed requests).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/loadtest/driver"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

type options struct {
	seconds  int
	clients  int
	users    int
	server   string
	pgURL    string
	out      string
	jsonOut  string
	scripts  string
	profile  bool
	halfRate bool
	warmup   bool
	pairs    int
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	defSeconds, err := envInt("BENCH_SECONDS", 20)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	defPairs, err := envInt("BENCH_PAIRS", 3)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	fs.IntVar(&o.seconds, "seconds", defSeconds, "length of every measured run, 5..300 (BENCH_SECONDS)")
	fs.IntVar(&o.clients, "clients", 16, "closed-loop concurrency of pgbench and the driver, as in reference/performance.md")
	fs.IntVar(&o.users, "users", 0, "payers per API scenario (default: the scenario's)")
	fs.StringVar(&o.server, "server", "bin/7awel", "the 7awel binary to start (make build)")
	fs.StringVar(&o.pgURL, "pg", envOr("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
		"admin URL of the loopback PostgreSQL for both pgbench and the API (BENCH_PG_URL)")
	fs.StringVar(&o.out, "out", "loadtest/RESULTS.md", "where to write the results (empty: nowhere)")
	fs.StringVar(&o.jsonOut, "json", "", "also write every raw result as JSON here")
	fs.StringVar(&o.scripts, "scripts", "loadtest/bench", "directory of transfer_random.sql and transfer_hot.sql")
	fs.BoolVar(&o.profile, "profile", true, "profile the server's CPU under uniform and list the top costs")
	fs.BoolVar(&o.halfRate, "half-rate", true, "run uniform open-loop at half the peak rate, for p99/p50")
	fs.BoolVar(&o.warmup, "warmup", true, "one unmeasured transfer per payer before every run's load, after its checkpoint (steady state: warm PIN cache)")
	fs.IntVar(&o.pairs, "pairs", defPairs, "API uniform runs, each followed by pgbench's random transfer, for uniform/pgbench, 1..10 (BENCH_PAIRS)")
	var render string
	fs.StringVar(&render, "render", "", "only write -out again from a -json file of an earlier run (no measurement)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if render != "" {
		b, err := os.ReadFile(render)
		var res Results
		if err == nil {
			err = json.Unmarshal(b, &res)
		}
		if err == nil {
			err = os.WriteFile(o.out, []byte(res.markdown()), 0o644)
		}
		if err != nil {
			fmt.Fprintln(stderr, "bench:", err)
			return 1
		}
		fmt.Fprint(stdout, res.ratiosText())
		return 0
	}
	if o.seconds < 5 || o.seconds > 300 {
		fmt.Fprintf(stderr, "bench: %d seconds: want 5..300\n", o.seconds)
		return 2
	}
	if o.pairs < 1 || o.pairs > 10 {
		fmt.Fprintf(stderr, "bench: %d pairs: want 1..10\n", o.pairs)
		return 2
	}
	if o.clients < 1 || o.clients > 64 {
		fmt.Fprintf(stderr, "bench: %d clients: want 1..64\n", o.clients)
		return 2
	}
	u, err := url.Parse(o.pgURL)
	if err != nil || !driver.IsLoopback("http://"+u.Host) {
		fmt.Fprintf(stderr, "bench: -pg must name a loopback PostgreSQL (the benchmark shares this machine's cores)\n")
		return 2
	}
	res, err := bench(ctx, o, stderr)
	if res != nil {
		fmt.Fprint(stdout, res.ratiosText())
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(res.markdown()), 0o644); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
			fmt.Fprintf(stderr, "bench: wrote %s\n", o.out)
		}
		if o.jsonOut != "" {
			b, _ := json.MarshalIndent(res, "", "  ")
			if werr := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); werr != nil {
				fmt.Fprintln(stderr, "bench:", werr)
				return 1
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	for _, r := range res.API {
		if !r.Report.Passed {
			fmt.Fprintf(stderr, "bench: %s failed a correctness check: %s\n", r.Label, strings.Join(r.Report.Failures, "; "))
			return 1
		}
	}
	return 0
}

// Results is everything one `make bench` measured.
type Results struct {
	Date     string          `json:"date"`
	Seconds  int             `json:"seconds"`
	Clients  int             `json:"clients"`
	Warmup   bool            `json:"warmup"`
	Machine  Machine         `json:"machine"`
	Pgbench  []PgbenchResult `json:"pgbench"`
	API      []APIRun        `json:"api"`
	Profile  *Profile        `json:"profile,omitempty"`
	Warnings []string        `json:"warnings,omitempty"`
}

// APIRun is one driver run and what it was for.
type APIRun struct {
	// Kind is uniform, hot, half (uniform at half the peak, open loop) or profile.
	Kind   string         `json:"kind"`
	Label  string         `json:"label"`
	Report *driver.Report `json:"report"`
	// WALBytes is how far the cluster's WAL advanced during the load phase (from just before
	// it to just after it; pgbench's database is idle meanwhile).
	WALBytes int64 `json:"wal_bytes,omitempty"`
}

// WALPerTransfer is WAL bytes per committed transfer, 0 when unknown.
func (a APIRun) WALPerTransfer() float64 {
	if a.WALBytes <= 0 || a.Report == nil || a.Report.Committed <= 0 {
		return 0
	}
	return float64(a.WALBytes) / float64(a.Report.Committed)
}

// Profile is the server's CPU profile under uniform.
type Profile struct {
	// Shares groups the CPU time by the work it was spent on; CPU is the total.
	Shares  []Share `json:"shares"`
	CPU     string  `json:"cpu"`
	Seconds int     `json:"seconds"`
	TPS     float64 `json:"tps"`
	Flat    string  `json:"flat"`
	Cum     string  `json:"cum"`
	Path    string  `json:"path"`
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// envInt is the number in environment variable k, or def when it is unset.
func envInt(k string, def int) (int, error) {
	v := os.Getenv(k)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q is not a number", k, v)
	}
	return n, nil
}

func bench(ctx context.Context, o options, progress io.Writer) (*Results, error) {
	res := &Results{Date: time.Now().UTC().Format("2006-01-02 15:04 MST"), Seconds: o.seconds, Clients: o.clients, Warmup: o.warmup}
	res.Machine = machine(ctx, o.pgURL, o.server)
	if _, err := os.Stat(o.server); err != nil {
		return nil, fmt.Errorf("%s: %w (run make build first)", o.server, err)
	}
	dir, err := os.MkdirTemp("", "7awel-bench-")
	if err != nil {
		return nil, err
	}
	say := func(format string, args ...any) { fmt.Fprintf(progress, "bench: "+format+"\n", args...) }
	say("work directory %s; %d s per run, %d clients", dir, o.seconds, o.clients)

	// 1. pgbench on its own scratch database.
	pgDB, dropPg, err := createDatabase(ctx, o.pgURL, "pgbench")
	if err != nil {
		return nil, err
	}
	defer dropPg()
	say("pgbench: initialising (scale 1: 100,000 accounts, transfers use the first 10,000)")
	if _, err := pgbench(ctx, "-i", "-s", "1", "-q", pgDB); err != nil {
		return nil, err
	}
	for _, script := range []string{"transfer_random.sql", "transfer_hot.sql"} {
		say("pgbench: %s, %d clients, %d s", script, o.clients, o.seconds)
		pctx, cancel := context.WithTimeout(ctx, phaseTimeout(o.seconds))
		r, err := runPgbench(pctx, pgDB, filepath.Join(o.scripts, script), o.clients, o.seconds, 0, dir, "")
		cancel()
		if err != nil {
			return res, err
		}
		say("pgbench: %s: %.0f TPS, p50 %.2f ms, p99 %.2f ms", script, r.TPS, r.P50Ms, r.P99Ms)
		res.Pgbench = append(res.Pgbench, r)
	}
	// The machine's own tail: pgbench's random transfer held to half its peak, the reference
	// for the API's p99/p50 at half its peak.
	if pgR := res.pg("transfer_random.sql"); o.halfRate && pgR != nil && pgR.TPS > 2 {
		rate := pgR.TPS / 2
		say("pgbench: transfer_random.sql at half its peak (%.0f/s), %d clients, %d s", rate, o.clients, o.seconds)
		pctx, cancel := context.WithTimeout(ctx, phaseTimeout(o.seconds))
		r, err := runPgbench(pctx, pgDB, filepath.Join(o.scripts, "transfer_random.sql"), o.clients, o.seconds, rate, dir, "_rate")
		cancel()
		if err != nil {
			return res, err
		}
		say("pgbench: transfer_random.sql at %.0f/s: %.0f TPS, p50 %.2f ms, p99 %.2f ms", rate, r.TPS, r.P50Ms, r.P99Ms)
		res.Pgbench = append(res.Pgbench, r)
	}

	// 2. The API (pgbench's database stays, idle, for the run after the API's uniform run) on its own scratch database on the same PostgreSQL.
	apiDB, dropAPI, err := createDatabase(ctx, o.pgURL, "api")
	if err != nil {
		return res, err
	}
	defer dropAPI()
	say("api: starting %s", o.server)
	srv, err := startServer(ctx, o.server, apiDB, dir, nil)
	if err != nil {
		return res, err
	}
	defer srv.stop()
	say("api: serving on %s (admin %s, pid %d, log %s)", srv.Base, srv.Admin, srv.Pid(), srv.LogPath)

	// Every run ends with the operators' ledger proof over the API's whole database.
	reconcile, closeDB, err := driver.DatabaseReconciler(ctx, apiDB, "", "")
	if err != nil {
		return res, err
	}
	defer closeDB()
	runID := 100
	drive := func(kind, label string, cfg driver.Config) (*driver.Report, error) {
		cfg.BaseURL, cfg.OpsKey, cfg.ServerPID, cfg.Progress = srv.Base, srv.OpsKey, srv.Pid(), progress
		cfg.Reconcile = reconcile
		// After setup, before the warm-up: statistics for the tables setup just filled (rather
		// than the planner on empty ones, and autoanalyze in the middle of the run), and the
		// same checkpoint every pgbench run starts from; then the warm-up, like pgbench's,
		// takes the first writes after it.
		var lsn0, lsn1 uint64
		var walErr error
		cfg.BeforeLoad = func(ctx context.Context) error { return settle(ctx, apiDB) }
		onLoad := cfg.OnLoad
		cfg.OnLoad = func() {
			lsn0, walErr = walLSN(ctx, apiDB)
			if onLoad != nil {
				onLoad()
			}
		}
		cfg.AfterLoad = func() {
			if walErr == nil {
				lsn1, walErr = walLSN(ctx, apiDB)
			}
		}
		cfg.Users, cfg.RunID = o.users, runID
		cfg.Warmup = o.warmup
		runID++
		say("api: %s", label)
		dctx, cancel := context.WithTimeout(ctx, phaseTimeout(o.seconds))
		defer cancel()
		rep, err := driver.Run(dctx, cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w (server log: %s)", label, err, srv.LogPath)
		}
		run := APIRun{Kind: kind, Label: label, Report: rep}
		if walErr == nil && lsn1 > lsn0 {
			run.WALBytes = int64(lsn1 - lsn0)
		}
		res.API = append(res.API, run)
		say("api: %s: %.0f TPS, p50 %.2f ms, p99 %.2f ms, %d errors, %.4f retries per transfer",
			label, rep.Throughput, rep.Latency["transfer"].P50, rep.Latency["transfer"].P99, rep.Failed, rep.RetriesPerTransfer)
		return rep, nil
	}
	dur := time.Duration(o.seconds) * time.Second
	uniform, err := drive("uniform", "uniform, closed loop", driver.Config{Scenario: "uniform", Mode: driver.Closed, Workers: o.clients, Duration: dur})
	if err != nil {
		return res, err
	}
	// pgbench's random transfer once more right after each API uniform run, and the API's
	// uniform run again (its users reused) until there are o.pairs of them: each API run is
	// compared with pgbench on both sides of it, as this shared machine's speed drifts over
	// minutes, and the pairs show how far one ratio can be trusted.
	last := uniform // the uniform run nearest in time to the runs after the pairs
	for k := 1; k <= o.pairs; k++ {
		if k > 1 {
			label := fmt.Sprintf("uniform, closed loop, again (pair %d of %d)", k, o.pairs)
			rep, err := drive("uniform-again", label, driver.Config{Scenario: "uniform", Mode: driver.Closed, Workers: o.clients,
				Duration: dur, Population: uniform.Population})
			if err != nil {
				return res, err
			}
			last = rep
		}
		say("pgbench: transfer_random.sql again, %d clients, %d s", o.clients, o.seconds)
		pctx, cancel := context.WithTimeout(ctx, phaseTimeout(o.seconds))
		after, err := runPgbench(pctx, pgDB, filepath.Join(o.scripts, "transfer_random.sql"), o.clients, o.seconds, 0, dir, fmt.Sprintf("_after%d", k))
		cancel()
		if err != nil {
			return res, err
		}
		after.After = true
		say("pgbench: transfer_random.sql again: %.0f TPS, p50 %.2f ms, p99 %.2f ms", after.TPS, after.P50Ms, after.P99Ms)
		res.Pgbench = append(res.Pgbench, after)
	}
	if _, err := drive("hot", "hot, closed loop", driver.Config{Scenario: "hot", Mode: driver.Closed, Workers: o.clients, Duration: dur}); err != nil {
		return res, err
	}
	// Half the peak of the last uniform run, the one nearest in time (the machine drifts).
	if o.halfRate && last.Throughput > 2 {
		rate := last.Throughput / 2
		if _, err := drive("half", fmt.Sprintf("uniform, open loop at half the peak (%.0f/s)", rate), driver.Config{Scenario: "uniform",
			Mode: driver.Open, Rate: rate, Workers: 4 * o.clients, Duration: dur, Population: uniform.Population}); err != nil {
			return res, err
		}
	}
	if o.profile {
		p, err := profileUniform(ctx, o, srv, dir, uniform.Population, drive)
		if err != nil {
			res.Warnings = append(res.Warnings, "profile: "+err.Error())
		}
		res.Profile = p
	}
	return res, nil
}

// profileUniform runs uniform again while the server records a CPU profile of the load
// phase (not setup), then lists the top costs with go tool pprof.
func profileUniform(ctx context.Context, o options, srv *apiServer, dir string, pop *driver.Population,
	drive func(string, string, driver.Config) (*driver.Report, error)) (*Profile, error) {
	secs := max(o.seconds-2, 3)
	path := filepath.Join(dir, "uniform.cpu.pb.gz")
	errc := make(chan error, 1)
	cfg := driver.Config{Scenario: "uniform", Mode: driver.Closed, Workers: o.clients, Duration: time.Duration(o.seconds) * time.Second,
		Population: pop, OnLoad: func() {
			go func() { errc <- fetch(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", srv.Admin, secs), path) }()
		}}
	rep, err := drive("profile", "uniform, closed loop, CPU profile of the server (not counted in the ratios)", cfg)
	if err != nil {
		return nil, err
	}
	if err := <-errc; err != nil {
		return nil, err
	}
	p := &Profile{Seconds: secs, TPS: rep.Throughput, Path: path}
	if p.Shares, p.CPU, err = profileShares(path); err != nil {
		return p, err
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	top := func(extra ...string) (string, error) {
		args := append([]string{"tool", "pprof", "-top", "-nodecount=25"}, extra...)
		out, err := exec.CommandContext(ctx, goBin, append(args, path)...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go tool pprof: %w: %s", err, out)
		}
		return string(out), nil
	}
	if p.Flat, err = top(); err != nil {
		return p, err
	}
	if p.Cum, err = top("-cum"); err != nil {
		return p, err
	}
	return p, nil
}

func fetch(ctx context.Context, u, path string) error {
	req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
	if err != nil {
		return err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 500))
		return fmt.Errorf("%s: HTTP %d: %s", u, res.StatusCode, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, res.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// settle is what every measured run, pgbench's and the API's alike, starts from: its database
// VACUUM ANALYZEd (pgbench -i leaves pgbench's tables so; the API's were filled by setup seconds
// before) and a CHECKPOINT. Without the checkpoint, the one that checkpoint_timeout (5 min) or
// max_wal_size starts lands in whichever run happens to be going, which then also writes a full
// page image on the first change of every page after it: the same script swung by a fifth
// from one run to the next. With it, every run starts from the same state and pays the same.
func settle(ctx context.Context, url string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, q := range []string{"VACUUM ANALYZE", "CHECKPOINT"} {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// walLSN is the cluster's current WAL insert position, in bytes.
func walLSN(ctx context.Context, url string) (uint64, error) {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var lsn uint64
	err = conn.QueryRow(ctx, "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint").Scan(&lsn)
	return lsn, err
}

// createDatabase makes an empty database bench7awel_<kind>_<pid> and returns its URL and a
// drop function (idempotent; FORCE ends leftover connections).
func createDatabase(ctx context.Context, adminURL, kind string) (string, func(), error) {
	name := fmt.Sprintf("bench7awel_%s_%d", kind, os.Getpid())
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("PostgreSQL at %s: %w", adminURL, err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", nil, err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", nil, err
	}
	u, _ := url.Parse(adminURL)
	u.Path = "/" + name
	dropped := false
	drop := func() {
		if dropped {
			return
		}
		dropped = true
		c, err := pgx.Connect(context.Background(), adminURL)
		if err != nil {
			return
		}
		defer c.Close(context.Background())
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
	}
	return u.String(), drop, nil
}
