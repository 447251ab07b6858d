-- Promotions are GLOBAL reference data; views and clicks are the user's and live in their region.
CREATE TABLE promotions (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    title            TEXT NOT NULL,
    description      TEXT,
    image_url        TEXT,
    link_url         TEXT,
    background_color TEXT CHECK (background_color ~ '^#[0-9A-Fa-f]{6}$'),
    target_audience  JSONB,
    priority         INTEGER NOT NULL DEFAULT 0,
    start_date       TIMESTAMPTZ,
    end_date         TIMESTAMPTZ,
    is_active        BOOLEAN NOT NULL DEFAULT true,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX promotions_active_idx ON promotions (is_active, start_date, end_date);

CREATE TABLE promotion_views (
    id           UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    region       crdb_internal_region NOT NULL,
    promotion_id UUID NOT NULL REFERENCES promotions (id),
    user_id      UUID NOT NULL REFERENCES users (id),
    viewed_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    clicked_at   TIMESTAMPTZ
);
CREATE UNIQUE INDEX promotion_views_region_user_promotion_key
    ON promotion_views (region, user_id, promotion_id);
