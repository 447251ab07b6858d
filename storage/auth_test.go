package storage

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Storage tests of sign-up, OTP, PIN, sessions and throttles, on the package's real database.
// Users are made through the same calls the API makes (SendOTP → VerifyOTP → PeekVerification →
// HashPIN → SignUp), with Saudi numbers so they never meet the money tests' UAE fixtures.

var authPhoneSeq atomic.Int64

func init() { authPhoneSeq.Store(time.Now().UnixNano() % 10_000_000) }

func newAuthPhone() string { return fmt.Sprintf("+96655%07d", authPhoneSeq.Add(1)%10_000_000) }

var otpLimits = OTPLimits{TTL: 5 * time.Minute, Cooldown: time.Minute, MaxCooldown: 32 * time.Minute, DailyMax: 5}

// verifiedPhone sends and verifies a code for phone and returns the verification and its hash.
func verifiedPhone(t testing.TB, db *DB, region, phone, purpose string) (Verification, []byte) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.SendOTP(ctx, OTPSend{ChallengeID: uuid.New(), Region: region, Phone: phone, Purpose: purpose, Code: "482913"}, otpLimits); err != nil {
		t.Fatal(err)
	}
	hash := TokenHash(uuid.NewString())
	if err := db.VerifyOTP(ctx, region, phone, purpose, "482913", hash); err != nil {
		t.Fatal(err)
	}
	v, err := db.PeekVerification(ctx, region, hash, purpose)
	if err != nil {
		t.Fatal(err)
	}
	return v, hash
}

type authUser struct {
	ID      uuid.UUID
	Region  string
	Phone   string
	Session uuid.UUID
	Refresh []byte
}

func newAuthUser(t testing.TB, db *DB, region, pin string) authUser {
	t.Helper()
	phone := newAuthPhone()
	v, hash := verifiedPhone(t, db, region, phone, "register")
	id := uuid.New()
	h, err := db.HashPIN(id, pin)
	if err != nil {
		t.Fatal(err)
	}
	refresh := TokenHash(uuid.NewString())
	sess := NewSession{ID: uuid.New(), DeviceID: "dev", RefreshHash: refresh}
	u, grant, err := db.SignUp(context.Background(), SignUp{UserID: id, Verification: v, VerifyHash: hash, PhoneCountry: "SA",
		Profile: Profile{FirstName: "Sara", LastName: "Amin"}, Language: "en", PrimaryAsset: "SAR", PIN: h, Session: sess})
	if err != nil {
		t.Fatal(err)
	}
	if u.Phone != phone || grant.Region != region || grant.SessionID != sess.ID {
		t.Fatalf("sign-up returned %+v %+v", u, grant)
	}
	return authUser{ID: id, Region: region, Phone: phone, Session: sess.ID, Refresh: refresh}
}

func TestSignUpAndDirectory(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	u := newAuthUser(t, db, "eu-west1", "1357")
	got, err := db.GetUser(ctx, "eu-west1", u.ID)
	if err != nil || got.Phone != u.Phone || got.Profile.FirstName != "Sara" || got.Region != "eu-west1" || !got.PhoneVerified {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	// Pinned to its region: another region does not have the row.
	if _, err := db.GetUser(ctx, "us-east1", u.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("GetUser in another region: %v", err)
	}
	id, region, err := db.LookupPhone(ctx, u.Phone)
	if err != nil || id != u.ID || region != "eu-west1" {
		t.Fatalf("LookupPhone = %s %s %v", id, region, err)
	}
	// A verification of another purpose does not sign up (phone_taken races are
	// TestSignUpPhoneTakenInParallel's).
	v, hash := verifiedPhone(t, db, "eu-west1", u.Phone, "login")
	_, _, err = db.SignUp(ctx, SignUp{UserID: uuid.New(), Verification: v, VerifyHash: hash, Language: "en", PrimaryAsset: "USD",
		PIN: PINHash{PHC: "x", Salt: []byte("s")}, Session: NewSession{ID: uuid.New(), DeviceID: "d", RefreshHash: TokenHash("r")}})
	if !errors.Is(err, ErrInvalidVerification) {
		t.Fatalf("sign-up with a login verification: %v", err)
	}
	phoneFree, emailFree, err := db.CheckAvailability(ctx, u.Phone, "")
	if err != nil || phoneFree || !emailFree {
		t.Fatalf("CheckAvailability = %t %t %v", phoneFree, emailFree, err)
	}
}

func TestSignUpPhoneTakenInParallel(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	phone := newAuthPhone()
	var wg sync.WaitGroup
	var ok, taken atomic.Int32
	// Two verified challenges for one phone (two purposes would not do: sign-up needs register),
	// raced: exactly one account.
	v1, h1 := verifiedPhone(t, db, "me-central1", phone, "register")
	if _, err := db.pool.Exec(context.Background(), `UPDATE otp_codes SET resend_after = now() WHERE region = 'me-central1' AND id = $1`, v1.ChallengeID); err != nil {
		t.Fatal(err)
	}
	v2, h2 := verifiedPhone(t, db, "me-central1", phone, "register")
	for _, vh := range []struct {
		v Verification
		h []byte
	}{{v1, h1}, {v2, h2}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uuid.New()
			_, _, err := db.SignUp(context.Background(), SignUp{UserID: id, Verification: vh.v, VerifyHash: vh.h, Language: "en",
				PrimaryAsset: "AED", PIN: PINHash{PHC: "x", Salt: []byte("s")},
				Session: NewSession{ID: uuid.New(), DeviceID: "d", RefreshHash: TokenHash(uuid.NewString())}})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrPhoneTaken):
				taken.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 1 || taken.Load() != 1 {
		t.Fatalf("%d sign-ups, %d phone_taken", ok.Load(), taken.Load())
	}
}

func TestOTPChallenge(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	phone := newAuthPhone()
	ch, err := db.SendOTP(ctx, OTPSend{ChallengeID: uuid.New(), Region: "me-central1", Phone: phone, Purpose: "login", Code: "123456"}, otpLimits)
	if err != nil || time.Until(ch.ExpiresAt) < 4*time.Minute || time.Until(ch.ResendAfter) < 50*time.Second {
		t.Fatalf("SendOTP = %+v, %v", ch, err)
	}
	var rl *RateLimitError
	if _, err := db.SendOTP(ctx, OTPSend{ChallengeID: uuid.New(), Region: "me-central1", Phone: phone, Purpose: "login", Code: "1"}, otpLimits); !errors.As(err, &rl) || rl.RetryAfter <= 0 {
		t.Fatalf("resend in the cooldown: %v", err)
	}
	var oe *OTPError
	if err := db.VerifyOTP(ctx, "me-central1", phone, "login", "654321", TokenHash("a")); !errors.As(err, &oe) || oe.AttemptsLeft != 4 {
		t.Fatalf("wrong code: %v", err)
	}
	// The code is stored only as a keyed hash bound to its challenge.
	var stored []byte
	if err := db.pool.QueryRow(ctx, `SELECT code_hash FROM otp_codes WHERE region = 'me-central1' AND phone_bidx = $1`,
		db.Keys().BlindIndex("phone", phone)).Scan(&stored); err != nil || string(stored) == "123456" || len(stored) != 32 {
		t.Fatalf("stored code: %x %v", stored, err)
	}
	hash := TokenHash("verification")
	if err := db.VerifyOTP(ctx, "me-central1", phone, "login", "123456", hash); err != nil {
		t.Fatal(err)
	}
	v, err := db.PeekVerification(ctx, "me-central1", hash, "login")
	if err != nil || v.Phone != phone {
		t.Fatalf("peek = %+v, %v", v, err)
	}
	if _, err := db.PeekVerification(ctx, "me-central1", hash, "register"); !errors.Is(err, ErrInvalidVerification) {
		t.Fatalf("peek with another purpose: %v", err)
	}
	if _, err := db.PeekVerification(ctx, "eu-west1", hash, "login"); !errors.Is(err, ErrInvalidVerification) {
		t.Fatalf("peek in another region: %v", err)
	}
}

func TestVerifyPINLimitsInParallel(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	u := newAuthUser(t, db, "me-central1", "1357")
	var wg sync.WaitGroup
	var invalid, locked atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.VerifyPIN(ctx, u.ID, u.Region, "8642")
			var pe *PINError
			switch {
			case errors.Is(err, ErrInvalidPIN) && errors.As(err, &pe):
				invalid.Add(1)
			case errors.Is(err, ErrPINLocked) && errors.As(err, &pe) && time.Until(pe.LockedUntil) > 10*time.Minute:
				locked.Add(1)
			default:
				t.Errorf("VerifyPIN: %v", err)
			}
		}()
	}
	wg.Wait()
	if invalid.Load() != 4 || locked.Load() != 16 {
		t.Fatalf("%d invalid, %d locked; want 4 and 16", invalid.Load(), locked.Load())
	}
	if err := db.VerifyPIN(ctx, u.ID, u.Region, "1357"); !errors.Is(err, ErrPINLocked) {
		t.Fatalf("correct PIN while locked: %v", err)
	}
	var attempts, cycles int
	if err := db.pool.QueryRow(ctx, `SELECT pin_attempts, pin_lock_cycles FROM user_auth WHERE region = $1 AND user_id = $2`, u.Region, u.ID).Scan(&attempts, &cycles); err != nil {
		t.Fatal(err)
	}
	if attempts != 0 || cycles != 1 {
		t.Fatalf("attempts %d, cycles %d", attempts, cycles)
	}
	// The next lock doubles.
	expireLock := func() {
		if _, err := db.pool.Exec(ctx, `UPDATE user_auth SET pin_locked_until = now() - INTERVAL '1 second' WHERE region = $1 AND user_id = $2`, u.Region, u.ID); err != nil {
			t.Fatal(err)
		}
	}
	expireLock()
	var last error
	for i := 0; i < 5; i++ {
		last = db.VerifyPIN(ctx, u.ID, u.Region, "8642")
	}
	var pe *PINError
	if !errors.As(last, &pe) || !errors.Is(last, ErrPINLocked) || time.Until(pe.LockedUntil) < 29*time.Minute || time.Until(pe.LockedUntil) > 31*time.Minute {
		t.Fatalf("second lock: %v", last)
	}
	// Success resets everything.
	expireLock()
	if err := db.VerifyPIN(ctx, u.ID, u.Region, "1357"); err != nil {
		t.Fatal(err)
	}
	if err := db.pool.QueryRow(ctx, `SELECT pin_attempts, pin_lock_cycles FROM user_auth WHERE region = $1 AND user_id = $2`, u.Region, u.ID).Scan(&attempts, &cycles); err != nil || attempts != 0 || cycles != 0 {
		t.Fatalf("after success: attempts %d, cycles %d, %v", attempts, cycles, err)
	}
}

// TestVerifyPINFastPathFollowsChanges: a PIN verified once is answered from the cache, but a
// PIN changed by another process (another DB, as another pod) is never accepted from it, and a
// wrong PIN on the fast path still counts.
func TestVerifyPINFastPathFollowsChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	podA := testDB(t)
	podB, err := Open(ctx, testURL, testRegions, Options{Keys: podA.Keys()})
	if err != nil {
		t.Fatal(err)
	}
	defer podB.Close()
	u := newAuthUser(t, podA, "me-central1", "1357")
	if err := podA.VerifyPIN(ctx, u.ID, u.Region, "1357"); err != nil {
		t.Fatal(err)
	}
	var phc string
	if err := podA.pool.QueryRow(ctx, `SELECT pin_hash FROM user_auth WHERE region = $1 AND user_id = $2`, u.Region, u.ID).Scan(&phc); err != nil {
		t.Fatal(err)
	}
	if !podA.pins.hit(u.ID, phc, "1357") || podA.pins.hit(u.ID, phc, "1358") {
		t.Fatal("the cache does not hold exactly the verified PIN")
	}
	var pe *PINError
	if err := podA.VerifyPIN(ctx, u.ID, u.Region, "1358"); !errors.As(err, &pe) || pe.AttemptsLeft != 4 {
		t.Fatalf("wrong PIN with a warm cache: %v", err)
	}
	h, err := podB.HashPIN(u.ID, "8024")
	if err != nil {
		t.Fatal(err)
	}
	if err := podB.ChangePIN(ctx, u.Region, u.ID, u.Session, h); err != nil {
		t.Fatal(err)
	}
	if err := podA.VerifyPIN(ctx, u.ID, u.Region, "1357"); !errors.Is(err, ErrInvalidPIN) {
		t.Fatalf("old PIN on the pod with a warm cache: %v", err)
	}
	if err := podA.VerifyPIN(ctx, u.ID, u.Region, "8024"); err != nil {
		t.Fatalf("new PIN: %v", err)
	}
}

func TestRefreshSessionRotationAndReuse(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	u := newAuthUser(t, db, "us-east1", "1357")
	next := TokenHash(uuid.NewString())
	g, err := db.RefreshSession(ctx, u.Region, u.Refresh, next)
	if err != nil || g.SessionID != u.Session || g.UserID != u.ID || time.Until(g.ExpiresAt) < 29*24*time.Hour {
		t.Fatalf("refresh = %+v, %v", g, err)
	}
	// Parallel use of one token: one rotation wins, the other is reuse and revokes the session.
	var wg sync.WaitGroup
	results := make(chan error, 2)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := db.RefreshSession(ctx, u.Region, next, TokenHash(uuid.NewString()))
			results <- err
		}()
	}
	wg.Wait()
	close(results)
	var reused int
	for err := range results {
		if errors.Is(err, ErrRefreshReuse) {
			reused++
		}
	}
	if reused < 1 {
		t.Fatal("no reuse detected")
	}
	if err := db.SessionLive(ctx, u.Region, u.ID, u.Session, time.Now()); !errors.Is(err, ErrSessionRevoked) {
		t.Fatalf("session after reuse: %v", err)
	}
	if _, err := db.RefreshSession(ctx, u.Region, TokenHash("unknown"), TokenHash("x")); !errors.Is(err, ErrInvalidRefreshToken) || errors.Is(err, ErrRefreshReuse) {
		t.Fatalf("unknown token: %v", err)
	}
	acts, err := db.ListActivity(ctx, u.Region, u.ID, 10)
	if err != nil || acts[0].Action != ActionRefreshReuse {
		t.Fatalf("activity = %+v, %v", acts, err)
	}
}

func TestHitCountsAtomically(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	th := Throttle{Bucket: "test", Limit: 5, Window: time.Hour}
	key := uuid.NewString()
	var wg sync.WaitGroup
	var passed, refused atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := db.Hit(ctx, "eu-west1", th, key)
			var rl *RateLimitError
			switch {
			case err == nil:
				passed.Add(1)
			case errors.As(err, &rl) && errors.Is(err, ErrRateLimited) && rl.RetryAfter > 0 && rl.RetryAfter <= time.Hour:
				refused.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if passed.Load() != 5 || refused.Load() != 15 {
		t.Fatalf("%d passed, %d refused", passed.Load(), refused.Load())
	}
	// Counters are per region and per key; keys are stored as blind indexes.
	if err := db.Hit(ctx, "us-east1", th, key); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM rate_limits WHERE region = 'eu-west1' AND bucket = 'test' AND key_hash = $1`,
		[]byte(key)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("raw key stored: %d %v", n, err)
	}
}

func TestDeleteUserKeepsWhatMustBeKept(t *testing.T) {
	t.Parallel()
	db := testDB(t)
	ctx := context.Background()
	u := newAuthUser(t, db, "me-central1", "1357")
	if _, err := db.pool.Exec(ctx, `UPDATE asset_balances SET pending = 1, total = 1 WHERE region = $1 AND user_id = $2 AND asset_symbol = 'SAR'`, u.Region, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser(ctx, u.Region, u.ID); !errors.Is(err, ErrBalanceNotEmpty) {
		t.Fatalf("delete with a pending balance: %v", err)
	}
	if _, err := db.pool.Exec(ctx, `UPDATE asset_balances SET pending = 0, total = 0 WHERE region = $1 AND user_id = $2`, u.Region, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser(ctx, u.Region, u.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteUser(ctx, u.Region, u.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if err := db.VerifyPIN(ctx, u.ID, u.Region, "1357"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("PIN of a deleted user: %v", err)
	}
	var wallets, balances int
	if err := db.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM wallets WHERE region = $1 AND user_id = $2 AND status = 'closed'),
    (SELECT count(*) FROM asset_balances WHERE region = $1 AND user_id = $2)`, u.Region, u.ID).Scan(&wallets, &balances); err != nil || wallets != 1 || balances == 0 {
		t.Fatalf("wallet kept and closed: %d wallets, %d balances, %v", wallets, balances, err)
	}
}

// BenchmarkVerifyPIN compares the slow path (argon2id, every call a fresh process cache) with
// the fast path money calls take after the first verification.
func BenchmarkVerifyPIN(b *testing.B) {
	db := testDB(b)
	ctx := context.Background()
	u := newAuthUser(b, db, "me-central1", "1357")
	b.Run("slow", func(b *testing.B) {
		for b.Loop() {
			db.pins.forget(u.ID)
			if err := db.VerifyPIN(ctx, u.ID, u.Region, "1357"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for b.Loop() {
			if err := db.VerifyPIN(ctx, u.ID, u.Region, "1357"); err != nil {
				b.Fatal(err)
			}
		}
	})
}
