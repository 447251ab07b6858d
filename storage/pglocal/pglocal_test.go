package pglocal

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"
)

// testSettings make throwaway clusters cheap. fsync=off loses nothing when only processes
// crash (the page cache survives), so the crash test still means something; asynchronous
// commit would lose commits held in shared memory, so it is not here.
var testSettings = map[string]string{"fsync": "off", "shared_buffers": "16MB"}

// reachableDir is a fresh directory every account can traverse (t.TempDir is 0700, which is
// exactly what the relocation test wants and the others do not).
func reachableDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "7awel-pglocal-test-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// startServer starts a server and registers its stop, so no test leaves one running.
func startServer(t *testing.T, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	if opts.Settings == nil {
		opts.Settings = testSettings
	}
	s, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop in cleanup: %v", err)
		}
	})
	return s
}

func exec1(t *testing.T, s *Server, sql string, args ...any) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect to %s: %v", s.URL("postgres"), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t *testing.T, s *Server, sql string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

// assertStopped checks a clean shutdown: no lock file, pg_ctl agrees, the port is closed.
func assertStopped(t *testing.T, s *Server) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(s.DataDir(), "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("postmaster.pid still present after Stop (stat error %v)", err)
	}
	err := s.acct.command(context.Background(), s.bins.pgCtl, "status", "-D", s.DataDir()).Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("pg_ctl status after Stop: %v, want exit status 3 (not running)", err)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port())), time.Second); err == nil {
		c.Close()
		t.Errorf("port %d still accepts connections after Stop", s.Port())
	}
	// The log must say the shutdown was orderly, not a crash the next start recovers from.
	b, _ := os.ReadFile(s.LogFile())
	if !strings.Contains(string(b), "database system is shut down") {
		t.Errorf("server log does not record a clean shutdown:\n%s", tail(b, 10))
	}
}

// postmasterUID reads the real uid of the running postmaster from /proc.
func postmasterUID(t *testing.T, s *Server) int {
	t.Helper()
	pid, _, err := readPID(s.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatal("no Uid line in /proc status")
	return -1
}

func TestStartRestartKeepsData(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(reachableDir(t), "pg")
	opts := Options{DataDir: dataDir}

	s := startServer(t, opts)
	if s.DataDir() != dataDir {
		t.Errorf("DataDir = %s, want %s (a reachable directory is not relocated)", s.DataDir(), dataDir)
	}
	if got := queryString(t, s, "SELECT current_user"); got != Superuser {
		t.Errorf("current_user = %q, want %q", got, Superuser)
	}
	if got := queryString(t, s, "SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = 'postgres'"); got != "UTF8" {
		t.Errorf("encoding = %q, want UTF8", got)
	}
	if got := queryString(t, s, "SHOW listen_addresses"); got != "127.0.0.1" {
		t.Errorf("listen_addresses = %q, want loopback only", got)
	}
	if got := queryString(t, s, "SHOW fsync"); got != "off" {
		t.Errorf("fsync = %q, want the Settings value off", got)
	}
	if os.Geteuid() == 0 {
		if uid := postmasterUID(t, s); uid == 0 || uid != int(s.acct.uid) {
			t.Errorf("postmaster runs as uid %d, want the unprivileged account %s (uid %d)", uid, s.acct.name, s.acct.uid)
		}
	}
	exec1(t, s, "CREATE TABLE kept (v text)")
	exec1(t, s, "INSERT INTO kept VALUES ('survives restarts')")
	if err := s.CreateDatabase(context.Background(), "wallet"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase(context.Background(), "wallet"); err != nil {
		t.Errorf("CreateDatabase on an existing database: %v, want nil", err)
	}

	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertStopped(t, s)
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	s2 := startServer(t, opts)
	if s2.Adopted() {
		t.Error("second start adopted a server, but the first was stopped")
	}
	if got := queryString(t, s2, "SELECT v FROM kept"); got != "survives restarts" {
		t.Errorf("after restart kept.v = %q", got)
	}
	if got := queryString(t, s2, "SELECT count(*)::text FROM pg_database WHERE datname = 'wallet'"); got != "1" {
		t.Errorf("database wallet count after restart = %s, want 1", got)
	}
	if err := s2.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	assertStopped(t, s2)
}

// TestStartRelocatesUnreachableDataDir covers a checkout under /root run as root: the
// account cannot traverse a 0700 directory, so the cluster moves and a symlink leads to it.
func TestStartRelocatesUnreachableDataDir(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("relocation only happens as root")
	}
	private := t.TempDir() // its parent is 0700 and root's
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(private, "checkout", ".data", "postgres")

	s := startServer(t, Options{DataDir: dataDir})
	t.Cleanup(func() { os.RemoveAll(s.DataDir()) }) // runs after Stop: cleanups are LIFO
	if s.DataDir() == dataDir {
		t.Fatalf("DataDir = requested %s, want a relocated directory", dataDir)
	}
	if target, err := os.Readlink(dataDir); err != nil || target != s.DataDir() {
		t.Errorf("requested path links to %q (%v), want %s", target, err, s.DataDir())
	}
	exec1(t, s, "CREATE TABLE kept (v int)")
	exec1(t, s, "INSERT INTO kept VALUES (7)")
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertStopped(t, s)

	s2 := startServer(t, Options{DataDir: dataDir})
	if s2.DataDir() != s.DataDir() {
		t.Errorf("restart used %s, want the same relocated directory %s", s2.DataDir(), s.DataDir())
	}
	if got := queryString(t, s2, "SELECT v::text FROM kept"); got != "7" {
		t.Errorf("after restart kept.v = %q, want 7", got)
	}

	// A populated directory the account cannot reach is refused, not silently moved.
	populated := filepath.Join(private, "populated")
	if err := os.MkdirAll(populated, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(populated, "PG_VERSION"), []byte("15\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Start(context.Background(), Options{DataDir: populated})
	if err == nil || !strings.Contains(err.Error(), "chmod o+x") {
		t.Errorf("Start on a populated unreachable directory: %v, want an error explaining the fix", err)
	}
}

// TestStartAfterCrash kills the postmaster outright, then expects the next Start to recover,
// and then fakes a postmaster.pid whose PID now belongs to a live process that is not postgres.
func TestStartAfterCrash(t *testing.T) {
	t.Parallel()
	opts := Options{DataDir: filepath.Join(reachableDir(t), "pg")}
	s := startServer(t, opts)
	exec1(t, s, "CREATE TABLE kept (v int)")
	exec1(t, s, "INSERT INTO kept VALUES (1)")

	pid, _, err := readPID(s.DataDir())
	if err != nil {
		t.Fatal(err)
	}
	children := childPIDs(pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// The backends notice their postmaster died and exit; until they do, the old shared
	// memory is in use and a new postmaster would rightly refuse to start.
	waitGone(t, append(children, pid))
	if _, err := os.Stat(filepath.Join(s.DataDir(), "postmaster.pid")); err != nil {
		t.Fatalf("a killed postmaster should leave postmaster.pid behind: %v", err)
	}

	s2 := startServer(t, opts)
	if s2.Adopted() {
		t.Error("Start adopted a dead server")
	}
	if got := queryString(t, s2, "SELECT v::text FROM kept"); got != "1" {
		t.Errorf("after crash recovery kept.v = %q, want 1", got)
	}
	if err := s2.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// PID reuse: the lock file names a live process that is not postgres. It runs as the
	// server's account, so PostgreSQL's own check (kill with signal 0) finds it alive and
	// refuses to start unless the launcher removes the stale file.
	impostor := s.acct.command(context.Background(), "sleep", "300")
	if err := impostor.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { impostor.Process.Kill(); impostor.Wait() }()
	lock := fmt.Sprintf("%d\n%s\n0\n%d\n\n127.0.0.1\n0 0\nready\n", impostor.Process.Pid, s.DataDir(), s2.Port())
	if err := os.WriteFile(filepath.Join(s.DataDir(), "postmaster.pid"), []byte(lock), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.acct.chown(filepath.Join(s.DataDir(), "postmaster.pid")); err != nil {
		t.Fatal(err)
	}
	s3 := startServer(t, opts)
	if s3.Adopted() {
		t.Error("Start adopted a postmaster.pid naming a non-postgres process")
	}
	if got := queryString(t, s3, "SELECT v::text FROM kept"); got != "1" {
		t.Errorf("after stale lock kept.v = %q, want 1", got)
	}
}

// TestStartAdoptsRunningServer: a second Start on a running data directory reuses it, and
// Stop on either stops it, even with a cancelled context.
func TestStartAdoptsRunningServer(t *testing.T) {
	t.Parallel()
	opts := Options{DataDir: filepath.Join(reachableDir(t), "pg")}
	s1 := startServer(t, opts)
	exec1(t, s1, "CREATE TABLE seen (v int)")

	s2 := startServer(t, opts)
	if !s2.Adopted() || s2.Port() != s1.Port() {
		t.Fatalf("second Start: adopted=%v port=%d, want adopted on port %d", s2.Adopted(), s2.Port(), s1.Port())
	}
	exec1(t, s2, "INSERT INTO seen VALUES (1)")
	// serve stops the server with its signal context, which is cancelled by then.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s2.Stop(cancelled); err != nil {
		t.Fatalf("Stop with a cancelled context: %v", err)
	}
	assertStopped(t, s1)
}

// TestStartRetriesTakenPort makes the first port choice one that is already bound, so
// PostgreSQL really fails to bind and Start must try another port.
func TestStartRetriesTakenPort(t *testing.T) {
	t.Parallel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	takenPort := taken.Addr().(*net.TCPAddr).Port

	var calls int
	opts := Options{
		DataDir: filepath.Join(reachableDir(t), "pg"),
		pickPort: func() (int, error) {
			calls++
			if calls == 1 {
				return takenPort, nil
			}
			return freeLoopbackPort()
		},
	}
	s := startServer(t, opts)
	if calls < 2 || s.Port() == takenPort {
		t.Errorf("port picks = %d, port = %d (taken %d); want a retry onto another port", calls, s.Port(), takenPort)
	}
	queryString(t, s, "SELECT 1::text")

	// An explicit port is not silently replaced.
	s.Stop(context.Background())
	_, err = Start(context.Background(), Options{DataDir: opts.DataDir, Port: takenPort, Settings: testSettings})
	if err == nil || !strings.Contains(err.Error(), "could not bind") {
		t.Errorf("Start on an explicit taken port: %v, want the bind failure from the server log", err)
	}
}

// TestConcurrentStarts: two launchers (two test packages, say) start at once on different
// data directories and must end up on different ports.
func TestConcurrentStarts(t *testing.T) {
	t.Parallel()
	base := reachableDir(t)
	servers := make([]*Server, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			servers[i], errs[i] = Start(context.Background(), Options{
				DataDir: filepath.Join(base, strconv.Itoa(i)), Settings: testSettings, Logger: zaptest.NewLogger(t)})
		}()
	}
	wg.Wait()
	for i, s := range servers {
		if errs[i] != nil {
			t.Fatalf("Start %d: %v", i, errs[i])
		}
		t.Cleanup(func() { s.Stop(context.Background()) })
	}
	if servers[0].Port() == servers[1].Port() {
		t.Fatalf("both servers report port %d", servers[0].Port())
	}
	for _, s := range servers {
		exec1(t, s, "CREATE TABLE t (v int)")
	}
}

func TestNoBinaries(t *testing.T) {
	t.Parallel()
	empty := t.TempDir()
	_, err := Start(context.Background(), Options{DataDir: filepath.Join(empty, "pg"), BinDir: empty})
	if !errors.Is(err, ErrNoBinaries) {
		t.Fatalf("Start with no binaries: %v, want ErrNoBinaries", err)
	}
	for _, want := range []string{"apt-get install postgresql", "DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(empty, "pg")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed start created the data directory (stat: %v)", err)
	}
}

// TestFindBinaries checks the search order with stand-in files: only lookup is under test
// here, the real binaries are exercised by every other test.
func TestFindBinaries(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	mk := func(dir string, names ...string) string {
		d := filepath.Join(root, dir)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(d, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	all := []string{"initdb", "pg_ctl", "postgres"}
	mk("lib/postgresql/9.6/bin", all...)
	v16 := mk("lib/postgresql/16/bin", all...)
	mk("lib/postgresql/17/bin", "initdb", "pg_ctl") // incomplete: skipped
	onPath := mk("path", all...)
	partial := mk("partial", "pg_ctl")
	notExec := mk("noexec")
	for _, n := range all {
		if err := os.WriteFile(filepath.Join(notExec, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	glob := filepath.Join(root, "lib/postgresql/*/bin")

	tests := []struct {
		name    string
		binDir  string
		path    string
		want    string
		wantErr bool
	}{
		{name: "PATH first", path: partial + ":" + onPath, want: onPath},
		{name: "highest version, numerically", path: partial, want: v16},
		{name: "not executable is not found", path: notExec, want: v16},
		{name: "explicit dir", binDir: onPath, path: partial, want: onPath},
		{name: "explicit dir without binaries", binDir: partial, path: onPath, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := findBinaries(tt.binDir, tt.path, glob)
			if tt.wantErr {
				if !errors.Is(err, ErrNoBinaries) {
					t.Errorf("err = %v, want ErrNoBinaries", err)
				}
				return
			}
			if err != nil || b.dir != tt.want {
				t.Errorf("found %q (%v), want %q", b.dir, err, tt.want)
			}
		})
	}
	if _, err := findBinaries("", partial, filepath.Join(root, "nothing/*/bin")); !errors.Is(err, ErrNoBinaries) {
		t.Errorf("nothing anywhere: %v, want ErrNoBinaries", err)
	}
}

// childPIDs lists the processes whose parent is pid.
func childPIDs(pid int) []int {
	var kids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// Fields after the parenthesised command: state, ppid, ...
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			kids = append(kids, p)
		}
	}
	return kids
}

func waitGone(t *testing.T, pids []int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, pid := range pids {
		for postgresAlive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still alive", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
