package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/7awel/wallet/storage"
)

// secretEnv holds the auth and PII secrets as configured, base64 text (never logged; logFields
// masks them).
type secretEnv struct {
	PIIKeys    string `json:"pii_keys"`        // "id:base64,id2:base64" — 32-byte AES keys
	PIIPrimary string `json:"pii_primary_key"` // the id new ciphertexts use
	BlindIndex string `json:"blind_index_key"` // ≥32 bytes
	PINPepper  string `json:"pin_pepper"`      // ≥32 bytes
	OTPKey     string `json:"otp_hmac_key"`    // ≥32 bytes
	JWTKey     string `json:"jwt_signing_key"` // Ed25519 seed, 32 bytes
	SMSWebhook string `json:"-"`
}

// secretVars names each secret's variable, in the order problems are reported.
var secretVars = []struct {
	name string
	get  func(*secretEnv) *string
}{
	{"PII_KEYS", func(s *secretEnv) *string { return &s.PIIKeys }},
	{"PII_PRIMARY_KEY", func(s *secretEnv) *string { return &s.PIIPrimary }},
	{"BLIND_INDEX_KEY", func(s *secretEnv) *string { return &s.BlindIndex }},
	{"PIN_PEPPER", func(s *secretEnv) *string { return &s.PINPepper }},
	{"OTP_HMAC_KEY", func(s *secretEnv) *string { return &s.OTPKey }},
	{"JWT_SIGNING_KEY", func(s *secretEnv) *string { return &s.JWTKey }},
}

// loadAuthConfig reads the auth throttles and secrets. Production refuses to serve without each
// secret and the SMS webhook, naming the variable; development generates missing keys once into
// DATA_DIR/dev-keys.json (authKeys). Throttles can be raised but never switched off.
func (c *config) loadAuthConfig(env func(key, def string) string, bad func(string, ...any), prod, serving bool) {
	dur := func(key, def string, lo, hi time.Duration) time.Duration {
		v := env(key, def)
		d, err := time.ParseDuration(v)
		if err != nil || d < lo || d > hi {
			bad("%s=%q: want a duration from %s to %s", key, v, lo, hi)
		}
		return d
	}
	num := func(key, def string, lo, hi int) int {
		v := env(key, def)
		n, err := strconv.Atoi(v)
		if err != nil || n < lo || n > hi {
			bad("%s=%q: want a number from %d to %d", key, v, lo, hi)
		}
		return n
	}
	perAddr, avail := "10", "30"
	if !prod {
		// One developer or load test drives everything from one address.
		perAddr, avail = "100000", "100000"
	}
	c.OTPTTL = dur("OTP_TTL", "5m", time.Minute, 10*time.Minute)
	c.OTPCooldown = dur("OTP_RESEND_COOLDOWN", "60s", time.Second, time.Hour)
	c.OTPMaxCooldown = dur("OTP_MAX_COOLDOWN", "32m", time.Second, 24*time.Hour)
	c.OTPDailyMax = num("OTP_DAILY_MAX", "5", 1, 1000)
	c.OTPPerAddressHour = num("OTP_PER_ADDRESS_HOUR", perAddr, 1, 10_000_000)
	c.AvailabilityPerHour = num("AVAILABILITY_PER_HOUR", avail, 1, 10_000_000)
	c.ClientIPHeader = env("CLIENT_IP_HEADER", "")

	for _, v := range secretVars {
		*v.get(&c.secrets) = env(v.name, "")
	}
	c.secrets.SMSWebhook = env("SMS_WEBHOOK_URL", "")
	if prod && serving {
		for _, v := range secretVars {
			if *v.get(&c.secrets) == "" {
				bad("%s is required in production", v.name)
			}
		}
		if c.secrets.SMSWebhook == "" {
			bad("SMS_WEBHOOK_URL is required in production: OTP codes must reach phones")
		}
	}
	// Parse what is set now, so a malformed key stops the start with its variable's name.
	if err := c.secrets.complete(); err == nil {
		if _, _, err := c.secrets.parse(); err != nil {
			bad("%v", err)
		}
	} else {
		for _, e := range c.secrets.partialErrors() {
			bad("%v", e)
		}
	}
}

// complete reports whether every key is set.
func (s *secretEnv) complete() error {
	for _, v := range secretVars {
		if *v.get(s) == "" {
			return fmt.Errorf("%s is not set", v.name)
		}
	}
	return nil
}

// partialErrors parses the secrets that are set, one error per bad variable.
func (s *secretEnv) partialErrors() []error {
	var out []error
	if s.PIIKeys != "" {
		if _, err := parseKeyRing(s.PIIKeys); err != nil {
			out = append(out, err)
		}
	}
	for _, v := range []struct {
		name, val string
		min       int
	}{{"BLIND_INDEX_KEY", s.BlindIndex, 32}, {"PIN_PEPPER", s.PINPepper, 32}, {"OTP_HMAC_KEY", s.OTPKey, 32}, {"JWT_SIGNING_KEY", s.JWTKey, 32}} {
		if v.val != "" {
			if _, err := decodeKey(v.name, v.val, v.min); err != nil {
				out = append(out, err)
			}
		}
	}
	return out
}

func decodeKey(name, val string, minLen int) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(val))
	if err != nil {
		return nil, fmt.Errorf("%s: want base64", name)
	}
	if len(b) < minLen {
		return nil, fmt.Errorf("%s: want at least %d bytes, got %d", name, minLen, len(b))
	}
	return b, nil
}

// parseKeyRing reads "id:base64,id2:base64".
func parseKeyRing(v string) (map[string][]byte, error) {
	ring := map[string][]byte{}
	for _, pair := range strings.Split(v, ",") {
		id, key, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok || id == "" {
			return nil, errors.New("PII_KEYS: want id:base64 pairs separated by commas")
		}
		b, err := base64.StdEncoding.DecodeString(key)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("PII_KEYS: key %q: want 32 bytes of base64", id)
		}
		if _, dup := ring[id]; dup {
			return nil, fmt.Errorf("PII_KEYS: key %q listed twice", id)
		}
		ring[id] = b
	}
	return ring, nil
}

// parse builds the storage keys and the JWT key.
func (s *secretEnv) parse() (*storage.Keys, ed25519.PrivateKey, error) {
	ring, err := parseKeyRing(s.PIIKeys)
	if err != nil {
		return nil, nil, err
	}
	bidx, err := decodeKey("BLIND_INDEX_KEY", s.BlindIndex, 32)
	if err != nil {
		return nil, nil, err
	}
	pepper, err := decodeKey("PIN_PEPPER", s.PINPepper, 32)
	if err != nil {
		return nil, nil, err
	}
	otp, err := decodeKey("OTP_HMAC_KEY", s.OTPKey, 32)
	if err != nil {
		return nil, nil, err
	}
	seed, err := decodeKey("JWT_SIGNING_KEY", s.JWTKey, ed25519.SeedSize)
	if err != nil {
		return nil, nil, err
	}
	if len(seed) != ed25519.SeedSize {
		return nil, nil, fmt.Errorf("JWT_SIGNING_KEY: want a %d-byte Ed25519 seed", ed25519.SeedSize)
	}
	keys, err := storage.NewKeys(ring, s.PIIPrimary, bidx, pepper, otp)
	if err != nil {
		return nil, nil, fmt.Errorf("PII_KEYS/PII_PRIMARY_KEY: %w", err)
	}
	return keys, ed25519.NewKeyFromSeed(seed), nil
}

// authKeys returns the configured keys. In development, missing ones come from
// DATA_DIR/dev-keys.json, generated on first use (mode 0600) and reused, so encrypted data stays
// readable across restarts. Production never gets here without every key (loadConfig).
func (c *config) authKeys() (*storage.Keys, ed25519.PrivateKey, error) {
	if c.secrets.complete() == nil || !c.development() {
		return c.secrets.parse()
	}
	path := filepath.Join(c.DataDir, "dev-keys.json")
	var dev secretEnv
	raw, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(raw, &dev); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
	case errors.Is(err, os.ErrNotExist):
		rnd := func() string {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			return base64.StdEncoding.EncodeToString(b)
		}
		dev = secretEnv{PIIKeys: "dev1:" + rnd(), PIIPrimary: "dev1", BlindIndex: rnd(), PINPepper: rnd(), OTPKey: rnd(), JWTKey: rnd()}
		out, _ := json.MarshalIndent(dev, "", "  ")
		if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
			return nil, nil, err
		}
		if err := os.WriteFile(path, out, 0o600); err != nil {
			return nil, nil, fmt.Errorf("write development keys: %w", err)
		}
	default:
		return nil, nil, err
	}
	for _, v := range secretVars {
		if *v.get(&c.secrets) == "" {
			*v.get(&c.secrets) = *v.get(&dev)
		}
	}
	return c.secrets.parse()
}

// maskKeyRing shows the ids of a key ring, never the keys.
func maskKeyRing(v string) string {
	if v == "" {
		return ""
	}
	var ids []string
	for _, pair := range strings.Split(v, ",") {
		id, _, _ := strings.Cut(strings.TrimSpace(pair), ":")
		ids = append(ids, id+":***")
	}
	sort.Strings(ids)
	return strings.Join(ids, ",")
}
