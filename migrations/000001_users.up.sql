-- Users and what hangs off them one-to-one. Every user-owned table carries `region`, the owner's
-- home region (the enum `crdb_internal_region`: on CockroachDB the database regions, on
-- PostgreSQL created by `7awel migrate up` from the configured regions). The CockroachDB overlay
-- makes these tables REGIONAL BY ROW AS region (reference/cockroachdb.md §1.2).
--
-- PII never appears in clear text or in an index key: *_enc columns hold AES-256-GCM ciphertext
-- (key id inside), *_bidx columns an HMAC-SHA256 blind index (design.md, Regions and PII).
CREATE TABLE users (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region         crdb_internal_region NOT NULL,
    phone_enc      BYTEA,
    phone_bidx     BYTEA,
    phone_country  TEXT,
    email_enc      BYTEA,
    email_bidx     BYTEA,
    phone_verified BOOLEAN NOT NULL DEFAULT false,
    email_verified BOOLEAN NOT NULL DEFAULT false,
    status         TEXT NOT NULL DEFAULT 'active'
                   CHECK (status IN ('active', 'suspended', 'deleted')),
    kyc_level      TEXT NOT NULL DEFAULT 'none'
                   CHECK (kyc_level IN ('none', 'basic', 'enhanced', 'full')),
    -- System users own the per-region system wallets (cash-in source, cash-out sink, fees).
    is_system      BOOLEAN NOT NULL DEFAULT false,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_login     TIMESTAMPTZ,
    deleted_at     TIMESTAMPTZ
);

CREATE TABLE user_profiles (
    user_id            UUID PRIMARY KEY REFERENCES users (id),
    region             crdb_internal_region NOT NULL,
    first_name_enc     BYTEA,
    last_name_enc      BYTEA,
    avatar_url_enc     BYTEA,
    date_of_birth_enc  BYTEA,
    gender             TEXT CHECK (gender IN ('male', 'female', 'other')),
    country            TEXT CHECK (country ~ '^[A-Z]{2}$'),
    address_enc        BYTEA,
    language           TEXT NOT NULL DEFAULT 'en',
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE user_auth (
    user_id                 UUID PRIMARY KEY REFERENCES users (id),
    region                  crdb_internal_region NOT NULL,
    auth_service_id         TEXT,
    -- argon2id over HMAC(pepper, PIN); the parameters are encoded in pin_hash (PHC string).
    pin_hash                TEXT,
    pin_salt                BYTEA,
    pin_attempts            INTEGER NOT NULL DEFAULT 0 CHECK (pin_attempts >= 0),
    -- Lock-outs so far: each new lock lasts 15 minutes × 2^(cycles-1).
    pin_lock_cycles         INTEGER NOT NULL DEFAULT 0 CHECK (pin_lock_cycles >= 0),
    pin_locked_until        TIMESTAMPTZ,
    biometric_enabled       BOOLEAN NOT NULL DEFAULT false,
    two_factor_enabled      BOOLEAN NOT NULL DEFAULT false,
    two_factor_secret_enc   BYTEA,
    transaction_pin_enabled BOOLEAN NOT NULL DEFAULT true,
    -- Access tokens issued before this instant are refused ("log out everywhere").
    tokens_not_before       TIMESTAMPTZ,
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE user_settings (
    user_id     UUID PRIMARY KEY REFERENCES users (id),
    region      crdb_internal_region NOT NULL,
    language    TEXT NOT NULL DEFAULT 'en',
    theme       TEXT NOT NULL DEFAULT 'light' CHECK (theme IN ('light', 'dark', 'system')),
    -- Per asset and day, in the asset's units; NULL means the asset's own maximum applies.
    daily_limit NUMERIC(20, 8) CHECK (daily_limit IS NULL OR daily_limit >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE notification_settings (
    user_id             UUID PRIMARY KEY REFERENCES users (id),
    region              crdb_internal_region NOT NULL,
    push_enabled        BOOLEAN NOT NULL DEFAULT true,
    transaction_alerts  BOOLEAN NOT NULL DEFAULT true,
    security_alerts     BOOLEAN NOT NULL DEFAULT true,
    promotions          BOOLEAN NOT NULL DEFAULT true,
    email_notifications BOOLEAN NOT NULL DEFAULT true,
    sms_notifications   BOOLEAN NOT NULL DEFAULT true,
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
