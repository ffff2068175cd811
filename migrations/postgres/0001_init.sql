-- Jobs, their input files, their sheets, and one result per input row.
-- The same tables as migrations/sqlite/0001_init.sql, in PostgreSQL's types.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    label        TEXT NOT NULL,
    state        TEXT NOT NULL,
    options      TEXT NOT NULL,
    source_crs   TEXT,
    operation    TEXT,
    total_rows   BIGINT,
    message      TEXT,
    output_path  TEXT,
    created_ms   BIGINT NOT NULL,
    published_ms BIGINT,
    resolved_ms  BIGINT,
    finished_ms  BIGINT
);

CREATE TABLE job_files (
    job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    file_no BIGINT NOT NULL,
    label   TEXT NOT NULL,
    path    TEXT NOT NULL,
    owned   BOOLEAN NOT NULL,
    layout  TEXT,
    rows    BIGINT,
    PRIMARY KEY (job_id, file_no)
);

CREATE TABLE sheets (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    sheet_no    BIGINT NOT NULL,
    name        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    rows_total  BIGINT NOT NULL DEFAULT 0,
    rows_ok     BIGINT NOT NULL DEFAULT 0,
    rows_failed BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, sheet_no)
);

-- One row per input row once it is resolved; (job_id, seq) makes every write idempotent.
CREATE TABLE results (
    job_id       TEXT NOT NULL,
    seq          BIGINT NOT NULL,
    sheet_no     BIGINT NOT NULL,
    status       TEXT NOT NULL,
    out_x        DOUBLE PRECISION,
    out_y        DOUBLE PRECISION,
    error_column TEXT,
    error_value  TEXT,
    error        TEXT,
    PRIMARY KEY (job_id, seq)
);
