package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Users, profiles and settings. PII columns are encrypted with the AAD convention of CONTRACTS.md
// (table, column, owning user id) and looked up through the GLOBAL directories' blind indexes
// (design.md, Regions and PII). Every statement on a user's rows pins the home region.

// User is a user as the owner sees it: decrypted, unmasked.
type User struct {
	ID            uuid.UUID
	Region        string
	Phone         string
	Email         string
	PhoneVerified bool
	EmailVerified bool
	Status        string
	KYCLevel      string
	CreatedAt     time.Time
	Profile       Profile
}

// Profile is the user's personal details. Empty strings are absent values.
type Profile struct {
	FirstName   string
	LastName    string
	AvatarURL   string
	DateOfBirth string // YYYY-MM-DD
	Gender      string
	Country     string
	Address     string
}

// SignUp is a new user, prepared by the caller before the transaction: ids, the PIN hash
// (argon2id is never run inside a retried closure) and the session's refresh-token hash.
type SignUp struct {
	UserID       uuid.UUID
	Verification Verification // peeked with purpose register; its region is the home region
	VerifyHash   []byte
	PhoneCountry string // ISO alpha-2 of the phone number
	Email        string // normalised, "" for none
	Profile      Profile
	Language     string
	PrimaryAsset string
	PIN          PINHash
	Session      NewSession
}

// SignUp creates, in one transaction that may be retried: the user, profile, auth row, settings,
// notification settings, the wallet with a zero balance for every active asset, the phone (and
// email) directory entries, the audit row and the first session, spending the verification
// token. Every row carries the home region. Returns ErrPhoneTaken, ErrEmailTaken or
// ErrInvalidVerification.
func (db *DB) SignUp(ctx context.Context, s SignUp) (User, SessionGrant, error) {
	region := s.Verification.Region
	uid := s.UserID.String()
	k := db.keys
	var err error
	enc := map[string][]byte{}
	for _, f := range []struct{ table, column, value string }{
		{"users", "phone_enc", s.Verification.Phone},
		{"users", "email_enc", s.Email},
		{"user_profiles", "first_name_enc", s.Profile.FirstName},
		{"user_profiles", "last_name_enc", s.Profile.LastName},
		{"user_profiles", "date_of_birth_enc", s.Profile.DateOfBirth},
	} {
		if enc[f.column], err = k.EncryptString(f.value, f.table, f.column, uid); err != nil {
			return User{}, SessionGrant{}, err
		}
	}
	var emailBidx []byte
	if s.Email != "" {
		emailBidx = k.BlindIndex("email", s.Email)
	}
	var grant SessionGrant
	err = db.inTx(ctx, "sign_up", readCommitted, func(tx pgx.Tx) error {
		if err := consumeVerification(ctx, tx, s.Verification, s.VerifyHash, "register"); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO phone_directory (phone_bidx, user_id, home_region) VALUES ($1, $2, $3)
ON CONFLICT (phone_bidx) DO NOTHING`, s.Verification.PhoneBidx, s.UserID, region)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrPhoneTaken
		}
		if emailBidx != nil {
			if err := claimEmail(ctx, tx, emailBidx, s.UserID, region); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO users (id, region, phone_enc, phone_bidx, phone_country, email_enc, email_bidx, phone_verified)
VALUES ($1, $2, $3, $4, $5, $6, $7, true)`, s.UserID, region, enc["phone_enc"], s.Verification.PhoneBidx,
			textOrNil(s.PhoneCountry, 2), enc["email_enc"], emailBidx); err != nil {
			return fmt.Errorf("insert user: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_profiles (user_id, region, first_name_enc, last_name_enc, date_of_birth_enc, gender, country, language)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, s.UserID, region, enc["first_name_enc"], enc["last_name_enc"],
			enc["date_of_birth_enc"], textOrNil(s.Profile.Gender, 10), textOrNil(s.Profile.Country, 2), s.Language); err != nil {
			return fmt.Errorf("insert profile: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_auth (user_id, region, pin_hash, pin_salt) VALUES ($1, $2, $3, $4)`,
			s.UserID, region, s.PIN.PHC, s.PIN.Salt); err != nil {
			return fmt.Errorf("insert auth: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO user_settings (user_id, region, language) VALUES ($1, $2, $3)`,
			s.UserID, region, s.Language); err != nil {
			return fmt.Errorf("insert settings: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO notification_settings (user_id, region) VALUES ($1, $2)`, s.UserID, region); err != nil {
			return fmt.Errorf("insert notification settings: %w", err)
		}
		var walletID uuid.UUID
		if err := tx.QueryRow(ctx, `INSERT INTO wallets (region, user_id, wallet_type, primary_asset) VALUES ($1, $2, 'custodial', $3)
RETURNING id`, region, s.UserID, s.PrimaryAsset).Scan(&walletID); err != nil {
			return fmt.Errorf("insert wallet: %w", err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO asset_balances (region, wallet_id, user_id, asset_symbol)
SELECT $1, $2, $3, symbol FROM supported_assets WHERE is_active`, region, walletID, s.UserID); err != nil {
			return fmt.Errorf("insert balances: %w", err)
		}
		expires, err := openSession(ctx, tx, region, s.UserID, s.Session)
		if err != nil {
			return err
		}
		grant = SessionGrant{UserID: s.UserID, SessionID: s.Session.ID, Region: region, ExpiresAt: expires}
		return logActivity(ctx, tx, region, s.UserID, ActionSignUp, map[string]any{
			"session_id": s.Session.ID, "primary_asset": s.PrimaryAsset, "phone_country": s.PhoneCountry})
	})
	if err != nil {
		return User{}, SessionGrant{}, fmt.Errorf("sign up %s: %w", s.UserID, err)
	}
	u, err := db.GetUser(ctx, region, s.UserID)
	return u, grant, err
}

// claimEmail points the email directory entry at the user, or returns ErrEmailTaken.
func claimEmail(ctx context.Context, tx pgx.Tx, bidx []byte, userID uuid.UUID, region string) error {
	tag, err := tx.Exec(ctx, `INSERT INTO email_directory (email_bidx, user_id, home_region) VALUES ($1, $2, $3)
ON CONFLICT (email_bidx) DO NOTHING`, bidx, userID, region)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		var owner uuid.UUID
		if err := tx.QueryRow(ctx, `SELECT user_id FROM email_directory WHERE email_bidx = $1`, bidx).Scan(&owner); err != nil {
			return err
		}
		if owner != userID {
			return ErrEmailTaken
		}
	}
	return nil
}

// Login opens a session for a user who proved the phone (verification token, purpose login) and
// the PIN (VerifyPIN, before). One transaction: spends the token, refuses a suspended user with
// ErrAccountSuspended, opens the session and writes the audit row.
func (db *DB) Login(ctx context.Context, region string, userID uuid.UUID, v Verification, verifyHash []byte, s NewSession) (User, SessionGrant, error) {
	var grant SessionGrant
	err := db.inTx(ctx, "login", readCommitted, func(tx pgx.Tx) error {
		// FOR SHARE: a relocation of this user (which locks the row first) either waits for this
		// login, and then moves the new session too, or commits first, and then the re-checked
		// row is no longer in this region and the login fails instead of opening a session in
		// the old region.
		var status string
		err := tx.QueryRow(ctx, `SELECT status FROM users WHERE region = $1 AND id = $2 FOR SHARE`, region, userID).Scan(&status)
		if err != nil {
			return err
		}
		switch status {
		case "suspended":
			return ErrAccountSuspended
		case "deleted":
			return ErrInvalidCredentials
		}
		if err := consumeVerification(ctx, tx, v, verifyHash, "login"); err != nil {
			return err
		}
		expires, err := openSession(ctx, tx, region, userID, s)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET last_login = now() WHERE region = $1 AND id = $2`, region, userID); err != nil {
			return err
		}
		grant = SessionGrant{UserID: userID, SessionID: s.ID, Region: region, ExpiresAt: expires}
		return logActivity(ctx, tx, region, userID, ActionLogin, map[string]any{"session_id": s.ID})
	})
	if err != nil {
		return User{}, SessionGrant{}, fmt.Errorf("login %s: %w", userID, err)
	}
	u, err := db.GetUser(ctx, region, userID)
	return u, grant, err
}

// LookupPhone finds a user by phone (E.164) in the GLOBAL directory: their id and home region,
// or ErrNotFound. The directory is global by design, so this read names no region.
func (db *DB) LookupPhone(ctx context.Context, phone string) (uuid.UUID, string, error) {
	bidx := db.keys.BlindIndex("phone", phone)
	var id uuid.UUID
	var region string
	err := db.inTx(ctx, "lookup_phone", readCommitted, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT user_id, home_region::TEXT FROM phone_directory WHERE phone_bidx = $1`, bidx).Scan(&id, &region)
	})
	return id, region, err
}

// CheckAvailability reports whether a phone and an email are free. Both lookups always run
// (an empty value looks up a blind index no one has), so the work does not depend on the input.
func (db *DB) CheckAvailability(ctx context.Context, phone, email string) (phoneFree, emailFree bool, err error) {
	pb := db.keys.BlindIndex("phone", phone)
	eb := db.keys.BlindIndex("email", email)
	err = db.inTx(ctx, "check_availability", readCommitted, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT
    NOT EXISTS (SELECT 1 FROM phone_directory WHERE phone_bidx = $1),
    NOT EXISTS (SELECT 1 FROM email_directory WHERE email_bidx = $2)`, pb, eb).Scan(&phoneFree, &emailFree)
	})
	return phoneFree, emailFree, err
}

const getUserSQL = `
SELECT u.phone_enc, u.email_enc, u.phone_verified, u.email_verified, u.status, u.kyc_level, u.created_at,
       p.first_name_enc, p.last_name_enc, p.avatar_url_enc, p.date_of_birth_enc,
       COALESCE(p.gender, ''), COALESCE(p.country, ''), p.address_enc
FROM users u JOIN user_profiles p ON p.region = u.region AND p.user_id = u.id
WHERE u.region = $1 AND u.id = $2 AND u.status <> 'deleted'`

// GetUser returns the user, decrypted, or ErrNotFound (also for a deleted user). One read.
func (db *DB) GetUser(ctx context.Context, region string, userID uuid.UUID) (User, error) {
	var u User
	err := db.inTx(ctx, "get_user", readCommitted, func(tx pgx.Tx) error {
		var err error
		u, err = getUser(ctx, tx, db.keys, region, userID)
		return err
	})
	return u, err
}

func getUser(ctx context.Context, tx pgx.Tx, k *Keys, region string, userID uuid.UUID) (User, error) {
	u := User{ID: userID, Region: region}
	var phone, email, first, last, avatar, dob, address []byte
	if err := tx.QueryRow(ctx, getUserSQL, region, userID).Scan(&phone, &email, &u.PhoneVerified, &u.EmailVerified,
		&u.Status, &u.KYCLevel, &u.CreatedAt, &first, &last, &avatar, &dob, &u.Profile.Gender, &u.Profile.Country, &address); err != nil {
		return User{}, fmt.Errorf("user %s: %w", userID, err)
	}
	uid := userID.String()
	for _, f := range []struct {
		ct            []byte
		table, column string
		dst           *string
	}{
		{phone, "users", "phone_enc", &u.Phone},
		{email, "users", "email_enc", &u.Email},
		{first, "user_profiles", "first_name_enc", &u.Profile.FirstName},
		{last, "user_profiles", "last_name_enc", &u.Profile.LastName},
		{avatar, "user_profiles", "avatar_url_enc", &u.Profile.AvatarURL},
		{dob, "user_profiles", "date_of_birth_enc", &u.Profile.DateOfBirth},
		{address, "user_profiles", "address_enc", &u.Profile.Address},
	} {
		s, err := k.DecryptString(f.ct, f.table, f.column, uid)
		if err != nil {
			return User{}, fmt.Errorf("user %s: %w", userID, err)
		}
		*f.dst = s
	}
	return u, nil
}

// UserPatch is a partial update: nil leaves a field alone, "" clears it. Status, KYC level and
// home region are not here on purpose: they are never the client's to set.
type UserPatch struct {
	Email       *string // normalised
	FirstName   *string
	LastName    *string
	AvatarURL   *string
	DateOfBirth *string
	Gender      *string
	Country     *string
	Address     *string
}

// UpdateUser applies a patch in one transaction with its audit row (field names only). A new
// email is unverified and moves the email directory entry; ErrEmailTaken if another user has
// it. Returns the updated user.
func (db *DB) UpdateUser(ctx context.Context, region string, userID uuid.UUID, p UserPatch) (User, error) {
	uid := userID.String()
	type encField struct {
		column string
		value  *string
	}
	var changed []string
	profileEnc := []encField{{"first_name_enc", p.FirstName}, {"last_name_enc", p.LastName},
		{"avatar_url_enc", p.AvatarURL}, {"date_of_birth_enc", p.DateOfBirth}, {"address_enc", p.Address}}
	sets := map[string]any{}
	for _, f := range profileEnc {
		if f.value == nil {
			continue
		}
		ct, err := db.keys.EncryptString(*f.value, "user_profiles", f.column, uid)
		if err != nil {
			return User{}, err
		}
		sets[f.column] = ct
		changed = append(changed, f.column[:len(f.column)-len("_enc")])
	}
	if p.Gender != nil {
		sets["gender"] = textOrNil(*p.Gender, 10)
		changed = append(changed, "gender")
	}
	if p.Country != nil {
		sets["country"] = textOrNil(*p.Country, 2)
		changed = append(changed, "country")
	}
	var emailEnc, emailBidx []byte
	if p.Email != nil {
		changed = append(changed, "email")
		if *p.Email != "" {
			var err error
			if emailEnc, err = db.keys.EncryptString(*p.Email, "users", "email_enc", uid); err != nil {
				return User{}, err
			}
			emailBidx = db.keys.BlindIndex("email", *p.Email)
		}
	}
	var u User
	err := db.inTx(ctx, "update_user", readCommitted, func(tx pgx.Tx) error {
		var oldBidx []byte
		if err := tx.QueryRow(ctx, `SELECT email_bidx FROM users WHERE region = $1 AND id = $2 AND status <> 'deleted' FOR UPDATE`,
			region, userID).Scan(&oldBidx); err != nil {
			return err
		}
		if p.Email != nil && string(oldBidx) != string(emailBidx) {
			if emailBidx != nil {
				if err := claimEmail(ctx, tx, emailBidx, userID, region); err != nil {
					return err
				}
			}
			if oldBidx != nil {
				if _, err := tx.Exec(ctx, `DELETE FROM email_directory WHERE email_bidx = $1 AND user_id = $2`, oldBidx, userID); err != nil {
					return err
				}
			}
			if _, err := tx.Exec(ctx, `UPDATE users SET email_enc = $3, email_bidx = $4, email_verified = false, updated_at = now()
WHERE region = $1 AND id = $2`, region, userID, emailEnc, emailBidx); err != nil {
				return err
			}
		}
		if len(sets) > 0 {
			q := `UPDATE user_profiles SET updated_at = now()`
			args := []any{region, userID}
			for _, col := range []string{"first_name_enc", "last_name_enc", "avatar_url_enc", "date_of_birth_enc", "address_enc", "gender", "country"} {
				if v, ok := sets[col]; ok {
					args = append(args, v)
					q += fmt.Sprintf(", %s = $%d", col, len(args))
				}
			}
			if _, err := tx.Exec(ctx, q+` WHERE region = $1 AND user_id = $2`, args...); err != nil {
				return err
			}
		}
		if len(changed) > 0 {
			if err := logActivity(ctx, tx, region, userID, ActionProfileUpdated, map[string]any{"fields": changed}); err != nil {
				return err
			}
		}
		var err error
		u, err = getUser(ctx, tx, db.keys, region, userID)
		return err
	})
	if err != nil {
		return User{}, fmt.Errorf("update user %s: %w", userID, err)
	}
	return u, nil
}

// DeleteUser closes an account whose balances are all zero (ErrBalanceNotEmpty otherwise): the
// user is marked deleted, every session revoked, the PII columns and the PIN erased, the
// directory entries removed and the wallet closed. Transactions and ledger entries are kept
// (retention, 7 years). The caller checked the PIN.
//
// No credit may land after the balance check: money would be stranded in a closed wallet. On
// CockroachDB one SERIALIZABLE transaction makes a racing credit retry. On PostgreSQL credits
// run READ COMMITTED (transfer batches, cash-ins), which PostgreSQL's serializable checks do
// not see, so the deletion takes the locks they take first: the user row FOR UPDATE (every
// credit holds the recipient's user row KEY SHARE until COMMIT, and a credit that comes later
// waits, then finds the user deleted and refuses) and the wallet FOR UPDATE (debits hold it, and
// a ledger entry's foreign key holds it KEY SHARE). The balances are read after both, in a
// statement of their own, so they include every credit that committed meanwhile.
func (db *DB) DeleteUser(ctx context.Context, region string, userID uuid.UUID) error {
	iso, lock := serializable, ""
	if db.engine == Postgres {
		iso, lock = readCommitted, " FOR UPDATE"
	}
	err := db.inTx(ctx, "delete_user", iso, func(tx pgx.Tx) error {
		var phoneBidx, emailBidx []byte
		if err := tx.QueryRow(ctx, `SELECT phone_bidx, email_bidx FROM users WHERE region = $1 AND id = $2 AND status <> 'deleted'`+lock,
			region, userID).Scan(&phoneBidx, &emailBidx); err != nil {
			return err
		}
		if lock != "" {
			if _, err := tx.Exec(ctx, lockWalletExclusiveSQL, region, userID); err != nil {
				return err
			}
		}
		var nonEmpty bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM asset_balances
WHERE region = $1 AND user_id = $2 AND (available <> 0 OR pending <> 0))`, region, userID).Scan(&nonEmpty); err != nil {
			return err
		}
		if nonEmpty {
			return ErrBalanceNotEmpty
		}
		if phoneBidx != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM phone_directory WHERE phone_bidx = $1 AND user_id = $2`, phoneBidx, userID); err != nil {
				return err
			}
		}
		if emailBidx != nil {
			if _, err := tx.Exec(ctx, `DELETE FROM email_directory WHERE email_bidx = $1 AND user_id = $2`, emailBidx, userID); err != nil {
				return err
			}
		}
		for _, q := range []string{
			`UPDATE users SET status = 'deleted', deleted_at = now(), updated_at = now(), phone_enc = NULL, phone_bidx = NULL,
    phone_country = NULL, email_enc = NULL, email_bidx = NULL WHERE region = $1 AND id = $2`,
			`UPDATE user_profiles SET first_name_enc = NULL, last_name_enc = NULL, avatar_url_enc = NULL,
    date_of_birth_enc = NULL, address_enc = NULL, gender = NULL, country = NULL, updated_at = now()
WHERE region = $1 AND user_id = $2`,
			`UPDATE user_auth SET pin_hash = NULL, pin_salt = NULL, two_factor_secret_enc = NULL,
    tokens_not_before = now(), updated_at = now() WHERE region = $1 AND user_id = $2`,
			`UPDATE wallets SET status = 'closed', updated_at = now() WHERE region = $1 AND user_id = $2`,
		} {
			if _, err := tx.Exec(ctx, q, region, userID); err != nil {
				return err
			}
		}
		if err := revokeSessions(ctx, tx, region, userID, nil, nil, "account_deleted"); err != nil {
			return err
		}
		return logActivity(ctx, tx, region, userID, ActionAccountDeleted, nil)
	})
	db.pins.forget(userID)
	if err != nil {
		return fmt.Errorf("delete user %s: %w", userID, err)
	}
	return nil
}

// ResetPIN sets a new PIN for the user whose phone a verification token (purpose reset_pin)
// proves, clears the lock, and revokes every session of the user, with tokens_not_before so that
// outstanding access tokens die too (reference/security.md §1.6: a reset means the old factor
// may be compromised). One transaction with its audit row.
func (db *DB) ResetPIN(ctx context.Context, region string, userID uuid.UUID, v Verification, verifyHash []byte, h PINHash) error {
	err := db.inTx(ctx, "reset_pin", readCommitted, func(tx pgx.Tx) error {
		var status string
		if err := tx.QueryRow(ctx, `SELECT status FROM users WHERE region = $1 AND id = $2`, region, userID).Scan(&status); err != nil {
			return err
		}
		if status == "deleted" {
			return ErrNotFound
		}
		if err := consumeVerification(ctx, tx, v, verifyHash, "reset_pin"); err != nil {
			return err
		}
		if err := setPIN(ctx, tx, region, userID, h); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE user_auth SET tokens_not_before = now() WHERE region = $1 AND user_id = $2`, region, userID); err != nil {
			return err
		}
		if err := revokeSessions(ctx, tx, region, userID, nil, nil, "pin_reset"); err != nil {
			return err
		}
		return logActivity(ctx, tx, region, userID, ActionPINReset, nil)
	})
	db.pins.forget(userID)
	if err != nil {
		return fmt.Errorf("reset PIN %s: %w", userID, err)
	}
	return nil
}

// Settings are a user's preferences.
type Settings struct {
	Language      string
	Theme         string
	DailyLimit    *string // decimal string; nil: the assets' own limits apply
	Notifications NotificationSettings
}

// NotificationSettings are the user's notification switches.
type NotificationSettings struct {
	PushEnabled        bool
	TransactionAlerts  bool
	SecurityAlerts     bool
	Promotions         bool
	EmailNotifications bool
	SMSNotifications   bool
}

// SettingsPatch is a partial update of Settings; nil leaves a field alone. ClearDailyLimit
// sets the limit back to none.
type SettingsPatch struct {
	Language           *string
	Theme              *string
	DailyLimit         *string
	ClearDailyLimit    bool
	PushEnabled        *bool
	TransactionAlerts  *bool
	SecurityAlerts     *bool
	Promotions         *bool
	EmailNotifications *bool
	SMSNotifications   *bool
}

const getSettingsSQL = `
SELECT s.language, s.theme, s.daily_limit::TEXT, n.push_enabled, n.transaction_alerts, n.security_alerts,
       n.promotions, n.email_notifications, n.sms_notifications
FROM user_settings s JOIN notification_settings n ON n.region = s.region AND n.user_id = s.user_id
WHERE s.region = $1 AND s.user_id = $2`

func getSettings(ctx context.Context, tx pgx.Tx, region string, userID uuid.UUID) (Settings, error) {
	var s Settings
	n := &s.Notifications
	err := tx.QueryRow(ctx, getSettingsSQL, region, userID).Scan(&s.Language, &s.Theme, &s.DailyLimit,
		&n.PushEnabled, &n.TransactionAlerts, &n.SecurityAlerts, &n.Promotions, &n.EmailNotifications, &n.SMSNotifications)
	return s, err
}

// GetSettings returns the user's settings or ErrNotFound. One read.
func (db *DB) GetSettings(ctx context.Context, region string, userID uuid.UUID) (Settings, error) {
	var s Settings
	err := db.inTx(ctx, "get_settings", readCommitted, func(tx pgx.Tx) error {
		var err error
		s, err = getSettings(ctx, tx, region, userID)
		return err
	})
	return s, err
}

// UpdateSettings applies a partial update in one transaction with its audit row and returns the
// settings.
func (db *DB) UpdateSettings(ctx context.Context, region string, userID uuid.UUID, p SettingsPatch) (Settings, error) {
	var s Settings
	err := db.inTx(ctx, "update_settings", readCommitted, func(tx pgx.Tx) error {
		var fields []string
		q := `UPDATE user_settings SET updated_at = now()`
		args := []any{region, userID}
		add := func(col string, v any) {
			args = append(args, v)
			q += fmt.Sprintf(", %s = $%d", col, len(args))
			fields = append(fields, col)
		}
		if p.Language != nil {
			add("language", *p.Language)
		}
		if p.Theme != nil {
			add("theme", *p.Theme)
		}
		if p.ClearDailyLimit {
			add("daily_limit", nil)
		} else if p.DailyLimit != nil {
			add("daily_limit", *p.DailyLimit)
		}
		tag, err := tx.Exec(ctx, q+` WHERE region = $1 AND user_id = $2`, args...)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return ErrNotFound
		}
		q = `UPDATE notification_settings SET updated_at = now()`
		args = []any{region, userID}
		for _, b := range []struct {
			col string
			v   *bool
		}{{"push_enabled", p.PushEnabled}, {"transaction_alerts", p.TransactionAlerts}, {"security_alerts", p.SecurityAlerts},
			{"promotions", p.Promotions}, {"email_notifications", p.EmailNotifications}, {"sms_notifications", p.SMSNotifications}} {
			if b.v != nil {
				add(b.col, *b.v)
			}
		}
		if len(args) > 2 {
			if _, err := tx.Exec(ctx, q+` WHERE region = $1 AND user_id = $2`, args...); err != nil {
				return err
			}
		}
		if len(fields) > 0 {
			if err := logActivity(ctx, tx, region, userID, ActionSettingsUpdated, map[string]any{"fields": fields}); err != nil {
				return err
			}
		}
		s, err = getSettings(ctx, tx, region, userID)
		return err
	})
	if err != nil {
		return Settings{}, fmt.Errorf("update settings %s: %w", userID, err)
	}
	return s, nil
}
