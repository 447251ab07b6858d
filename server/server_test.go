package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
	"github.com/7awel/wallet/storage/dbtest"
)

func TestHealthAndHeaders(t *testing.T) {
	env := newTestEnv(t)
	r := env.do("GET", "/healthz", nil)
	if r.Status != 200 || r.JSON["status"] != "ok" {
		t.Fatalf("healthz: %d %s", r.Status, r.Body)
	}
	if r.Header.Get("X-Region") != env.cfg.Region || r.Header.Get("X-Request-Id") == "" {
		t.Fatalf("headers: %v", r.Header)
	}
	r = env.do("GET", "/readyz", nil)
	if r.Status != 200 || r.JSON["status"] != "ready" {
		t.Fatalf("readyz: %d %s", r.Status, r.Body)
	}
	r = env.do("GET", "/healthz", nil, "X-Request-Id", "client-abc.123")
	if got := r.Header.Get("X-Request-Id"); got != "client-abc.123" {
		t.Fatalf("valid client request id not echoed: %q", got)
	}
	r = env.do("GET", "/healthz", nil, "X-Request-Id", "bad id\twith spaces")
	if got := r.Header.Get("X-Request-Id"); got == "" || strings.Contains(got, " ") {
		t.Fatalf("invalid client request id kept: %q", got)
	}
	if r := env.do("GET", "/openapi.yaml", nil); r.Status != 200 || !strings.Contains(string(r.Body), "openapi: 3.1") {
		t.Fatalf("openapi: %d", r.Status)
	}
}

func TestRoutingErrors(t *testing.T) {
	env := newTestEnv(t)
	wantProblem(t, env.do("GET", "/no/such/route", nil), 404, "route_not_found")
	wantProblem(t, env.do("DELETE", "/healthz", nil), 405, "method_not_allowed")
	if !strings.Contains(env.logs.String(), `"route":"unmatched"`) {
		t.Fatalf("unmatched routes are not logged by template: %s", env.logs.String())
	}
}

// TestReadinessFollowsTheDatabase: 503 before the schema exists, 200 once migrated, 503 when the
// database goes away, while liveness stays 200 throughout.
func TestReadinessFollowsTheDatabase(t *testing.T) {
	ctx := context.Background()
	url := dbtest.ForTest(t)
	db, err := storage.Open(ctx, url, testRegions, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := NewRegistry("eu-west1", "test")
	srv := New(Config{Region: "eu-west1"}, db, reg, zap.NewNop())
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		return rec
	}
	if rec := get("/readyz"); rec.Code != 503 || !strings.Contains(rec.Body.String(), "not_ready") {
		t.Fatalf("unmigrated: %d %s", rec.Code, rec.Body)
	}
	if rec := get("/readyz"); rec.Header().Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if err := storage.MigrateUp(ctx, url, testRegions); err != nil {
		t.Fatal(err)
	}
	if rec := get("/readyz"); rec.Code != 200 {
		t.Fatalf("migrated: %d %s", rec.Code, rec.Body)
	}
	if v := testutil.ToFloat64(srv.metrics.ready); v != 1 {
		t.Fatalf("wallet_ready = %v after a passing check", v)
	}
	// Take the database away under the open pool.
	admin, err := pgx.Connect(ctx, strings.Replace(url, "/"+dbName(url)+"?", "/postgres?", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{dbName(url)}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}
	if rec := get("/readyz"); rec.Code != 503 {
		t.Fatalf("database gone: %d %s", rec.Code, rec.Body)
	}
	if v := testutil.ToFloat64(srv.metrics.ready); v != 0 {
		t.Fatalf("wallet_ready = %v after a failing check", v)
	}
	if rec := get("/healthz"); rec.Code != 200 {
		t.Fatalf("liveness followed the database: %d", rec.Code)
	}
}

func dbName(url string) string {
	path := url[strings.LastIndex(url, "/")+1:]
	name, _, _ := strings.Cut(path, "?")
	return name
}

// TestBodyErrorsAndPanics drives decodeJSON and the panic recovery through the real middleware.
func TestBodyErrorsAndPanics(t *testing.T) {
	env := newTestEnv(t)
	type req struct {
		Name string `json:"name"`
		N    int    `json:"n"`
	}
	probe := env.server.outer(env.server.handle(func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/panic" {
			panic("boom")
		}
		if r.URL.Path == "/fail" {
			return errors.New("a database exploded")
		}
		var in req
		if err := decodeJSON(r, &in); err != nil {
			return err
		}
		respond(w, 200, in)
		return nil
	}))
	ts := httptest.NewServer(probe)
	defer ts.Close()
	env.http = ts

	cases := []struct {
		body   string
		status int
		code   string
	}{
		{`{"name":"a","n":1}`, 200, ""},
		{`{"name":"a","extra":1}`, 400, "unknown_field"},
		{`{"name":`, 400, "malformed_json"},
		{`{"n":"one"}`, 400, "malformed_json"},
		{`[1,2]`, 400, "malformed_json"},
		{`{"name":"a"} {"name":"b"}`, 400, "malformed_json"},
		{``, 400, "malformed_json"},
		{`{"name":"` + strings.Repeat("x", maxBodyBytes) + `"}`, 413, "body_too_large"},
	}
	for _, c := range cases {
		r := env.do("POST", "/echo", c.body)
		if c.status == 200 {
			if r.Status != 200 {
				t.Errorf("%.40s: %d %s", c.body, r.Status, r.Body)
			}
			continue
		}
		wantProblem(t, r, c.status, c.code)
	}
	r := env.do("POST", "/echo", `{"name":"a"}`, "Content-Type", "text/plain")
	wantProblem(t, r, 415, "unsupported_media_type")

	r = env.do("GET", "/panic", nil)
	wantProblem(t, r, 500, "internal_error")
	r = env.do("GET", "/fail", nil)
	wantProblem(t, r, 500, "internal_error")
	if strings.Contains(string(r.Body), "exploded") {
		t.Fatal("an internal error's cause reached the client")
	}
	logs := env.logs.String()
	if !strings.Contains(logs, `"panic":"boom"`) || !strings.Contains(logs, "a database exploded") {
		t.Fatalf("5xx causes not logged: %s", logs)
	}
}

func TestMetricsExposed(t *testing.T) {
	env := newTestEnv(t)
	env.do("GET", "/healthz", nil)
	r := env.do("GET", "/metrics", nil)
	body := string(r.Body)
	for _, want := range []string{
		`wallet_http_request_duration_seconds_count{method="GET",region="me-central1",route="/healthz",status_class="2xx"}`,
		`wallet_http_requests_in_flight{region="me-central1"}`,
		`wallet_db_pool_max_connections{region="me-central1"}`,
		`,region="me-central1",revision=`, // wallet_build_info: the version collector's labels, sorted
		`,version="test"} 1`,
		`go_goroutines{region="me-central1"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	problems, err := testutil.GatherAndLint(env.server.registry)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "wallet_") {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	}
}

// TestClientGoneIsNotA5xx: a request whose client left ends in 499 at debug level, not in the
// 5xx rate and the error log.
func TestClientGoneIsNotA5xx(t *testing.T) {
	env := newTestEnv(t)
	h := env.server.outer(env.server.handle(func(w http.ResponseWriter, r *http.Request) error {
		<-r.Context().Done()
		return fmt.Errorf("waiting for the database: %w", r.Context().Err())
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req := httptest.NewRequest("GET", "/slow", nil).WithContext(ctx)
	rec := httptest.NewRecorder()
	cancel()
	h.ServeHTTP(rec, req)
	if rec.Code != statusClientClosed {
		t.Fatalf("status = %d, want 499", rec.Code)
	}
	if strings.Contains(env.logs.String(), `"level":"error"`) {
		t.Fatalf("a client that left was logged as an error: %s", env.logs.String())
	}
}
