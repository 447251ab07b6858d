-- The phone a challenge was sent to, encrypted (AAD otp_codes.phone_enc:<challenge id>): sign-up
-- takes the phone from the verified challenge, since its body carries only the verification token.
ALTER TABLE otp_codes ADD COLUMN phone_enc BYTEA;
