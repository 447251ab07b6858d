package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/pprof/profile"

	"github.com/7awel/wallet/loadtest/driver"
)

// A real pgbench 15 summary.
const pgbenchOut = `pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: loadtest/bench/transfer_random.sql
scaling factor: 1
query mode: simple
number of clients: 16
number of threads: 2
maximum number of tries: 10
duration: 20 s
number of transactions actually processed: 74000
number of failed transactions: 1 (0.001%)
number of transactions retried: 3 (0.004%)
total number of retries: 4
latency average = 4.321 ms
initial connection time = 146.618 ms
tps = 3700.500000 (without initial connection time)
`

func TestParsePgbenchOutput(t *testing.T) {
	r, err := parsePgbenchOutput(pgbenchOut)
	if err != nil {
		t.Fatal(err)
	}
	if r.TPS != 3700.5 || r.Transactions != 74000 || r.Failed != 1 || r.Retries != 4 || r.LatencyAvgMs != 4.321 {
		t.Errorf("parsed %+v", r)
	}
	if _, err := parsePgbenchOutput("pgbench: error: connection refused\n"); err == nil {
		t.Error("output without tps must be an error")
	}
}

func TestPgbenchLogLatencies(t *testing.T) {
	dir := t.TempDir()
	// client, transaction, latency µs, script, epoch, µs, retries; one failed transaction.
	a := "1 1 4714 0 1795731131 657415 0\n1 2 1207 0 1795731131 658637 0\n1 3 failed 0 1795731131 662224 2\n"
	b := "2 1 9751 0 1795731131 662471 0\n3 1 1000 0 1795731131 662505 1\n"
	for name, body := range map[string]string{"x.1": a, "x.1.1": b} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "x.*"))
	lat, err := logLatencies(files)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 4 || lat[0] != 1000 || lat[3] != 9751 {
		t.Fatalf("latencies %v", lat)
	}
	if p := percentileUs(lat, 50); p != 1.207 {
		t.Errorf("p50 %v ms", p)
	}
	if p := percentileUs(lat, 99); p != 9.751 {
		t.Errorf("p99 %v ms", p)
	}
	if percentileUs(nil, 99) != 0 {
		t.Error("no samples must be 0")
	}
}

func report(tps float64, retries, committed int64, p50, p99 float64, rssMiB int64) *driver.Report {
	return &driver.Report{Throughput: tps, TxRetries: retries, Committed: committed,
		RetriesPerTransfer: float64(retries) / float64(committed), Passed: true,
		Latency:      map[string]driver.Summary{"transfer": {Count: int(committed), P50: p50, P99: p99}},
		Memory:       driver.Memory{HWMBytes: rssMiB << 20},
		Conservation: driver.Conservation{Checked: true, OK: true}}
}

func TestRatiosComeFromOneRun(t *testing.T) {
	half := report(1000, 0, 20000, 2, 8, 60)
	half.TargetRate = 1000
	r := &Results{Seconds: 20, Clients: 16,
		Pgbench: []PgbenchResult{{Script: "transfer_random.sql", TPS: 4000, P99Ms: 10, Transactions: 80000, WALBytes: 80000 * 400},
			{Script: "transfer_hot.sql", TPS: 1400, P99Ms: 40},
			{Script: "transfer_random.sql", TPS: 2000, Rate: 2000, P50Ms: 2, P99Ms: 12}},
		API: []APIRun{
			{Kind: "uniform", Label: "uniform, closed loop", Report: report(3000, 30, 60000, 4, 12, 70), WALBytes: 60000 * 2800},
			{Kind: "hot", Label: "hot, closed loop", Report: report(2700, 270, 54000, 5, 50, 90)},
			{Kind: "half", Label: "uniform, open loop", Report: half},
		}}
	want := map[string]struct {
		v   float64
		met string
	}{
		"API uniform TPS / pgbench random TPS":                  {0.75, "met"},
		"API hot TPS / API uniform TPS":                         {0.9, "met"},
		"retries per committed transfer, hot":                   {0.005, "met"},
		"p99 / p50 at half the peak rate (uniform, open loop)":  {4, "met"},
		"server peak RSS, MiB":                                  {90, "met"},
		"API hot p99 / pgbench hot p99":                         {1.25, "met"},
		"pgbench hot TPS / pgbench random TPS":                  {0.35, ""},
		"pgbench p99 / p50 at half its peak rate (random, -R)":  {6, ""},
		"API uniform WAL bytes per transfer / pgbench random's": {7, ""},
	}
	seen := 0
	for _, x := range r.Ratios() {
		w, ok := want[x.Name]
		if !ok {
			continue
		}
		seen++
		if !x.Has || (x.Value-w.v) > 1e-9 || (w.v-x.Value) > 1e-9 || x.verdict() != w.met {
			t.Errorf("%s = %v (%s), want %v (%s)", x.Name, x.Value, x.verdict(), w.v, w.met)
		}
	}
	if seen != len(want) {
		t.Errorf("%d of %d ratios found", seen, len(want))
	}
	// pgbench run again after the API's uniform run: the ratio takes the mean of both sides.
	r2 := *r
	r2.Pgbench = append(slices.Clone(r.Pgbench), PgbenchResult{Script: "transfer_random.sql", TPS: 2000, After: true})
	for _, x := range r2.Ratios() {
		if x.Name == "API uniform TPS / pgbench random TPS" && (x.Value != 1 || !strings.Contains(x.From, "4000 before, 2000 after")) {
			t.Errorf("with pgbench after: %v (%s), want 1 = 3000 / mean(4000, 2000)", x.Value, x.From)
		}
	}
	if md := r2.markdown(); !strings.Contains(md, "| transfer_random.sql again, right after the API's uniform run | 2000 |") {
		t.Errorf("markdown lacks the after run:\n%s", md)
	} else if !strings.Contains(md, "| 10.00 | 0.00 | 400 |") || !strings.Contains(md, "| 2800 | conserved |") || !strings.Contains(md, "| 0.00 | – |") {
		t.Errorf("markdown lacks WAL per transfer (400 and 2800 measured, a dash where not):\n%s", md)
	}

	// Three pairs: the API run again twice, pgbench after each. The value is the median of the
	// pairs' ratios; one pair under 0.5 makes the target not met, whatever the median.
	r3 := r2
	r3.API = append(slices.Clone(r2.API),
		APIRun{Kind: "uniform-again", Label: "uniform, closed loop, again (pair 2 of 3)", Report: report(1500, 0, 30000, 4, 12, 70)},
		APIRun{Kind: "uniform-again", Label: "uniform, closed loop, again (pair 3 of 3)", Report: report(2000, 0, 40000, 4, 12, 70)})
	r3.Pgbench = append(slices.Clone(r2.Pgbench),
		PgbenchResult{Script: "transfer_random.sql", TPS: 3000, After: true},
		PgbenchResult{Script: "transfer_random.sql", TPS: 5000, After: true})
	checkUniform := func(r *Results, want float64, verdict string, from ...string) {
		t.Helper()
		for _, x := range r.Ratios() {
			if x.Name != "API uniform TPS / pgbench random TPS" {
				continue
			}
			if d := x.Value - want; d > 1e-9 || d < -1e-9 || x.verdict() != verdict {
				t.Errorf("uniform ratio %v (%s), want %v (%s)", x.Value, x.verdict(), want, verdict)
			}
			for _, f := range from {
				if !strings.Contains(x.From, f) {
					t.Errorf("uniform ratio from %q lacks %q", x.From, f)
				}
			}
			return
		}
		t.Error("no uniform ratio")
	}
	// pgbench 4000, 2000, 3000, 5000 around the API's 3000, 1500, 2000: 3000 / 3000 = 1,
	// 1500 / 2500 = 0.6, 2000 / 4000 = 0.5.
	checkUniform(&r3, 0.6, "met", "median of 3 pairs", "1.000 (3000 / 3000)", "0.600 (1500 / 2500)", "0.500 (2000 / 4000)")
	if md := r3.markdown(); !strings.Contains(md, "| transfer_random.sql again, right after the API's uniform run (pair 3) | 5000 |") ||
		!strings.Contains(md, "≥ 0.5 in every pair") {
		t.Errorf("markdown lacks the pairs:\n%s", md)
	}
	// Hot (2700) is compared with the uniform run just before it, the last repeat (2000).
	found := false
	for _, x := range r3.Ratios() {
		if x.Name == "API hot TPS / API uniform TPS" {
			found = true
			if x.Value != 1.35 || !strings.Contains(x.From, "2700 / 2000 (uniform, closed loop, again (pair 3 of 3)") {
				t.Errorf("hot/uniform with repeats: %v (%s), want 1.35 = 2700 / 2000", x.Value, x.From)
			}
		}
	}
	if !found {
		t.Error("no hot/uniform ratio")
	}
	r3.API[len(r3.API)-1].Report = report(1996, 0, 40000, 4, 12, 70) // pair 3: 0.499
	checkUniform(&r3, 0.6, "NOT met", "0.499 (1996 / 4000)")
	// Two pairs: the median of an even count is the mean of the middle two, (1 + 0.6) / 2.
	r4 := r3
	r4.API = r3.API[:len(r3.API)-1]
	checkUniform(&r4, 0.8, "met", "median of 2 pairs")
	// A uniform run without pgbench before it (that pgbench run failed) is not a pair, and the
	// target cannot count as met on the others; the run before it keeps the side it has:
	// 1500 / 2000 = 0.75, and the median of 1 and 0.75.
	r3.Pgbench = slices.Clone(r3.Pgbench)
	r3.Pgbench[len(r3.Pgbench)-2].TPS = 0
	checkUniform(&r3, 0.875, "NOT met", "median of 2 pairs", "0.750 (1500 / 2000)", "1 of 3 uniform runs without pgbench before them")

	// A target missed says so, and a missing run is "not measured", never a made-up number.
	r.API[1].Report = report(1000, 500, 20000, 5, 50, 200)
	r.API = r.API[:2]
	md := r.markdown()
	for _, s := range []string{"| API hot TPS / API uniform TPS | **0.333** | 1000 / 3000 | ≥ 0.8 | NOT met |",
		"| server peak RSS, MiB | **200.000**", "p99 / p50 at half the peak rate (uniform, open loop) | – | – | ≤ 5 | not measured |",
		"| transfer_random.sql | 4000 |", "| transfer_random.sql at 2000/s (-R, latency from the scheduled start) | 2000 |"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
}

func TestTrimPprof(t *testing.T) {
	in := "File: 7awel\nBuild ID: abc\nType: cpu\nTime: now\nDuration: 3s, Total samples = 1s\nShowing nodes accounting for 1s\n" +
		"      flat  flat%   sum%        cum   cum%\n a\n b\n c\n"
	got := trimPprof(in, 2)
	want := "Duration: 3s, Total samples = 1s\nShowing nodes accounting for 1s\n      flat  flat%   sum%        cum   cum%\n a\n b\n"
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestProfileShares(t *testing.T) {
	fn := func(id uint64, name string) *profile.Function { return &profile.Function{ID: id, Name: name} }
	argon := fn(1, "golang.org/x/crypto/argon2.blamkaSSE4")
	store := fn(2, "github.com/7awel/wallet/storage.(*DB).Transfer")
	pgx := fn(3, "github.com/jackc/pgx/v5.(*Conn).SendBatch")
	loc := func(id uint64, fs ...*profile.Function) *profile.Location {
		l := &profile.Location{ID: id}
		for _, f := range fs {
			l.Line = append(l.Line, profile.Line{Function: f})
		}
		return l
	}
	p := &profile.Profile{
		SampleType:    []*profile.ValueType{{Type: "samples", Unit: "count"}, {Type: "cpu", Unit: "nanoseconds"}},
		DurationNanos: 2e9,
		Sample: []*profile.Sample{
			{Location: []*profile.Location{loc(1, argon)}, Value: []int64{6, 600e6}},
			{Location: []*profile.Location{loc(3, pgx), loc(2, store)}, Value: []int64{3, 300e6}},
			{Location: []*profile.Location{loc(2, store)}, Value: []int64{1, 100e6}},
		},
	}
	got, total, err := shares(p)
	if err != nil {
		t.Fatal(err)
	}
	want := []Share{{"PIN hashing (argon2)", 60}, {"storage package (transactions, SQL, retries)", 40}, {"PostgreSQL driver (pgx, pool)", 30}}
	if len(got) != len(want) {
		t.Fatalf("shares %v", got)
	}
	for i := range want {
		if got[i].What != want[i].What || got[i].Percent < want[i].Percent-1e-9 || got[i].Percent > want[i].Percent+1e-9 {
			t.Errorf("share %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if !strings.HasPrefix(total, "1.00 s of CPU in 2.0 s") {
		t.Errorf("total %q", total)
	}
}
