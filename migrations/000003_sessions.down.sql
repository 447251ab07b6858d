DROP TABLE IF EXISTS rate_limits;
DROP TABLE IF EXISTS otp_codes;
DROP TABLE IF EXISTS activity_logs;
DROP TABLE IF EXISTS refresh_tokens;
DROP TABLE IF EXISTS user_sessions;
