-- Sessions (one per device sign-in), their refresh-token lineage, the activity log, OTP codes
-- and rate-limit counters. Retention (plan, "Data Retention Policies"): row-level TTL in the
-- CockroachDB overlay, a periodic job on PostgreSQL; reads never trust that expired rows are gone.
CREATE TABLE user_sessions (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region          crdb_internal_region NOT NULL,
    user_id         UUID NOT NULL REFERENCES users (id),
    device_id       TEXT NOT NULL,
    ip_address      INET,
    user_agent      TEXT,
    is_active       BOOLEAN NOT NULL DEFAULT true,
    -- The plan's pin_verified step-up, as a time so that it can expire.
    pin_verified_at TIMESTAMPTZ,
    last_activity   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Absolute end of the session and of every refresh token in it (30 days).
    expires_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at      TIMESTAMPTZ,
    revoke_reason   TEXT
);
CREATE INDEX user_sessions_user_active_idx ON user_sessions (user_id, is_active, expires_at);

-- Refresh tokens are stored only as hashes. A presented token that is already used (rotated)
-- revokes its whole session. The key starts with the region so that a lookup is one partition.
CREATE TABLE refresh_tokens (
    region      crdb_internal_region NOT NULL,
    token_hash  BYTEA NOT NULL,
    session_id  UUID NOT NULL REFERENCES user_sessions (id) ON DELETE CASCADE,
    user_id     UUID NOT NULL,
    generation  INTEGER NOT NULL CHECK (generation >= 1),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    PRIMARY KEY (region, token_hash)
);
CREATE INDEX refresh_tokens_session_idx ON refresh_tokens (session_id);

CREATE TABLE activity_logs (
    id         UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region     crdb_internal_region NOT NULL,
    user_id    UUID NOT NULL,
    action     TEXT NOT NULL,
    -- Never PII: ids, codes and outcomes only.
    details    JSONB,
    ip_address INET,
    device_id  TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX activity_logs_user_time_idx ON activity_logs (user_id, created_at DESC);

-- OTP challenges, homed in the phone's home region. Only a keyed hash of the code is stored.
CREATE TABLE otp_codes (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region           crdb_internal_region NOT NULL,
    phone_bidx       BYTEA NOT NULL,
    purpose          TEXT NOT NULL CHECK (purpose IN ('register', 'login', 'reset_pin')),
    code_hash        BYTEA NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    send_count       INTEGER NOT NULL DEFAULT 1 CHECK (send_count >= 1),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at       TIMESTAMPTZ NOT NULL,
    resend_after     TIMESTAMPTZ NOT NULL,
    verified_at      TIMESTAMPTZ,
    -- When the verification token minted from this challenge was spent (single use).
    consumed_at      TIMESTAMPTZ
);
CREATE INDEX otp_codes_phone_idx ON otp_codes (phone_bidx, purpose, created_at DESC);

-- Fixed-window counters for throttles (per client address, per device, per phone). Homed in the
-- region that counts them, which is always named by the caller.
CREATE TABLE rate_limits (
    region       crdb_internal_region NOT NULL,
    bucket       TEXT NOT NULL,
    key_hash     BYTEA NOT NULL,
    window_start TIMESTAMPTZ NOT NULL,
    hits         INTEGER NOT NULL DEFAULT 0 CHECK (hits >= 0),
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (region, bucket, key_hash, window_start)
);
