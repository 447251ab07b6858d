package main

// The end-to-end test of the load harness: a real API (server.New over a fresh, migrated and
// seeded PostgreSQL database, in development mode), every k6 script run through k6run for
// every scenario, then the Go driver and the command against the same server. Nothing here is
// mocked: sign-ups hash PINs, transfers run the real money engine.

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/7awel/wallet/loadtest/driver"
	"github.com/7awel/wallet/loadtest/k6run"
	"github.com/7awel/wallet/loadtest/scenarios"
	"github.com/7awel/wallet/regions"
	"github.com/7awel/wallet/server"
	"github.com/7awel/wallet/storage"
	"github.com/7awel/wallet/storage/dbtest"
)

const e2eOpsKey = "e2e-ops-key"

// startAPI serves the real API on a loopback port for the test and returns its base URL and
// its database's URL.
func startAPI(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	rt, err := regions.Parse(regions.DefaultRegions, regions.DefaultPrimary, "")
	if err != nil {
		t.Fatal(err)
	}
	url, drop, err := dbtest.NewDatabase(ctx, "loadtest")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = drop() })
	if err := storage.MigrateUp(ctx, url, rt); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	key := func() []byte {
		b := make([]byte, 32)
		_, _ = rand.Read(b)
		return b
	}
	keys, err := storage.NewKeys(map[string][]byte{"e2e": key()}, "e2e", key(), key(), key())
	if err != nil {
		t.Fatal(err)
	}
	registry := server.NewRegistry(rt.Primary(), "e2e")
	db, err := storage.Open(ctx, url, rt, storage.Options{Keys: keys, MaxConns: 8,
		Registerer: server.RegionRegisterer(registry, rt.Primary())})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Seed(ctx); err != nil {
		t.Fatalf("seed: %v", err)
	}
	_, jwtKey, _ := ed25519.GenerateKey(rand.Reader)
	log := zap.NewNop()
	api := server.New(server.Config{
		Region:          rt.Primary(),
		Development:     true,
		OpsAPIKey:       e2eOpsKey,
		MetricsOnPublic: true,
		JWTKey:          jwtKey,
		SMS:             server.DevSMS{Log: log},
		// Every request comes from 127.0.0.1, so the per-address caps must allow a load
		// test's sign-ups; the per-phone throttles stay as in production.
		Limits: server.AuthLimits{OTPPerAddressHour: 1_000_000, AvailabilityPerHour: 1_000_000},
	}, db, registry, log)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: api, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		db.Close()
	})
	base := "http://" + ln.Addr().String()
	res, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("/readyz: %d", res.StatusCode)
	}
	return base, url
}

func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end load harness test: starts the API and signs up ~100 users (about a minute); run without -short")
	}
	base, dbURL := startAPI(t)
	reconcile, closeDB, err := driver.DatabaseReconciler(context.Background(), dbURL, "", "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeDB()
	f, err := scenarios.Embedded()
	if err != nil {
		t.Fatal(err)
	}

	// Every k6 script, every scenario, a few iterations each: every check must pass.
	t.Run("k6", func(t *testing.T) {
		for i, name := range f.Names() {
			t.Run(name, func(t *testing.T) {
				def := f.Scenarios[name]
				var log strings.Builder
				s, err := k6run.ScenarioScript("k6", name, map[string]string{
					"BASE_URL": base, "OPS_KEY": e2eOpsKey, "USERS": "5", "RUN_ID": fmt.Sprint(100 + i),
					"SUMMARY_DIR": t.TempDir(),
				})
				if err != nil {
					t.Fatal(err)
				}
				s.Iterations, s.VUs, s.Log = 24, 3, &log
				if def.Amount == "" {
					s.Iterations = 6 // sign-up journeys hash two PINs each
				}
				res, err := k6run.Run(context.Background(), s)
				if err != nil {
					t.Fatalf("%v\nconsole:\n%s", err, log.String())
				}
				if p := res.Problems(); len(p) > 0 {
					t.Fatalf("problems:\n  %s\nconsole:\n%s", strings.Join(p, "\n  "), log.String())
				}
				// The scripts check their own users' money; the ledger proof checks everything.
				if summary, err := reconcile(context.Background()); err != nil {
					t.Fatalf("reconcile after %s (%s): %v", name, summary, err)
				}
				if len(res.Checks) == 0 || !res.TeardownCalled && def.Amount != "" || !res.SummaryCalled {
					t.Fatalf("checks %d, teardown %v, summary %v", len(res.Checks), res.TeardownCalled, res.SummaryCalled)
				}
				if len(res.Scenarios) != 1 || res.Scenarios[0].Iterations != s.Iterations {
					t.Fatalf("scenarios run: %+v", res.Scenarios)
				}
				metric := func(name string) *k6run.Metric {
					m := res.Metrics[name]
					if m == nil {
						t.Fatalf("no %s samples", name)
					}
					return m
				}
				if def.Amount == "" {
					if n := len(metric("wallet_signup_duration").Values(nil)); n != s.Iterations {
						t.Errorf("%d journeys timed, want %d", n, s.Iterations)
					}
					return
				}
				conserved := metric("wallet_money_conserved").Values(nil)
				if len(conserved) != len(def.Assets) {
					t.Errorf("money checked for %d assets, want %d", len(conserved), len(def.Assets))
				}
				for _, v := range conserved {
					if v != 1 {
						t.Errorf("money not conserved: %v", conserved)
					}
				}
				if metric("wallet_transfers").Sum(nil) == 0 {
					t.Error("no transfer was committed")
				}
				if def.ReplayEvery > 0 && metric("wallet_replays").Sum(nil) == 0 {
					t.Error("no replay was answered as one")
				}
			})
		}
	})

	// The Go driver, every scenario, closed and open loop, against the same server.
	t.Run("driver", func(t *testing.T) {
		for i, name := range f.Names() {
			for _, mode := range []string{driver.Closed, driver.Open} {
				t.Run(name+"/"+mode, func(t *testing.T) {
					cfg := driver.Config{BaseURL: base, OpsKey: e2eOpsKey, Scenario: name, Mode: mode,
						Workers: 3, Duration: 1500 * time.Millisecond, Users: 6, RunID: 200 + 2*i, SetupWorkers: 4,
						MetricsURL: base + "/metrics", Reconcile: reconcile, Warmup: mode == driver.Closed}
					if mode == driver.Open {
						cfg.Rate, cfg.RunID = 20, cfg.RunID+1
						cfg.ServerPID = os.Getpid() // the API runs in this process
					}
					rep, err := driver.Run(context.Background(), cfg)
					if err != nil {
						t.Fatal(err)
					}
					var text strings.Builder
					_ = rep.Text(&text)
					if !rep.Passed {
						t.Fatalf("run failed:\n%s", text.String())
					}
					if rep.Reconcile == nil || !rep.Reconcile.OK {
						t.Fatalf("reconcile %+v", rep.Reconcile)
					}
					if rep.Throughput <= 0 || rep.Memory.Samples == 0 || rep.Memory.PeakRSSBytes <= 0 {
						t.Fatalf("nothing measured:\n%s", text.String())
					}
					if f.Scenarios[name].Amount != "" {
						if mode == driver.Closed && rep.WarmupTransfers != 6 {
							t.Errorf("warm-up: %d transfers, want one per payer", rep.WarmupTransfers)
						}
						c := rep.Conservation
						if !c.Checked || !c.OK || !c.PerUser || c.FundingChecked == 0 {
							t.Fatalf("conservation %+v\n%s", c, text.String())
						}
					}
					t.Logf("\n%s", text.String())
				})
			}
		}
	})

	// The command as `go run ./loadtest` runs it, with a JSON report.
	t.Run("command", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "report.json")
		var stdout, stderr strings.Builder
		code := run(context.Background(), []string{"-url", base, "-ops-key", e2eOpsKey, "-mode", "closed", "-c", "2",
			"-duration", "1s", "-users", "4", "-run-id", "300", "-json", out, "-reconcile-db", dbURL, "hot"}, &stdout, &stderr)
		if code != 0 {
			t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
		}
		b, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		var reps []driver.Report
		if err := json.Unmarshal(b, &reps); err != nil || len(reps) != 1 || !reps[0].Passed || reps[0].Scenario != "hot" ||
			reps[0].Reconcile == nil || !reps[0].Reconcile.OK {
			t.Fatalf("JSON report: %v\n%s", err, b)
		}
		if !strings.Contains(stdout.String(), "PASSED") || !strings.Contains(stderr.String(), "setup hot: users") {
			t.Errorf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		// A wrong operator key fails setup, loudly.
		stderr.Reset()
		if code := run(context.Background(), []string{"-url", base, "-ops-key", "wrong", "-c", "1", "-duration", "1s",
			"-users", "2", "-run-id", "301", "-q", "uniform"}, &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "cash-in") {
			t.Errorf("wrong ops key: exit %d, stderr %s", code, stderr.String())
		}
	})
}
