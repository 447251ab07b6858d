package server

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/7awel/wallet/storage"
)

// opsOnly admits operator calls: X-Ops-Key must equal Config.OpsAPIKey. Both sides are hashed
// first so the comparison is constant-time in the key's length too. Without a configured key
// the operator routes do not exist (404), so a forgotten key never opens them.
func (s *Server) opsOnly(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.cfg.OpsAPIKey == "" {
			return Errorf(http.StatusNotFound, "route_not_found", "No route matches %s on this path.", r.Method)
		}
		got := sha256.Sum256([]byte(r.Header.Get("X-Ops-Key")))
		want := sha256.Sum256([]byte(s.cfg.OpsAPIKey))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			return Errorf(http.StatusUnauthorized, "invalid_ops_key", "Send the operator key in X-Ops-Key.")
		}
		return fn(w, r)
	}
}

type cashInRequest struct {
	Phone     string `json:"phone"`
	UserID    string `json:"user_id"`
	Amount    string `json:"amount"`
	Asset     string `json:"asset"`
	Reference string `json:"reference"`
	Note      string `json:"note"`
}

// cashIn is POST /ops/cash-in: funds a wallet, idempotent by reference. The answer is the
// issuance account's view (outgoing to the funded user).
func (m *moneyAPI) cashIn(w http.ResponseWriter, r *http.Request) error {
	var req cashInRequest
	if err := decodeJSON(r, &req); err != nil {
		return err
	}
	if err := checkReference(req.Reference); err != nil {
		return err
	}
	if err := checkNote(req.Note); err != nil {
		return err
	}
	asset, amount, err := m.assetAmount(r.Context(), req.Asset, req.Amount)
	if err != nil {
		return err
	}
	rcpt, err := recipientFrom("phone", req.Phone, "user_id", req.UserID)
	if err != nil {
		return err
	}
	res, err := m.s.db.CashIn(r.Context(), storage.CashInRequest{Recipient: rcpt, Asset: asset.Symbol,
		Amount: amount, Reference: req.Reference, Note: req.Note})
	if err != nil {
		return err
	}
	respondMovement(w, r, res, toTransactionJSON(res.Transaction))
	return nil
}

// settleCashOut is POST /ops/cash-outs/{id}/collect and /cancel: 200 the cash-out as its sender
// sees it.
func (m *moneyAPI) settleCashOut(collect bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		id, err := uuid.Parse(mux.Vars(r)["id"])
		if err != nil {
			return Errorf(http.StatusNotFound, "not_found", "The cash-out does not exist.")
		}
		var t storage.Transaction
		if collect {
			t, err = m.s.db.CollectCashOut(r.Context(), id, m.s.cfg.Region)
		} else {
			t, err = m.s.db.CancelCashOut(r.Context(), id, m.s.cfg.Region)
		}
		if err != nil {
			return err
		}
		respond(w, http.StatusOK, toTransactionJSON(t))
		return nil
	}
}
