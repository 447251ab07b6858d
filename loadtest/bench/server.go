package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// apiServer is the 7awel binary serving for the benchmark, as `7awel serve` runs in
// development: its own database on the same PostgreSQL as pgbench's, migrated and seeded at
// start, the API and the admin listener (/metrics, /debug/pprof) on loopback ports.
type apiServer struct {
	cmd     *exec.Cmd
	Base    string
	Admin   string
	OpsKey  string
	LogPath string
	exited  chan error
}

const benchOpsKey = "bench-ops-key"

// freePort asks the kernel for a free loopback port. Another process could take it before
// the server binds it; the server would then fail to start, loudly.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startServer(ctx context.Context, binary, databaseURL, dir string, extraEnv []string) (*apiServer, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	admin, err := freePort()
	if err != nil {
		return nil, err
	}
	logPath := filepath.Join(dir, "server.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(binary, "serve")
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + os.Getenv("HOME"),
		"APP_ENV=development",
		"DATABASE_URL=" + databaseURL,
		"HTTP_ADDR=" + addr,
		"ADMIN_ADDR=" + admin,
		"OPS_API_KEY=" + benchOpsKey,
		"DATA_DIR=" + filepath.Join(dir, "data"),
		"LOG_LEVEL=warn",
		"AUTO_MIGRATE=true",
		// Setup signs hundreds of users up from 127.0.0.1.
		"OTP_PER_ADDRESS_HOUR=1000000",
	}, extraEnv...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	s := &apiServer{cmd: cmd, Base: "http://" + addr, Admin: "http://" + admin, OpsKey: benchOpsKey,
		LogPath: logPath, exited: make(chan error, 1)}
	go func() { s.exited <- cmd.Wait(); logFile.Close() }()

	// Ready when /readyz answers 200: migrated, seeded, database reachable.
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-s.exited:
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("the server exited before it was ready (%v):\n%s", err, tail(log, 3000))
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		res, err := http.Get(s.Base + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("the server was not ready after 90 s; see " + logPath)
		}
	}
}

func (s *apiServer) Pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM and waits for the drain; SIGKILL after 30 s.
func (s *apiServer) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
