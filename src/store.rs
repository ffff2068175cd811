//! The result store: jobs, their files and sheets, and one result per input row.
//!
//! Every result write is idempotent per (job, seq) and moves the sheet counters in the same
//! transaction, so a redelivered batch can neither duplicate a row nor skew the progress.
//!
//! Two backends behind the same methods: SQLite (a file in the data directory, the default)
//! and PostgreSQL (`DATABASE_URL=postgres://…`). Same schema (`migrations/sqlite`,
//! `migrations/postgres`) and the same SQL text wherever the dialects agree: every query is
//! written with `$1`-style parameters, which sqlx's SQLite driver reads as well. Only the bulk
//! insert of results differs (multi-row `VALUES` for SQLite, `UNNEST` arrays for PostgreSQL).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, SqlitePool};

use crate::lookup::budget::{BoxFuture, BudgetError, BudgetGate, Slot, DAY_MS};
use crate::lookup::{Address, LookupOutcome};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("result store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("result store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("result store: {0}")]
    Corrupt(String),
    #[error("result store: {0}")]
    Config(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Stored, not yet read.
    Accepted,
    /// Intake is reading the files and publishing rows.
    Publishing,
    /// Every row is published; workers are converting.
    Running,
    /// Waiting for the address provider's daily quota to reset (the message says until when).
    Paused,
    /// Every row is resolved; the workbook is being written.
    Merging,
    Done,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Accepted => "accepted",
            JobState::Publishing => "publishing",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Merging => "merging",
            JobState::Done => "done",
            JobState::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<JobState> {
        Ok(match s {
            "accepted" => JobState::Accepted,
            "publishing" => JobState::Publishing,
            "running" => JobState::Running,
            "paused" => JobState::Paused,
            "merging" => JobState::Merging,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            other => return Err(StoreError::Corrupt(format!("unknown job state {other:?}"))),
        })
    }

    pub fn is_finished(self) -> bool {
        matches!(self, JobState::Done | JobState::Failed)
    }
}

/// An input file of a job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct JobFile {
    pub file_no: u32,
    pub label: String,
    pub path: String,
    /// The store owns (and deletes) uploads; a CLI input stays where the user keeps it.
    pub owned: bool,
    /// JSON of `intake::Layout`, once detected.
    pub layout: Option<String>,
    pub rows: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub label: String,
    pub state: JobState,
    /// JSON of `pipeline::JobOptions`.
    pub options: String,
    pub source_crs: Option<String>,
    pub operation: Option<String>,
    pub total_rows: Option<u64>,
    pub message: Option<String>,
    pub output_path: Option<String>,
    pub created_ms: i64,
    pub published_ms: Option<i64>,
    pub resolved_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    /// Address lookups sent to the provider for this job (retries included).
    pub lookup_requests: u64,
    /// Rows whose address came from the cache (or from an identical point in the same batch).
    pub lookup_cache_hits: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct SheetRecord {
    pub sheet_no: u32,
    pub name: String,
    pub topic: String,
    pub rows_total: u64,
    pub rows_ok: u64,
    pub rows_failed: u64,
}

/// The outcome for one input row.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Point {
        x: f64,
        y: f64,
    },
    /// Converted and looked up (a lookup job): `address` None means the provider knows no
    /// address there (status `no_result`).
    Located {
        x: f64,
        y: f64,
        address: Option<Address>,
    },
    /// `column` None means the position as a whole (both coordinate columns); `raw` None means
    /// "the cells as read", which the merger takes from the input itself.
    Failed {
        column: Option<String>,
        raw: Option<String>,
        reason: String,
    },
}

impl Outcome {
    /// Not an error: counted in a sheet's `rows_ok` (`ok` and `no_result`).
    pub fn is_resolved_ok(&self) -> bool {
        !matches!(self, Outcome::Failed { .. })
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct RowResult {
    pub seq: u64,
    pub outcome: Outcome,
}

/// A stored result as the merger reads it back.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredResult {
    pub seq: u64,
    pub sheet_no: u32,
    pub outcome: Outcome,
}

/// How many results one write actually added (a redelivered row adds nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stored {
    pub ok: u64,
    pub failed: u64,
}

pub struct NewJob<'a> {
    pub id: &'a str,
    pub label: &'a str,
    pub options: &'a str,
    pub files: &'a [JobFile],
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Which database holds the store.
#[derive(Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

#[derive(Clone)]
pub struct ResultStore {
    backend: Backend,
}

/// Runs `$body` with `$pool` bound to the store's pool, whichever the backend: one source text,
/// compiled once per dialect.
macro_rules! on_pool {
    ($store:expr, $pool:ident => $body:expr) => {
        match &$store.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

const JOB_COLUMNS: &str = "id, label, state, options, source_crs, operation, total_rows, message, \
     output_path, created_ms, published_ms, resolved_ms, finished_ms, lookup_requests, \
     lookup_cache_hits";

/// True for the URLs that select the PostgreSQL backend.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

impl ResultStore {
    /// Opens the store and applies the migrations: PostgreSQL when `database_url` is a
    /// `postgres://` URL, otherwise (None or empty) the SQLite file `geobatch.db` in `data_dir`.
    pub async fn open(data_dir: &Path, database_url: Option<&str>) -> Result<ResultStore> {
        match database_url.map(str::trim).filter(|u| !u.is_empty()) {
            None => Self::open_dir(data_dir).await,
            Some(url) if is_postgres_url(url) => Self::open_postgres(url).await,
            Some(url) => Err(StoreError::Config(format!(
                "DATABASE_URL must be a postgres:// URL (unset: SQLite in the data directory); \
                 it starts with {:?}",
                url.split(':').next().unwrap_or_default()
            ))),
        }
    }

    /// Opens (creating if needed) the SQLite store in `data_dir` and applies the migrations.
    pub async fn open_dir(data_dir: &Path) -> Result<ResultStore> {
        let file = data_dir.join("geobatch.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))?
            .create_if_missing(true)
            // WAL + NORMAL survives a killed process (not a power cut) at a fraction of FULL's cost.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(ResultStore {
            backend: Backend::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL and applies the migrations (sqlx serialises concurrent migrators
    /// with an advisory lock, so several processes may start at once).
    pub async fn open_postgres(url: &str) -> Result<ResultStore> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect(url)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(ResultStore {
            backend: Backend::Postgres(pool),
        })
    }

    /// "SQLite" or "PostgreSQL", for logs.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }

    /// The PostgreSQL pool when the store lives there (the PostGIS engine may share it).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            Backend::Sqlite(_) => None,
        }
    }

    pub async fn create_job(&self, job: &NewJob<'_>) -> Result<()> {
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO jobs (id, label, state, options, created_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(job.id)
            .bind(job.label)
            .bind(JobState::Accepted.as_str())
            .bind(job.options)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            for f in job.files {
                sqlx::query(
                    "INSERT INTO job_files (job_id, file_no, label, path, owned) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(job.id)
                .bind(f.file_no as i64)
                .bind(&f.label)
                .bind(&f.path)
                .bind(f.owned)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn set_state(&self, id: &str, state: JobState, message: Option<&str>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET state = $1, message = COALESCE($2, message), \
                 published_ms = CASE WHEN $1 = 'running' AND published_ms IS NULL THEN $3 ELSE published_ms END, \
                 resolved_ms = CASE WHEN $1 = 'merging' THEN $3 ELSE resolved_ms END, \
                 finished_ms = CASE WHEN $1 IN ('done', 'failed') THEN $3 ELSE finished_ms END \
                 WHERE id = $4",
            )
            .bind(state.as_str())
            .bind(message)
            .bind(now_ms())
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a job paused with why and until when (only a job that is not finished).
    pub async fn pause(&self, id: &str, message: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET state = 'paused', message = $1 \
                 WHERE id = $2 AND state NOT IN ('done', 'failed')",
            )
            .bind(message)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A paused job runs again (its pause message goes).
    pub async fn unpause(&self, id: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET state = 'running', message = NULL WHERE id = $1 AND state = 'paused'",
            )
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn set_plan(&self, id: &str, source_crs: &str, operation: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET source_crs = $1, operation = $2 WHERE id = $3")
                .bind(source_crs)
                .bind(operation)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn set_output(&self, id: &str, path: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET output_path = $1 WHERE id = $2")
                .bind(path)
                .bind(id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn set_file_layout(&self, id: &str, file_no: u32, layout: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE job_files SET layout = $1 WHERE job_id = $2 AND file_no = $3")
                .bind(layout)
                .bind(id)
                .bind(file_no as i64)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a sheet; a re-driven intake finds the same sheets and keeps their counters.
    pub async fn add_sheet(&self, id: &str, sheet_no: u32, name: &str, topic: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sheets (job_id, sheet_no, name, topic) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (job_id, sheet_no) DO NOTHING",
            )
            .bind(id)
            .bind(sheet_no as i64)
            .bind(name)
            .bind(topic)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Intake has read every row: totals per file and sheet, and the job moves to `running`.
    pub async fn finish_intake(
        &self,
        id: &str,
        file_rows: &[(u32, u64)],
        sheet_rows: &[(u32, u64)],
    ) -> Result<()> {
        let total: u64 = file_rows.iter().map(|(_, rows)| rows).sum();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (file_no, rows) in file_rows {
                sqlx::query("UPDATE job_files SET rows = $1 WHERE job_id = $2 AND file_no = $3")
                    .bind(*rows as i64)
                    .bind(id)
                    .bind(*file_no as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            for (sheet_no, rows) in sheet_rows {
                sqlx::query("UPDATE sheets SET rows_total = $1 WHERE job_id = $2 AND sheet_no = $3")
                    .bind(*rows as i64)
                    .bind(id)
                    .bind(*sheet_no as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE jobs SET total_rows = $1, state = 'running', \
                 published_ms = COALESCE(published_ms, $2) WHERE id = $3",
            )
            .bind(total as i64)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    /// The sequence numbers in `[from, to]` that already have a result.
    pub async fn resolved_seqs(&self, id: &str, from: u64, to: u64) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT seq FROM results WHERE job_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            )
            .bind(id)
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(pool)
            .await?
        });
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    /// Up to `limit` resolved sequence numbers from `from` on, in order.
    pub async fn resolved_seqs_from(&self, id: &str, from: u64, limit: u32) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT seq FROM results WHERE job_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            )
            .bind(id)
            .bind(from as i64)
            .bind(limit as i64)
            .fetch_all(pool)
            .await?
        });
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    /// Stores results of one sheet; rows that already have a result are left as they are.
    pub async fn store_results(
        &self,
        id: &str,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        let mut stored = Stored::default();
        if rows.is_empty() {
            return Ok(stored);
        }
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for chunk in rows.chunks(INSERT_CHUNK) {
                let added = tx.insert_results(id, sheet_no, chunk).await?;
                stored.ok += added.ok;
                stored.failed += added.failed;
            }
            if stored.ok + stored.failed > 0 {
                sqlx::query(
                    "UPDATE sheets SET rows_ok = rows_ok + $1, rows_failed = rows_failed + $2 \
                     WHERE job_id = $3 AND sheet_no = $4",
                )
                .bind(stored.ok as i64)
                .bind(stored.failed as i64)
                .bind(id)
                .bind(sheet_no as i64)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(stored)
    }

    /// Results in input order, `limit` at a time, after `after` (exclusive; None = from the start).
    pub async fn results_page(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>> {
        let rows: Vec<ResultRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, sheet_no, status, out_x, out_y, error_column, error_value, error, \
                 address, road_address, building_name FROM results WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id)
            .bind(after.map(|a| a as i64).unwrap_or(-1))
            .bind(limit as i64)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(ResultRow::into_result).collect()
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        row.map(JobRow::into_record).transpose()
    }

    /// Newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("TRUE ORDER BY created_ms DESC, id").await
    }

    /// Jobs that a restart must pick up again, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("state NOT IN ('done', 'failed') ORDER BY created_ms, id")
            .await
    }

    async fn jobs_where(&self, condition_and_order: &str) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition_and_order}");
        let rows: Vec<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(&sql).fetch_all(pool).await?
        });
        rows.into_iter().map(JobRow::into_record).collect()
    }

    /// Running jobs whose every row has a result: ready for the merger.
    pub async fn resolved_jobs(&self) -> Result<Vec<String>> {
        Ok(on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT j.id FROM jobs j JOIN sheets s ON s.job_id = j.id \
                 WHERE j.state = 'running' AND j.total_rows IS NOT NULL \
                 GROUP BY j.id, j.total_rows \
                 HAVING SUM(s.rows_ok + s.rows_failed) >= j.total_rows \
                 UNION \
                 SELECT j.id FROM jobs j WHERE j.state = 'running' AND j.total_rows = 0",
            )
            .fetch_all(pool)
            .await?
        }))
    }

    pub async fn files(&self, id: &str) -> Result<Vec<JobFile>> {
        let rows: Vec<FileRow> = self
            .of_job(
                "SELECT file_no, label, path, owned, layout, rows FROM job_files \
                 WHERE job_id = $1 ORDER BY file_no",
                id,
            )
            .await?;
        Ok(rows.into_iter().map(FileRow::into_file).collect())
    }

    pub async fn sheets(&self, id: &str) -> Result<Vec<SheetRecord>> {
        let rows: Vec<SheetRow> = self
            .of_job(
                "SELECT sheet_no, name, topic, rows_total, rows_ok, rows_failed FROM sheets \
                 WHERE job_id = $1 ORDER BY sheet_no",
                id,
            )
            .await?;
        Ok(rows.into_iter().map(SheetRow::into_record).collect())
    }

    /// Every row of `sql`, whose one parameter is the job's id.
    async fn of_job<T>(&self, sql: &str, id: &str) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id).fetch_all(pool).await?
        }))
    }

    /// How many jobs are in each state.
    pub async fn job_state_counts(&self) -> Result<Vec<(String, u64)>> {
        let sql = "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state";
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(rows.into_iter().map(|(s, n)| (s, n as u64)).collect())
    }

    /// Sheets of jobs that are not finished, with their job ids.
    pub async fn active_sheets(&self) -> Result<Vec<(String, SheetRecord)>> {
        let sql = "SELECT s.job_id, s.sheet_no, s.name, s.topic, s.rows_total, s.rows_ok, \
                   s.rows_failed FROM sheets s JOIN jobs j ON j.id = s.job_id \
                   WHERE j.state NOT IN ('done', 'failed') ORDER BY s.job_id, s.sheet_no";
        let rows: Vec<ActiveSheetRow> = on_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        Ok(rows
            .into_iter()
            .map(|r| (r.job_id, r.sheet.into_record()))
            .collect())
    }

    /// Makes a finished job's `error` rows unresolved again (their results deleted, the sheet
    /// counters recounted) and puts the job back to `accepted`; returns how many rows.
    pub async fn reset_failed_rows(&self, id: &str) -> Result<u64> {
        let reset = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let reset = sqlx::query("DELETE FROM results WHERE job_id = $1 AND status = 'error'")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(
                "UPDATE sheets SET \
                 rows_ok = (SELECT COUNT(*) FROM results r WHERE r.job_id = sheets.job_id \
                            AND r.sheet_no = sheets.sheet_no AND r.status <> 'error'), \
                 rows_failed = (SELECT COUNT(*) FROM results r WHERE r.job_id = sheets.job_id \
                                AND r.sheet_no = sheets.sheet_no AND r.status = 'error') \
                 WHERE job_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET state = 'accepted', message = NULL, resolved_ms = NULL, \
                 finished_ms = NULL WHERE id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            reset
        });
        Ok(reset)
    }

    /// Adds to a job's lookup counters.
    pub async fn add_lookup_counts(&self, id: &str, requests: u64, cache_hits: u64) -> Result<()> {
        if requests + cache_hits == 0 {
            return Ok(());
        }
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET lookup_requests = lookup_requests + $1, \
                 lookup_cache_hits = lookup_cache_hits + $2 WHERE id = $3",
            )
            .bind(requests as i64)
            .bind(cache_hits as i64)
            .bind(id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Cached answers of `provider` for these points (see [`CacheKey`]) fetched at or after
    /// `fresh_since_ms`.
    pub async fn cached_lookups(
        &self,
        provider: &str,
        keys: &[CacheKey],
        fresh_since_ms: i64,
    ) -> Result<HashMap<CacheKey, LookupOutcome>> {
        let mut found = HashMap::new();
        for chunk in keys.chunks(CACHE_CHUNK) {
            let rows: Vec<CacheRow> = on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(
                    "SELECT lon_e7, lat_e7, status, address, road_address, building_name \
                     FROM lookup_cache WHERE provider = ",
                );
                qb.push_bind(provider)
                    .push(" AND fetched_ms >= ")
                    .push_bind(fresh_since_ms)
                    .push(" AND (lon_e7, lat_e7) IN (");
                let mut list = qb.separated(", ");
                for k in chunk {
                    list.push("(")
                        .push_bind_unseparated(k.lon_e7)
                        .push_unseparated(", ")
                        .push_bind_unseparated(k.lat_e7)
                        .push_unseparated(")");
                }
                qb.push(")");
                qb.build_query_as().fetch_all(pool).await?
            });
            for r in rows {
                let key = CacheKey {
                    lon_e7: r.lon_e7,
                    lat_e7: r.lat_e7,
                };
                let outcome = match r.status.as_str() {
                    "no_result" => LookupOutcome::NoResult,
                    _ => LookupOutcome::Found(Address {
                        address: r.address,
                        road_address: r.road_address,
                        building_name: r.building_name,
                    }),
                };
                found.insert(key, outcome);
            }
        }
        Ok(found)
    }

    /// Caches answers of `provider` (a newer answer replaces an older one).
    pub async fn cache_lookups(
        &self,
        provider: &str,
        answers: &[(CacheKey, LookupOutcome)],
    ) -> Result<()> {
        let now = now_ms();
        for chunk in answers.chunks(CACHE_CHUNK) {
            on_pool!(self, pool => {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO lookup_cache (provider, lon_e7, lat_e7, status, address, \
                     road_address, building_name, fetched_ms) ",
                );
                qb.push_values(chunk, |mut b, (key, outcome)| {
                    let (status, a) = match outcome {
                        LookupOutcome::Found(a) => ("ok", a.clone()),
                        LookupOutcome::NoResult => ("no_result", Address::default()),
                    };
                    b.push_bind(provider)
                        .push_bind(key.lon_e7)
                        .push_bind(key.lat_e7)
                        .push_bind(status)
                        .push_bind(a.address)
                        .push_bind(a.road_address)
                        .push_bind(a.building_name)
                        .push_bind(now);
                });
                qb.push(
                    " ON CONFLICT (provider, lon_e7, lat_e7) DO UPDATE SET status = excluded.status, \
                     address = excluded.address, road_address = excluded.road_address, \
                     building_name = excluded.building_name, fetched_ms = excluded.fetched_ms",
                );
                qb.build().execute(pool).await?;
            });
        }
        Ok(())
    }

    /// One slot of `provider`'s budget, reserved in the database (the SQL of
    /// `lookup::budget`): every process on this store shares the budget.
    pub async fn reserve_budget_slot(
        &self,
        provider: &str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> Result<Result<Slot, BudgetError>> {
        let quota = daily_quota.map(|q| q.min(i64::MAX as u64) as i64);
        let update = match self.backend {
            Backend::Sqlite(_) => BUDGET_UPDATE_SQLITE,
            Backend::Postgres(_) => BUDGET_UPDATE_POSTGRES,
        };
        let reserved: Option<(f64, f64)> = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO provider_budget (provider, tat_ms, seen_ms, day, used) \
                 VALUES ($1, 0, 0, 0, 0) ON CONFLICT (provider) DO NOTHING",
            )
            .bind(provider)
            .execute(pool)
            .await?;
            sqlx::query_as(update)
                .bind(provider)
                .bind(interval_ms.max(0.0))
                .bind(quota)
                .fetch_optional(pool)
                .await?
        });
        if let Some((slot_ms, now_ms)) = reserved {
            return Ok(Ok(Slot {
                at_ms: slot_ms,
                wait: Duration::from_secs_f64(((slot_ms - now_ms) / 1000.0).max(0.0)),
            }));
        }
        // No row updated: today's quota is spent (the row's day is today).
        let day: i64 = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT day FROM provider_budget WHERE provider = $1")
                .bind(provider)
                .fetch_one(pool)
                .await?
        });
        Ok(Err(BudgetError::QuotaExhausted {
            resets_at_ms: (day + 1) * DAY_MS,
        }))
    }

    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let gone = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM results WHERE job_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            let gone = sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            gone
        });
        Ok(gone > 0)
    }
}

/// The budget reservation (see `lookup::budget`): one statement, atomic in either database.
const BUDGET_UPDATE_SQLITE: &str = "UPDATE provider_budget AS b \
     SET used = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END, \
         day = c.day, \
         tat_ms = max(b.tat_ms, c.now_ms) + $2, \
         seen_ms = c.now_ms \
     FROM (SELECT now_ms, CAST(now_ms / 86400000 AS INTEGER) AS day \
           FROM (SELECT (julianday('now') - 2440587.5) * 86400000.0 AS now_ms)) AS c \
     WHERE b.provider = $1 AND ($3 IS NULL OR b.day <> c.day OR b.used < $3) \
     RETURNING tat_ms - $2 AS slot_ms, seen_ms AS now_ms";

const BUDGET_UPDATE_POSTGRES: &str = "UPDATE provider_budget AS b \
     SET used = CASE WHEN b.day = c.day THEN b.used + 1 ELSE 1 END, \
         day = c.day, \
         tat_ms = GREATEST(b.tat_ms, c.now_ms) + $2, \
         seen_ms = c.now_ms \
     FROM (SELECT now_ms, floor(now_ms / 86400000)::bigint AS day \
           FROM (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now_ms) AS t) AS c \
     WHERE b.provider = $1 AND ($3::bigint IS NULL OR b.day <> c.day OR b.used < $3) \
     RETURNING b.tat_ms - $2 AS slot_ms, b.seen_ms AS now_ms";

/// The budget of every provider kept in the store: shared by every process that opens it.
impl BudgetGate for ResultStore {
    fn reserve<'a>(
        &'a self,
        provider: &'a str,
        interval_ms: f64,
        daily_quota: Option<u64>,
    ) -> BoxFuture<'a, Result<Slot, BudgetError>> {
        Box::pin(async move {
            match self
                .reserve_budget_slot(provider, interval_ms, daily_quota)
                .await
            {
                Ok(answer) => answer,
                Err(e) => Err(BudgetError::Unavailable(e.to_string())),
            }
        })
    }
}

/// A point as the lookup cache keys it: WGS84 degrees rounded to 1e-7 (about 1 cm).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub lon_e7: i64,
    pub lat_e7: i64,
}

impl CacheKey {
    pub fn of(lon: f64, lat: f64) -> CacheKey {
        CacheKey {
            lon_e7: (lon * 1e7).round() as i64,
            lat_e7: (lat * 1e7).round() as i64,
        }
    }

    /// The rounded point, (lon, lat) in degrees.
    pub fn degrees(self) -> (f64, f64) {
        (self.lon_e7 as f64 / 1e7, self.lat_e7 as f64 / 1e7)
    }
}

/// Points per cache statement (two parameters each).
const CACHE_CHUNK: usize = 1000;

#[derive(sqlx::FromRow)]
struct CacheRow {
    lon_e7: i64,
    lat_e7: i64,
    status: String,
    address: Option<String>,
    road_address: Option<String>,
    building_name: Option<String>,
}

/// Results written by one statement at most (SQLite allows 32766 bound parameters, 12 a row).
const INSERT_CHUNK: usize = 2500;

/// The one write whose SQL differs between the backends: a bulk insert of results that skips
/// rows already stored and says how many of each kind it added.
trait InsertResults {
    async fn insert_results(
        &mut self,
        id: &str,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored>;
}

impl InsertResults for SqliteConnection {
    async fn insert_results(
        &mut self,
        id: &str,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        // One statement per kind: `rows_affected` then counts each kind separately.
        let mut stored = Stored::default();
        for want_ok in [true, false] {
            let subset: Vec<&RowResult> = rows
                .iter()
                .filter(|r| r.outcome.is_resolved_ok() == want_ok)
                .collect();
            if subset.is_empty() {
                continue;
            }
            let mut qb = QueryBuilder::new(
                "INSERT INTO results (job_id, seq, sheet_no, status, out_x, out_y, error_column, \
                 error_value, error, address, road_address, building_name) ",
            );
            qb.push_values(subset, |mut b, r| {
                let c = Columns::of(r);
                b.push_bind(id)
                    .push_bind(r.seq as i64)
                    .push_bind(sheet_no as i64)
                    .push_bind(c.status)
                    .push_bind(c.x)
                    .push_bind(c.y)
                    .push_bind(c.column)
                    .push_bind(c.raw)
                    .push_bind(c.reason)
                    .push_bind(c.address)
                    .push_bind(c.road_address)
                    .push_bind(c.building_name);
            });
            qb.push(" ON CONFLICT (job_id, seq) DO NOTHING");
            let added = qb.build().execute(&mut *self).await?.rows_affected();
            if want_ok {
                stored.ok += added;
            } else {
                stored.failed += added;
            }
        }
        Ok(stored)
    }
}

impl InsertResults for PgConnection {
    async fn insert_results(
        &mut self,
        id: &str,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        let n = rows.len();
        let mut seq = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let (mut xs, mut ys) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut columns, mut raws, mut reasons) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        let (mut addresses, mut roads, mut buildings) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for r in rows {
            let c = Columns::of(r);
            seq.push(r.seq as i64);
            status.push(c.status);
            xs.push(c.x);
            ys.push(c.y);
            columns.push(c.column);
            raws.push(c.raw);
            reasons.push(c.reason);
            addresses.push(c.address);
            roads.push(c.road_address);
            buildings.push(c.building_name);
        }
        let (ok, failed): (i64, i64) = sqlx::query_as(
            "WITH added AS ( \
                 INSERT INTO results (job_id, seq, sheet_no, status, out_x, out_y, error_column, error_value, error, \
                                      address, road_address, building_name) \
                 SELECT $1, u.seq, $2, u.status, u.out_x, u.out_y, u.error_column, u.error_value, u.error, \
                        u.address, u.road_address, u.building_name \
                 FROM UNNEST($3::bigint[], $4::text[], $5::double precision[], $6::double precision[], \
                             $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[]) \
                      AS u(seq, status, out_x, out_y, error_column, error_value, error, \
                           address, road_address, building_name) \
                 ON CONFLICT (job_id, seq) DO NOTHING \
                 RETURNING status) \
             SELECT COUNT(*) FILTER (WHERE status <> 'error'), COUNT(*) FILTER (WHERE status = 'error') \
             FROM added",
        )
        .bind(id)
        .bind(sheet_no as i64)
        .bind(seq)
        .bind(status)
        .bind(xs)
        .bind(ys)
        .bind(columns)
        .bind(raws)
        .bind(reasons)
        .bind(addresses)
        .bind(roads)
        .bind(buildings)
        .fetch_one(&mut *self)
        .await?;
        Ok(Stored {
            ok: ok as u64,
            failed: failed as u64,
        })
    }
}

/// A result as the columns of `results` hold it.
#[derive(Default)]
struct Columns {
    status: &'static str,
    x: Option<f64>,
    y: Option<f64>,
    column: Option<String>,
    raw: Option<String>,
    reason: Option<String>,
    address: Option<String>,
    road_address: Option<String>,
    building_name: Option<String>,
}

impl Columns {
    fn of(r: &RowResult) -> Columns {
        match &r.outcome {
            Outcome::Point { x, y } => Columns {
                status: "ok",
                x: Some(*x),
                y: Some(*y),
                ..Columns::default()
            },
            Outcome::Located { x, y, address } => {
                let a = address.clone().unwrap_or_default();
                Columns {
                    status: if address.is_some() { "ok" } else { "no_result" },
                    x: Some(*x),
                    y: Some(*y),
                    address: a.address,
                    road_address: a.road_address,
                    building_name: a.building_name,
                    ..Columns::default()
                }
            }
            Outcome::Failed {
                column,
                raw,
                reason,
            } => Columns {
                status: "error",
                x: None,
                y: None,
                column: column.clone(),
                raw: raw.clone(),
                reason: Some(reason.clone()),
                ..Columns::default()
            },
        }
    }
}

// Rows as both backends return them (integers are 64-bit in either schema).

#[derive(sqlx::FromRow)]
struct JobRow {
    id: String,
    label: String,
    state: String,
    options: String,
    source_crs: Option<String>,
    operation: Option<String>,
    total_rows: Option<i64>,
    message: Option<String>,
    output_path: Option<String>,
    created_ms: i64,
    published_ms: Option<i64>,
    resolved_ms: Option<i64>,
    finished_ms: Option<i64>,
    lookup_requests: i64,
    lookup_cache_hits: i64,
}

impl JobRow {
    fn into_record(self) -> Result<JobRecord> {
        Ok(JobRecord {
            state: JobState::parse(&self.state)?,
            id: self.id,
            label: self.label,
            options: self.options,
            source_crs: self.source_crs,
            operation: self.operation,
            total_rows: self.total_rows.map(|n| n as u64),
            message: self.message,
            output_path: self.output_path,
            created_ms: self.created_ms,
            published_ms: self.published_ms,
            resolved_ms: self.resolved_ms,
            finished_ms: self.finished_ms,
            lookup_requests: self.lookup_requests as u64,
            lookup_cache_hits: self.lookup_cache_hits as u64,
        })
    }
}

#[derive(sqlx::FromRow)]
struct FileRow {
    file_no: i64,
    label: String,
    path: String,
    owned: bool,
    layout: Option<String>,
    rows: Option<i64>,
}

impl FileRow {
    fn into_file(self) -> JobFile {
        JobFile {
            file_no: self.file_no as u32,
            label: self.label,
            path: self.path,
            owned: self.owned,
            layout: self.layout,
            rows: self.rows.map(|n| n as u64),
        }
    }
}

#[derive(sqlx::FromRow)]
struct SheetRow {
    sheet_no: i64,
    name: String,
    topic: String,
    rows_total: i64,
    rows_ok: i64,
    rows_failed: i64,
}

impl SheetRow {
    fn into_record(self) -> SheetRecord {
        SheetRecord {
            sheet_no: self.sheet_no as u32,
            name: self.name,
            topic: self.topic,
            rows_total: self.rows_total as u64,
            rows_ok: self.rows_ok as u64,
            rows_failed: self.rows_failed as u64,
        }
    }
}

#[derive(sqlx::FromRow)]
struct ActiveSheetRow {
    job_id: String,
    #[sqlx(flatten)]
    sheet: SheetRow,
}

#[derive(sqlx::FromRow)]
struct ResultRow {
    seq: i64,
    sheet_no: i64,
    status: String,
    out_x: Option<f64>,
    out_y: Option<f64>,
    error_column: Option<String>,
    error_value: Option<String>,
    error: Option<String>,
    address: Option<String>,
    road_address: Option<String>,
    building_name: Option<String>,
}

impl ResultRow {
    fn into_result(self) -> Result<StoredResult> {
        let address = Address {
            address: self.address,
            road_address: self.road_address,
            building_name: self.building_name,
        };
        let outcome = match (self.status.as_str(), self.out_x, self.out_y) {
            ("ok", Some(x), Some(y)) if address == Address::default() => Outcome::Point { x, y },
            ("ok", Some(x), Some(y)) => Outcome::Located {
                x,
                y,
                address: Some(address),
            },
            ("no_result", Some(x), Some(y)) => Outcome::Located {
                x,
                y,
                address: None,
            },
            ("ok" | "no_result", _, _) => {
                return Err(StoreError::Corrupt(format!(
                    "result {} is ok but has no position",
                    self.seq
                )))
            }
            _ => Outcome::Failed {
                column: self.error_column,
                raw: self.error_value,
                reason: self.error.unwrap_or_default(),
            },
        };
        Ok(StoredResult {
            seq: self.seq as u64,
            sheet_no: self.sheet_no as u32,
            outcome,
        })
    }
}
