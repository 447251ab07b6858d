package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/7awel/wallet/k8s/monitoring"
	"github.com/7awel/wallet/storage"
)

// TestMetricsContract scrapes the real /metrics after exercising every metric, the database
// retry and give-up paths included, and holds it to the monitoring contract the dashboard and
// alert rules are checked against (k8s/monitoring/contract.go): every contract metric exists,
// with its type, exactly its label names plus region, and only the allowed label values; and
// every wallet_* metric the server exposes is in the contract. So neither side can drift.
func TestMetricsContract(t *testing.T) {
	t.Parallel()
	// One retry allowed: contention then produces retries, give-ups and 40001 statement errors.
	env := newContentionEnv(t, 1)

	phoneA, phoneB := randomPhone(t, "AE"), randomPhone(t, "AE")
	userA, accessA := signUpUser(t, env, phoneA)
	userB, accessB := signUpUser(t, env, phoneB)
	_, _, refreshC := signUpUserWithRefresh(t, env, randomPhone(t, "AE"))
	cashIn(t, env, userA, "AED", "1000")
	cashIn(t, env, userB, "AED", "1000")
	wantProblem(t, env.do("POST", "/auth/otp/verify", map[string]string{"phone": randomPhone(t, "AE"), "purpose": "login", "code": "123456"}), 401, "otp_expired")
	for range 5 {
		env.do("POST", "/transactions/send", map[string]string{"recipient_id": userA, "amount": "1", "asset": "AED",
			"reference": uuid.NewString(), "pin": "9999"}, bearer(accessB)...)
	}
	env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refreshC})
	env.do("POST", "/auth/refresh", map[string]string{"refresh_token": refreshC})

	// OTP requests for one phone at once, for its three purposes: serializable transactions
	// that each count the phone's codes and insert one fail with 40001, are retried once, and
	// some give up (503 busy). Transfers both ways and cash-ins (READ COMMITTED on PostgreSQL:
	// they queue, they do not abort) run beside them.
	purposes := []string{"register", "login", "reset_pin"}
	fams := map[string]*dto.MetricFamily{}
	// Rounds until both have happened: how soon depends on the machine's timing (20 rounds
	// were not always enough on these 2 cores), so the bound is a deadline, not a count.
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		phone := randomPhone(t, "AE")
		var wg sync.WaitGroup
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Not env.do: it fails the test from a goroutine on a transport error.
				switch i % 8 {
				case 0:
					doQuiet(env, "POST", "/transactions/send", map[string]string{"recipient_id": userB, "amount": "1",
						"asset": "AED", "reference": uuid.NewString(), "pin": testPIN}, bearer(accessA)...)
				case 1:
					doQuiet(env, "POST", "/transactions/send", map[string]string{"recipient_id": userA, "amount": "1",
						"asset": "AED", "reference": uuid.NewString(), "pin": testPIN}, bearer(accessB)...)
				case 2:
					doQuiet(env, "POST", "/ops/cash-in", map[string]string{"user_id": userA, "amount": "1",
						"asset": "AED", "reference": uuid.NewString()}, opsHeaders()...)
				default:
					doQuiet(env, "POST", "/auth/otp/send", map[string]string{"phone": phone, "purpose": purposes[i%3]})
				}
			}()
		}
		wg.Wait()
		fams = scrape(t, env)
		if familyTotal(fams, "wallet_db_tx_giveups_total") > 0 && familyTotal(fams, "wallet_db_tx_retries_total") > 0 {
			break
		}
	}
	if familyTotal(fams, "wallet_db_tx_giveups_total") == 0 {
		t.Fatal("no transaction gave up under contention; the contract check would miss the give-up series")
	}

	for name, want := range monitoring.Contract {
		f, ok := fams[name]
		if !ok {
			t.Errorf("%s: in the contract, not in /metrics", name)
			continue
		}
		if got := strings.ToLower(f.GetType().String()); got != string(want.Kind) {
			t.Errorf("%s: type %s, contract says %s", name, got, want.Kind)
		}
		wantLabels := append(slices.Clone(want.Labels), "region")
		sort.Strings(wantLabels)
		for _, m := range f.GetMetric() {
			got := labelsOf(m)
			names := make([]string, 0, len(got))
			for k := range got {
				names = append(names, k)
			}
			sort.Strings(names)
			if !slices.Equal(names, wantLabels) {
				t.Errorf("%s: labels %v, contract says %v", name, names, wantLabels)
			}
			if got["region"] != env.cfg.Region {
				t.Errorf("%s: region %q, want %q", name, got["region"], env.cfg.Region)
			}
			for label, allowed := range want.Values {
				if !slices.Contains(allowed, got[label]) {
					t.Errorf("%s{%s=%q}: not a value the contract allows %v", name, label, got[label], allowed)
				}
			}
		}
	}
	for name := range fams {
		if _, ok := monitoring.Contract[name]; strings.HasPrefix(name, "wallet_") && !ok {
			t.Errorf("%s: exposed but not in the monitoring contract (add it there, with a panel)", name)
		}
	}
	lintWallet(t, env)
}

// familyTotal sums a counter family over all its series.
func familyTotal(fams map[string]*dto.MetricFamily, name string) float64 {
	total := 0.0
	for _, m := range fams[name].GetMetric() {
		total += m.GetCounter().GetValue()
	}
	return total
}

// newContentionEnv is newTestEnv with a retry bound of maxRetries, so give-ups happen.
func newContentionEnv(t *testing.T, maxRetries int) *testEnv {
	t.Helper()
	cfg := Config{Region: testRegions.Primary(), Development: true, OpsAPIKey: "test-ops-key", MetricsOnPublic: true,
		JWTKey: testJWTKey, ClientIPHeader: "X-Forwarded-For",
		Limits: AuthLimits{OTPPerAddressHour: 100000, AvailabilityPerHour: 100000}}
	registry := NewRegistry(cfg.Region, "test")
	db, err := storage.Open(context.Background(), testURL, testRegions, storage.Options{
		Keys: testKeys, Registerer: RegionRegisterer(registry, cfg.Region), MaxConns: 16,
		Tracer: localityRecorder, MaxRetries: maxRetries,
	})
	if err != nil {
		t.Fatal(err)
	}
	sink := &logSink{}
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.NewMultiWriteSyncer(sink, suiteLogs), zapcore.DebugLevel))
	cfg.SMS = DevSMS{Log: log}
	srv := New(cfg, db, registry, log)
	ts := httptest.NewServer(srv)
	t.Cleanup(func() {
		ts.Close()
		db.Close()
	})
	return &testEnv{t: t, db: db, server: srv, http: ts, logs: sink, cfg: cfg}
}

// doQuiet sends a request from any goroutine, recording its PII like testEnv.do, and ignores
// the answer.
func doQuiet(env *testEnv, method, path string, body map[string]string, headers ...string) {
	raw, _ := json.Marshal(body)
	recordPIIJSON(raw)
	req, err := http.NewRequest(method, env.http.URL+path, strings.NewReader(string(raw)))
	if err != nil {
		return
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
		recordPIIHeader(headers[i], headers[i+1])
	}
	res, err := env.http.Client().Do(req)
	if err != nil {
		return
	}
	res.Body.Close()
}
