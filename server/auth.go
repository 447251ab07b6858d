package server

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.uber.org/zap"

	"github.com/7awel/wallet/storage"
)

// Sign-up, login and tokens: the Auth section of api.md, and the middleware that turns an
// access token into a Principal.

// AuthLimits are the auth throttles. Every one is configurable (development and load tests from
// one address raise the per-address caps) and none can be zero: withDefaults fills gaps, and the
// configuration refuses zero in production.
type AuthLimits struct {
	OTP storage.OTPLimits
	// OTPPerAddressHour caps codes sent per client address per hour.
	OTPPerAddressHour int
	// AvailabilityPerHour caps check-availability calls per client address, and per device.
	AvailabilityPerHour int
	// AvailabilityFloor is the least time a check-availability answer takes, so that its timing
	// does not tell a registered number from a free one.
	AvailabilityFloor time.Duration
}

func (l AuthLimits) withDefaults() AuthLimits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur(&l.OTP.TTL, 5*time.Minute)
	defDur(&l.OTP.Cooldown, 60*time.Second)
	defDur(&l.OTP.MaxCooldown, 32*time.Minute)
	def(&l.OTP.DailyMax, 5)
	def(&l.OTPPerAddressHour, 10)
	def(&l.AvailabilityPerHour, 30)
	defDur(&l.AvailabilityFloor, 40*time.Millisecond)
	return l
}

// clientIP is the client's address: the last value of the trusted proxy header when one is
// configured (earlier values are whatever the client claimed), else the peer address.
func (s *Server) clientIP(r *http.Request) string {
	if h := s.cfg.ClientIPHeader; h != "" {
		if vs := r.Header.Values(h); len(vs) > 0 {
			v := vs[len(vs)-1]
			last := strings.TrimSpace(v[strings.LastIndex(v, ",")+1:])
			if ip := net.ParseIP(last); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// withClient puts the client's address, device and agent in the context for the audit trail.
func (s *Server) withClient(r *http.Request, deviceID string) *http.Request {
	if deviceID == "" {
		deviceID = r.Header.Get("X-Device-Id")
	}
	ua := r.Header.Get("User-Agent")
	return r.WithContext(storage.WithClientMeta(r.Context(), storage.ClientMeta{
		IP: s.clientIP(r), DeviceID: deviceID, UserAgent: ua}))
}

var errUnauthorized = &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
	Detail: "Send a valid access token: Authorization: Bearer <access_token>."}

// authenticate verifies the bearer token of r.
func (s *Server) authenticate(r *http.Request) (Principal, time.Time, error) {
	h := r.Header.Get("Authorization")
	scheme, raw, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || raw == "" {
		return Principal{}, time.Time{}, errUnauthorized
	}
	p, iat, err := s.tokens.verify(strings.TrimSpace(raw))
	if err != nil || !s.db.Regions().Has(p.Region) {
		s.log.Debug("access token refused", zap.String("request_id", requestID(r.Context())), zap.Error(err))
		return Principal{}, time.Time{}, errUnauthorized
	}
	return p, iat, nil
}

// authed admits a request with a valid access token and puts its Principal in the context;
// 401 unauthorized otherwise. Reads trust the short-lived token without a lookup
// (reference/security.md §1.6); use authedLive for calls that move money or change the account.
func (s *Server) authed(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, _, err := s.authenticate(r)
		if err != nil {
			return err
		}
		r = s.withClient(r, "")
		return fn(w, r.WithContext(withPrincipal(r.Context(), p)))
	}
}

// authedLive is authed plus a check that the token's session is still live: not revoked, not
// expired, the user active, and the token issued after the user's tokens_not_before. Logout,
// PIN change or reset and account deletion take effect at once on these calls.
func (s *Server) authedLive(fn handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		p, iat, err := s.authenticate(r)
		if err != nil {
			return err
		}
		if err := s.db.SessionLive(r.Context(), p.Region, p.UserID, p.SessionID, iat); err != nil {
			return sessionProblem(err)
		}
		r = s.withClient(r, "")
		return fn(w, r.WithContext(withPrincipal(r.Context(), p)))
	}
}

// sessionProblem is what a failed session check answers: 401 for a session that has ended;
// other errors (a suspended account, the database) as they are.
func sessionProblem(err error) error {
	if errors.Is(err, storage.ErrSessionRevoked) {
		return &Error{Status: http.StatusUnauthorized, Code: "unauthorized",
			Detail: "This session has ended; sign in again.", Err: err}
	}
	return err
}

// tokensResponse is `tokens` of api.md.
type tokensResponse struct {
	AccessToken      string `json:"access_token"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	RefreshToken     string `json:"refresh_token"`
	RefreshExpiresIn int    `json:"refresh_expires_in"`
	SessionID        string `json:"session_id"`
}

func (s *Server) tokensFor(g storage.SessionGrant, refresh string) (tokensResponse, error) {
	access, _, err := s.tokens.issue(Principal{UserID: g.UserID, SessionID: g.SessionID, Region: g.Region})
	if err != nil {
		return tokensResponse{}, fmt.Errorf("sign access token: %w", err)
	}
	return tokensResponse{
		AccessToken: access, TokenType: "Bearer", ExpiresIn: int(accessTokenTTL / time.Second),
		RefreshToken: refresh, RefreshExpiresIn: max(0, int(time.Until(g.ExpiresAt)/time.Second)),
		SessionID: g.SessionID.String(),
	}, nil
}

// newSession prepares a session for home region: ids and the refresh token, made before the
// transaction so a retried closure writes the same values.
func newSession(region, deviceID string) (storage.NewSession, string) {
	refresh := newOpaqueToken(refreshPrefix, region)
	return storage.NewSession{ID: uuid.New(), DeviceID: deviceID, RefreshHash: storage.TokenHash(refresh)}, refresh
}

// --- check-availability ---

type availabilityRequest struct {
	Phone string `json:"phone" validate:"required_without=Email,max=40"`
	Email string `json:"email" validate:"required_without=Phone,max=254"`
}

type availabilityResponse struct {
	PhoneAvailable *bool `json:"phone_available"`
	EmailAvailable *bool `json:"email_available"`
}

// checkAvailability is an enumeration oracle by nature (reference/security.md §1.2): it is
// throttled per client address and per device like OTP sends, both lookups always run, and
// every answer takes at least AvailabilityFloor.
func (s *Server) checkAvailability(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	defer func() {
		if d := s.cfg.Limits.AvailabilityFloor - time.Since(start); d > 0 {
			time.Sleep(d)
		}
	}()
	var req availabilityRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	th := storage.Throttle{Bucket: "availability_addr", Limit: s.cfg.Limits.AvailabilityPerHour, Window: time.Hour}
	if err := s.db.Hit(r.Context(), s.cfg.Region, th, s.clientIP(r)); err != nil {
		return err
	}
	if dev := r.Header.Get("X-Device-Id"); dev != "" {
		th.Bucket = "availability_device"
		if err := s.db.Hit(r.Context(), s.cfg.Region, th, dev); err != nil {
			return err
		}
	}
	var phone, email string
	if req.Phone != "" {
		var err error
		if phone, _, err = parsePhone(req.Phone); err != nil {
			return errInvalidPhone("phone")
		}
	}
	if req.Email != "" {
		var err error
		if email, err = normalizeEmail(req.Email); err != nil {
			return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_email",
				Detail: "The email address is not valid.", Fields: map[string]string{"email": "a plain address such as name@example.com"}}
		}
	}
	phoneFree, emailFree, err := s.db.CheckAvailability(r.Context(), phone, email)
	if err != nil {
		return err
	}
	var out availabilityResponse
	if phone != "" {
		out.PhoneAvailable = &phoneFree
	}
	if email != "" {
		out.EmailAvailable = &emailFree
	}
	respond(w, http.StatusOK, out)
	return nil
}

// --- OTP ---

type otpSendRequest struct {
	Phone   string `json:"phone" validate:"required,max=40"`
	Purpose string `json:"purpose" validate:"required,oneof=register login reset_pin"`
}

type otpSendResponse struct {
	ExpiresIn   int    `json:"expires_in"`
	ResendAfter int    `json:"resend_after"`
	DevCode     string `json:"dev_code,omitempty"`
}

// otpHome is the region a phone's challenges live in: the registered user's home region, else
// the home region its country maps to (a traveller signing up abroad is homed at home).
func (s *Server) otpHome(ctx context.Context, phone, country string) (string, error) {
	_, region, err := s.db.LookupPhone(ctx, phone)
	if err == nil {
		return region, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	return s.db.Regions().HomeFor(country, s.cfg.Region), nil
}

// newOTPCode is 6 uniform digits from crypto/rand (no modulo bias).
func newOTPCode() string {
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return fmt.Sprintf("%06d", n.Int64())
}

// otpSend answers the same whether or not the phone is registered (§1.2): the branch is only
// revealed after the code verifies.
func (s *Server) otpSend(w http.ResponseWriter, r *http.Request) (err error) {
	var req otpSendRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	phone, country, err := parsePhone(req.Phone)
	if err != nil {
		return errInvalidPhone("phone")
	}
	// Counted from here on: a valid request is a send attempt, whatever becomes of it.
	defer func() { s.business.otpSent(req.Purpose, err) }()
	r = s.withClient(r, "")
	th := storage.Throttle{Bucket: "otp_addr", Limit: s.cfg.Limits.OTPPerAddressHour, Window: time.Hour}
	if err := s.db.Hit(r.Context(), s.cfg.Region, th, s.clientIP(r)); err != nil {
		return otpRateLimited(err)
	}
	region, err := s.otpHome(r.Context(), phone, country)
	if err != nil {
		return err
	}
	code := newOTPCode()
	ch, err := s.db.SendOTP(r.Context(), storage.OTPSend{
		ChallengeID: uuid.New(), Region: region, Phone: phone, Purpose: req.Purpose, Code: code,
	}, s.cfg.Limits.OTP)
	if err != nil {
		return otpRateLimited(err)
	}
	// After the commit: a retried transaction never sends twice.
	msg := fmt.Sprintf("Your 7awel code is %s. It expires in %d minutes. Never share it.", code,
		int(s.cfg.Limits.OTP.TTL/time.Minute))
	if err := s.sms.Send(r.Context(), phone, msg); err != nil {
		return &Error{Status: http.StatusBadGateway, Code: "sms_failed",
			Detail: "The code could not be sent; try again shortly.", RetryAfter: 5 * time.Second, Err: err}
	}
	now := time.Now()
	out := otpSendResponse{
		ExpiresIn:   max(0, int(ch.ExpiresAt.Sub(now).Round(time.Second)/time.Second)),
		ResendAfter: max(0, int(ch.ResendAfter.Sub(now).Round(time.Second)/time.Second)),
	}
	if s.cfg.Development && s.sms.ExposesCode() {
		out.DevCode = code
	}
	respond(w, http.StatusAccepted, out)
	return nil
}

func otpRateLimited(err error) error {
	var rl *storage.RateLimitError
	if errors.As(err, &rl) && errors.Is(err, storage.ErrRateLimited) {
		return &Error{Status: http.StatusTooManyRequests, Code: "otp_rate_limited",
			Detail: "Too many codes requested; wait before asking again.", RetryAfter: max(rl.RetryAfter, time.Second), Err: err}
	}
	return err
}

type otpVerifyRequest struct {
	Phone   string `json:"phone" validate:"required,max=40"`
	Purpose string `json:"purpose" validate:"required,oneof=register login reset_pin"`
	Code    string `json:"code" validate:"required,len=6,numeric"`
}

type otpVerifyResponse struct {
	VerificationToken string `json:"verification_token"`
	ExpiresIn         int    `json:"expires_in"`
}

func (s *Server) otpVerify(w http.ResponseWriter, r *http.Request) (err error) {
	var req otpVerifyRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	phone, country, err := parsePhone(req.Phone)
	if err != nil {
		return errInvalidPhone("phone")
	}
	defer func() { s.business.otpVerified(req.Purpose, err) }()
	region, err := s.otpHome(r.Context(), phone, country)
	if err != nil {
		return err
	}
	token := newOpaqueToken(verificationPrefix, region)
	if err := s.db.VerifyOTP(r.Context(), region, phone, req.Purpose, req.Code, storage.TokenHash(token)); err != nil {
		return err
	}
	respond(w, http.StatusOK, otpVerifyResponse{VerificationToken: token, ExpiresIn: int(verificationTTL / time.Second)})
	return nil
}

// peekVerification finds the verified challenge a verification token names.
func (s *Server) peekVerification(ctx context.Context, token, purpose string) (storage.Verification, []byte, error) {
	region, ok := parseOpaqueToken(verificationPrefix, token)
	if !ok || !s.db.Regions().Has(region) {
		return storage.Verification{}, nil, storage.ErrInvalidVerification
	}
	hash := storage.TokenHash(token)
	v, err := s.db.PeekVerification(ctx, region, hash, purpose)
	return v, hash, err
}

// --- login, refresh, logout, PIN reset ---

type loginRequest struct {
	Phone             string `json:"phone" validate:"required,max=40"`
	PIN               string `json:"pin" validate:"required,max=6"`
	DeviceID          string `json:"device_id" validate:"required,max=200"`
	VerificationToken string `json:"verification_token" validate:"required,max=200"`
}

type authResponse struct {
	User   userResponse   `json:"user"`
	Tokens tokensResponse `json:"tokens"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) error {
	var req loginRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	phone, _, err := parsePhone(req.Phone)
	if err != nil {
		return errInvalidPhone("phone")
	}
	r = s.withClient(r, req.DeviceID)
	ctx := r.Context()
	v, vhash, err := s.peekVerification(ctx, req.VerificationToken, "login")
	if err != nil {
		return err
	}
	if v.Phone != phone {
		return storage.ErrInvalidVerification
	}
	userID, region, err := s.db.LookupPhone(ctx, phone)
	if errors.Is(err, storage.ErrNotFound) {
		return &Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Detail: "The phone or PIN is wrong."}
	}
	if err != nil {
		return err
	}
	if !validPINFormat(req.PIN) {
		return &Error{Status: http.StatusUnauthorized, Code: "invalid_credentials", Detail: "The phone or PIN is wrong."}
	}
	if err := s.db.VerifyPIN(ctx, userID, region, req.PIN); err != nil {
		if errors.Is(err, storage.ErrInvalidPIN) {
			e := toError(err)
			e.Code, e.Detail = "invalid_credentials", "The phone or PIN is wrong."
			return e
		}
		return err
	}
	sess, refresh := newSession(region, req.DeviceID)
	u, grant, err := s.db.Login(ctx, region, userID, v, vhash, sess)
	if err != nil {
		return err
	}
	tokens, err := s.tokensFor(grant, refresh)
	if err != nil {
		return err
	}
	s.business.sessionsStart.Inc()
	respond(w, http.StatusOK, authResponse{User: toUserResponse(u), Tokens: tokens})
	return nil
}

type refreshRequest struct {
	RefreshToken string `json:"refresh_token" validate:"required,max=200"`
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) error {
	var req refreshRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	region, ok := parseOpaqueToken(refreshPrefix, req.RefreshToken)
	if !ok || !s.db.Regions().Has(region) {
		return storage.ErrInvalidRefreshToken
	}
	r = s.withClient(r, "")
	next := newOpaqueToken(refreshPrefix, region)
	grant, err := s.db.RefreshSession(r.Context(), region, storage.TokenHash(req.RefreshToken), storage.TokenHash(next))
	if errors.Is(err, storage.ErrRefreshReuse) {
		s.business.refreshReuse.Inc()
	}
	if err != nil {
		return err
	}
	tokens, err := s.tokensFor(grant, next)
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, struct {
		Tokens tokensResponse `json:"tokens"`
	}{tokens})
	return nil
}

// logout ends the caller's session (its refresh tokens die with it). Other devices stay signed
// in (reference/security.md §1.6); DELETE /user/sessions/{id} ends those.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	err := s.db.RevokeSession(r.Context(), p.Region, p.UserID, p.SessionID, storage.ActionLogout)
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type pinResetRequest struct {
	VerificationToken string `json:"verification_token" validate:"required,max=200"`
	NewPIN            string `json:"new_pin" validate:"required,max=6"`
}

// pinReset sets a new PIN for the owner of a verified phone (purpose reset_pin), clears the
// lock, and ends every session of the account.
func (s *Server) pinReset(w http.ResponseWriter, r *http.Request) error {
	var req pinResetRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	if err := checkNewPIN(req.NewPIN); err != nil {
		return pinError("new_pin", err)
	}
	r = s.withClient(r, "")
	ctx := r.Context()
	v, vhash, err := s.peekVerification(ctx, req.VerificationToken, "reset_pin")
	if err != nil {
		return err
	}
	userID, region, err := s.db.LookupPhone(ctx, v.Phone)
	if errors.Is(err, storage.ErrNotFound) {
		return storage.ErrInvalidVerification
	}
	if err != nil {
		return err
	}
	h, err := s.db.HashPIN(userID, req.NewPIN)
	if err != nil {
		return err
	}
	if err := s.db.ResetPIN(ctx, region, userID, v, vhash, h); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// authProblem adds the numbers of auth errors to a problem: attempts_left, locked_until and
// Retry-After. toError calls it for every error, so money handlers that return VerifyPIN's error
// get the same details.
func authProblem(err error, e *Error) {
	var pe *storage.PINError
	if errors.As(err, &pe) {
		if errors.Is(err, storage.ErrPINLocked) {
			e.Extra = map[string]any{"locked_until": pe.LockedUntil.UTC().Format(time.RFC3339)}
			e.RetryAfter = max(time.Until(pe.LockedUntil), time.Second)
		} else {
			e.Extra = map[string]any{"attempts_left": pe.AttemptsLeft}
		}
	}
	var oe *storage.OTPError
	if errors.As(err, &oe) {
		e.Extra = map[string]any{"attempts_left": oe.AttemptsLeft}
	}
	var rl *storage.RateLimitError
	if errors.As(err, &rl) && e.RetryAfter == 0 {
		e.RetryAfter = max(rl.RetryAfter, time.Second)
	}
}
