package storage

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// OTP challenges (reference/security.md §1.1). A challenge is homed in the phone's home region,
// bound to the phone (blind index) and a purpose, and stores only OTPHash(challenge id, code).
// Only the newest challenge of a phone and purpose can verify; verifying mints a verification
// token, stored as a hash and spent once by the flow it was minted for.

// MaxOTPAttempts wrong codes kill a challenge.
const MaxOTPAttempts = 5

// VerificationTTL is how long a verified challenge's token may be spent.
const VerificationTTL = 10 * time.Minute

// OTPLimits are the throttles of sending codes. Every one is configurable and none may be zero
// (configuration refuses it).
type OTPLimits struct {
	TTL         time.Duration // validity of a code (5 minutes)
	Cooldown    time.Duration // wait before the first resend (60 s), doubling per resend
	MaxCooldown time.Duration // cap of the growing wait (32 minutes)
	DailyMax    int           // codes per phone per 24 hours (5)
}

// OTPSend is one code to send. The caller makes the id and the code before the transaction.
type OTPSend struct {
	ChallengeID uuid.UUID
	Region      string // the phone's home region
	Phone       string // E.164; stored encrypted, AAD otp_codes.phone_enc:<challenge id>
	Purpose     string // register, login, reset_pin
	Code        string
}

// OTPChallenge is what the client is told after a send.
type OTPChallenge struct {
	ExpiresAt   time.Time
	ResendAfter time.Time
}

const otpDailySQL = `
SELECT count(*), COALESCE(min(created_at), now()), now()
FROM otp_codes WHERE region = $1 AND phone_bidx = $2 AND created_at > now() - INTERVAL '24 hours'`

const otpLatestSQL = `
SELECT resend_after, send_count, created_at > now() - INTERVAL '24 hours'
FROM otp_codes WHERE region = $1 AND phone_bidx = $2 AND purpose = $3
ORDER BY created_at DESC LIMIT 1`

const otpExpireOlderSQL = `
UPDATE otp_codes SET expires_at = now()
WHERE region = $1 AND phone_bidx = $2 AND purpose = $3 AND verified_at IS NULL AND expires_at > now()`

const otpInsertSQL = `
INSERT INTO otp_codes (id, region, phone_bidx, phone_enc, purpose, code_hash, send_count, expires_at, resend_after)
VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::BIGINT * INTERVAL '1 millisecond', now() + $9::BIGINT * INTERVAL '1 millisecond')
RETURNING expires_at, resend_after`

// SendOTP records a new challenge, after the per-phone throttles: at most lim.DailyMax codes per
// phone in 24 hours, and a resend only after the previous code's resend_after (60 s, then
// doubling up to lim.MaxCooldown). Earlier live codes of the same phone and purpose stop
// working. Refusals are ErrRateLimited in a *RateLimitError. One serializable transaction (the
// count and the insert must not race); the SMS is the caller's job, after it commits.
func (db *DB) SendOTP(ctx context.Context, s OTPSend, lim OTPLimits) (OTPChallenge, error) {
	bidx := db.keys.BlindIndex("phone", s.Phone)
	phoneEnc, err := db.keys.EncryptString(s.Phone, "otp_codes", "phone_enc", s.ChallengeID.String())
	if err != nil {
		return OTPChallenge{}, err
	}
	codeHash := db.keys.OTPHash(s.ChallengeID.String(), s.Code)
	var out OTPChallenge
	err = db.inTx(ctx, "otp_send", serializable, func(tx pgx.Tx) error {
		var sent int
		var oldest, now time.Time
		if err := tx.QueryRow(ctx, otpDailySQL, s.Region, bidx).Scan(&sent, &oldest, &now); err != nil {
			return err
		}
		if sent >= lim.DailyMax {
			return &RateLimitError{Err: ErrRateLimited, Bucket: "otp_phone_daily", RetryAfter: oldest.Add(24 * time.Hour).Sub(now)}
		}
		sendCount := 1
		var resendAfter time.Time
		var prevCount int
		var recent bool
		err := tx.QueryRow(ctx, otpLatestSQL, s.Region, bidx, s.Purpose).Scan(&resendAfter, &prevCount, &recent)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
		case err != nil:
			return err
		case resendAfter.After(now):
			return &RateLimitError{Err: ErrRateLimited, Bucket: "otp_resend", RetryAfter: resendAfter.Sub(now)}
		case recent:
			sendCount = prevCount + 1
		}
		cooldown := min(lim.Cooldown<<min(sendCount-1, 20), lim.MaxCooldown)
		if _, err := tx.Exec(ctx, otpExpireOlderSQL, s.Region, bidx, s.Purpose); err != nil {
			return err
		}
		return tx.QueryRow(ctx, otpInsertSQL, s.ChallengeID, s.Region, bidx, phoneEnc, s.Purpose, codeHash, sendCount,
			lim.TTL.Milliseconds(), cooldown.Milliseconds()).Scan(&out.ExpiresAt, &out.ResendAfter)
	})
	if err != nil {
		return OTPChallenge{}, fmt.Errorf("otp send: %w", err)
	}
	return out, nil
}

const otpCurrentSQL = `
SELECT id, expires_at > now(), verified_at IS NOT NULL, attempts, EXTRACT(EPOCH FROM (GREATEST(resend_after, now() + INTERVAL '1 second') - now()))::FLOAT8
FROM otp_codes WHERE region = $1 AND phone_bidx = $2 AND purpose = $3
ORDER BY created_at DESC LIMIT 1`

// The attempt is counted in the statement that checks the limit, so parallel guesses cannot
// exceed it (reference/security.md §1.4: "same for OTP tries").
const otpAttemptSQL = `
UPDATE otp_codes SET attempts = attempts + 1
WHERE region = $1 AND id = $2 AND attempts < $3 AND verified_at IS NULL AND expires_at > now()
RETURNING attempts, code_hash`

const otpVerifiedSQL = `UPDATE otp_codes SET verified_at = now(), verify_hash = $3 WHERE region = $1 AND id = $2`

// VerifyOTP checks a code against the newest challenge of the phone and purpose. On success the
// challenge stores verifyHash (TokenHash of the verification token the caller hands out). It
// returns ErrOTPExpired (no live challenge), an *OTPError wrapping ErrOTPInvalid with the
// attempts left (the attempt is committed), or ErrOTPLocked in a *RateLimitError once five wrong
// codes have killed the challenge. One transaction.
func (db *DB) VerifyOTP(ctx context.Context, region, phone, purpose, code string, verifyHash []byte) error {
	bidx := db.keys.BlindIndex("phone", phone)
	var result error
	err := db.inTx(ctx, "otp_verify", readCommitted, func(tx pgx.Tx) error {
		result = nil
		var id uuid.UUID
		var live, verified bool
		var attempts int
		var waitSecs float64
		err := tx.QueryRow(ctx, otpCurrentSQL, region, bidx, purpose).Scan(&id, &live, &verified, &attempts, &waitSecs)
		if errors.Is(err, pgx.ErrNoRows) {
			result = ErrOTPExpired
			return nil
		}
		if err != nil {
			return err
		}
		wait := time.Duration(waitSecs * float64(time.Second))
		switch {
		case attempts >= MaxOTPAttempts && !verified:
			result = &RateLimitError{Err: ErrOTPLocked, Bucket: "otp_attempts", RetryAfter: wait}
			return nil
		case !live || verified:
			result = ErrOTPExpired
			return nil
		}
		var hash []byte
		err = tx.QueryRow(ctx, otpAttemptSQL, region, id, MaxOTPAttempts).Scan(&attempts, &hash)
		if errors.Is(err, pgx.ErrNoRows) {
			// A parallel attempt took the last try or verified it first.
			result = &RateLimitError{Err: ErrOTPLocked, Bucket: "otp_attempts", RetryAfter: wait}
			return nil
		}
		if err != nil {
			return err
		}
		if !hmac.Equal(hash, db.keys.OTPHash(id.String(), code)) {
			result = &OTPError{AttemptsLeft: MaxOTPAttempts - attempts}
			return nil
		}
		_, err = tx.Exec(ctx, otpVerifiedSQL, region, id, verifyHash)
		return err
	})
	if err != nil {
		return fmt.Errorf("otp verify: %w", err)
	}
	return result
}

// Verification is a verified challenge that a flow may spend.
type Verification struct {
	ChallengeID uuid.UUID
	Region      string
	Phone       string // E.164
	PhoneBidx   []byte
}

const verificationWhere = `
WHERE region = $1 AND verify_hash = $2 AND purpose = $3 AND consumed_at IS NULL
  AND verified_at > now() - $4::BIGINT * INTERVAL '1 millisecond'`

// PeekVerification returns the verified challenge a token names without spending it, or
// ErrInvalidVerification. One read.
func (db *DB) PeekVerification(ctx context.Context, region string, tokenHash []byte, purpose string) (Verification, error) {
	var v Verification
	err := db.inTx(ctx, "verification_peek", readCommitted, func(tx pgx.Tx) error {
		var enc []byte
		err := tx.QueryRow(ctx, `SELECT id, phone_bidx, phone_enc FROM otp_codes`+verificationWhere,
			region, tokenHash, purpose, VerificationTTL.Milliseconds()).Scan(&v.ChallengeID, &v.PhoneBidx, &enc)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrInvalidVerification
		}
		if err != nil {
			return err
		}
		v.Region = region
		v.Phone, err = db.keys.DecryptString(enc, "otp_codes", "phone_enc", v.ChallengeID.String())
		return err
	})
	return v, err
}

// consumeVerification spends a verification token inside tx: it must name challengeID (the one
// the caller peeked), be unspent, unexpired and of the purpose.
func consumeVerification(ctx context.Context, tx pgx.Tx, v Verification, tokenHash []byte, purpose string) error {
	tag, err := tx.Exec(ctx, `UPDATE otp_codes SET consumed_at = now()`+verificationWhere+` AND id = $5`,
		v.Region, tokenHash, purpose, VerificationTTL.Milliseconds(), v.ChallengeID)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return ErrInvalidVerification
	}
	return nil
}
