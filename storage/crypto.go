package storage

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sort"
)

// Keys are the application-held secrets that protect personal data and credentials: the PII key
// ring (AES-256-GCM), the blind-index key (HMAC-SHA256), the PIN pepper and the OTP key. They
// come from configuration, never from the database, so that a stolen dump yields neither PII nor
// PINs (design.md, Security; reference/security.md §2).
type Keys struct {
	ring       map[string]cipher.AEAD
	primary    string
	blindIndex []byte
	pinPepper  []byte
	otpKey     []byte
}

// ErrDecrypt: a ciphertext could not be opened (unknown key id, tampering, or a ciphertext moved
// to another row or column).
var ErrDecrypt = errors.New("cannot decrypt")

// ciphertextVersion is the first byte of every ciphertext, so the format can change.
const ciphertextVersion = 1

// NewKeys builds Keys. ring maps key ids (1–32 bytes of text) to 32-byte AES keys; primary is
// the id new ciphertexts use; the other keys must be at least 32 bytes.
func NewKeys(ring map[string][]byte, primary string, blindIndexKey, pinPepper, otpKey []byte) (*Keys, error) {
	if _, ok := ring[primary]; !ok {
		return nil, fmt.Errorf("primary PII key %q is not in the key ring", primary)
	}
	k := &Keys{ring: make(map[string]cipher.AEAD, len(ring)), primary: primary}
	for id, key := range ring {
		if len(id) == 0 || len(id) > 32 {
			return nil, fmt.Errorf("PII key id %q: want 1 to 32 characters", id)
		}
		if len(key) != 32 {
			return nil, fmt.Errorf("PII key %q: want 32 bytes (AES-256), got %d", id, len(key))
		}
		block, err := aes.NewCipher(key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		k.ring[id] = aead
	}
	for name, key := range map[string][]byte{"blind-index key": blindIndexKey, "PIN pepper": pinPepper, "OTP key": otpKey} {
		if len(key) < 32 {
			return nil, fmt.Errorf("%s: want at least 32 bytes, got %d", name, len(key))
		}
	}
	k.blindIndex, k.pinPepper, k.otpKey = blindIndexKey, pinPepper, otpKey
	return k, nil
}

// KeyIDs returns the ids in the ring, sorted, for the start-up log (ids are not secret).
func (k *Keys) KeyIDs() []string {
	ids := make([]string, 0, len(k.ring))
	for id := range k.ring {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// aad binds a ciphertext to its place: "table.column:rowID". A ciphertext copied to another row
// or column no longer opens.
func aad(table, column, rowID string) []byte {
	return []byte(table + "." + column + ":" + rowID)
}

// Encrypt seals plaintext for table.column of the row rowID with the primary key. The result
// is version | len(keyID) | keyID | nonce | ciphertext+tag. An empty plaintext encrypts to nil
// (the column stays NULL).
func (k *Keys) Encrypt(plaintext []byte, table, column, rowID string) ([]byte, error) {
	if len(plaintext) == 0 {
		return nil, nil
	}
	aead := k.ring[k.primary]
	out := make([]byte, 0, 2+len(k.primary)+aead.NonceSize()+len(plaintext)+aead.Overhead())
	out = append(out, ciphertextVersion, byte(len(k.primary)))
	out = append(out, k.primary...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return aead.Seal(out, nonce, plaintext, aad(table, column, rowID)), nil
}

// EncryptString is Encrypt for text.
func (k *Keys) EncryptString(s, table, column, rowID string) ([]byte, error) {
	return k.Encrypt([]byte(s), table, column, rowID)
}

// Decrypt opens a ciphertext made by Encrypt for the same table, column and row, with whichever
// key of the ring it names, so keys rotate without re-encrypting first. nil opens to nil.
func (k *Keys) Decrypt(ciphertext []byte, table, column, rowID string) ([]byte, error) {
	if ciphertext == nil {
		return nil, nil
	}
	if len(ciphertext) < 2 || ciphertext[0] != ciphertextVersion {
		return nil, fmt.Errorf("%w: unknown format", ErrDecrypt)
	}
	idLen := int(ciphertext[1])
	if len(ciphertext) < 2+idLen {
		return nil, fmt.Errorf("%w: truncated", ErrDecrypt)
	}
	id := string(ciphertext[2 : 2+idLen])
	aead, ok := k.ring[id]
	if !ok {
		return nil, fmt.Errorf("%w: key %q is not in the ring", ErrDecrypt, id)
	}
	rest := ciphertext[2+idLen:]
	if len(rest) < aead.NonceSize()+aead.Overhead() {
		return nil, fmt.Errorf("%w: truncated", ErrDecrypt)
	}
	plain, err := aead.Open(nil, rest[:aead.NonceSize()], rest[aead.NonceSize():], aad(table, column, rowID))
	if err != nil {
		return nil, fmt.Errorf("%w: %s.%s", ErrDecrypt, table, column)
	}
	return plain, nil
}

// DecryptString is Decrypt for text.
func (k *Keys) DecryptString(ciphertext []byte, table, column, rowID string) (string, error) {
	b, err := k.Decrypt(ciphertext, table, column, rowID)
	return string(b), err
}

// BlindIndex is the keyed hash used for lookups and uniqueness of a normalised value (an E.164
// phone, a lower-cased email). domain separates uses ("phone", "email", "ip"), so equal values
// in different roles do not match. Plain SHA-256 of a phone is reversible by enumeration
// (reference/security.md §2.1); a keyed hash is not without the key.
func (k *Keys) BlindIndex(domain, normalized string) []byte {
	return keyedHash(k.blindIndex, domain, normalized)
}

// PINMAC is HMAC(pepper, userID, PIN): what argon2id hashes, so a stolen table cannot be brute
// forced over the tiny PIN space without the pepper (design.md, Security).
func (k *Keys) PINMAC(userID, pin string) []byte {
	return keyedHash(k.pinPepper, "pin:"+userID, pin)
}

// OTPHash is the keyed hash an OTP code is stored as, bound to its challenge.
func (k *Keys) OTPHash(challengeID, code string) []byte {
	return keyedHash(k.otpKey, "otp:"+challengeID, code)
}

// TokenHash hashes a high-entropy bearer token (refresh tokens) for storage. No key is needed:
// 256 random bits cannot be enumerated.
func TokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

func keyedHash(key []byte, domain, value string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(domain))
	m.Write([]byte{0})
	m.Write([]byte(value))
	return m.Sum(nil)
}
