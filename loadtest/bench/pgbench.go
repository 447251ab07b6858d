package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// PgbenchResult is one pgbench run of a transfer script.
type PgbenchResult struct {
	Script  string `json:"script"`
	Clients int    `json:"clients"`
	Seconds int    `json:"seconds"`
	// Rate, when positive, is the arrival rate pgbench was held to (-R): its latencies then
	// count from each transaction's scheduled start, schedule lag included, like the driver's
	// open loop.
	Rate float64 `json:"rate_per_s,omitempty"`
	// After marks the random transfer run again right after the API's uniform run: the
	// machine's speed drifts over minutes, so the API is compared with pgbench on both sides.
	After        bool    `json:"after,omitempty"`
	TPS          float64 `json:"tps"`
	Transactions int64   `json:"transactions"`
	Failed       int64   `json:"failed"`
	Retries      int64   `json:"retries"`
	LatencyAvgMs float64 `json:"latency_avg_ms"`
	// P50Ms and P99Ms come from pgbench's per-transaction log (-l), over every transaction.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
	// WALBytes is how far the cluster's WAL advanced during the run (pg_current_wal_lsn before
	// and after; the API's database is idle meanwhile).
	WALBytes int64 `json:"wal_bytes,omitempty"`
}

// WALPerTx is WAL bytes per committed transaction, 0 when unknown.
func (r PgbenchResult) WALPerTx() float64 {
	if r.WALBytes <= 0 || r.Transactions <= 0 {
		return 0
	}
	return float64(r.WALBytes) / float64(r.Transactions)
}

var (
	tpsRE     = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	txRE      = regexp.MustCompile(`(?m)^number of transactions actually processed: ([0-9]+)`)
	failedRE  = regexp.MustCompile(`(?m)^number of failed transactions: ([0-9]+)`)
	retriesRE = regexp.MustCompile(`(?m)^total number of retries: ([0-9]+)`)
	latAvgRE  = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

// parsePgbenchOutput reads pgbench's summary (PostgreSQL 15 format).
func parsePgbenchOutput(out string) (PgbenchResult, error) {
	var r PgbenchResult
	m := tpsRE.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("pgbench output has no tps line:\n%s", out)
	}
	r.TPS, _ = strconv.ParseFloat(m[1], 64)
	if m = txRE.FindStringSubmatch(out); m == nil {
		return r, fmt.Errorf("pgbench output has no transaction count:\n%s", out)
	}
	r.Transactions, _ = strconv.ParseInt(m[1], 10, 64)
	if m = failedRE.FindStringSubmatch(out); m != nil {
		r.Failed, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = retriesRE.FindStringSubmatch(out); m != nil {
		r.Retries, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m = latAvgRE.FindStringSubmatch(out); m != nil {
		r.LatencyAvgMs, _ = strconv.ParseFloat(m[1], 64)
	}
	return r, nil
}

// logLatencies reads pgbench -l files: "client_id transaction_no time script_no epoch us
// [retries]", time in microseconds, or "failed" for a transaction that failed for good.
func logLatencies(files []string) ([]int64, error) {
	var lat []int64
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 {
				continue
			}
			us, err := strconv.ParseInt(fields[2], 10, 64)
			if err != nil {
				continue // "failed", "skipped"
			}
			lat = append(lat, us)
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	slices.Sort(lat)
	return lat, nil
}

// percentileUs is the nearest-rank percentile of sorted microseconds, in milliseconds.
func percentileUs(sorted []int64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = min(max(rank, 1), len(sorted))
	return float64(sorted[rank-1]) / 1000
}

// pgbench runs the tool; every argument is ours, never the user's.
func pgbench(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, pgbenchPath, args...)
	cmd.Env = append(os.Environ(), "PGCONNECT_TIMEOUT=5")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

var pgbenchPath = "/usr/bin/pgbench"

// pgbenchWarmupSeconds is the unmeasured run before each measured one.
const pgbenchWarmupSeconds = 3

// runPgbench initialises nothing: it runs one script against an initialised database, as fast
// as it can, or at rate transactions per second when rate > 0. tag tells its logs apart from
// another run's of the same script.
func runPgbench(ctx context.Context, url, script string, clients, seconds int, rate float64, logDir, tag string) (PgbenchResult, error) {
	if err := settle(ctx, url); err != nil {
		return PgbenchResult{}, err
	}
	// args are the options of a run of the script for secs seconds.
	args := func(secs int) []string {
		return []string{"-n", "-M", "simple", "-c", strconv.Itoa(clients), "-j", strconv.Itoa(min(clients, 2)),
			"-T", strconv.Itoa(secs), "-D", "naccounts=10000", "--max-tries=10"}
	}
	// The warm-up after the checkpoint, as the API's runs have theirs: the same script at full
	// speed, unmeasured, long enough to touch every account's page once.
	if _, err := pgbench(ctx, append(args(pgbenchWarmupSeconds), "-f", script, url)...); err != nil {
		return PgbenchResult{}, fmt.Errorf("warm-up: %w", err)
	}
	lsn0, err := walLSN(ctx, url)
	if err != nil {
		return PgbenchResult{}, err
	}
	prefix := filepath.Join(logDir, strings.TrimSuffix(filepath.Base(script), ".sql")+tag)
	measured := args(seconds)
	if rate > 0 {
		measured = append(measured, "-R", strconv.FormatFloat(rate, 'f', 0, 64))
	}
	out, err := pgbench(ctx, append(measured, "-l", "--log-prefix="+prefix, "-f", script, url)...)
	if err != nil {
		return PgbenchResult{}, err
	}
	lsn1, err := walLSN(ctx, url)
	if err != nil {
		return PgbenchResult{}, err
	}
	r, err := parsePgbenchOutput(out)
	if err != nil {
		return r, err
	}
	files, _ := filepath.Glob(prefix + ".*")
	lat, err := logLatencies(files)
	if err != nil {
		return r, err
	}
	if len(lat) == 0 {
		return r, fmt.Errorf("pgbench wrote no transaction log under %s", prefix)
	}
	r.Script, r.Clients, r.Seconds, r.Rate = filepath.Base(script), clients, seconds, rate
	r.P50Ms, r.P99Ms, r.MaxMs = percentileUs(lat, 50), percentileUs(lat, 99), float64(lat[len(lat)-1])/1000
	r.WALBytes = int64(lsn1 - lsn0)
	return r, nil
}

func pgbenchVersion(ctx context.Context) string {
	out, err := pgbench(ctx, "--version")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(out)
}

// timeout for one pgbench or driver phase: its duration plus generous setup time.
func phaseTimeout(seconds int) time.Duration {
	return time.Duration(seconds)*time.Second + 10*time.Minute
}
