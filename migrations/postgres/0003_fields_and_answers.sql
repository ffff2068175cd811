-- The same as migrations/sqlite/0003_fields_and_answers.sql, in PostgreSQL's dialect.
ALTER TABLE results ADD COLUMN fields TEXT;
UPDATE results
SET fields = json_strip_nulls(json_build_object('address', address, 'road_address', road_address,
                                                'building_name', building_name))::text
WHERE address IS NOT NULL OR road_address IS NOT NULL OR building_name IS NOT NULL;

CREATE TABLE lookup_answers (
    provider   TEXT NOT NULL,
    query      TEXT NOT NULL,
    answer     TEXT NOT NULL,
    fetched_ms BIGINT NOT NULL,
    PRIMARY KEY (provider, query)
);

INSERT INTO lookup_answers (provider, query, answer, fetched_ms)
SELECT provider, lon_e7::text || ',' || lat_e7::text,
       CASE WHEN status = 'no_result' THEN '"no_result"'
            ELSE json_build_object('found', json_build_object('fields',
                 json_strip_nulls(json_build_object('address', address,
                                                    'road_address', road_address,
                                                    'building_name', building_name))))::text
       END,
       fetched_ms
FROM lookup_cache;

DROP TABLE lookup_cache;

-- Which input file and table fill each sheet (a workbook has several tables), so outputs can
-- name a sheet's columns before its first row.
ALTER TABLE sheets ADD COLUMN file_no BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sheets ADD COLUMN table_no BIGINT NOT NULL DEFAULT 0;
