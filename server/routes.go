package server

import (
	"net/http"

	"github.com/gorilla/mux"
)

// routes is the whole API surface on one screen.
func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	r.Use(routeName)
	r.NotFoundHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return Errorf(http.StatusNotFound, "route_not_found", "No route matches %s on this path.", r.Method)
	})
	r.MethodNotAllowedHandler = s.handle(func(w http.ResponseWriter, r *http.Request) error {
		return Errorf(http.StatusMethodNotAllowed, "method_not_allowed", "This path does not accept %s.", r.Method)
	})

	// Service.
	r.Handle("/healthz", s.handle(s.healthz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", s.handle(s.readyz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/openapi.yaml", s.handle(s.openapi)).Methods(http.MethodGet)
	if s.cfg.MetricsOnPublic {
		r.Handle("/metrics", s.MetricsHandler()).Methods(http.MethodGet)
	}
	return r
}
