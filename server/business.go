package server

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/7awel/wallet/storage"
)

// businessMetrics are the series the SREs and the fraud team watch besides HTTP: money
// movements by outcome, OTP traffic (SMS pumping shows here first), refresh-token theft and
// sign-ins. Names and label values are the monitoring contract (k8s/monitoring/contract.go);
// the region label comes from the registerer. No label ever carries a user id, a phone or an
// amount: every value is from a fixed set (types, outcomes, purposes, problem codes).
type businessMetrics struct {
	movements     *prometheus.CounterVec // type, outcome, reason
	otpSends      *prometheus.CounterVec // purpose, outcome
	otpVerifies   *prometheus.CounterVec // purpose, outcome
	refreshReuse  prometheus.Counter
	sessionsStart prometheus.Counter
}

func newBusinessMetrics(reg prometheus.Registerer) *businessMetrics {
	m := &businessMetrics{
		movements: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_money_movements_total",
			Help: "Money movement requests by type and outcome (committed, replayed, refused, error); reason is the problem code of a refusal or error.",
		}, []string{"type", "outcome", "reason"}),
		otpSends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_otp_sends_total",
			Help: "OTP send requests by purpose and outcome (sent, rate_limited, failed).",
		}, []string{"purpose", "outcome"}),
		otpVerifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wallet_otp_verifications_total",
			Help: "OTP verifications by purpose and outcome (ok, invalid, expired, locked).",
		}, []string{"purpose", "outcome"}),
		refreshReuse: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wallet_refresh_token_reuse_total",
			Help: "Spent refresh tokens presented again (the session is revoked: a stolen token or a replaying client).",
		}),
		sessionsStart: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wallet_sessions_created_total",
			Help: "Sessions opened by sign-up or login.",
		}),
	}
	reg.MustRegister(m.movements, m.otpSends, m.otpVerifies, m.refreshReuse, m.sessionsStart)
	return m
}

// Movement types: the `type` label values of wallet_money_movements_total.
const (
	movementTransfer       = "transfer"
	movementCashOut        = "cash_out"
	movementCashIn         = "cash_in"
	movementExchange       = "exchange"
	movementCashOutCollect = "cash_out_collect"
	movementCashOutCancel  = "cash_out_cancel"
)

// countMovement wraps a money handler and counts its result: committed, replayed (the handler
// answered with Idempotent-Replayed), refused (a 4xx problem, reason its code) or error (5xx,
// reason its code). It sits inside authentication, so a request without a valid session is not
// a movement attempt. Problem codes are a fixed set, so reason stays bounded.
func (s *Server) countMovement(typ string, fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		err := fn(w, r)
		outcome, reason := "committed", ""
		switch {
		case err != nil:
			e := toError(err)
			outcome, reason = "refused", e.Code
			if e.Status >= 500 {
				outcome = "error"
			}
		case w.Header().Get("Idempotent-Replayed") == "true":
			outcome = "replayed"
		}
		s.business.movements.WithLabelValues(typ, outcome, reason).Inc()
		return err
	}
}

// otpSent counts an OTP send of a validated request (purpose is one of the API's purposes).
func (m *businessMetrics) otpSent(purpose string, err error) {
	outcome := "sent"
	if err != nil {
		outcome = "failed"
		if errors.Is(err, storage.ErrRateLimited) {
			outcome = "rate_limited"
		}
	}
	m.otpSends.WithLabelValues(purpose, outcome).Inc()
}

// otpVerified counts a verification of a validated request by what the code check said; a
// failure of the database is not a verification outcome (it shows in the HTTP 5xx and the
// database series) and is not counted.
func (m *businessMetrics) otpVerified(purpose string, err error) {
	var outcome string
	switch {
	case err == nil:
		outcome = "ok"
	case errors.Is(err, storage.ErrOTPLocked):
		outcome = "locked"
	case errors.Is(err, storage.ErrOTPExpired):
		outcome = "expired"
	case errors.Is(err, storage.ErrOTPInvalid):
		outcome = "invalid"
	default:
		return
	}
	m.otpVerifies.WithLabelValues(purpose, outcome).Inc()
}
