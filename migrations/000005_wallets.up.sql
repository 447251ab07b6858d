-- Wallets and balances. A balance never goes negative (the CHECKs back the code), and
-- total = available + pending always; only a system issuance balance (money entering or leaving
-- the system through cash-in and cash-out) may go below zero, so that the sum of all balances of
-- an asset is zero and conservation is one query.
CREATE TABLE wallets (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region         crdb_internal_region NOT NULL,
    user_id        UUID NOT NULL REFERENCES users (id),
    wallet_address TEXT,
    wallet_type    TEXT NOT NULL DEFAULT 'custodial'
                   CHECK (wallet_type IN ('custodial', 'non_custodial', 'system')),
    status         TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'frozen', 'closed')),
    primary_asset  TEXT NOT NULL DEFAULT 'USD',
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
-- Unique per region: a user has one wallet, and uniqueness leads with the region so CockroachDB
-- checks it in one partition (reference/cockroachdb.md §3).
CREATE UNIQUE INDEX wallets_region_user_key ON wallets (region, user_id);
CREATE UNIQUE INDEX wallets_region_address_key ON wallets (region, wallet_address);

CREATE TABLE asset_balances (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region         crdb_internal_region NOT NULL,
    wallet_id      UUID NOT NULL REFERENCES wallets (id),
    user_id        UUID NOT NULL,
    asset_symbol   TEXT NOT NULL REFERENCES supported_assets (symbol),
    total          NUMERIC(20, 8) NOT NULL DEFAULT 0,
    available      NUMERIC(20, 8) NOT NULL DEFAULT 0,
    pending        NUMERIC(20, 8) NOT NULL DEFAULT 0,
    allow_negative BOOLEAN NOT NULL DEFAULT false,
    last_updated   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT asset_balances_not_negative
        CHECK (allow_negative OR (available >= 0 AND pending >= 0)),
    CONSTRAINT asset_balances_total_sum CHECK (total = available + pending)
);
CREATE UNIQUE INDEX asset_balances_region_wallet_asset_key
    ON asset_balances (region, wallet_id, asset_symbol);
CREATE UNIQUE INDEX asset_balances_region_user_asset_key
    ON asset_balances (region, user_id, asset_symbol);
