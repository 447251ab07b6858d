// Package dbtest gives tests a fresh PostgreSQL database of their own on a real server.
//
// The server is, in order: the one TEST_DATABASE_URL names; else the local PostgreSQL on
// 127.0.0.1:5432 as user postgres, if it answers and may create databases; else a private
// server started with pglocal for this test process and stopped when its last database is
// dropped. Every database is named t7awel_<prefix>_<random>, so test packages running in
// parallel on one server never meet.
//
// Typical use, in TestMain:
//
//	url, drop, err := dbtest.NewDatabase(ctx, "storage")
//	... migrate url, run m.Run(), then drop() ...
//
// or dbtest.ForTest(t) for a database that lives as long as one test. dbtest creates empty
// databases only: it does not migrate (callers run the migrations they are testing) and it is
// not a mock.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/7awel/wallet/storage/pglocal"
)

// EnvURL names the environment variable with the admin URL of the server tests should use.
// It must be a postgres:// URL for a role that may create databases.
const EnvURL = "TEST_DATABASE_URL"

// LocalURL is the conventional local server the developer machines and CI provide.
const LocalURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"

// server is shared by every database of this test process, counted so that a private
// pglocal server stops when the last database is dropped.
var server struct {
	mu   sync.Mutex
	refs int
	url  string
	stop func()
}

// AdminURL returns the admin URL of the test server (see the package comment for which one)
// and a release function to call when done with it. It starts a private server if needed;
// the last release stops it.
func AdminURL(ctx context.Context) (adminURL string, release func(), err error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.refs == 0 {
		server.url, server.stop, err = resolve(ctx, os.Getenv(EnvURL), LocalURL)
		if err != nil {
			return "", nil, err
		}
	}
	server.refs++
	var once sync.Once
	return server.url, func() { once.Do(releaseServer) }, nil
}

func releaseServer() {
	server.mu.Lock()
	defer server.mu.Unlock()
	server.refs--
	if server.refs == 0 && server.stop != nil {
		server.stop()
		server.stop = nil
	}
}

// resolve picks the server: envURL if set, else localURL if it answers, else a private one.
func resolve(ctx context.Context, envURL, localURL string) (string, func(), error) {
	if envURL != "" {
		if err := usable(ctx, envURL); err != nil {
			return "", nil, fmt.Errorf("dbtest: %s: %w", EnvURL, err)
		}
		return envURL, nil, nil
	}
	if usable(ctx, localURL) == nil {
		return localURL, nil, nil
	}
	return startPrivate(ctx)
}

// usable checks that adminURL answers and may create databases.
func usable(ctx context.Context, adminURL string) error {
	if _, err := url.Parse(adminURL); err != nil || !strings.Contains(adminURL, "://") {
		return fmt.Errorf("want a postgres:// URL, got %q", adminURL)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var ok bool
	err = conn.QueryRow(ctx, "SELECT rolsuper OR rolcreatedb FROM pg_roles WHERE rolname = current_user").Scan(&ok)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("role may not create databases")
	}
	return nil
}

// privateRoot holds one directory per test process that had to start its own server.
func privateRoot() string { return filepath.Join(os.TempDir(), "7awel-test-pg") }

// startPrivate starts pglocal in a fresh directory. A fresh cluster per test process costs an
// initdb (a couple of seconds) but needs no coordination between test packages running in
// parallel; it only happens on machines without a server on 5432.
func startPrivate(ctx context.Context) (string, func(), error) {
	root := privateRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	// The server may run as an unprivileged account (when tests run as root); it must be able
	// to pass through.
	if err := os.Chmod(root, 0o755); err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	sweep(ctx, root)
	run, err := os.MkdirTemp(root, "run-")
	if err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	if err := os.Chmod(run, 0o755); err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	// The owner file lets a later test process clean up after one that was killed.
	if err := os.WriteFile(filepath.Join(run, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return "", nil, fmt.Errorf("dbtest: %w", err)
	}
	srv, err := pglocal.Start(ctx, pglocal.Options{
		DataDir: filepath.Join(run, "data"),
		// Throwaway data: skip the disk flushes that dominate small transactions.
		Settings: map[string]string{"fsync": "off", "full_page_writes": "off"},
	})
	if err != nil {
		os.RemoveAll(run)
		return "", nil, fmt.Errorf("dbtest: no %s, nothing answering at %s, and the private server failed: %w",
			EnvURL, "127.0.0.1:5432", err)
	}
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "dbtest: stopping private PostgreSQL: %v\n", err)
			return // keep the directory: its log explains the failure
		}
		os.RemoveAll(run)
	}
	return srv.URL("postgres"), stop, nil
}

// sweep stops and removes the private servers of test processes that died without cleaning
// up (a test binary killed by -timeout does not run its cleanups).
func sweep(ctx context.Context, root string) {
	runs, _ := filepath.Glob(filepath.Join(root, "run-*"))
	for _, run := range runs {
		b, err := os.ReadFile(filepath.Join(run, "owner"))
		if err != nil {
			continue // being created right now, or not ours
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // its owner still runs
		}
		if _, err := os.Stat(filepath.Join(run, "data", "postmaster.pid")); err == nil {
			// Start adopts the orphan, which gives us a Server to stop.
			if srv, err := pglocal.Start(ctx, pglocal.Options{DataDir: filepath.Join(run, "data")}); err == nil {
				if err := srv.Stop(ctx); err != nil {
					continue
				}
			}
		}
		os.RemoveAll(run)
	}
}

// NewDatabase creates an empty database named t7awel_<prefix>_<random> on the test server and
// returns its URL and a drop function, which drops it (closing any connections still open)
// and releases the server. Meant for TestMain, one database per test package; call drop
// before os.Exit, since a private server keeps running until its last database is dropped
// (a later test process sweeps it up if drop never ran).
func NewDatabase(ctx context.Context, prefix string) (dbURL string, drop func() error, err error) {
	adminURL, release, err := AdminURL(ctx)
	if err != nil {
		return "", nil, err
	}
	name, err := databaseName(prefix)
	if err != nil {
		release()
		return "", nil, err
	}
	if err := adminExec(ctx, adminURL, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		release()
		return "", nil, fmt.Errorf("dbtest: creating database %s: %w", name, err)
	}
	u, _ := url.Parse(adminURL) // usable checked it parses
	u.Path = "/" + name
	drop = func() error {
		defer release()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		return dropDatabase(ctx, adminURL, name)
	}
	return u.String(), drop, nil
}

// ForTest returns the URL of a new database that is dropped when t ends.
func ForTest(t testing.TB) string {
	t.Helper()
	dbURL, drop, err := NewDatabase(context.Background(), t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := drop(); err != nil {
			t.Errorf("dbtest: %v", err)
		}
	})
	return dbURL
}

// dropDatabase drops name, forcing out open connections (PostgreSQL 13+); CockroachDB, which
// a TEST_DATABASE_URL may point at, has no FORCE but no such wait either.
func dropDatabase(ctx context.Context, adminURL, name string) error {
	err := adminExec(ctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42601" { // syntax_error: no WITH (FORCE)
		err = adminExec(ctx, adminURL, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" CASCADE")
	}
	if err != nil {
		return fmt.Errorf("dbtest: dropping database %s: %w", name, err)
	}
	return nil
}

func adminExec(ctx context.Context, adminURL, sql string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, sql)
	return err
}

// databaseName makes t7awel_<prefix>_<16 hex>: lower case, [a-z0-9_] only and within
// PostgreSQL's 63-byte identifier limit, so it never needs quoting by hand.
func databaseName(prefix string) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToLower(prefix) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	p := strings.Trim(b.String(), "_")
	if len(p) > 38 {
		p = p[:38]
	}
	random := make([]byte, 8)
	if _, err := rand.Read(random); err != nil {
		return "", fmt.Errorf("dbtest: %w", err)
	}
	if p == "" {
		return "t7awel_" + hex.EncodeToString(random), nil
	}
	return "t7awel_" + p + "_" + hex.EncodeToString(random), nil
}
