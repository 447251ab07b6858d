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

	// Auth (auth.go) and the user (users.go). authedLive: the session must still be live.
	r.Handle("/auth/check-availability", s.handle(s.checkAvailability)).Methods(http.MethodPost)
	r.Handle("/auth/otp/send", s.handle(s.otpSend)).Methods(http.MethodPost)
	r.Handle("/auth/otp/verify", s.handle(s.otpVerify)).Methods(http.MethodPost)
	r.Handle("/auth/login", s.handle(s.login)).Methods(http.MethodPost)
	r.Handle("/auth/refresh", s.handle(s.refresh)).Methods(http.MethodPost)
	r.Handle("/auth/logout", s.handle(s.authed(s.logout))).Methods(http.MethodPost)
	r.Handle("/auth/pin/reset", s.handle(s.pinReset)).Methods(http.MethodPost)
	r.Handle("/user", s.handle(s.signUp)).Methods(http.MethodPost)
	r.Handle("/user", s.handle(s.authed(s.getUser))).Methods(http.MethodGet)
	r.Handle("/user", s.handle(s.authedLive(s.patchUser))).Methods(http.MethodPatch)
	r.Handle("/user", s.handle(s.authedLive(s.deleteUser))).Methods(http.MethodDelete)
	r.Handle("/user/pin", s.handle(s.authedLive(s.changePIN))).Methods(http.MethodPut)
	r.Handle("/user/settings", s.handle(s.authed(s.getSettings))).Methods(http.MethodGet)
	r.Handle("/user/settings", s.handle(s.authedLive(s.patchSettings))).Methods(http.MethodPatch)
	r.Handle("/user/sessions", s.handle(s.authed(s.listSessions))).Methods(http.MethodGet)
	r.Handle("/user/sessions/{id}", s.handle(s.authedLive(s.deleteSession))).Methods(http.MethodDelete)

	// Money (wallet.go, transactions.go, ops.go). Money moves only on a live session.
	m := s.newMoneyAPI()
	r.Handle("/assets", s.handle(m.listAssets)).Methods(http.MethodGet)
	r.Handle("/wallet/balance", s.handle(s.authed(m.balance))).Methods(http.MethodGet)
	r.Handle("/wallet/balances", s.handle(s.authed(m.balances))).Methods(http.MethodGet)
	r.Handle("/exchange-rates", s.handle(s.authed(m.exchangeRates))).Methods(http.MethodGet)
	r.Handle("/transactions", s.handle(s.authed(m.listTransactions))).Methods(http.MethodGet)
	// The movements check the session and the PIN inside their own transaction (authedMovement,
	// storage.MovementAuth).
	r.Handle("/transactions/send", s.handle(s.authedMovement(s.countMovement(movementTransfer, m.send)))).Methods(http.MethodPost)
	r.Handle("/transactions/cashout", s.handle(s.authedMovement(s.countMovement(movementCashOut, m.cashOut)))).Methods(http.MethodPost)
	r.Handle("/transactions/exchange", s.handle(s.authedMovement(s.countMovement(movementExchange, m.exchange)))).Methods(http.MethodPost)
	r.Handle("/transactions/{id}", s.handle(s.authed(m.getTransaction))).Methods(http.MethodGet)
	r.Handle("/ops/cash-in", s.handle(s.opsOnly(s.countMovement(movementCashIn, m.cashIn)))).Methods(http.MethodPost)
	r.Handle("/ops/cash-outs/{id}/collect", s.handle(s.opsOnly(s.countMovement(movementCashOutCollect, m.settleCashOut(true))))).Methods(http.MethodPost)
	r.Handle("/ops/cash-outs/{id}/cancel", s.handle(s.opsOnly(s.countMovement(movementCashOutCancel, m.settleCashOut(false))))).Methods(http.MethodPost)
	// Relocation (relocate.go): moves a user's rows to another home region.
	r.Handle("/ops/users/{id}/relocate", s.handle(s.opsOnly(s.relocateUser))).Methods(http.MethodPost)

	// Service.
	r.Handle("/healthz", s.handle(s.healthz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/readyz", s.handle(s.readyz)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/openapi.yaml", s.handle(s.openapi)).Methods(http.MethodGet)
	if s.cfg.MetricsOnPublic {
		r.Handle("/metrics", s.MetricsHandler()).Methods(http.MethodGet)
	}
	return r
}
