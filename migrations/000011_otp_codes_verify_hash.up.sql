-- SHA-256 of the verification token minted when the code verified; the token is spent by setting
-- consumed_at, once.
ALTER TABLE otp_codes ADD COLUMN verify_hash BYTEA;
