package main

import (
	"context"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/7awel/wallet/server"
	"github.com/7awel/wallet/storage"
	"github.com/7awel/wallet/storage/dbtest"
)

// TestMetricsOnlyOnTheAdminPort: in production /metrics is not on the public handler (404
// route_not_found) and the admin handler serves it and pprof; in development, without an admin
// listener, /metrics is on the API port.
func TestMetricsOnlyOnTheAdminPort(t *testing.T) {
	if testing.Short() {
		t.Skip("needs PostgreSQL")
	}
	url := dbtest.ForTest(t)
	load := func(vars map[string]string) *config {
		t.Helper()
		c, err := loadConfig(flag.NewFlagSet("7awel admin-test", flag.ContinueOnError), nil, envFrom(vars))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	prod := load(map[string]string{"APP_ENV": "production", "DATABASE_URL": url, "REGION": "eu-west1",
		"OPS_API_KEY": strings.Repeat("k", 32)})
	dev := load(map[string]string{"DATABASE_URL": url})
	if metricsOnPublic(prod) || !metricsOnPublic(dev) {
		t.Fatalf("metricsOnPublic: production %t (ADMIN_ADDR %q), development %t", metricsOnPublic(prod), prod.AdminAddr, metricsOnPublic(dev))
	}

	db, err := storage.Open(context.Background(), url, prod.regions, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	newAPI := func(c *config) *server.Server {
		registry := server.NewRegistry(c.Region, "test")
		return server.New(server.Config{Region: c.Region, OpsAPIKey: c.OpsAPIKey, MetricsOnPublic: metricsOnPublic(c)},
			db, registry, zap.NewNop())
	}
	get := func(h http.Handler, path string) (int, string) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
		body, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(body)
	}

	api := newAPI(prod)
	if code, body := get(api, "/metrics"); code != http.StatusNotFound || !strings.Contains(body, `"route_not_found"`) {
		t.Errorf("production public /metrics: %d %s", code, body)
	}
	if code, _ := get(api, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("production public /debug/pprof/: %d", code)
	}
	admin := adminHandler(api)
	if code, body := get(admin, "/metrics"); code != http.StatusOK || !strings.Contains(body, `wallet_http_requests_in_flight{region="eu-west1"}`) {
		t.Errorf("admin /metrics: %d %.200s", code, body)
	}
	if code, body := get(admin, "/debug/pprof/"); code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("admin /debug/pprof/: %d %.200s", code, body)
	}
	if code, _ := get(admin, "/debug/pprof/cmdline"); code != http.StatusOK {
		t.Errorf("admin /debug/pprof/cmdline: %d", code)
	}
	if code, _ := get(admin, "/user"); code != http.StatusNotFound {
		t.Errorf("the admin port serves the API: /user %d", code)
	}

	if code, body := get(newAPI(dev), "/metrics"); code != http.StatusOK || !strings.Contains(body, "wallet_build_info") {
		t.Errorf("development public /metrics: %d %.200s", code, body)
	}
}
