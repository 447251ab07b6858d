// Command loadtest is the Go load driver: it runs one or more scenarios of
// loadtest/scenarios against a 7awel API and reports throughput, latency percentiles, errors,
// retries, replays and server memory as text (stdout) and JSON (-json).
//
//	go run ./loadtest -url http://127.0.0.1:8080 -ops-key dev-ops-key uniform
//	go run ./loadtest -mode closed -c 16 -duration 20s -server-pid $(pgrep -n 7awel) uniform hot
//	go run ./loadtest -rate 200 -duration 30s -json out.json mixed
//
// With -reconcile-db (the server's DATABASE_URL), teardown also runs the operators' ledger
// proof over the whole database.
//
// The server must run with APP_ENV=development (setup reads OTP codes from dev_code) and
// with per-address OTP caps high enough for the users a run signs up. The exit status is 1
// when a run fails (money not conserved, failed requests, replays not confirmed), 2 for
// bad usage. The package is the command only; the driver is loadtest/driver.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/7awel/wallet/loadtest/driver"
	"github.com/7awel/wallet/loadtest/scenarios"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg driver.Config
	var jsonPath, reconcileDB, cpuProfile string
	var quiet bool
	fs.StringVar(&cfg.BaseURL, "url", envOr("BASE_URL", "http://127.0.0.1:8080"), "the API (BASE_URL)")
	fs.StringVar(&cfg.OpsKey, "ops-key", envOr("OPS_KEY", "dev-ops-key"), "the server's OPS_API_KEY, for cash-ins (OPS_KEY)")
	fs.StringVar(&cfg.PIN, "pin", "739164", "PIN of the users the run creates")
	fs.StringVar(&cfg.Mode, "mode", "", "open (arrival rate) or closed (fixed concurrency); default: the scenario's executor")
	fs.IntVar(&cfg.Workers, "c", 0, "workers: the concurrency of a closed run, the most in flight of an open one")
	fs.Float64Var(&cfg.Rate, "rate", 0, "constant arrival rate per second for an open run (default: the scenario's)")
	fs.DurationVar(&cfg.Duration, "duration", 0, "length of the load phase (default: the scenario's)")
	fs.IntVar(&cfg.Users, "users", 0, "payers to create (default: the scenario's)")
	fs.IntVar(&cfg.RunID, "run-id", -1, "0..999, picks phone numbers and references (default random)")
	fs.IntVar(&cfg.SetupWorkers, "setup-c", 8, "users created at once during setup")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "the server's pid, to read its memory from /proc")
	fs.StringVar(&cfg.MetricsURL, "metrics-url", "", "the server's /metrics, to read process_resident_memory_bytes (when no -server-pid)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "timeout of one request")
	fs.BoolVar(&cfg.AllowRemote, "allow-remote", false, "allow a target that is not loopback (the driver creates users and moves money)")
	fs.StringVar(&jsonPath, "json", "", "write the reports as a JSON array to this file (- for stdout, replacing the text)")
	fs.BoolVar(&quiet, "q", false, "no progress bar")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write the driver's own CPU profile, from the first load phase to the end, to this file")
	fs.BoolVar(&cfg.Warmup, "warmup", false, "every payer sends one unmeasured transfer before the load (warms the server's PIN cache)")
	fs.StringVar(&reconcileDB, "reconcile-db", "", "the API's DATABASE_URL: prove the whole ledger (7awel's reconcile) at teardown; a difference fails the run")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./loadtest [flags] scenario...\n\nscenarios: %s\n\nflags:\n", strings.Join(names(), ", "))
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	if !quiet {
		cfg.Progress = stderr
	}
	if reconcileDB != "" {
		check, closeDB, err := driver.DatabaseReconciler(ctx, reconcileDB, os.Getenv("REGIONS"), os.Getenv("PRIMARY_REGION"))
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 1
		}
		defer closeDB()
		cfg.Reconcile = check
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 1
		}
		defer f.Close()
		started := false
		cfg.OnLoad = func() {
			if !started {
				started = pprof.StartCPUProfile(f) == nil
			}
		}
		defer pprof.StopCPUProfile()
	}
	var reports []*driver.Report
	failed := false
	for _, name := range fs.Args() {
		c := cfg
		c.Scenario = name
		rep, err := driver.Run(ctx, c)
		if err != nil {
			fmt.Fprintf(stderr, "loadtest: %s: %v\n", name, err)
			return 1
		}
		reports = append(reports, rep)
		failed = failed || !rep.Passed
		if jsonPath != "-" {
			_ = rep.Text(stdout)
			fmt.Fprintln(stdout)
		}
	}
	if jsonPath != "" {
		if err := writeJSON(jsonPath, reports, stdout); err != nil {
			fmt.Fprintln(stderr, "loadtest:", err)
			return 1
		}
	}
	if failed {
		return 1
	}
	return 0
}

func writeJSON(path string, reports []*driver.Report, stdout io.Writer) error {
	b, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if path == "-" {
		_, err = stdout.Write(b)
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func names() []string {
	f, err := scenarios.Embedded()
	if err != nil {
		return nil
	}
	return f.Names()
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
