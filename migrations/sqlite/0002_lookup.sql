-- Address lookup: the address columns of a result, a status `no_result` beside `ok` and
-- `error`, the cache of answers by coordinates, and the providers' shared budget.
ALTER TABLE results ADD COLUMN address TEXT;
ALTER TABLE results ADD COLUMN road_address TEXT;
ALTER TABLE results ADD COLUMN building_name TEXT;

ALTER TABLE jobs ADD COLUMN lookup_requests INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN lookup_cache_hits INTEGER NOT NULL DEFAULT 0;

-- One answer per provider and WGS84 point rounded to 1e-7 degrees (lon_e7 = round(lon * 1e7)).
-- status: 'ok' (an address) or 'no_result'. Failures are not cached.
CREATE TABLE lookup_cache (
    provider      TEXT NOT NULL,
    lon_e7        INTEGER NOT NULL,
    lat_e7        INTEGER NOT NULL,
    status        TEXT NOT NULL,
    address       TEXT,
    road_address  TEXT,
    building_name TEXT,
    fetched_ms    INTEGER NOT NULL,
    PRIMARY KEY (provider, lon_e7, lat_e7)
) WITHOUT ROWID;

-- The GCRA state of each provider's budget, shared by every process on this store
-- (see src/lookup/budget.rs).
CREATE TABLE provider_budget (
    provider TEXT PRIMARY KEY,
    tat_ms   REAL NOT NULL,
    seen_ms  REAL NOT NULL,
    day      INTEGER NOT NULL,
    used     INTEGER NOT NULL
);
