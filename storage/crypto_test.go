package storage

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func randomKey(testing.TB) []byte {
	k := make([]byte, 32)
	_, _ = rand.Read(k) // crypto/rand.Read never fails (Go 1.24+)
	return k
}

// testKeys returns fresh random keys; t may be nil (TestMain).
func testKeys(t testing.TB) *Keys {
	k, err := NewKeys(map[string][]byte{"k1": randomKey(t)}, "k1", randomKey(t), randomKey(t), randomKey(t))
	if err != nil {
		panic(err)
	}
	return k
}

func TestEncryptRoundTripAndBinding(t *testing.T) {
	k := testKeys(t)
	ct, err := k.EncryptString("+971501234567", "users", "phone_enc", "row-1")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("501234567")) {
		t.Fatal("ciphertext contains the plaintext")
	}
	got, err := k.DecryptString(ct, "users", "phone_enc", "row-1")
	if err != nil || got != "+971501234567" {
		t.Fatalf("round trip = %q, %v", got, err)
	}
	for _, where := range [][3]string{{"users", "phone_enc", "row-2"}, {"users", "email_enc", "row-1"}, {"user_profiles", "phone_enc", "row-1"}} {
		if _, err := k.Decrypt(ct, where[0], where[1], where[2]); !errors.Is(err, ErrDecrypt) {
			t.Errorf("ciphertext opened at %v: err = %v", where, err)
		}
	}
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	if _, err := k.Decrypt(tampered, "users", "phone_enc", "row-1"); !errors.Is(err, ErrDecrypt) {
		t.Errorf("tampered ciphertext: err = %v", err)
	}
	if v, err := k.Encrypt(nil, "users", "phone_enc", "row-1"); v != nil || err != nil {
		t.Errorf("empty plaintext = %v, %v; want nil, nil", v, err)
	}
	for _, bad := range [][]byte{{}, {9}, {1, 40}, {1, 2, 'k', '1', 0}} {
		if _, err := k.Decrypt(bad, "users", "phone_enc", "row-1"); !errors.Is(err, ErrDecrypt) {
			t.Errorf("Decrypt(%v): err = %v", bad, err)
		}
	}
}

// TestKeyRotation: a ring with a new primary still opens what the old key sealed.
func TestKeyRotation(t *testing.T) {
	old, next := randomKey(t), randomKey(t)
	bi, pep, otp := randomKey(t), randomKey(t), randomKey(t)
	k1, err := NewKeys(map[string][]byte{"2026a": old}, "2026a", bi, pep, otp)
	if err != nil {
		t.Fatal(err)
	}
	ct, _ := k1.EncryptString("Layla", "user_profiles", "first_name_enc", "u1")
	k2, err := NewKeys(map[string][]byte{"2026a": old, "2026b": next}, "2026b", bi, pep, otp)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := k2.DecryptString(ct, "user_profiles", "first_name_enc", "u1"); err != nil || got != "Layla" {
		t.Fatalf("after rotation: %q, %v", got, err)
	}
	ct2, _ := k2.EncryptString("Layla", "user_profiles", "first_name_enc", "u1")
	if _, err := k1.Decrypt(ct2, "user_profiles", "first_name_enc", "u1"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("the old ring opened a ciphertext of a key it does not hold: %v", err)
	}
	if !bytes.Equal(k1.BlindIndex("phone", "+971501234567"), k2.BlindIndex("phone", "+971501234567")) {
		t.Fatal("blind index changed with the PII key; lookups would break")
	}
}

func TestBlindIndexAndHashes(t *testing.T) {
	k := testKeys(t)
	a := k.BlindIndex("phone", "+971501234567")
	if !bytes.Equal(a, k.BlindIndex("phone", "+971501234567")) {
		t.Fatal("blind index is not deterministic")
	}
	if bytes.Equal(a, k.BlindIndex("email", "+971501234567")) {
		t.Fatal("blind index is not separated by domain")
	}
	if bytes.Equal(a, testKeys(t).BlindIndex("phone", "+971501234567")) {
		t.Fatal("blind index does not depend on the key")
	}
	if bytes.Equal(k.PINMAC("u1", "1357"), k.PINMAC("u2", "1357")) {
		t.Fatal("PIN MAC is not bound to the user")
	}
	if bytes.Equal(k.OTPHash("c1", "123456"), k.OTPHash("c2", "123456")) {
		t.Fatal("OTP hash is not bound to the challenge")
	}
}

func TestNewKeysRefusesWeakKeys(t *testing.T) {
	good := randomKey(t)
	cases := map[string]func() error{
		"primary missing": func() error { _, err := NewKeys(map[string][]byte{"a": good}, "b", good, good, good); return err },
		"short AES key":   func() error { _, err := NewKeys(map[string][]byte{"a": good[:16]}, "a", good, good, good); return err },
		"short pepper":    func() error { _, err := NewKeys(map[string][]byte{"a": good}, "a", good, good[:8], good); return err },
		"empty key id":    func() error { _, err := NewKeys(map[string][]byte{"": good}, "", good, good, good); return err },
	}
	for name, f := range cases {
		if f() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
