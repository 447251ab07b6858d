-- Contacts: only contacts that are 7awel users are kept, by keyed hash of their phone number;
-- numbers of people who are not users are never stored (design.md, departures from the plan).
CREATE TABLE contacts_with_accounts (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region           crdb_internal_region NOT NULL,
    owner_id         UUID NOT NULL REFERENCES users (id),
    phone_bidx       BYTEA NOT NULL,
    is_favorite      BOOLEAN NOT NULL DEFAULT false,
    linked_user_id   UUID,
    last_interaction TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX contacts_region_owner_phone_key
    ON contacts_with_accounts (region, owner_id, phone_bidx);

CREATE TABLE contact_sync_status (
    user_id               UUID PRIMARY KEY REFERENCES users (id),
    region                crdb_internal_region NOT NULL,
    last_sync             TIMESTAMPTZ,
    device_contacts_count INTEGER,
    synced_contacts_count INTEGER,
    status                TEXT NOT NULL DEFAULT 'pending'
                          CHECK (status IN ('pending', 'syncing', 'completed', 'failed'))
);
