package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// Token lifetimes (reference/security.md §1.5): access tokens are short so that reads may trust
// them without a lookup; refresh tokens end 30 days after sign-in whatever the rotations.
const (
	accessTokenTTL  = 15 * time.Minute
	refreshTokenTTL = 30 * 24 * time.Hour
	// verificationTTL is how long a verification token (proof of OTP possession) may be spent.
	verificationTTL = 10 * time.Minute
	tokenIssuer     = "7awel"
	tokenAudience   = "7awel-api"
	// tokenLeeway absorbs clock skew between pods.
	tokenLeeway = 30 * time.Second
)

// accessClaims are what an access token carries: the user (sub), the session (sid), the home
// region, and the registered claims every token must have (iss, aud, exp, iat, jti).
type accessClaims struct {
	SessionID string `json:"sid"`
	Region    string `json:"region"`
	jwt.RegisteredClaims
}

// tokenSigner mints and verifies access tokens. EdDSA only: the allow-list refuses `none`, HMAC
// (key confusion) and everything else (ASVS 9.1.2, RFC 8725).
type tokenSigner struct {
	key    ed25519.PrivateKey
	pub    ed25519.PublicKey
	parser *jwt.Parser
	now    func() time.Time
}

func newTokenSigner(key ed25519.PrivateKey, now func() time.Time) *tokenSigner {
	if now == nil {
		now = time.Now
	}
	return &tokenSigner{
		key: key,
		pub: key.Public().(ed25519.PublicKey),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithAudience(tokenAudience),
			jwt.WithIssuer(tokenIssuer),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(tokenLeeway),
			jwt.WithStrictDecoding(),
			jwt.WithTimeFunc(now),
		),
		now: now,
	}
}

// issue signs an access token for a session.
func (t *tokenSigner) issue(p Principal) (string, time.Time, error) {
	now := t.now().UTC()
	exp := now.Add(accessTokenTTL)
	claims := accessClaims{
		SessionID: p.SessionID.String(),
		Region:    p.Region,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Subject:   p.UserID.String(),
			Audience:  jwt.ClaimStrings{tokenAudience},
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, claims)
	s, err := tok.SignedString(t.key)
	return s, exp, err
}

// errBadToken is every reason an access token is refused; the reason is logged at debug, the
// client only learns 401.
var errBadToken = errors.New("invalid access token")

// verify checks an access token and returns its principal and issue time. The key is ours only:
// headers such as jku, x5u or jwk are never consulted (ASVS 9.1.3).
func (t *tokenSigner) verify(raw string) (Principal, time.Time, error) {
	var claims accessClaims
	_, err := t.parser.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		if typ, ok := tok.Header["typ"]; ok && typ != "JWT" {
			return nil, fmt.Errorf("token type %v", typ)
		}
		return t.pub, nil
	})
	if err != nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: %w", errBadToken, err)
	}
	if claims.ID == "" || claims.IssuedAt == nil {
		return Principal{}, time.Time{}, fmt.Errorf("%w: jti and iat are required", errBadToken)
	}
	userID, err1 := uuid.Parse(claims.Subject)
	sessionID, err2 := uuid.Parse(claims.SessionID)
	if err1 != nil || err2 != nil || claims.Region == "" {
		return Principal{}, time.Time{}, fmt.Errorf("%w: sub, sid and region are required", errBadToken)
	}
	return Principal{UserID: userID, SessionID: sessionID, Region: claims.Region}, claims.IssuedAt.Time, nil
}

// Opaque tokens (refresh and verification) are 256 random bits behind a prefix that names the
// region their row lives in, so that the lookup pins one region (design.md, Regions and PII). The
// region in the token is not trusted for authority: the row is found by the hash of the whole
// token, and a token naming the wrong region simply finds nothing.
const (
	refreshPrefix      = "rt1"
	verificationPrefix = "vt1"
)

func randomSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// newOpaqueToken returns prefix.region.secret.
func newOpaqueToken(prefix, region string) string {
	return prefix + "." + region + "." + randomSecret()
}

// parseOpaqueToken returns the region of a token of the given kind, or false for anything that
// is not shaped like one (such tokens are refused without a database lookup).
func parseOpaqueToken(prefix, raw string) (region string, ok bool) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 || parts[0] != prefix || parts[1] == "" || len(parts[2]) != 43 {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(parts[2]); err != nil {
		return "", false
	}
	return parts[1], true
}
