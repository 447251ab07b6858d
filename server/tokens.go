package server

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
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

	// verified remembers tokens whose signature and claims checked out, by SHA-256 of the
	// exact token bytes, so a client's next request within the token's life skips the Ed25519
	// verification and the JSON decoding (the profile's top cost of the API after the
	// database: ~60 µs and ~40 allocations per request). A hit re-checks exp, nbf and iat
	// against the clock with the same leeway; revocation is not the signature's business
	// (authedLive and the movements check the session row). Bounded: at verifiedMax entries the
	// expired ones go, then all of them (a cold cache costs verifications, never correctness).
	mu       sync.Mutex
	verified map[[sha256.Size]byte]verifiedToken
}

type verifiedToken struct {
	p             Principal
	iat, nbf, exp time.Time
}

const verifiedMax = 20_000

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
		now:      now,
		verified: make(map[[sha256.Size]byte]verifiedToken),
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
	key := sha256.Sum256([]byte(raw))
	t.mu.Lock()
	v, ok := t.verified[key]
	t.mu.Unlock()
	if ok {
		now := t.now()
		if now.Before(v.exp.Add(tokenLeeway)) && !now.Before(v.nbf.Add(-tokenLeeway)) && !now.Before(v.iat.Add(-tokenLeeway)) {
			return v.p, v.iat, nil
		}
		return Principal{}, time.Time{}, fmt.Errorf("%w: token is expired or not valid yet", errBadToken)
	}
	p, iat, exp, nbf, err := t.verifySlow(raw)
	if err != nil {
		return Principal{}, time.Time{}, err
	}
	t.mu.Lock()
	if len(t.verified) >= verifiedMax {
		now := t.now()
		for k, e := range t.verified {
			if now.After(e.exp.Add(tokenLeeway)) {
				delete(t.verified, k)
			}
		}
		if len(t.verified) >= verifiedMax {
			clear(t.verified)
		}
	}
	t.verified[key] = verifiedToken{p: p, iat: iat, nbf: nbf, exp: exp}
	t.mu.Unlock()
	return p, iat, nil
}

// verifySlow is the full check: signature, algorithm allow-list, registered claims.
func (t *tokenSigner) verifySlow(raw string) (p Principal, iat, exp, nbf time.Time, err error) {
	var claims accessClaims
	_, err = t.parser.ParseWithClaims(raw, &claims, func(tok *jwt.Token) (any, error) {
		if typ, ok := tok.Header["typ"]; ok && typ != "JWT" {
			return nil, fmt.Errorf("token type %v", typ)
		}
		return t.pub, nil
	})
	if err != nil {
		return p, iat, exp, nbf, fmt.Errorf("%w: %w", errBadToken, err)
	}
	if claims.ID == "" || claims.IssuedAt == nil {
		return p, iat, exp, nbf, fmt.Errorf("%w: jti and iat are required", errBadToken)
	}
	userID, err1 := uuid.Parse(claims.Subject)
	sessionID, err2 := uuid.Parse(claims.SessionID)
	if err1 != nil || err2 != nil || claims.Region == "" {
		return p, iat, exp, nbf, fmt.Errorf("%w: sub, sid and region are required", errBadToken)
	}
	// WithExpirationRequired made exp present; nbf is optional (zero: no lower bound but iat).
	exp = claims.ExpiresAt.Time
	if claims.NotBefore != nil {
		nbf = claims.NotBefore.Time
	}
	return Principal{UserID: userID, SessionID: sessionID, Region: claims.Region}, claims.IssuedAt.Time, exp, nbf, nil
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
