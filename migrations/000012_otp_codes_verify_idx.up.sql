-- Verification tokens are looked up by hash within their region (the token names it).
CREATE INDEX otp_codes_verify_idx ON otp_codes (region, verify_hash);
