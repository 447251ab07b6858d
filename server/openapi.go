package server

import (
	_ "embed"
	"net/http"
)

// openapiDoc is the mobile API contract, served as written and checked by the tests.
//
//go:embed openapi.yaml
var openapiDoc []byte

func (s *Server) openapi(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openapiDoc)
	return nil
}
