-- Money movements. One transactions row per movement, homed with its initiator (the sender, or
-- the region's system user for cash-in), and one ledger entry per side homed with each party, so
-- each party reads its history in its own region (design.md, Money).
--
-- Idempotency: the client's reference is unique per initiator forever, and request_hash is the
-- fingerprint of the body that first used it (reference/security.md §3.3). The unique index leads
-- with the region so no other region is consulted (reference/cockroachdb.md §3). Ids come from
-- gen_random_uuid() defaults, which CockroachDB does not re-check across regions (§3).
CREATE TABLE transactions (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region          crdb_internal_region NOT NULL,
    reference       TEXT NOT NULL CHECK (length(reference) BETWEEN 1 AND 100),
    request_hash    BYTEA NOT NULL,
    sender_id       UUID NOT NULL REFERENCES users (id),
    -- No foreign key: the recipient may be homed in another region, and a foreign-key check
    -- would read that region on every transfer. Users are never deleted (only erased), so the
    -- id cannot dangle.
    recipient_id    UUID,
    type            TEXT NOT NULL
                    CHECK (type IN ('transfer', 'payment', 'cash_out', 'cash_in', 'exchange')),
    status          TEXT NOT NULL
                    CHECK (status IN ('pending', 'processing', 'completed', 'failed', 'cancelled')),
    amount          NUMERIC(20, 8) NOT NULL CHECK (amount > 0),
    asset_symbol    TEXT NOT NULL,
    fee             NUMERIC(20, 8) NOT NULL DEFAULT 0 CHECK (fee >= 0),
    -- Exchanges: what the other side received, at which rate, quoted when.
    to_asset_symbol TEXT,
    to_amount       NUMERIC(20, 8) CHECK (to_amount IS NULL OR to_amount > 0),
    exchange_rate   NUMERIC(38, 18) CHECK (exchange_rate IS NULL OR exchange_rate > 0),
    rate_as_of      TIMESTAMPTZ,
    note            TEXT,
    metadata        JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ
);
CREATE UNIQUE INDEX transactions_region_sender_reference_key
    ON transactions (region, sender_id, reference);
CREATE INDEX transactions_sender_time_idx ON transactions (sender_id, created_at DESC);
CREATE INDEX transactions_recipient_time_idx ON transactions (recipient_id, created_at DESC);
-- Compliance monitoring by status and time; hash-sharded on CockroachDB (overlay).
CREATE INDEX transactions_status_time_idx ON transactions (status, created_at);

CREATE TABLE ledger_entries (
    id                   UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region               crdb_internal_region NOT NULL,
    wallet_id            UUID NOT NULL REFERENCES wallets (id),
    user_id              UUID NOT NULL,
    transaction_id       UUID NOT NULL,
    asset_symbol         TEXT NOT NULL,
    -- Signed change of the balance's total; a transaction's entries sum to zero per asset.
    amount               NUMERIC(20, 8) NOT NULL CHECK (amount <> 0),
    balance_after        NUMERIC(20, 8) NOT NULL,
    -- A copy of what the owner's history shows, so it never reads another region.
    tx_type              TEXT NOT NULL,
    counterparty_id      UUID,
    counterparty_display BYTEA,
    note                 TEXT,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ledger_entries_user_time_idx ON ledger_entries (user_id, created_at DESC, id DESC);
CREATE INDEX ledger_entries_transaction_idx ON ledger_entries (transaction_id);

CREATE TABLE transaction_details (
    transaction_id UUID PRIMARY KEY REFERENCES transactions (id),
    region         crdb_internal_region NOT NULL,
    network        TEXT,
    tx_hash        TEXT,
    confirmations  INTEGER NOT NULL DEFAULT 0,
    block_number   BIGINT,
    gas_fee        NUMERIC(20, 8),
    error_message  TEXT,
    raw_response   JSONB
);

CREATE TABLE cash_out_details (
    transaction_id     UUID PRIMARY KEY REFERENCES transactions (id),
    region             crdb_internal_region NOT NULL,
    method             TEXT NOT NULL CHECK (method IN ('atm', 'agent', 'bank')),
    provider           TEXT,
    provider_reference TEXT,
    -- The pickup code is a bearer secret: encrypted like PII.
    pickup_code_enc    BYTEA,
    expires_at         TIMESTAMPTZ NOT NULL,
    collected_at       TIMESTAMPTZ,
    cancelled_at       TIMESTAMPTZ,
    location           JSONB
);
-- Open cash-outs by expiry, for the expiry job; hash-sharded on CockroachDB (overlay).
CREATE INDEX cash_out_details_open_expiry_idx ON cash_out_details (expires_at)
    WHERE collected_at IS NULL AND cancelled_at IS NULL;
