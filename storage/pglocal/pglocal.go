// Package pglocal runs a private PostgreSQL server from the PostgreSQL binaries installed on
// the machine, so that `7awel serve` and the tests work without any configuration.
//
// Start initialises a data directory once (initdb: superuser "postgres", trust authentication,
// UTF8, C locale), starts the server on a free loopback port with pg_ctl and waits until it
// accepts connections; Stop shuts it down cleanly. The data survives restarts.
//
// The server listens on 127.0.0.1 only, with no Unix socket (so no socket path length limit and
// no stale socket files), and trusts every connection: it is a development and test database,
// not something to expose. It is not a PostgreSQL installer (it needs the binaries) and not a
// supervisor (it does not restart a server that dies).
//
// As root, which PostgreSQL refuses to run as, the server runs as an unprivileged account; see
// Options.User and Options.DataDir for how that account reaches its data.
package pglocal

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
)

// Superuser is the role initdb creates and every URL connects as.
const Superuser = "postgres"

// DefaultStartTimeout bounds Start when Options.StartTimeout is zero: initdb plus a first
// start on a busy two-core machine takes a few seconds, never a minute.
const DefaultStartTimeout = time.Minute

const (
	logFileName  = "pglocal.log"  // server log (pg_ctl -l), inside the data directory
	confFileName = "pglocal.conf" // settings rewritten on every start
	includeLine  = "include_if_exists = '" + confFileName + "'"
)

// Options configure Start.
type Options struct {
	// DataDir holds the cluster; required (serve uses .data/postgres). It is created and
	// initialised when it has no PG_VERSION file, and reused with its data otherwise.
	//
	// As root the server runs as an unprivileged account, which must be able to traverse every
	// directory above DataDir. When it cannot (DataDir below /root, or below a 0700 directory
	// such as t.TempDir()), a missing or empty DataDir is relocated: the cluster is created in
	// /var/tmp/7awel-pglocal/<hash of the path> (or the same under os.TempDir()) and DataDir
	// becomes a symlink to it, so later starts find the same data. A populated unreachable
	// DataDir is an error that says what to change; it is never moved.
	DataDir string

	// Port to listen on at 127.0.0.1; 0 picks a free one on every start (retrying if another
	// process takes it first), which lets several servers run side by side.
	Port int

	// BinDir is the directory holding initdb, pg_ctl and postgres. Empty searches PATH, then
	// /usr/lib/postgresql/*/bin (the highest version).
	BinDir string

	// User is the account to run PostgreSQL as when this process is root. Empty means
	// "postgres" if that account exists (a PostgreSQL package creates it), else "nobody".
	// Ignored when not root: the server then runs as the current user.
	User string

	// Settings are extra server settings (name → value) applied on every start, for example
	// {"fsync": "off"} for throwaway test clusters.
	Settings map[string]string

	// StartTimeout bounds Start; zero means DefaultStartTimeout.
	StartTimeout time.Duration

	// Logger receives progress and the server's failures; nil logs nothing.
	Logger *zap.Logger

	// pickPort chooses a port when Port is 0; tests replace it to force a bind failure.
	pickPort func() (int, error)
}

// Server is a running private PostgreSQL.
type Server struct {
	bins    binaries
	acct    *account
	dataDir string
	port    int
	log     *zap.Logger
	adopted bool

	mu      sync.Mutex
	stopped bool
}

// Start makes sure a server for opts.DataDir is running and answering, and returns it.
//
// When a server started from the same data directory is already running (a previous run
// crashed, or another process started it), Start adopts it instead of failing: it connects to
// the port recorded in postmaster.pid, ignores opts.Port and opts.Settings, and Stop will shut
// it down. A postmaster.pid left by a server that no longer runs is removed.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.DataDir == "" {
		return nil, errors.New("pglocal: Options.DataDir is required")
	}
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = DefaultStartTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}

	bins, err := findBinaries(opts.BinDir, os.Getenv("PATH"), debianBinGlob)
	if err != nil {
		return nil, fmt.Errorf("pglocal: %w", err)
	}
	acct, err := unprivilegedAccount(opts.User)
	if err != nil {
		return nil, err
	}
	dir, relocated, err := resolveDataDir(opts.DataDir, acct)
	if err != nil {
		return nil, err
	}
	s := &Server{bins: bins, acct: acct, dataDir: dir, log: log.With(zap.String("data_dir", dir))}
	if relocated {
		s.log.Info("data directory relocated: the PostgreSQL account cannot reach the requested path",
			zap.String("requested", opts.DataDir), zap.String("account", acct.name))
	}

	if err := s.initdb(ctx); err != nil {
		return nil, err
	}
	if ok, err := s.adopt(ctx); err != nil {
		return nil, err
	} else if ok {
		return s, nil
	}

	pick := opts.pickPort
	if pick == nil {
		pick = freeLoopbackPort
	}
	const attempts = 5
	for attempt := 1; ; attempt++ {
		port := opts.Port
		if port == 0 {
			if port, err = pick(); err != nil {
				return nil, fmt.Errorf("pglocal: choosing a port: %w", err)
			}
		}
		err := s.start(ctx, port, opts.Settings)
		if err == nil {
			s.port = port
			break
		}
		// Two launchers starting at once: the other one won postmaster.pid.
		if ok, aerr := s.adopt(ctx); aerr != nil {
			return nil, aerr
		} else if ok {
			return s, nil
		}
		var bind *bindError
		if !errors.As(err, &bind) || opts.Port != 0 || attempt == attempts {
			return nil, err
		}
		s.log.Info("port taken before the server bound it; trying another", zap.Int("port", port))
	}
	if err := s.waitReady(ctx); err != nil {
		_ = s.Stop(context.Background())
		return nil, err
	}
	s.log.Info("PostgreSQL started", zap.Int("port", s.port), zap.String("bin_dir", bins.dir))
	return s, nil
}

// URL is the connection URL for database on this server, as the superuser.
func (s *Server) URL(database string) string {
	u := url.URL{
		Scheme:   "postgres",
		User:     url.User(Superuser),
		Host:     net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)),
		Path:     "/" + database,
		RawQuery: "sslmode=disable",
	}
	return u.String()
}

// Port is the loopback TCP port the server listens on.
func (s *Server) Port() int { return s.port }

// DataDir is the directory the cluster lives in: Options.DataDir made absolute, or the
// relocated directory it links to.
func (s *Server) DataDir() string { return s.dataDir }

// LogFile is the server log, appended to across starts.
func (s *Server) LogFile() string { return filepath.Join(s.dataDir, logFileName) }

// CreateDatabase creates the database name unless it exists, so that callers may run it on
// every start.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return fmt.Errorf("pglocal: connecting to create database %s: %w", name, err)
	}
	defer conn.Close(context.Background())
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database
		return nil
	}
	if err != nil {
		return fmt.Errorf("pglocal: creating database %s: %w", name, err)
	}
	return nil
}

// Stop shuts the server down with pg_ctl's fast mode (open sessions are rolled back, then a
// clean checkpoint) and waits until it has exited; ctx bounds the wait. A ctx that is already
// cancelled (the signal context of a shutting-down serve) still gets the server stopped, within
// 30 seconds, because leaving it running is the worse outcome. Stopping twice is not an error.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
	}
	args := []string{"stop", "-D", s.dataDir, "-m", "fast", "-w"}
	if dl, ok := ctx.Deadline(); ok {
		args = append(args, "-t", strconv.Itoa(max(1, int(time.Until(dl).Seconds()))))
	}
	out, err := s.acct.command(ctx, s.bins.pgCtl, args...).CombinedOutput()
	if err != nil && s.running(ctx) {
		return fmt.Errorf("pglocal: pg_ctl stop: %w: %s%s", err, bytes.TrimSpace(out), s.logTail(0))
	}
	s.stopped = true
	s.log.Info("PostgreSQL stopped")
	return nil
}

// initdb initialises the cluster unless PG_VERSION exists. It runs in a sibling directory that
// is renamed into place, so an interrupted initdb never leaves a half-made cluster that a
// later start would take for a real one.
func (s *Server) initdb(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(s.dataDir, "PG_VERSION")); err == nil {
		return nil
	}
	if !isEmptyDir(s.dataDir) {
		return fmt.Errorf("pglocal: %s is neither empty nor a PostgreSQL data directory (no PG_VERSION); "+
			"remove it or choose another data directory", s.dataDir)
	}
	tmp := s.dataDir + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("pglocal: removing leftover %s: %w", tmp, err)
	}
	if err := mkdirForAccount(tmp, s.acct); err != nil {
		return err
	}
	s.log.Info("initialising PostgreSQL data directory")
	out, err := s.acct.command(ctx, s.bins.initdb,
		"-D", tmp, "-U", Superuser, "--auth-local=trust", "--auth-host=trust",
		"--encoding=UTF8", "--no-locale").CombinedOutput()
	if err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("pglocal: initdb: %w: %s", err, tail(out, 20))
	}
	if err := appendInclude(filepath.Join(tmp, "postgresql.conf")); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Remove(s.dataDir); err != nil {
		return fmt.Errorf("pglocal: replacing empty data directory: %w", err)
	}
	if err := os.Rename(tmp, s.dataDir); err != nil {
		return fmt.Errorf("pglocal: moving initialised cluster into place: %w", err)
	}
	return nil
}

// appendInclude makes postgresql.conf read pglocal.conf last, so our settings win.
func appendInclude(conf string) error {
	b, err := os.ReadFile(conf)
	if err != nil {
		return fmt.Errorf("pglocal: reading %s: %w", conf, err)
	}
	if bytes.Contains(b, []byte(includeLine)) {
		return nil
	}
	f, err := os.OpenFile(conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by pglocal: listen address, port and test settings.\n%s\n", includeLine)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("pglocal: appending to %s: %w", conf, err)
	}
	return nil
}

// writeConf writes the settings for this start. No Unix socket: loopback TCP is all the
// launcher's users need, and it avoids both the 107-byte socket path limit and socket lock
// files in shared directories such as /var/run/postgresql, which "nobody" cannot write.
func (s *Server) writeConf(port int, settings map[string]string) error {
	all := map[string]string{
		"listen_addresses":        "127.0.0.1",
		"port":                    strconv.Itoa(port),
		"unix_socket_directories": "",
	}
	for k, v := range settings {
		all[k] = v
	}
	names := make([]string, 0, len(all))
	for k := range all {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Written by pglocal on every start; edits here are overwritten.\n")
	for _, k := range names {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(all[k], "'", "''"))
	}
	path := filepath.Join(s.dataDir, confFileName)
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return fmt.Errorf("pglocal: writing %s: %w", path, err)
	}
	if err := s.acct.chown(path); err != nil {
		return fmt.Errorf("pglocal: %w", err)
	}
	// A data directory initialised by someone else lacks the include line.
	return appendInclude(filepath.Join(s.dataDir, "postgresql.conf"))
}

// bindError marks a start that failed because the port was taken, which Start retries.
type bindError struct{ err error }

func (e *bindError) Error() string { return e.err.Error() }
func (e *bindError) Unwrap() error { return e.err }

// start runs pg_ctl start on port and waits for the postmaster to report itself ready.
func (s *Server) start(ctx context.Context, port int, settings map[string]string) error {
	if err := s.writeConf(port, settings); err != nil {
		return err
	}
	if err := s.removeStalePID(); err != nil {
		return err
	}
	logFile := s.LogFile()
	var offset int64
	if fi, err := os.Stat(logFile); err == nil {
		offset = fi.Size()
	}
	secs := 60
	if dl, ok := ctx.Deadline(); ok {
		secs = max(1, int(time.Until(dl).Seconds()))
	}
	out, err := s.acct.command(ctx, s.bins.pgCtl, "start", "-D", s.dataDir, "-l", logFile,
		"-p", s.bins.postgres, "-w", "-t", strconv.Itoa(secs)).CombinedOutput()
	if err == nil {
		return nil
	}
	logged := s.logTail(offset)
	err = fmt.Errorf("pglocal: pg_ctl start on port %d: %w: %s%s", port, err, bytes.TrimSpace(out), logged)
	if strings.Contains(logged, "could not bind") || strings.Contains(logged, "could not create any TCP/IP sockets") {
		return &bindError{err}
	}
	return err
}

// waitReady pings until the server accepts a query: pg_ctl -w only knows the postmaster
// declared itself ready, not that the port answers from here.
func (s *Server) waitReady(ctx context.Context) error {
	var last error
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(pctx, s.URL("postgres"))
		if err == nil {
			err = conn.Ping(pctx)
			conn.Close(context.Background())
		}
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("pglocal: server on port %d did not accept connections: %w%s", s.port, last, s.logTail(0))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// adopt takes over a server already running from this data directory; ok reports whether
// there was one.
func (s *Server) adopt(ctx context.Context) (ok bool, err error) {
	pid, port, err := readPID(s.dataDir)
	if err != nil || !postmasterAlive(pid, s.dataDir) {
		return false, nil
	}
	s.port = port
	s.adopted = true
	s.log.Info("adopting the PostgreSQL server already running from this data directory",
		zap.Int("pid", pid), zap.Int("port", port))
	if err := s.waitReady(ctx); err != nil {
		return true, err
	}
	return true, nil
}

// Adopted reports whether Start found the server already running rather than starting it.
func (s *Server) Adopted() bool { return s.adopted }

// removeStalePID deletes a postmaster.pid whose process is gone or is no longer a postgres.
// PostgreSQL ignores a lock file whose PID is dead, but not one whose PID the kernel has since
// given to another process, which is common in containers where PIDs are small and reused.
func (s *Server) removeStalePID() error {
	pid, _, err := readPID(s.dataDir)
	if err != nil {
		return nil // no file, or one too broken to name a process: PostgreSQL decides
	}
	if postmasterAlive(pid, s.dataDir) {
		return nil
	}
	s.log.Info("removing stale postmaster.pid", zap.Int("pid", pid))
	if err := os.Remove(filepath.Join(s.dataDir, "postmaster.pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("pglocal: removing stale postmaster.pid: %w", err)
	}
	return nil
}

// running asks pg_ctl status, which exits 0 only while the postmaster runs.
func (s *Server) running(ctx context.Context) bool {
	return s.acct.command(ctx, s.bins.pgCtl, "status", "-D", s.dataDir).Run() == nil
}

// readPID reads the postmaster's PID (line 1) and port (line 4) from postmaster.pid.
func readPID(dataDir string) (pid, port int, err error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, 0, err
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 4 {
		return 0, 0, errors.New("postmaster.pid is incomplete")
	}
	pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pid <= 0 {
		return 0, 0, errors.New("postmaster.pid has no PID")
	}
	port, err = strconv.Atoi(strings.TrimSpace(lines[3]))
	if err != nil {
		return 0, 0, errors.New("postmaster.pid has no port")
	}
	return pid, port, nil
}

// postmasterAlive reports whether pid is a live postgres whose working directory is dataDir
// (a postmaster runs in its data directory). Without /proc it trusts the PID, which errs
// towards adopting rather than starting a second postmaster.
func postmasterAlive(pid int, dataDir string) bool {
	if !postgresAlive(pid) {
		return false
	}
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return true // another user's process, unreadable unless root: trust the name
	}
	real, err := filepath.EvalSymlinks(dataDir)
	return err != nil || cwd == real || cwd == dataDir
}

// postgresAlive reports whether pid is a live, unreaped process named postgres.
func postgresAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) || !procMounted()
	}
	// "pid (comm) state ...": a zombie is a postmaster that died and was not reaped yet.
	st := string(stat)
	open, end := strings.IndexByte(st, '('), strings.LastIndexByte(st, ')')
	if open < 0 || end < open {
		return true
	}
	fields := strings.Fields(st[end+1:])
	return st[open+1:end] == "postgres" && len(fields) > 0 && fields[0] != "Z"
}

func procMounted() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}

// freeLoopbackPort asks the kernel for an unused port. Another process can take it before
// PostgreSQL binds it, which Start handles by retrying.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// logTail returns the end of the server log written after offset, formatted for an error.
func (s *Server) logTail(offset int64) string {
	f, err := os.Open(s.LogFile())
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxBytes = 8 << 10
	if fi, err := f.Stat(); err == nil && fi.Size()-offset > maxBytes {
		offset = fi.Size() - maxBytes
	}
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	t := tail(b, 15)
	if t == "" {
		return ""
	}
	return "\nserver log (" + s.LogFile() + "):\n" + t
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
