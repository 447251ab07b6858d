package main

import (
	"net/http"
	"net/http/pprof"

	"github.com/7awel/wallet/server"
)

// adminHandler is what the admin listener (ADMIN_ADDR) serves: /metrics and net/http/pprof.
// Neither belongs on the public port: the metrics describe the whole deployment and pprof can
// stall a process or reveal its memory, so only the cluster (Prometheus, an operator's
// port-forward) reaches this one.
func adminHandler(api *server.Server) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", api.MetricsHandler())
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// metricsOnPublic: without an admin listener (development's default) /metrics is served on the
// API port instead. Production always has one: loadConfig refuses an empty ADMIN_ADDR there.
func metricsOnPublic(c *config) bool { return c.AdminAddr == "" }
