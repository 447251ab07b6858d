package main

import (
	"bytes"
	"context"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func envFrom(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestHelpAndUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"help"}, envFrom(nil), &out, &errOut); code != 0 || !strings.Contains(out.String(), "7awel serve") {
		t.Fatalf("help: %d %q", code, out.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, envFrom(nil), &out, &errOut); code != 2 {
		t.Fatalf("unknown command exit = %d", code)
	}
	if code := run(context.Background(), nil, envFrom(nil), &out, &errOut); code != 2 {
		t.Fatalf("no command exit = %d", code)
	}
}

// TestInvalidConfigurationNamesTheVariable: every refusal says which variable to fix.
func TestInvalidConfigurationNamesTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"APP_ENV": "staging"}, "APP_ENV"},
		{map[string]string{"REGION": "mars-north1"}, "REGION"},
		{map[string]string{"REGIONS": "a,,b"}, "REGIONS"},
		{map[string]string{"PRIMARY_REGION": "ap-south1"}, "PRIMARY_REGION"},
		{map[string]string{"REGION_COUNTRIES": "AE=nowhere1"}, "REGION_COUNTRIES"},
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"SHUTDOWN_TIMEOUT": "soon"}, "SHUTDOWN_TIMEOUT"},
		{map[string]string{"HTTP_ADDR": "localhost"}, "HTTP_ADDR"},
		{map[string]string{"DATABASE_URL": "mysql://x"}, "DATABASE_URL"},
		{map[string]string{"DB_MAX_CONNS": "-3"}, "DB_MAX_CONNS"},
		{map[string]string{"APP_ENV": "production"}, "DATABASE_URL is required"},
		{map[string]string{"APP_ENV": "production", "REGION": "eu-west1", "DATABASE_URL": "postgres://db/wallet"}, "OPS_API_KEY"},
		{map[string]string{"APP_ENV": "production", "DATABASE_URL": "postgres://db/wallet"}, "REGION is required"},
		{map[string]string{"APP_ENV": "production", "ADMIN_ADDR": ":8080", "HTTP_ADDR": ":8080"}, "ADMIN_ADDR"},
	}
	for _, c := range cases {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"serve"}, envFrom(c.env), &out, &errOut)
		if code != 1 || !strings.Contains(errOut.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want it to name %s", c.env, code, errOut.String(), c.want)
		}
	}
}

func TestMaskedConfiguration(t *testing.T) {
	if got := maskURL("postgres://app:s3cret@db:5432/wallet"); strings.Contains(got, "s3cret") || !strings.Contains(got, "app") {
		t.Fatalf("maskURL = %q", got)
	}
	if mask("k") != "***" || mask("") != "" {
		t.Fatal("mask")
	}
}

// TestServeOnEmbeddedPostgres is `make run` as a newcomer runs it: no configuration, a private
// PostgreSQL under DATA_DIR, migrated and seeded, /readyz 200, a clean stop on the signal, and
// the same data reused on the next start.
func TestServeOnEmbeddedPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	env := envFrom(map[string]string{"DATA_DIR": dataDir, "HTTP_ADDR": "127.0.0.1:0", "LOG_LEVEL": "warn"})
	urlPattern := regexp.MustCompile(`7awel API on (http://127\.0\.0\.1:\d+)`)
	for round := 1; round <= 2; round++ {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errOut lockedBuffer
		done := make(chan int, 1)
		go func() { done <- run(ctx, []string{"serve"}, env, &out, &errOut) }()

		var base string
		deadline := time.Now().Add(90 * time.Second)
		for base == "" && time.Now().Before(deadline) {
			select {
			case code := <-done:
				cancel()
				t.Fatalf("round %d: serve exited %d: %s", round, code, errOut.String())
			case <-time.After(100 * time.Millisecond):
			}
			if m := urlPattern.FindStringSubmatch(out.String()); m != nil {
				base = m[1]
			}
		}
		if base == "" {
			cancel()
			t.Fatalf("round %d: no URL printed: %s / %s", round, out.String(), errOut.String())
		}
		if !strings.Contains(out.String(), "curl -s "+base+"/readyz") {
			t.Errorf("round %d: no curl line: %q", round, out.String())
		}
		res, err := http.Get(base + "/readyz")
		if err != nil || res.StatusCode != 200 {
			cancel()
			t.Fatalf("round %d: readyz: %v %v", round, res, err)
		}
		res.Body.Close()
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("round %d: exit %d after the signal: %s", round, code, errOut.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: serve did not stop", round)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
			t.Fatalf("round %d: the embedded PostgreSQL is still running (postmaster.pid: %v)", round, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dataDir, "postgres", "PG_VERSION")); err != nil {
		t.Fatalf("data directory not kept: %v", err)
	}
}

func TestTuneGC(t *testing.T) {
	beforeLimit, beforePercent := debug.SetMemoryLimit(-1), debug.SetGCPercent(100)
	defer func() { debug.SetMemoryLimit(beforeLimit); debug.SetGCPercent(beforePercent) }()
	debug.SetMemoryLimit(math.MaxInt64)
	tuneGC(zap.NewNop(), envFrom(map[string]string{"GOMEMLIMIT": "200MiB", "GOGC": "100"}))
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("GOMEMLIMIT set, yet the limit changed to %d", got)
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC set, yet the GC percent changed to %d", got)
	}
	tuneGC(zap.NewNop(), envFrom(nil))
	if got := debug.SetMemoryLimit(-1); got != defaultMemoryLimit {
		t.Fatalf("limit = %d, want %d", got, defaultMemoryLimit)
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("GC percent = %d, want %d", got, defaultGCPercent)
	}
}
