-- Payment requests, homed with the requestor. The payer may live in another region; the payer's
-- list reads the requests addressed to them by recipient_id.
CREATE TABLE payment_requests (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region           crdb_internal_region NOT NULL,
    requestor_id     UUID NOT NULL REFERENCES users (id),
    recipient_id     UUID,
    recipient_region crdb_internal_region,
    amount           NUMERIC(20, 8) NOT NULL CHECK (amount > 0),
    asset_symbol     TEXT NOT NULL,
    status           TEXT NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'paid', 'declined', 'expired', 'cancelled')),
    note             TEXT,
    qr_code          TEXT,
    expires_at       TIMESTAMPTZ,
    paid_at          TIMESTAMPTZ,
    transaction_id   UUID,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX payment_requests_requestor_idx ON payment_requests (requestor_id, status, created_at DESC);
CREATE INDEX payment_requests_recipient_idx ON payment_requests (recipient_id, status, created_at DESC);
