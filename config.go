package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/7awel/wallet/regions"
	"github.com/7awel/wallet/storage"
)

// config is the effective configuration: environment variables, then flags for what people
// type. Every invalid value stops the start with a message naming the variable.
type config struct {
	Env             string // development | production
	DatabaseURL     string // secret: may hold a password
	HTTPAddr        string
	AdminAddr       string
	Region          string
	RegionsList     string
	PrimaryRegion   string
	RegionCountries string
	OpsAPIKey       string // secret
	LogLevel        string
	DataDir         string
	ShutdownTimeout time.Duration
	DBMaxConns      int
	AutoMigrate     bool
	JobInterval     time.Duration
	FeeSchedule     string

	fees storage.FeeSchedule

	// Auth throttles (server.AuthLimits) and the trusted client-address header.
	OTPTTL              time.Duration
	OTPCooldown         time.Duration
	OTPMaxCooldown      time.Duration
	OTPDailyMax         int
	OTPPerAddressHour   int
	AvailabilityPerHour int
	ClientIPHeader      string

	// Secrets as configured (authKeys parses them, or generates them in development).
	secrets secretEnv

	regions *regions.Table
}

func (c *config) development() bool { return c.Env == "development" }

// loadConfig reads the environment through getenv and the flags in args. fs is the subcommand's
// flag set, so that `serve -addr` and `migrate` share one parser.
func loadConfig(fs *flag.FlagSet, args []string, getenv func(string) string) (*config, error) {
	env := func(key, def string) string {
		if v := strings.TrimSpace(getenv(key)); v != "" {
			return v
		}
		return def
	}
	c := &config{
		Env:             env("APP_ENV", "development"),
		DatabaseURL:     env("DATABASE_URL", ""),
		RegionsList:     env("REGIONS", regions.DefaultRegions),
		PrimaryRegion:   env("PRIMARY_REGION", regions.DefaultPrimary),
		RegionCountries: env("REGION_COUNTRIES", ""),
		OpsAPIKey:       env("OPS_API_KEY", ""),
		LogLevel:        env("LOG_LEVEL", "info"),
		DataDir:         env("DATA_DIR", ".data"),
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if c.Env != "development" && c.Env != "production" {
		bad("APP_ENV=%q: want development or production", c.Env)
	}
	prod := c.Env == "production"
	defAddr, defAdmin := "127.0.0.1:8080", ""
	if prod {
		defAddr, defAdmin = ":8080", ":9090"
	}
	c.HTTPAddr = env("HTTP_ADDR", defAddr)
	c.AdminAddr = env("ADMIN_ADDR", defAdmin)
	c.Region = env("REGION", "")

	fs.StringVar(&c.HTTPAddr, "addr", c.HTTPAddr, "listen address of the API (HTTP_ADDR)")
	fs.StringVar(&c.AdminAddr, "admin-addr", c.AdminAddr, "listen address of /metrics and pprof, empty for none (ADMIN_ADDR)")
	fs.StringVar(&c.Region, "region", c.Region, "the region this process serves from (REGION)")
	fs.StringVar(&c.LogLevel, "log-level", c.LogLevel, "debug, info, warn or error (LOG_LEVEL)")
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "where the embedded PostgreSQL and development keys live (DATA_DIR)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}

	var err error
	if c.ShutdownTimeout, err = time.ParseDuration(env("SHUTDOWN_TIMEOUT", "20s")); err != nil || c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT=%q: want a positive duration such as 20s", getenv("SHUTDOWN_TIMEOUT"))
	}
	if v := env("DB_MAX_CONNS", "0"); v != "" {
		if c.DBMaxConns, err = strconv.Atoi(v); err != nil || c.DBMaxConns < 0 || c.DBMaxConns > 1000 {
			bad("DB_MAX_CONNS=%q: want 0 (pgx's default) to 1000", v)
		}
	}
	autoDefault := "true"
	if prod {
		autoDefault = "false"
	}
	if c.AutoMigrate, err = strconv.ParseBool(env("AUTO_MIGRATE", autoDefault)); err != nil {
		bad("AUTO_MIGRATE=%q: want true or false", getenv("AUTO_MIGRATE"))
	}
	if c.JobInterval, err = time.ParseDuration(env("JOB_INTERVAL", "1m")); err != nil || c.JobInterval < time.Second {
		bad("JOB_INTERVAL=%q: want a duration of at least 1s, such as 1m", getenv("JOB_INTERVAL"))
	}
	c.FeeSchedule = env("FEE_SCHEDULE", "")
	if c.fees, err = storage.ParseFeeSchedule(c.FeeSchedule); err != nil {
		bad("FEE_SCHEDULE=%q: %v", c.FeeSchedule, err)
	}
	if _, err := zapcore.ParseLevel(c.LogLevel); err != nil {
		bad("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.regions, err = regions.Parse(c.RegionsList, c.PrimaryRegion, c.RegionCountries); err != nil {
		bad("REGIONS/PRIMARY_REGION/REGION_COUNTRIES: %v", err)
	}
	if c.Region == "" {
		if prod {
			bad("REGION is required in production: the region this pod serves from")
		}
		c.Region = c.PrimaryRegion
	}
	if c.regions != nil && !c.regions.Has(c.Region) {
		bad("REGION=%q: not one of REGIONS (%s)", c.Region, c.RegionsList)
	}
	for name, addr := range map[string]string{"HTTP_ADDR": c.HTTPAddr, "ADMIN_ADDR": c.AdminAddr} {
		if addr == "" && name == "ADMIN_ADDR" {
			continue
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("%s=%q: want host:port or :port", name, addr)
		}
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("DATABASE_URL: want a postgres:// or postgresql:// URL")
		}
	}
	if prod {
		if c.DatabaseURL == "" {
			bad("DATABASE_URL is required in production (the embedded PostgreSQL is for development)")
		}
		if len(c.OpsAPIKey) < 32 {
			bad("OPS_API_KEY is required in production, at least 32 characters")
		}
		if c.AdminAddr == "" || c.AdminAddr == c.HTTPAddr {
			bad("ADMIN_ADDR must be set apart from HTTP_ADDR in production: /metrics and pprof never share the public port")
		}
	} else if c.OpsAPIKey == "" {
		c.OpsAPIKey = devOpsKey
	}
	c.loadAuthConfig(env, bad, prod, strings.HasSuffix(fs.Name(), " serve"))
	if len(problems) > 0 {
		return nil, errors.New("invalid configuration:\n  " + strings.Join(problems, "\n  "))
	}
	return c, nil
}

// devOpsKey is the development operator key, so load tests and curl work out of the box.
// Production refuses to start without a real one.
const devOpsKey = "dev-ops-key"

// mask shows that a secret is set without showing it.
func mask(s string) string {
	if s == "" {
		return ""
	}
	return "***"
}

// maskURL hides the password of a database URL.
func maskURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || s == "" {
		return mask(s)
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "***")
	}
	return u.Redacted()
}

// logFields is the effective configuration for the start-up log line, secrets masked.
func (c *config) logFields() []zap.Field {
	db := maskURL(c.DatabaseURL)
	if db == "" {
		db = "(embedded PostgreSQL)"
	}
	return []zap.Field{
		zap.String("app_env", c.Env),
		zap.String("database_url", db),
		zap.String("http_addr", c.HTTPAddr),
		zap.String("admin_addr", c.AdminAddr),
		zap.String("region", c.Region),
		zap.String("regions", c.RegionsList),
		zap.String("primary_region", c.PrimaryRegion),
		zap.String("ops_api_key", mask(c.OpsAPIKey)),
		zap.String("log_level", c.LogLevel),
		zap.String("data_dir", c.DataDir),
		zap.Duration("shutdown_timeout", c.ShutdownTimeout),
		zap.Int("db_max_conns", c.DBMaxConns),
		zap.Bool("auto_migrate", c.AutoMigrate),
		zap.Duration("job_interval", c.JobInterval),
		zap.String("fee_schedule", c.FeeSchedule),
		zap.Duration("otp_ttl", c.OTPTTL),
		zap.Duration("otp_resend_cooldown", c.OTPCooldown),
		zap.Duration("otp_max_cooldown", c.OTPMaxCooldown),
		zap.Int("otp_daily_max", c.OTPDailyMax),
		zap.Int("otp_per_address_hour", c.OTPPerAddressHour),
		zap.Int("availability_per_hour", c.AvailabilityPerHour),
		zap.String("client_ip_header", c.ClientIPHeader),
		zap.String("pii_keys", maskKeyRing(c.secrets.PIIKeys)),
		zap.String("pii_primary_key", c.secrets.PIIPrimary),
		zap.String("blind_index_key", mask(c.secrets.BlindIndex)),
		zap.String("pin_pepper", mask(c.secrets.PINPepper)),
		zap.String("otp_hmac_key", mask(c.secrets.OTPKey)),
		zap.String("jwt_signing_key", mask(c.secrets.JWTKey)),
		zap.String("sms_webhook_url", mask(c.secrets.SMSWebhook)),
	}
}

func newLogger(level string, w io.Writer) *zap.Logger {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		lvl = zapcore.InfoLevel
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "ts"
	enc.EncodeTime = zapcore.RFC3339NanoTimeEncoder
	core := zapcore.NewCore(zapcore.NewJSONEncoder(enc), zapcore.AddSync(w), lvl)
	return zap.New(core)
}
