-- Reference data read everywhere and written rarely: GLOBAL tables on CockroachDB
-- (reference/cockroachdb.md §1.2, §6). Money is NUMERIC(20,8); rates get more digits because a
-- rate such as USD→BTC needs them, and a rate is not an amount.
CREATE TABLE supported_assets (
    symbol           TEXT PRIMARY KEY CHECK (symbol ~ '^[A-Z0-9]{2,10}$'),
    name             TEXT NOT NULL,
    asset_type       TEXT NOT NULL CHECK (asset_type IN ('fiat', 'crypto')),
    decimals         INTEGER NOT NULL DEFAULT 2 CHECK (decimals BETWEEN 0 AND 8),
    min_amount       NUMERIC(20, 8) NOT NULL CHECK (min_amount > 0),
    max_amount       NUMERIC(20, 8) NOT NULL,
    is_active        BOOLEAN NOT NULL DEFAULT true,
    network          TEXT,
    contract_address TEXT,
    sort_order       INTEGER NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (max_amount >= min_amount)
);

CREATE TABLE exchange_rates (
    base_symbol  TEXT NOT NULL REFERENCES supported_assets (symbol),
    quote_symbol TEXT NOT NULL REFERENCES supported_assets (symbol),
    -- 1 base = rate quote.
    rate         NUMERIC(38, 18) NOT NULL CHECK (rate > 0),
    source       TEXT NOT NULL DEFAULT 'manual',
    as_of        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (base_symbol, quote_symbol),
    CHECK (base_symbol <> quote_symbol)
);
