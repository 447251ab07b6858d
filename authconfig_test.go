package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func b64(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func prodEnv() map[string]string {
	return map[string]string{
		"APP_ENV": "production", "REGION": "eu-west1", "DATABASE_URL": "postgres://db/wallet",
		"OPS_API_KEY": strings.Repeat("k", 32), "PII_KEYS": "k1:" + b64(32) + ",k0:" + b64(32), "PII_PRIMARY_KEY": "k1",
		"BLIND_INDEX_KEY": b64(32), "PIN_PEPPER": b64(32), "OTP_HMAC_KEY": b64(32), "JWT_SIGNING_KEY": b64(32),
		"SMS_WEBHOOK_URL": "https://sms.example.com/send?key=s3cret",
	}
}

func loadFor(t *testing.T, cmd string, env map[string]string) (*config, error) {
	t.Helper()
	fs := flag.NewFlagSet("7awel "+cmd, flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	return loadConfig(fs, nil, envFrom(env))
}

// TestProductionRefusesWithoutEachSecret: serve names every missing or malformed secret;
// migrate does not need them.
func TestProductionRefusesWithoutEachSecret(t *testing.T) {
	if _, err := loadFor(t, "serve", prodEnv()); err != nil {
		t.Fatalf("complete production configuration refused: %v", err)
	}
	for _, name := range []string{"PII_KEYS", "PII_PRIMARY_KEY", "BLIND_INDEX_KEY", "PIN_PEPPER", "OTP_HMAC_KEY", "JWT_SIGNING_KEY", "SMS_WEBHOOK_URL"} {
		env := prodEnv()
		delete(env, name)
		if _, err := loadFor(t, "serve", env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
	env := prodEnv()
	delete(env, "JWT_SIGNING_KEY")
	if _, err := loadFor(t, "migrate", env); err != nil {
		t.Errorf("migrate needs no secrets: %v", err)
	}
	for name, bad := range map[string]string{
		"PII_KEYS": "k1:short", "PII_PRIMARY_KEY": "nope", "BLIND_INDEX_KEY": b64(8), "PIN_PEPPER": "!!", "JWT_SIGNING_KEY": b64(64),
		"OTP_TTL": "1h", "OTP_DAILY_MAX": "0", "OTP_PER_ADDRESS_HOUR": "0", "AVAILABILITY_PER_HOUR": "-1",
	} {
		env := prodEnv()
		env[name] = bad
		if _, err := loadFor(t, "serve", env); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%q: %v", name, bad, err)
		}
	}
}

func TestSecretsMaskedInTheConfigLog(t *testing.T) {
	env := prodEnv()
	c, err := loadFor(t, "serve", env)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(&buf), zap.InfoLevel))
	log.Info("configuration", c.logFields()...)
	out := buf.String()
	for _, name := range []string{"PII_KEYS", "BLIND_INDEX_KEY", "PIN_PEPPER", "OTP_HMAC_KEY", "JWT_SIGNING_KEY", "SMS_WEBHOOK_URL"} {
		v := env[name]
		if name == "PII_KEYS" {
			v = strings.Split(strings.Split(v, ",")[0], ":")[1]
		}
		if strings.Contains(out, v) {
			t.Errorf("the configuration log shows %s", name)
		}
	}
	if !strings.Contains(out, "k0:***,k1:***") || !strings.Contains(out, `"pin_pepper":"***"`) {
		t.Errorf("the log should show key ids and that secrets are set: %s", out)
	}
}

// TestDevelopmentKeysAreGeneratedOnceAndKept: development makes its keys on first use, in a
// 0600 file, and reuses them, so encrypted data stays readable across restarts.
func TestDevelopmentKeysAreGeneratedOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	c, err := loadFor(t, "serve", map[string]string{"DATA_DIR": dir})
	if err != nil {
		t.Fatal(err)
	}
	k1, jwt1, err := c.authKeys()
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, "dev-keys.json"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("dev-keys.json: %v %v", st, err)
	}
	ct, err := k1.EncryptString("+971501234567", "users", "phone_enc", "u1")
	if err != nil {
		t.Fatal(err)
	}
	c2, _ := loadFor(t, "serve", map[string]string{"DATA_DIR": dir})
	k2, jwt2, err := c2.authKeys()
	if err != nil {
		t.Fatal(err)
	}
	if pt, err := k2.DecryptString(ct, "users", "phone_enc", "u1"); err != nil || pt != "+971501234567" || !jwt1.Equal(jwt2) {
		t.Fatalf("keys not reused: %q %v", pt, err)
	}
	// A configured key wins over the generated one.
	c3, _ := loadFor(t, "serve", map[string]string{"DATA_DIR": dir, "JWT_SIGNING_KEY": b64(32)})
	if _, jwt3, err := c3.authKeys(); err != nil || jwt3.Equal(jwt1) {
		t.Fatalf("configured JWT key ignored: %v", err)
	}
}
