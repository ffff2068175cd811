-- Address lookup: the same as migrations/sqlite/0002_lookup.sql, in PostgreSQL's types.
ALTER TABLE results ADD COLUMN address TEXT;
ALTER TABLE results ADD COLUMN road_address TEXT;
ALTER TABLE results ADD COLUMN building_name TEXT;

ALTER TABLE jobs ADD COLUMN lookup_requests BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lookup_cache_hits BIGINT NOT NULL DEFAULT 0;

CREATE TABLE lookup_cache (
    provider      TEXT NOT NULL,
    lon_e7        BIGINT NOT NULL,
    lat_e7        BIGINT NOT NULL,
    status        TEXT NOT NULL,
    address       TEXT,
    road_address  TEXT,
    building_name TEXT,
    fetched_ms    BIGINT NOT NULL,
    PRIMARY KEY (provider, lon_e7, lat_e7)
);

CREATE TABLE provider_budget (
    provider TEXT PRIMARY KEY,
    tat_ms   DOUBLE PRECISION NOT NULL,
    seen_ms  DOUBLE PRECISION NOT NULL,
    day      BIGINT NOT NULL,
    used     BIGINT NOT NULL
);
