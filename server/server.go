// Package server is 7awel's HTTP API: routes, request decoding and validation, the mapping from
// errors to RFC 9457 problems, middleware, metrics and the OpenAPI document.
//
// Handlers decode and validate, call one storage method, and map the error or encode the
// result; they never hold a transaction or write SQL. It deliberately has no business rules of
// its own beyond input checks: money and auth rules live where their data does.
package server

import (
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
}

// Server is the API. Build it with New; it is an http.Handler.
type Server struct {
	cfg      Config
	db       *storage.DB
	log      *zap.Logger
	registry *prometheus.Registry
	metrics  *httpMetrics
	router   *mux.Router
	handler  http.Handler
	started  time.Time
}

// New builds the API over db. registry is where the process's metrics live (see NewRegistry);
// the server registers its own on it and serves it.
func New(cfg Config, db *storage.DB, registry *prometheus.Registry, log *zap.Logger) *Server {
	s := &Server{cfg: cfg, db: db, log: log, registry: registry, started: time.Now()}
	s.metrics = newHTTPMetrics(RegionRegisterer(registry, cfg.Region))
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
