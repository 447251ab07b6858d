package server

import (
	"context"
	"net/http"
	"time"
)

// healthz answers while the process runs: liveness must not depend on the database, or a
// database outage would restart every pod.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	respond(w, http.StatusOK, map[string]any{"status": "ok"})
	return nil
}

// readyz answers 200 when the database answers and the schema is at the version this binary
// expects, 503 otherwise: a pod is taken out of its Service until both hold.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	body := map[string]any{"region": s.cfg.Region}
	if err := s.db.Ping(ctx); err != nil {
		s.metrics.ready.Set(0)
		return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready",
			Detail: "The database does not answer.", RetryAfter: 5 * time.Second, Err: err}
	}
	current, v, err := s.db.SchemaCurrent(ctx)
	if err != nil || !current {
		s.metrics.ready.Set(0)
		return &Error{Status: http.StatusServiceUnavailable, Code: "not_ready",
			Detail: "The database schema is not at the version this release expects; run `7awel migrate up`.",
			Extra:  map[string]any{"schema_version": v.Shared, "schema_dirty": v.Dirty}, RetryAfter: 5 * time.Second, Err: err}
	}
	s.metrics.ready.Set(1)
	body["status"] = "ready"
	body["schema_version"] = v.Shared
	respond(w, http.StatusOK, body)
	return nil
}
