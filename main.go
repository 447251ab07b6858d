// Command 7awel is the backend of the 7awel mobile wallet: the HTTP API (serve), its schema
// (migrate), reference data (seed), and the operators' tools.
//
// Configuration comes from environment variables, with flags for what people type; run
// `7awel help` for the list. With no DATABASE_URL, serve starts a private PostgreSQL under
// DATA_DIR and runs in development mode.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/7awel/wallet/server"
	"github.com/7awel/wallet/storage"
	"github.com/7awel/wallet/storage/pglocal"
)

// version is stamped at build time: -ldflags "-X main.version=…".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `7awel — the 7awel wallet backend

Usage:
  7awel serve [-addr host:port] [-admin-addr host:port] [-region r] [-data-dir dir] [-log-level l]
  7awel migrate up | down [N] | version
  7awel seed
  7awel reconcile   prove every balance equals its ledger entries; exits 1 on a difference
  7awel help

Environment:
  DATABASE_URL      postgres:// URL of PostgreSQL or CockroachDB; empty starts a private
                    PostgreSQL under DATA_DIR (development only)
  APP_ENV           development (default) or production
  HTTP_ADDR         API listen address (default 127.0.0.1:8080; :8080 in production)
  ADMIN_ADDR        /metrics and /debug/pprof listen address (default none in development, where
                    /metrics is on the API port; :9090 in production)
  REGION            the region this process serves from (default PRIMARY_REGION in development)
  REGIONS           the deployment's regions (default me-central1,eu-west1,us-east1)
  PRIMARY_REGION    the deployment's primary region (default me-central1)
  REGION_COUNTRIES  country → home region overrides, e.g. "AE=me-central1,FR=eu-west1"
  OPS_API_KEY       key for /ops/* (X-Ops-Key); required in production
  LOG_LEVEL         debug, info (default), warn, error
  DATA_DIR          embedded PostgreSQL and development keys (default .data)
  SHUTDOWN_TIMEOUT  how long in-flight requests may finish on SIGTERM (default 20s)
  DB_MAX_CONNS      pool size (default: pgx's, max(4, cores))
  AUTO_MIGRATE      migrate and seed at start (default true in development, false in production)
  JOB_INTERVAL      how often a pod expires cash-outs and purges past-retention rows (default 1m)
  GOMEMLIMIT        the Go heap's soft limit (default here 80MiB; Kubernetes sets it from the pod)
  GOGC              the Go collector's heap growth between collections (default here 400)
  FEE_SCHEDULE      fees per movement type and asset, e.g. "transfer=0.10+1%,cash_out/EGP=5"
                    (default: no fees)

Keys and secrets (base64; production refuses to serve without each; development generates them
once into DATA_DIR/dev-keys.json, mode 0600):
  PII_KEYS          PII key ring "id:base64,id2:base64" (32-byte AES-256 keys)
  PII_PRIMARY_KEY   the ring id new ciphertexts use
  BLIND_INDEX_KEY   HMAC key of the phone/email blind indexes (>= 32 bytes)
  PIN_PEPPER        HMAC key over PINs before argon2id (>= 32 bytes)
  OTP_HMAC_KEY      HMAC key of stored OTP codes (>= 32 bytes)
  JWT_SIGNING_KEY   Ed25519 seed (32 bytes) signing access tokens
  SMS_WEBHOOK_URL   HTTP endpoint receiving {"to","message"} (production; development logs instead)

Auth throttles (can be raised, never switched off):
  OTP_TTL (5m, at most 10m)  OTP_RESEND_COOLDOWN (60s, doubling)  OTP_MAX_COOLDOWN (32m)
  OTP_DAILY_MAX (5 per phone)  OTP_PER_ADDRESS_HOUR (10; 100000 in development)
  AVAILABILITY_PER_HOUR (30 per address and device; 100000 in development)
  CLIENT_IP_HEADER  header a trusted proxy sets with the client address (e.g. X-Forwarded-For)
`

// run is main without the process: arguments, environment and output are passed in, so tests
// drive it like a user would.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	fs := flag.NewFlagSet("7awel "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var err error
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve":
		err = withConfig(fs, rest, getenv, stderr, func(c *config, log *zap.Logger) error {
			return serve(ctx, c, log, stdout)
		})
	case "migrate":
		err = withConfig(fs, rest, getenv, stderr, func(c *config, log *zap.Logger) error {
			return migrateCmd(ctx, c, log, fs.Args(), stdout)
		})
	case "reconcile":
		err = withConfig(fs, rest, getenv, stderr, func(c *config, log *zap.Logger) error {
			return reconcileCmd(ctx, c, log, stdout)
		})
	case "seed":
		err = withConfig(fs, rest, getenv, stderr, func(c *config, log *zap.Logger) error {
			return withDatabase(ctx, c, log, func(url string) error {
				db, err := storage.Open(ctx, url, c.regions, storage.Options{Logger: log})
				if err != nil {
					return err
				}
				defer db.Close()
				if err := db.Seed(ctx); err != nil {
					return err
				}
				fmt.Fprintln(stdout, "seeded")
				return nil
			})
		})
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "7awel:", err)
		return 1
	}
	return 0
}

func withConfig(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer,
	fn func(*config, *zap.Logger) error) error {
	c, err := loadConfig(fs, args, getenv)
	if err != nil {
		return err
	}
	log := newLogger(c.LogLevel, stderr).With(zap.String("region", c.Region))
	defer func() { _ = log.Sync() }()
	return fn(c, log)
}

// withDatabase calls fn with the configured database URL or, without one, with a private
// PostgreSQL started under DATA_DIR and stopped when fn returns.
func withDatabase(ctx context.Context, c *config, log *zap.Logger, fn func(url string) error) error {
	if c.DatabaseURL != "" {
		return fn(c.DatabaseURL)
	}
	dir, err := filepath.Abs(filepath.Join(c.DataDir, "postgres"))
	if err != nil {
		return err
	}
	log.Info("starting the embedded PostgreSQL", zap.String("data_dir", dir))
	pg, err := pglocal.Start(ctx, pglocal.Options{DataDir: dir, Logger: log})
	if err != nil {
		return fmt.Errorf("embedded PostgreSQL: %w", err)
	}
	defer func() {
		stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if err := pg.Stop(stopCtx); err != nil {
			log.Error("stopping the embedded PostgreSQL", zap.Error(err))
		}
	}()
	if err := pg.CreateDatabase(ctx, "wallet"); err != nil {
		return err
	}
	return fn(pg.URL("wallet"))
}

func migrateCmd(ctx context.Context, c *config, log *zap.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("migrate: want up, down [N] or version")
	}
	return withDatabase(ctx, c, log, func(url string) error {
		switch args[0] {
		case "up":
			if err := storage.MigrateUp(ctx, url, c.regions); err != nil {
				return err
			}
		case "down":
			steps := 0
			if len(args) > 1 {
				n, err := strconv.Atoi(args[1])
				if err != nil || n <= 0 {
					return fmt.Errorf("migrate down: N=%q: want a positive number", args[1])
				}
				steps = n
			}
			if err := storage.MigrateDown(ctx, url, steps); err != nil {
				return err
			}
		case "version":
		default:
			return fmt.Errorf("migrate: unknown action %q: want up, down [N] or version", args[0])
		}
		v, err := storage.ReadSchemaVersion(ctx, url)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "schema version %d (cockroachdb overlay %d), dirty=%t\n", v.Shared, v.Overlay, v.Dirty)
		return nil
	})
}

func serve(ctx context.Context, c *config, log *zap.Logger, stdout io.Writer) error {
	log.Info("configuration", c.logFields()...)
	tuneGC(log, os.Getenv)
	return withDatabase(ctx, c, log, func(url string) error {
		if c.AutoMigrate {
			if err := storage.MigrateUp(ctx, url, c.regions); err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
		}
		keys, jwtKey, err := c.authKeys()
		if err != nil {
			return err
		}
		log.Info("keys", zap.Strings("pii_key_ids", keys.KeyIDs()))
		var sms server.SMSSender = server.DevSMS{Log: log.Named("sms")}
		if c.secrets.SMSWebhook != "" {
			if sms, err = server.NewWebhookSMS(c.secrets.SMSWebhook); err != nil {
				return err
			}
		}
		registry := server.NewRegistry(c.Region, version)
		db, err := storage.Open(ctx, url, c.regions, storage.Options{
			MaxConns:   int32(c.DBMaxConns),
			Registerer: server.RegionRegisterer(registry, c.Region),
			Logger:     log,
			Keys:       keys,
		})
		if err != nil {
			return err
		}
		defer db.Close()
		if c.AutoMigrate {
			if err := db.Seed(ctx); err != nil {
				return fmt.Errorf("seed: %w", err)
			}
		}
		log.Info("database", zap.String("engine", db.Engine().String()))

		api := server.New(server.Config{
			Region:          c.Region,
			Development:     c.development(),
			OpsAPIKey:       c.OpsAPIKey,
			MetricsOnPublic: metricsOnPublic(c),
			JWTKey:          jwtKey,
			SMS:             sms,
			ClientIPHeader:  c.ClientIPHeader,
			Fees:            c.fees,
			Limits: server.AuthLimits{
				OTP: storage.OTPLimits{TTL: c.OTPTTL, Cooldown: c.OTPCooldown, MaxCooldown: c.OTPMaxCooldown,
					DailyMax: c.OTPDailyMax},
				OTPPerAddressHour:   c.OTPPerAddressHour,
				AvailabilityPerHour: c.AvailabilityPerHour,
			},
		}, db, registry, log)
		go runJobs(ctx, db, c.Region, log.Named("jobs"), c.JobInterval)
		return listenAndServe(ctx, c, log, api, stdout)
	})
}

// listenAndServe runs the API (and the admin listener) until ctx ends, then drains: stop
// accepting, let in-flight requests finish within SHUTDOWN_TIMEOUT.
func listenAndServe(ctx context.Context, c *config, log *zap.Logger, api *server.Server, stdout io.Writer) error {
	ln, err := net.Listen("tcp", c.HTTPAddr)
	if err != nil {
		return fmt.Errorf("HTTP_ADDR=%s: %w", c.HTTPAddr, err)
	}
	servers := []*http.Server{newHTTPServer(api, log)}
	listeners := []net.Listener{ln}
	if c.AdminAddr != "" {
		aln, err := net.Listen("tcp", c.AdminAddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("ADMIN_ADDR=%s: %w", c.AdminAddr, err)
		}
		servers = append(servers, newHTTPServer(adminHandler(api), log))
		listeners = append(listeners, aln)
		log.Info("admin listening", zap.String("addr", aln.Addr().String()))
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(listeners[i]) }()
	}
	base := "http://" + ln.Addr().String()
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	fmt.Fprintf(stdout, "7awel API on %s (region %s, %s)\ntry: curl -s %s/readyz\n", base, c.Region, c.Env, base)

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", zap.Duration("timeout", c.ShutdownTimeout))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), c.ShutdownTimeout)
	defer cancel()
	var firstErr error
	for _, srv := range servers {
		if err := srv.Shutdown(shutdownCtx); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

// defaultMemoryLimit is the Go heap's soft limit when GOMEMLIMIT is not set. argon2id takes
// 19 MiB per PIN hash (two at a time at most), all of it garbage a moment later; without a limit
// the collector lets the heap grow to twice the live data first, and sign-up bursts push RSS
// past what a 128 MiB pod should hold. Near the limit the collector simply runs more often.
// 96 MiB left make bench's peak at 126–128 MiB (runtime, stacks and binary come on top); the
// live heap between bursts is under 10 MiB, so 80 MiB costs nothing but a few more collections
// during a burst.
const defaultMemoryLimit = 80 << 20

// defaultGCPercent is GOGC when the environment does not set it. The live heap of a serving
// process is under 10 MiB and each transfer allocates about 30 KB (pgx's messages, HTTP, JSON),
// so at the default of 100 the collector ran every few hundred transfers and took about a tenth
// of the server's CPU under load. At 400 the heap may grow to five times the live data between
// collections, still far below the memory limit, which bounds it either way (the collector runs
// more often near the limit, whatever GOGC says). Measured with the driver's uniform scenario
// (16 clients, 15 s, three alternated rounds on 2 cores): the server's CPU per transfer fell
// from 0.210–0.222 ms to 0.187–0.206 ms; its RSS under load stayed at 94–95 MiB.
const defaultGCPercent = 400

// tuneGC applies defaultMemoryLimit unless GOMEMLIMIT says otherwise and defaultGCPercent
// unless GOGC does (the runtime reads both variables itself; Kubernetes sets GOMEMLIMIT from the
// container's limit).
func tuneGC(log *zap.Logger, getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
		log.Info("gc percent", zap.Int("percent", defaultGCPercent))
	}
	if getenv("GOMEMLIMIT") != "" {
		return
	}
	debug.SetMemoryLimit(defaultMemoryLimit)
	log.Info("memory limit", zap.Int64("bytes", defaultMemoryLimit))
}

func newHTTPServer(h http.Handler, log *zap.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          zap.NewStdLog(log.Named("http")),
	}
}
