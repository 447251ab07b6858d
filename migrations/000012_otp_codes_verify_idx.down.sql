DROP INDEX otp_codes_verify_idx;
