package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/7awel/wallet/regions"
	"github.com/7awel/wallet/storage"
)

type relocateRequest struct {
	Region string `json:"region" validate:"required,max=63"`
}

type relocateResponse struct {
	UserID     string `json:"user_id"`
	FromRegion string `json:"from_region"`
	HomeRegion string `json:"home_region"`
	// Relocated is false when the user already lived in the target (nothing changed).
	Relocated bool `json:"relocated"`
}

// relocateUser is POST /ops/users/{id}/relocate (operators, X-Ops-Key): moves every row of the
// user to another home region in one transaction and revokes the user's sessions
// (docs/multi-region.md, Relocating a user). Idempotent: the same target again answers 200
// with relocated false.
func (s *Server) relocateUser(w http.ResponseWriter, r *http.Request) error {
	id, err := uuid.Parse(mux.Vars(r)["id"])
	if err != nil {
		return Errorf(http.StatusNotFound, "not_found", "The user does not exist.")
	}
	var req relocateRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	target := strings.TrimSpace(req.Region)
	errUnknown := &Error{Status: http.StatusUnprocessableEntity, Code: "unknown_region",
		Detail: "The region is not one of this deployment's regions: " + strings.Join(s.db.Regions().Names(), ", ") + ".",
		Fields: map[string]string{"region": "one of " + strings.Join(s.db.Regions().Names(), ", ")}}
	if !s.db.Regions().Has(target) {
		return errUnknown
	}
	from, err := s.db.RelocateUser(r.Context(), id, target)
	switch {
	case errors.Is(err, regions.ErrUnknownRegion):
		return errUnknown
	case errors.Is(err, storage.ErrSystemAccount):
		return &Error{Status: http.StatusConflict, Code: "system_account",
			Detail: "A region's system account lives in its region and cannot be relocated.", Err: err}
	case errors.Is(err, storage.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "not_found", Detail: "The user does not exist.", Err: err}
	case err != nil:
		return err
	}
	respond(w, http.StatusOK, relocateResponse{UserID: id.String(), FromRegion: from, HomeRegion: target, Relocated: from != target})
	return nil
}
