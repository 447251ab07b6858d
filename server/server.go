// Package server is 7awel's HTTP API: routes, request decoding and validation, the mapping from
// errors to RFC 9457 problems, middleware, metrics and the OpenAPI document.
//
// Handlers decode and validate, call one storage method, and map the error or encode the
// result; they never hold a transaction or write SQL. It deliberately has no business rules of
// its own beyond input checks: money and auth rules live where their data does.
package server

import (
	"crypto/ed25519"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
)

// Config is what the server needs to know about its deployment.
type Config struct {
	// Region is the region this process serves from (X-Region).
	Region string
	// Development enables development-only behaviour (dev_code in OTP answers).
	Development bool
	// OpsAPIKey guards /ops/*; empty disables those routes.
	OpsAPIKey string
	// MetricsOnPublic also serves /metrics on the API handler (development; production uses the
	// admin listener).
	MetricsOnPublic bool
	// JWTKey signs and verifies access tokens (Ed25519). Deployments must set it (main does);
	// without one New makes a per-process key, which only a single process can verify.
	JWTKey ed25519.PrivateKey
	// SMS delivers OTP codes. Without one New logs codes in development and refuses to send
	// (502 sms_failed) otherwise.
	SMS SMSSender
	// Limits are the auth throttles (OTP sends, availability checks). Zero fields take defaults.
	Limits AuthLimits
	// ClientIPHeader names the header a trusted proxy puts the client address in (e.g.
	// X-Forwarded-For, whose last value is the one our proxy added); empty uses the peer
	// address. Set it only behind such a proxy (reference/security.md §1.8).
	ClientIPHeader string
	// Fees is the fee schedule of money movements (FEE_SCHEDULE); nil charges nothing.
	Fees storage.FeeSchedule
}

// Server is the API. Build it with New; it is an http.Handler.
type Server struct {
	cfg      Config
	db       *storage.DB
	log      *zap.Logger
	registry *prometheus.Registry
	metrics  *httpMetrics
	business *businessMetrics
	router   *mux.Router
	handler  http.Handler
	started  time.Time
	tokens   *tokenSigner
	sms      SMSSender
}

// New builds the API over db. registry is where the process's metrics live (see NewRegistry);
// the server registers its own on it and serves it.
func New(cfg Config, db *storage.DB, registry *prometheus.Registry, log *zap.Logger) *Server {
	if len(cfg.JWTKey) != ed25519.PrivateKeySize {
		// Tokens signed with a per-process key verify on this process only: fine for a test or
		// a single development process, never for a deployment (main always passes the key).
		_, cfg.JWTKey, _ = ed25519.GenerateKey(nil)
		log.Warn("no JWT signing key configured: using a per-process key")
	}
	if cfg.SMS == nil {
		cfg.SMS = DevSMS{Log: log}
		if !cfg.Development {
			cfg.SMS = noSMS{}
		}
	}
	cfg.Limits = cfg.Limits.withDefaults()
	s := &Server{cfg: cfg, db: db, log: log, registry: registry, started: time.Now(),
		tokens: newTokenSigner(cfg.JWTKey, nil), sms: cfg.SMS}
	s.metrics = newHTTPMetrics(RegionRegisterer(registry, cfg.Region))
	s.business = newBusinessMetrics(RegionRegisterer(registry, cfg.Region))
	s.router = s.routes()
	s.handler = s.outer(s.router)
	return s
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.handler.ServeHTTP(w, r) }

// MetricsHandler serves the registry in the Prometheus formats (OpenMetrics and protobuf, which
// native histograms need).
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{EnableOpenMetrics: true})
}
