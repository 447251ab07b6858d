package server

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/gorilla/mux"

	"github.com/7awel/wallet/storage"
)

// The User section of api.md, and sign-up (POST /user). The owner sees their own data unmasked.

type profileResponse struct {
	FirstName   *string `json:"first_name"`
	LastName    *string `json:"last_name"`
	AvatarURL   *string `json:"avatar_url"`
	DateOfBirth *string `json:"date_of_birth"`
	Gender      *string `json:"gender"`
	Country     *string `json:"country"`
	Address     *string `json:"address"`
}

type userResponse struct {
	ID            string          `json:"id"`
	Phone         string          `json:"phone"`
	Email         *string         `json:"email"`
	PhoneVerified bool            `json:"phone_verified"`
	EmailVerified bool            `json:"email_verified"`
	Status        string          `json:"status"`
	KYCLevel      string          `json:"kyc_level"`
	HomeRegion    string          `json:"home_region"`
	CreatedAt     time.Time       `json:"created_at"`
	Profile       profileResponse `json:"profile"`
}

func strOrNil(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toUserResponse(u storage.User) userResponse {
	return userResponse{
		ID: u.ID.String(), Phone: u.Phone, Email: strOrNil(u.Email), PhoneVerified: u.PhoneVerified,
		EmailVerified: u.EmailVerified, Status: u.Status, KYCLevel: u.KYCLevel, HomeRegion: u.Region,
		CreatedAt: u.CreatedAt.UTC(),
		Profile: profileResponse{
			FirstName: strOrNil(u.Profile.FirstName), LastName: strOrNil(u.Profile.LastName),
			AvatarURL: strOrNil(u.Profile.AvatarURL), DateOfBirth: strOrNil(u.Profile.DateOfBirth),
			Gender: strOrNil(u.Profile.Gender), Country: strOrNil(u.Profile.Country), Address: strOrNil(u.Profile.Address),
		},
	}
}

// euroCountries use the euro: their users' primary asset is EUR.
var euroCountries = map[string]bool{
	"AT": true, "BE": true, "HR": true, "CY": true, "EE": true, "FI": true, "FR": true, "DE": true, "GR": true,
	"IE": true, "IT": true, "LV": true, "LT": true, "LU": true, "MT": true, "NL": true, "PT": true, "SK": true,
	"SI": true, "ES": true, "MC": true, "SM": true, "VA": true, "AD": true, "ME": true, "XK": true,
}

// primaryAssetFor is the wallet's primary asset from the phone's country (CONTRACTS.md).
func primaryAssetFor(country string) string {
	switch country {
	case "AE":
		return "AED"
	case "SA":
		return "SAR"
	case "EG":
		return "EGP"
	}
	if euroCountries[country] {
		return "EUR"
	}
	return "USD"
}

// cleanName trims a name and refuses control and format characters (bidi overrides spoof how a
// name is shown to a payer).
func cleanName(s string) (string, bool) {
	s = strings.TrimSpace(s)
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return "", false
		}
	}
	return s, s != ""
}

func fieldError(field, msg string) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "validation_failed",
		Detail: "Some fields are missing or invalid.", Fields: map[string]string{field: msg}}
}

func invalidEmail() *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: "invalid_email",
		Detail: "The email address is not valid.", Fields: map[string]string{"email": "a plain address such as name@example.com"}}
}

type signUpRequest struct {
	VerificationToken string `json:"verification_token" validate:"required,max=200"`
	FirstName         string `json:"first_name" validate:"required,max=100"`
	LastName          string `json:"last_name" validate:"required,max=100"`
	PIN               string `json:"pin" validate:"required,max=6"`
	DeviceID          string `json:"device_id" validate:"required,max=200"`
	Email             string `json:"email" validate:"omitempty,max=254"`
	DateOfBirth       string `json:"date_of_birth" validate:"omitempty,isodate"`
	Gender            string `json:"gender" validate:"omitempty,oneof=male female other"`
	Country           string `json:"country" validate:"omitempty,iso3166_1_alpha2"`
	Language          string `json:"language" validate:"omitempty,max=16,bcp47_language_tag"`
}

// signUp creates the account of a verified phone (verification token of purpose register). The
// home region is the challenge's: the region of the phone's country, not of the pod.
func (s *Server) signUp(w http.ResponseWriter, r *http.Request) error {
	var req signUpRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	first, ok1 := cleanName(req.FirstName)
	last, ok2 := cleanName(req.LastName)
	if !ok1 {
		return fieldError("first_name", "a name without control characters")
	}
	if !ok2 {
		return fieldError("last_name", "a name without control characters")
	}
	if err := checkNewPIN(req.PIN); err != nil {
		return pinError("pin", err)
	}
	var email string
	if req.Email != "" {
		var err error
		if email, err = normalizeEmail(req.Email); err != nil {
			return invalidEmail()
		}
	}
	lang := req.Language
	if lang == "" {
		lang = "en"
	}
	r = s.withClient(r, req.DeviceID)
	ctx := r.Context()
	v, vhash, err := s.peekVerification(ctx, req.VerificationToken, "register")
	if err != nil {
		return err
	}
	_, country, err := parsePhone(v.Phone)
	if err != nil {
		return err // it parsed when the code was sent
	}
	userID := uuid.New()
	h, err := s.db.HashPIN(userID, req.PIN)
	if err != nil {
		return err
	}
	sess, refresh := newSession(v.Region, req.DeviceID)
	u, grant, err := s.db.SignUp(ctx, storage.SignUp{
		UserID: userID, Verification: v, VerifyHash: vhash, PhoneCountry: country, Email: email,
		Profile:  storage.Profile{FirstName: first, LastName: last, DateOfBirth: req.DateOfBirth, Gender: req.Gender, Country: req.Country},
		Language: lang, PrimaryAsset: primaryAssetFor(country), PIN: h, Session: sess,
	})
	if err != nil {
		return err
	}
	tokens, err := s.tokensFor(grant, refresh)
	if err != nil {
		return err
	}
	s.business.sessionsStart.Inc()
	respond(w, http.StatusCreated, authResponse{User: toUserResponse(u), Tokens: tokens})
	return nil
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	u, err := s.db.GetUser(r.Context(), p.Region, p.UserID)
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, toUserResponse(u))
	return nil
}

// patchUserRequest lists every field a client may change; status, kyc_level, home_region and
// the rest are server-owned and refused as unknown fields (mass assignment, API3:2023). An
// empty string clears an optional field.
type patchUserRequest struct {
	Email       *string `json:"email" validate:"omitnil,max=254"`
	FirstName   *string `json:"first_name" validate:"omitnil,max=100"`
	LastName    *string `json:"last_name" validate:"omitnil,max=100"`
	AvatarURL   *string `json:"avatar_url" validate:"omitnil,max=2048"`
	DateOfBirth *string `json:"date_of_birth" validate:"omitnil,isodate|eq="`
	Gender      *string `json:"gender" validate:"omitnil,oneof=male female other|eq="`
	Country     *string `json:"country" validate:"omitnil,iso3166_1_alpha2|eq="`
	Address     *string `json:"address" validate:"omitnil,max=500"`
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) error {
	var req patchUserRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	patch := storage.UserPatch{DateOfBirth: req.DateOfBirth, Gender: req.Gender, Country: req.Country}
	for _, f := range []struct {
		name string
		in   *string
		out  **string
	}{{"first_name", req.FirstName, &patch.FirstName}, {"last_name", req.LastName, &patch.LastName}} {
		if f.in != nil {
			v, ok := cleanName(*f.in)
			if !ok {
				return fieldError(f.name, "a non-empty name without control characters")
			}
			*f.out = &v
		}
	}
	if req.Address != nil {
		v := strings.TrimSpace(*req.Address)
		if strings.IndexFunc(v, func(r rune) bool { return unicode.IsControl(r) && r != '\n' }) >= 0 {
			return fieldError("address", "text without control characters")
		}
		patch.Address = &v
	}
	if req.AvatarURL != nil {
		v := strings.TrimSpace(*req.AvatarURL)
		if v != "" {
			u, err := url.Parse(v)
			if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
				return fieldError("avatar_url", "an https URL")
			}
		}
		patch.AvatarURL = &v
	}
	if req.Email != nil {
		v := ""
		if strings.TrimSpace(*req.Email) != "" {
			var err error
			if v, err = normalizeEmail(*req.Email); err != nil {
				return invalidEmail()
			}
		}
		patch.Email = &v
	}
	p, _ := principalFrom(r.Context())
	u, err := s.db.UpdateUser(r.Context(), p.Region, p.UserID, patch)
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, toUserResponse(u))
	return nil
}

type pinBody struct {
	PIN string `json:"pin" validate:"required,max=6"`
}

// verifyPIN checks the caller's PIN; a malformed PIN is refused without spending an attempt.
func (s *Server) verifyPIN(r *http.Request, p Principal, pin string) error {
	if !validPINFormat(pin) {
		return storage.ErrInvalidPIN
	}
	return s.db.VerifyPIN(r.Context(), p.UserID, p.Region, pin)
}

// deleteUser closes the account: PIN, empty balances, then PII erased and sessions ended.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) error {
	var req pinBody
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	p, _ := principalFrom(r.Context())
	if err := s.verifyPIN(r, p, req.PIN); err != nil {
		return err
	}
	if err := s.db.DeleteUser(r.Context(), p.Region, p.UserID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

type changePINRequest struct {
	CurrentPIN string `json:"current_pin" validate:"required,max=6"`
	NewPIN     string `json:"new_pin" validate:"required,max=6"`
}

// changePIN replaces the PIN and ends the user's other sessions.
func (s *Server) changePIN(w http.ResponseWriter, r *http.Request) error {
	var req changePINRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	if err := checkNewPIN(req.NewPIN); err != nil {
		return pinError("new_pin", err)
	}
	p, _ := principalFrom(r.Context())
	if err := s.verifyPIN(r, p, req.CurrentPIN); err != nil {
		return err
	}
	h, err := s.db.HashPIN(p.UserID, req.NewPIN)
	if err != nil {
		return err
	}
	if err := s.db.ChangePIN(r.Context(), p.Region, p.UserID, p.SessionID, h); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// --- settings ---

type notificationsJSON struct {
	PushEnabled        bool `json:"push_enabled"`
	TransactionAlerts  bool `json:"transaction_alerts"`
	SecurityAlerts     bool `json:"security_alerts"`
	Promotions         bool `json:"promotions"`
	EmailNotifications bool `json:"email_notifications"`
	SMSNotifications   bool `json:"sms_notifications"`
}

type settingsResponse struct {
	Language      string            `json:"language"`
	Theme         string            `json:"theme"`
	DailyLimit    *string           `json:"daily_limit"`
	Notifications notificationsJSON `json:"notifications"`
}

func toSettingsResponse(st storage.Settings) settingsResponse {
	n := st.Notifications
	out := settingsResponse{Language: st.Language, Theme: st.Theme, Notifications: notificationsJSON{
		PushEnabled: n.PushEnabled, TransactionAlerts: n.TransactionAlerts, SecurityAlerts: n.SecurityAlerts,
		Promotions: n.Promotions, EmailNotifications: n.EmailNotifications, SMSNotifications: n.SMSNotifications}}
	if st.DailyLimit != nil {
		v := trimDecimal(*st.DailyLimit)
		out.DailyLimit = &v
	}
	return out
}

// trimDecimal drops the trailing zeros NUMERIC(20,8) pads with ("500.00000000" → "500.00"),
// keeping at least two decimals.
func trimDecimal(s string) string {
	intPart, frac, ok := strings.Cut(s, ".")
	if !ok {
		return s + ".00"
	}
	frac = strings.TrimRight(frac, "0")
	for len(frac) < 2 {
		frac += "0"
	}
	return intPart + "." + frac
}

// optionalString is a JSON field that may be absent, null or a string: PATCH needs all three.
type optionalString struct {
	Set   bool
	Value *string
}

func (o *optionalString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if bytes.Equal(b, []byte("null")) {
		o.Value = nil
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	o.Value = &s
	return nil
}

type patchNotifications struct {
	PushEnabled        *bool `json:"push_enabled"`
	TransactionAlerts  *bool `json:"transaction_alerts"`
	SecurityAlerts     *bool `json:"security_alerts"`
	Promotions         *bool `json:"promotions"`
	EmailNotifications *bool `json:"email_notifications"`
	SMSNotifications   *bool `json:"sms_notifications"`
}

type patchSettingsRequest struct {
	Language      *string             `json:"language" validate:"omitnil,max=16,bcp47_language_tag"`
	Theme         *string             `json:"theme" validate:"omitnil,oneof=light dark system"`
	DailyLimit    optionalString      `json:"daily_limit"`
	Notifications *patchNotifications `json:"notifications"`
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	st, err := s.db.GetSettings(r.Context(), p.Region, p.UserID)
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, toSettingsResponse(st))
	return nil
}

func (s *Server) patchSettings(w http.ResponseWriter, r *http.Request) error {
	var req patchSettingsRequest
	if err := decodeValid(r, &req); err != nil {
		return err
	}
	patch := storage.SettingsPatch{Language: req.Language, Theme: req.Theme}
	if req.DailyLimit.Set {
		if req.DailyLimit.Value == nil {
			patch.ClearDailyLimit = true
		} else if !decimalPattern.MatchString(*req.DailyLimit.Value) {
			return fieldError("daily_limit", "a decimal string such as 500.00, or null")
		} else {
			patch.DailyLimit = req.DailyLimit.Value
		}
	}
	if n := req.Notifications; n != nil {
		patch.PushEnabled, patch.TransactionAlerts, patch.SecurityAlerts = n.PushEnabled, n.TransactionAlerts, n.SecurityAlerts
		patch.Promotions, patch.EmailNotifications, patch.SMSNotifications = n.Promotions, n.EmailNotifications, n.SMSNotifications
	}
	p, _ := principalFrom(r.Context())
	st, err := s.db.UpdateSettings(r.Context(), p.Region, p.UserID, patch)
	if err != nil {
		return err
	}
	respond(w, http.StatusOK, toSettingsResponse(st))
	return nil
}

// --- sessions ---

type sessionResponse struct {
	ID           string    `json:"id"`
	DeviceID     string    `json:"device_id"`
	IPAddress    *string   `json:"ip_address"`
	UserAgent    *string   `json:"user_agent"`
	Current      bool      `json:"current"`
	CreatedAt    time.Time `json:"created_at"`
	LastActivity time.Time `json:"last_activity"`
	ExpiresAt    time.Time `json:"expires_at"`
}

type sessionsResponse struct {
	Items      []sessionResponse `json:"items"`
	NextCursor *string           `json:"next_cursor"`
}

// listSessions returns the caller's devices; a user has a handful, so one page holds them all.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) error {
	p, _ := principalFrom(r.Context())
	list, err := s.db.ListSessions(r.Context(), p.Region, p.UserID)
	if err != nil {
		return err
	}
	out := sessionsResponse{Items: make([]sessionResponse, 0, len(list))}
	for _, x := range list {
		out.Items = append(out.Items, sessionResponse{
			ID: x.ID.String(), DeviceID: x.DeviceID, IPAddress: strOrNil(x.IP), UserAgent: strOrNil(x.UserAgent),
			Current: x.ID == p.SessionID, CreatedAt: x.CreatedAt.UTC(), LastActivity: x.LastActivity.UTC(), ExpiresAt: x.ExpiresAt.UTC(),
		})
	}
	respond(w, http.StatusOK, out)
	return nil
}

// deleteSession ends one of the caller's sessions; anyone else's answers 404.
func (s *Server) deleteSession(w http.ResponseWriter, r *http.Request) error {
	id, err := uuid.Parse(mux.Vars(r)["id"])
	if err != nil {
		return storage.ErrNotFound
	}
	p, _ := principalFrom(r.Context())
	if err := s.db.RevokeSession(r.Context(), p.Region, p.UserID, id, storage.ActionSessionRevoked); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
