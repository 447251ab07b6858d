-- The GLOBAL directories: keyed hash of a phone number or email → user id and home region. They
-- are what lets any region find a recipient, or refuse a taken phone, without holding PII
-- (design.md, Regions and PII). They also carry global uniqueness, so no REGIONAL BY ROW table
-- needs a UNIQUE index that does not start with its region (reference/cockroachdb.md §3).
CREATE TABLE phone_directory (
    phone_bidx  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL,
    home_region crdb_internal_region NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE email_directory (
    email_bidx  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL,
    home_region crdb_internal_region NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
