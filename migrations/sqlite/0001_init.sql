-- Jobs, their input files, their sheets, and one result per input row.
CREATE TABLE jobs (
    id           TEXT PRIMARY KEY,
    label        TEXT NOT NULL,
    state        TEXT NOT NULL,
    options      TEXT NOT NULL,
    source_crs   TEXT,
    operation    TEXT,
    total_rows   INTEGER,
    message      TEXT,
    output_path  TEXT,
    created_ms   INTEGER NOT NULL,
    published_ms INTEGER,
    resolved_ms  INTEGER,
    finished_ms  INTEGER
);

CREATE TABLE job_files (
    job_id  TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    file_no INTEGER NOT NULL,
    label   TEXT NOT NULL,
    path    TEXT NOT NULL,
    owned   INTEGER NOT NULL,
    layout  TEXT,
    rows    INTEGER,
    PRIMARY KEY (job_id, file_no)
);

CREATE TABLE sheets (
    job_id      TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    sheet_no    INTEGER NOT NULL,
    name        TEXT NOT NULL,
    topic       TEXT NOT NULL,
    rows_total  INTEGER NOT NULL DEFAULT 0,
    rows_ok     INTEGER NOT NULL DEFAULT 0,
    rows_failed INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (job_id, sheet_no)
);

-- One row per input row once it is resolved; (job_id, seq) makes every write idempotent.
CREATE TABLE results (
    job_id       TEXT NOT NULL,
    seq          INTEGER NOT NULL,
    sheet_no     INTEGER NOT NULL,
    status       TEXT NOT NULL,
    out_x        REAL,
    out_y        REAL,
    error_column TEXT,
    error_value  TEXT,
    error        TEXT,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
