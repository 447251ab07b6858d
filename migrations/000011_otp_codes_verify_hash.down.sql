ALTER TABLE otp_codes DROP COLUMN verify_hash;
