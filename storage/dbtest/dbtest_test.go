package dbtest

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/7awel/wallet/storage/pglocal"
)

func connect(t *testing.T, dbURL string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("connect %s: %v", dbURL, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func databaseExists(t *testing.T, adminURL, name string) bool {
	t.Helper()
	var n int
	err := connect(t, adminURL).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_database WHERE datname = $1", name).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func dbName(t *testing.T, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func TestNewDatabaseCreatesAndDrops(t *testing.T) {
	ctx := context.Background()
	adminURL, release, err := AdminURL(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	dbURL, drop, err := NewDatabase(ctx, "dbtest")
	if err != nil {
		t.Fatal(err)
	}
	other, dropOther, err := NewDatabase(ctx, "dbtest")
	if err != nil {
		t.Fatal(err)
	}
	defer dropOther()
	name := dbName(t, dbURL)
	if name == dbName(t, other) || !strings.HasPrefix(name, "t7awel_dbtest_") {
		t.Fatalf("databases %q and %q: want two distinct t7awel_dbtest_* names", name, dbName(t, other))
	}

	conn := connect(t, dbURL)
	var current string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&current); err != nil {
		t.Fatal(err)
	}
	if current != name {
		t.Errorf("connected to %q, want %q", current, name)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v int)"); err != nil {
		t.Fatal(err)
	}
	if !databaseExists(t, adminURL, name) {
		t.Fatal("database not visible from the admin connection")
	}

	// conn is still open: a pool a test forgot to close must not make the drop hang or fail.
	if err := drop(); err != nil {
		t.Fatalf("drop: %v", err)
	}
	if databaseExists(t, adminURL, name) {
		t.Errorf("database %s still exists after drop", name)
	}
	if !databaseExists(t, adminURL, dbName(t, other)) {
		t.Errorf("dropping %s also dropped %s", name, dbName(t, other))
	}
	if err := drop(); err != nil {
		t.Errorf("second drop: %v", err)
	}
}

func TestForTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		dbURL := ForTest(t)
		name = dbName(t, dbURL)
		if !strings.HasPrefix(name, "t7awel_testfortest_inner_") {
			t.Errorf("name %q does not follow the test name", name)
		}
		connect(t, dbURL)
	})
	adminURL, release, err := AdminURL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if databaseExists(t, adminURL, name) {
		t.Errorf("database %s outlived its test", name)
	}
}

// TestPrivateServer forces the fallback: no TEST_DATABASE_URL and nothing on the "local" URL.
func TestPrivateServer(t *testing.T) {
	ctx := context.Background()
	closed := "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"
	adminURL, stop, err := resolve(ctx, "", closed)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			stop()
		}
	}()
	if stop == nil || adminURL == closed || adminURL == LocalURL {
		t.Fatalf("resolve returned %q (stop set: %v), want a private server", adminURL, stop != nil)
	}
	if err := adminExec(ctx, adminURL, "CREATE DATABASE private_probe"); err != nil {
		t.Fatal(err)
	}
	if err := dropDatabase(ctx, adminURL, "private_probe"); err != nil {
		t.Fatal(err)
	}

	u, _ := url.Parse(adminURL)
	runs, _ := filepath.Glob(filepath.Join(privateRoot(), "run-*"))
	stop()
	stopped = true
	if c, err := net.DialTimeout("tcp", u.Host, time.Second); err == nil {
		c.Close()
		t.Errorf("private server at %s still answers after stop", u.Host)
	}
	for _, run := range runs {
		owner, _ := os.ReadFile(filepath.Join(run, "owner"))
		if string(owner) == strconv.Itoa(os.Getpid()) {
			t.Errorf("run directory %s left behind", run)
		}
	}
}

func TestResolveEnv(t *testing.T) {
	ctx := context.Background()
	if _, _, err := resolve(ctx, "host=127.0.0.1 user=postgres", LocalURL); err == nil || !strings.Contains(err.Error(), EnvURL) {
		t.Errorf("keyword/value TEST_DATABASE_URL: %v, want an error naming %s", err, EnvURL)
	}
	down := "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2"
	if _, _, err := resolve(ctx, down, LocalURL); err == nil {
		t.Error("unreachable TEST_DATABASE_URL accepted; it must not silently fall back")
	}
	if usable(ctx, LocalURL) != nil {
		t.Skip("no server on 127.0.0.1:5432 to stand in for TEST_DATABASE_URL")
	}
	got, stop, err := resolve(ctx, LocalURL, down)
	if err != nil || got != LocalURL || stop != nil {
		t.Errorf("resolve with TEST_DATABASE_URL = (%q, stop %v, %v), want it as is", got, stop != nil, err)
	}
}

// TestSweep leaves a private server behind as a killed test process would, then expects the
// next start to stop it and remove its directory.
func TestSweep(t *testing.T) {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "7awel-sweep-test-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	if err := os.Chmod(root, 0o755); err != nil {
		t.Fatal(err)
	}
	run := filepath.Join(root, "run-orphan")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(run, "owner"), []byte(strconv.Itoa(dead.Process.Pid)), 0o644); err != nil {
		t.Fatal(err)
	}
	srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(run, "data"), Settings: map[string]string{"fsync": "off"}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(ctx) // only matters if sweep fails

	live := filepath.Join(root, "run-live")
	if err := os.Mkdir(live, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(live, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}

	sweep(ctx, root)
	if _, err := os.Stat(run); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan run directory still there (stat: %v)", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(srv.Port())), time.Second); err == nil {
		c.Close()
		t.Errorf("orphan server on port %d still answers", srv.Port())
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("sweep removed the directory of a live process: %v", err)
	}
}

func TestDatabaseName(t *testing.T) {
	valid := regexp.MustCompile(`^t7awel_([a-z0-9_]+_)?[0-9a-f]{16}$`)
	tests := []struct {
		prefix     string
		wantPrefix string
	}{
		{"storage", "t7awel_storage_"},
		{"TestTransfer/Concurrent-Payments", "t7awel_testtransfer_concurrent_payments_"},
		{"", "t7awel_"},
		{"///", "t7awel_"},
		{strings.Repeat("x", 200), "t7awel_" + strings.Repeat("x", 38) + "_"},
	}
	for _, tt := range tests {
		got, err := databaseName(tt.prefix)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(got, tt.wantPrefix) || !valid.MatchString(got) || len(got) > 63 {
			t.Errorf("databaseName(%q) = %q, want %s<16 hex>, at most 63 bytes", tt.prefix, got, tt.wantPrefix)
		}
	}
	a, _ := databaseName("same")
	b, _ := databaseName("same")
	if a == b {
		t.Errorf("two names for the same prefix are equal: %s", a)
	}
}
