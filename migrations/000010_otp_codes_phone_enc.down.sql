ALTER TABLE otp_codes DROP COLUMN phone_enc;
