-- The columns a job adds after the position (an address lookup's address, road_address,
-- building_name; a geocoder's matched_address, …) as one JSON object per result, so a new
-- output column needs no migration. The old address columns stay, unused.
ALTER TABLE results ADD COLUMN fields TEXT;
-- json_patch drops the keys whose value is null.
UPDATE results
SET fields = json_patch('{}', json_object('address', address, 'road_address', road_address,
                                          'building_name', building_name))
WHERE address IS NOT NULL OR road_address IS NOT NULL OR building_name IS NOT NULL;

-- The lookup cache by query text (a point: "<lon*1e7>,<lat*1e7>"; an address: its cleaned
-- text), the answer kept as the lookup wrote it (JSON).
CREATE TABLE lookup_answers (
    provider   TEXT NOT NULL,
    query      TEXT NOT NULL,
    answer     TEXT NOT NULL,
    fetched_ms INTEGER NOT NULL,
    PRIMARY KEY (provider, query)
) WITHOUT ROWID;

INSERT INTO lookup_answers (provider, query, answer, fetched_ms)
SELECT provider, lon_e7 || ',' || lat_e7,
       CASE WHEN status = 'no_result' THEN '"no_result"'
            ELSE json_object('found', json_object('fields',
                 json_patch('{}', json_object('address', address, 'road_address', road_address,
                                              'building_name', building_name))))
       END,
       fetched_ms
FROM lookup_cache;

DROP TABLE lookup_cache;

-- Which input file and table fill each sheet (a workbook has several tables), so outputs can
-- name a sheet's columns before its first row.
ALTER TABLE sheets ADD COLUMN file_no INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sheets ADD COLUMN table_no INTEGER NOT NULL DEFAULT 0;
