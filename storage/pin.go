package storage

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/crypto/argon2"
)

// PIN storage and verification (design.md, Security; reference/security.md §1.3, §1.4).
//
// A PIN is stored as argon2id over PINMAC(userID, PIN), an HMAC keyed by a pepper that lives in
// configuration, never in the database: the PIN space is tiny, so a stolen table must not be
// enough to brute force it. Parameters are OWASP's second equivalent set (m=19456 KiB, t=2, p=1)
// and travel in the PHC string, so they can be raised later without breaking old hashes.
const (
	argonMemory  = 19456
	argonTime    = 2
	argonThreads = 1
	argonKeyLen  = 32
	pinSaltLen   = 16

	// MaxPINAttempts wrong PINs lock the PIN; each lock lasts pinLockBase × 2^(cycles so far),
	// capped at pinLockMaxDoublings doublings (15 minutes, 30, 1 hour, … about 10 days).
	MaxPINAttempts      = 5
	pinLockBase         = 15 * time.Minute
	pinLockMaxDoublings = 10
)

// PINHash is a PIN's stored form, made by HashPIN outside any transaction (argon2id costs tens
// of milliseconds of CPU and must not run inside a retried closure or hold row locks).
type PINHash struct {
	PHC  string // $argon2id$v=19$m=…,t=…,p=…$salt$hash
	Salt []byte
}

// HashPIN hashes pin for userID with a fresh salt.
func (db *DB) HashPIN(userID uuid.UUID, pin string) (PINHash, error) {
	salt := make([]byte, pinSaltLen)
	if _, err := rand.Read(salt); err != nil {
		return PINHash{}, err
	}
	db.pins.acquire()
	key := argon2.IDKey(db.keys.PINMAC(userID.String(), pin), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	db.pins.release()
	phc := fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
	return PINHash{PHC: phc, Salt: salt}, nil
}

// checkPIN compares pin with a PHC string, with the parameters the string names.
func (db *DB) checkPIN(userID uuid.UUID, pin, phc string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, fmt.Errorf("user %s: PIN hash is not an argon2id PHC string", userID)
	}
	var version int
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, fmt.Errorf("user %s: argon2 version %q", userID, parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, fmt.Errorf("user %s: argon2 parameters %q", userID, parts[3])
	}
	salt, err1 := base64.RawStdEncoding.DecodeString(parts[4])
	want, err2 := base64.RawStdEncoding.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false, fmt.Errorf("user %s: PIN hash encoding", userID)
	}
	db.pins.acquire()
	got := argon2.IDKey(db.keys.PINMAC(userID.String(), pin), salt, t, m, p, uint32(len(want)))
	db.pins.release()
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// pinState is the process's PIN machinery: a semaphore bounding concurrent argon2id runs
// (19 MiB each; ASVS 15.1.3) and the verified-PIN cache of the fast path.
//
// Why a cache: VerifyPIN guards every money movement, at 1000+ per second, and argon2id costs
// ~30 ms of CPU. After a PIN verifies the slow way, the cache remembers
// HMAC(cacheKey, userID, pin_hash, PIN) for cacheTTL. A later call with the same PIN recomputes
// that HMAC (microseconds), reads the user's lock state and pin_hash in one cheap statement and
// succeeds if the hash is unchanged and the PIN is not locked. Anything else (wrong PIN, changed
// PIN on another pod, expired entry) takes the slow path, which counts the attempt; so the
// attempt limits are exactly those of the slow path. cacheKey is random per process and never
// stored; the cache holds no PIN and no pepper-derived value. We chose this over the plan's
// session `pin_verified` step-up because the API takes the PIN on every money call: a step-up
// would skip checking the PIN the client sent, or still need a hash to check it.
type pinState struct {
	sem      chan struct{}
	cacheKey []byte
	mu       sync.Mutex
	cache    map[uuid.UUID]pinCacheEntry
}

type pinCacheEntry struct {
	mac     []byte
	expires time.Time
}

const (
	pinCacheTTL = 10 * time.Minute
	pinCacheMax = 200_000
)

func newPINState() *pinState {
	key := make([]byte, 32)
	_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
	return &pinState{
		sem:      make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		cacheKey: key,
		cache:    make(map[uuid.UUID]pinCacheEntry),
	}
}

func (p *pinState) acquire() { p.sem <- struct{}{} }
func (p *pinState) release() { <-p.sem }

func (p *pinState) mac(userID uuid.UUID, phc, pin string) []byte {
	m := hmac.New(sha256.New, p.cacheKey)
	m.Write(userID[:])
	m.Write([]byte(phc))
	m.Write([]byte{0})
	m.Write([]byte(pin))
	return m.Sum(nil)
}

func (p *pinState) remember(userID uuid.UUID, phc, pin string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.cache) >= pinCacheMax {
		now := time.Now()
		for id, e := range p.cache {
			if now.After(e.expires) {
				delete(p.cache, id)
			}
		}
		if len(p.cache) >= pinCacheMax {
			clear(p.cache) // a cold cache costs hashes, never correctness
		}
	}
	p.cache[userID] = pinCacheEntry{mac: p.mac(userID, phc, pin), expires: time.Now().Add(pinCacheTTL)}
}

// hit reports whether pin matches the cached verification for phc.
func (p *pinState) hit(userID uuid.UUID, phc, pin string) bool {
	p.mu.Lock()
	e, ok := p.cache[userID]
	p.mu.Unlock()
	if !ok || time.Now().After(e.expires) {
		return false
	}
	return hmac.Equal(e.mac, p.mac(userID, phc, pin))
}

func (p *pinState) forget(userID uuid.UUID) {
	p.mu.Lock()
	delete(p.cache, userID)
	p.mu.Unlock()
}

const pinStateSQL = `
SELECT pin_hash, pin_attempts, pin_lock_cycles, pin_locked_until, pin_locked_until > now()
FROM user_auth WHERE region = $1 AND user_id = $2`

// The attempt is reserved before the hash is computed, in the statement that tests the lock:
// parallel guesses each need a reservation, so at most MaxPINAttempts are ever evaluated per
// lock cycle (ASVS 15.4.2; reference/security.md §1.4).
const reservePINAttemptSQL = `
UPDATE user_auth SET pin_attempts = pin_attempts + 1, updated_at = now()
WHERE region = $1 AND user_id = $2 AND pin_hash IS NOT NULL AND pin_attempts < $3
  AND (pin_locked_until IS NULL OR pin_locked_until <= now())
RETURNING pin_hash, pin_attempts`

const pinSuccessSQL = `
UPDATE user_auth SET pin_attempts = 0, pin_lock_cycles = 0, pin_locked_until = NULL, updated_at = now()
WHERE region = $1 AND user_id = $2 AND pin_hash = $3 AND (pin_locked_until IS NULL OR pin_locked_until <= now())`

const pinLockSQL = `
UPDATE user_auth SET pin_attempts = 0, pin_lock_cycles = pin_lock_cycles + 1,
    pin_locked_until = now() + INTERVAL '1 second' * $3::BIGINT * power(2, LEAST(pin_lock_cycles, $4::INT))::BIGINT,
    updated_at = now()
WHERE region = $1 AND user_id = $2
RETURNING pin_locked_until`

// VerifyPIN checks a user's PIN. It returns nil, or an error wrapping ErrInvalidPIN or
// ErrPINLocked with a *PINError (attempts left, locked until), or ErrNotFound. It runs its own
// transactions, never inside a caller's: a failed attempt must commit even though the caller's
// operation is then refused. Wrong PINs and locks are written to the audit trail with the
// ClientMeta of ctx. See pinState for the fast path.
func (db *DB) VerifyPIN(ctx context.Context, userID uuid.UUID, region, pin string) error {
	var phc *string
	var attempts, cycles int
	var lockedUntil *time.Time
	var locked *bool
	err := db.inTx(ctx, "pin_state", readCommitted, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, pinStateSQL, region, userID).Scan(&phc, &attempts, &cycles, &lockedUntil, &locked)
	})
	if err != nil {
		return fmt.Errorf("user %s: %w", userID, err)
	}
	err = db.pinFast(userID, pin, pinRow{phc, attempts, lockedUntil, locked})
	if !errors.Is(err, errPINSlowPath) {
		return err
	}
	if phc != nil && db.pins.hit(userID, *phc, pin) {
		// A cached PIN with attempts to clear: the reset is a write of its own.
		return db.pinSucceeded(ctx, userID, region, *phc)
	}
	return db.verifyPINSlow(ctx, userID, region, pin)
}

// pinRow is pinStateSQL's answer, read by VerifyPIN or inside a movement's read batch.
type pinRow struct {
	phc         *string
	attempts    int
	lockedUntil *time.Time
	locked      *bool
}

// errPINSlowPath: the PIN cannot be decided from the cache; VerifyPIN must run (it counts the
// attempt, computes argon2id on a miss, and clears earlier failed attempts on a hit).
var errPINSlowPath = errors.New("PIN needs the counted slow path")

// pinFast decides a PIN from its row without writing anything: nil when the cache holds this
// exact PIN for this exact hash and no failed attempt is pending, a *PINError while locked,
// ErrNotFound without a PIN, errPINSlowPath otherwise. It never runs argon2id, so a movement can
// call it on the row read in its own batch (transfers.go) and the attempt limits stay those of
// the slow path: a miss, a wrong PIN or pending attempts all go through VerifyPIN.
func (db *DB) pinFast(userID uuid.UUID, pin string, r pinRow) error {
	if r.locked != nil && *r.locked {
		return &PINError{Err: ErrPINLocked, LockedUntil: r.lockedUntil.UTC()}
	}
	if r.phc == nil {
		return fmt.Errorf("user %s has no PIN: %w", userID, ErrNotFound)
	}
	if r.attempts == 0 && db.pins.hit(userID, *r.phc, pin) {
		return nil
	}
	return errPINSlowPath
}

func (db *DB) verifyPINSlow(ctx context.Context, userID uuid.UUID, region, pin string) error {
	var phc string
	var attempt int
	var refused *PINError
	err := db.inTx(ctx, "pin_reserve", readCommitted, func(tx pgx.Tx) error {
		refused = nil
		err := tx.QueryRow(ctx, reservePINAttemptSQL, region, userID, MaxPINAttempts).Scan(&phc, &attempt)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		// Refused: locked, or another request holds the last attempt. Report the lock.
		var hash *string
		var attempts, cycles int
		var until *time.Time
		var locked *bool
		if err := tx.QueryRow(ctx, pinStateSQL, region, userID).Scan(&hash, &attempts, &cycles, &until, &locked); err != nil {
			return err
		}
		if hash == nil {
			return fmt.Errorf("user %s has no PIN: %w", userID, ErrNotFound)
		}
		refused = &PINError{Err: ErrPINLocked}
		if locked != nil && *locked {
			refused.LockedUntil = until.UTC()
		} else {
			refused.LockedUntil = time.Now().UTC().Add(lockDuration(cycles))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("user %s: %w", userID, err)
	}
	if refused != nil {
		return refused
	}
	ok, err := db.checkPIN(userID, pin, phc)
	if err != nil {
		return err
	}
	if ok {
		if err := db.pinSucceeded(ctx, userID, region, phc); err != nil {
			return err
		}
		db.pins.remember(userID, phc, pin)
		return nil
	}
	var result *PINError
	err = db.inTx(ctx, "pin_failed", readCommitted, func(tx pgx.Tx) error {
		if attempt < MaxPINAttempts {
			result = &PINError{Err: ErrInvalidPIN, AttemptsLeft: MaxPINAttempts - attempt}
			return logActivity(ctx, tx, region, userID, ActionPINFailed, map[string]any{"attempts_left": MaxPINAttempts - attempt})
		}
		var until time.Time
		if err := tx.QueryRow(ctx, pinLockSQL, region, userID, int64(pinLockBase/time.Second), pinLockMaxDoublings).Scan(&until); err != nil {
			return err
		}
		result = &PINError{Err: ErrPINLocked, LockedUntil: until.UTC()}
		return logActivity(ctx, tx, region, userID, ActionPINLocked, map[string]any{"locked_until": until.UTC()})
	})
	if err != nil {
		return fmt.Errorf("user %s: %w", userID, err)
	}
	// Counted after the commit, once whatever the retries: a wrong PIN, and when it took the last
	// attempt, the lock-out it caused.
	db.metrics.pinFailures.Inc()
	if errors.Is(result, ErrPINLocked) {
		db.metrics.pinLockouts.Inc()
	}
	return result
}

// pinSucceeded resets the counters after a correct PIN, unless a lock was set meanwhile by a
// parallel wrong attempt (then the correct PIN is refused too: the lock wins).
func (db *DB) pinSucceeded(ctx context.Context, userID uuid.UUID, region, phc string) error {
	var applied bool
	err := db.inTx(ctx, "pin_success", readCommitted, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, pinSuccessSQL, region, userID, phc)
		applied = tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return fmt.Errorf("user %s: %w", userID, err)
	}
	if !applied {
		db.pins.forget(userID)
		return &PINError{Err: ErrPINLocked, LockedUntil: time.Now().UTC().Add(pinLockBase)}
	}
	return nil
}

func lockDuration(cycles int) time.Duration {
	return pinLockBase << min(cycles, pinLockMaxDoublings)
}

// setPIN stores a new PIN hash inside tx and clears the attempt and lock state.
func setPIN(ctx context.Context, tx pgx.Tx, region string, userID uuid.UUID, h PINHash) error {
	tag, err := tx.Exec(ctx, `UPDATE user_auth SET pin_hash = $3, pin_salt = $4, pin_attempts = 0,
    pin_lock_cycles = 0, pin_locked_until = NULL, updated_at = now()
WHERE region = $1 AND user_id = $2`, region, userID, h.PHC, h.Salt)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("user %s: %w", userID, ErrNotFound)
	}
	return nil
}

// ChangePIN replaces the PIN of a user who proved the current one (the caller ran VerifyPIN),
// and logs out the user's other devices (ASVS 7.4.3; reference/security.md §1.6): the session
// that changed it stays. One transaction with its audit row.
func (db *DB) ChangePIN(ctx context.Context, region string, userID, sessionID uuid.UUID, h PINHash) error {
	err := db.inTx(ctx, "change_pin", readCommitted, func(tx pgx.Tx) error {
		if err := setPIN(ctx, tx, region, userID, h); err != nil {
			return err
		}
		if err := revokeSessions(ctx, tx, region, userID, nil, &sessionID, "pin_changed"); err != nil {
			return err
		}
		return logActivity(ctx, tx, region, userID, ActionPINChanged, map[string]any{"kept_session": sessionID})
	})
	db.pins.forget(userID)
	return err
}
