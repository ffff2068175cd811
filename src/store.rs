//! The result store: jobs, their files and sheets, and one result per input row.
//!
//! Every result write is idempotent per (job, seq) and moves the sheet counters in the same
//! transaction, so a redelivered batch can neither duplicate a row nor skew the progress.

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, SqlitePool};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("result store: {0}")]
    Db(#[from] sqlx::Error),
    #[error("result store migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("result store: {0}")]
    Corrupt(String),
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
    /// `column` None means the position as a whole (both coordinate columns); `raw` None means
    /// "the cells as read", which the merger takes from the input itself.
    Failed {
        column: Option<String>,
        raw: Option<String>,
        reason: String,
    },
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

#[derive(Clone)]
pub struct ResultStore {
    pool: SqlitePool,
}

const JOB_COLUMNS: &str = "id, label, state, options, source_crs, operation, total_rows, message, \
     output_path, created_ms, published_ms, resolved_ms, finished_ms";

impl ResultStore {
    /// Opens (creating if needed) the SQLite store in `data_dir` and applies the migrations.
    pub async fn open_dir(data_dir: &Path) -> Result<ResultStore> {
        let file = data_dir.join("geobatch.db");
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}", file.display()))?
            .create_if_missing(true)
            // WAL + NORMAL survives a killed process (not a power cut) at a fraction of FULL's cost.
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(30))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        Ok(ResultStore { pool })
    }

    pub async fn create_job(&self, job: &NewJob<'_>) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO jobs (id, label, state, options, created_ms) VALUES (?, ?, ?, ?, ?)",
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
                "INSERT INTO job_files (job_id, file_no, label, path, owned) VALUES (?, ?, ?, ?, ?)",
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
        Ok(())
    }

    pub async fn set_state(&self, id: &str, state: JobState, message: Option<&str>) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE jobs SET state = ?, message = COALESCE(?, message), \
             published_ms = CASE WHEN ? = 'running' AND published_ms IS NULL THEN ? ELSE published_ms END, \
             resolved_ms = CASE WHEN ? = 'merging' THEN ? ELSE resolved_ms END, \
             finished_ms = CASE WHEN ? IN ('done', 'failed') THEN ? ELSE finished_ms END \
             WHERE id = ?",
        )
        .bind(state.as_str())
        .bind(message)
        .bind(state.as_str())
        .bind(now)
        .bind(state.as_str())
        .bind(now)
        .bind(state.as_str())
        .bind(now)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_plan(&self, id: &str, source_crs: &str, operation: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET source_crs = ?, operation = ? WHERE id = ?")
            .bind(source_crs)
            .bind(operation)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_output(&self, id: &str, path: &str) -> Result<()> {
        sqlx::query("UPDATE jobs SET output_path = ? WHERE id = ?")
            .bind(path)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn set_file_layout(&self, id: &str, file_no: u32, layout: &str) -> Result<()> {
        sqlx::query("UPDATE job_files SET layout = ? WHERE job_id = ? AND file_no = ?")
            .bind(layout)
            .bind(id)
            .bind(file_no as i64)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a sheet; a re-driven intake finds the same sheets and keeps their counters.
    pub async fn add_sheet(&self, id: &str, sheet_no: u32, name: &str, topic: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO sheets (job_id, sheet_no, name, topic) VALUES (?, ?, ?, ?) \
             ON CONFLICT (job_id, sheet_no) DO NOTHING",
        )
        .bind(id)
        .bind(sheet_no as i64)
        .bind(name)
        .bind(topic)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Intake has read every row: totals per file and sheet, and the job moves to `running`.
    pub async fn finish_intake(
        &self,
        id: &str,
        file_rows: &[(u32, u64)],
        sheet_rows: &[(u32, u64)],
    ) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let mut total = 0u64;
        for (file_no, rows) in file_rows {
            total += rows;
            sqlx::query("UPDATE job_files SET rows = ? WHERE job_id = ? AND file_no = ?")
                .bind(*rows as i64)
                .bind(id)
                .bind(*file_no as i64)
                .execute(&mut *tx)
                .await?;
        }
        for (sheet_no, rows) in sheet_rows {
            sqlx::query("UPDATE sheets SET rows_total = ? WHERE job_id = ? AND sheet_no = ?")
                .bind(*rows as i64)
                .bind(id)
                .bind(*sheet_no as i64)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "UPDATE jobs SET total_rows = ?, state = 'running', \
             published_ms = COALESCE(published_ms, ?) WHERE id = ?",
        )
        .bind(total as i64)
        .bind(now_ms())
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sequence numbers in `[from, to]` that already have a result.
    pub async fn resolved_seqs(&self, id: &str, from: u64, to: u64) -> Result<Vec<u64>> {
        let rows = sqlx::query(
            "SELECT seq FROM results WHERE job_id = ? AND seq BETWEEN ? AND ? ORDER BY seq",
        )
        .bind(id)
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0) as u64).collect())
    }

    /// Up to `limit` resolved sequence numbers from `from` on, in order.
    pub async fn resolved_seqs_from(&self, id: &str, from: u64, limit: u32) -> Result<Vec<u64>> {
        let rows = sqlx::query(
            "SELECT seq FROM results WHERE job_id = ? AND seq >= ? ORDER BY seq LIMIT ?",
        )
        .bind(id)
        .bind(from as i64)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get::<i64, _>(0) as u64).collect())
    }

    /// Stores results of one sheet; rows that already have a result are left as they are.
    pub async fn store_results(
        &self,
        id: &str,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        // SQLite allows 32766 bound parameters per statement; 8 a row.
        const CHUNK: usize = 4000;
        let mut stored = Stored::default();
        if rows.is_empty() {
            return Ok(stored);
        }
        let mut tx = self.pool.begin().await?;
        for want_ok in [true, false] {
            let subset: Vec<&RowResult> = rows
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Point { .. }) == want_ok)
                .collect();
            for chunk in subset.chunks(CHUNK) {
                let mut qb = QueryBuilder::new(
                    "INSERT INTO results (job_id, seq, sheet_no, status, out_x, out_y, error_column, error_value, error) ",
                );
                qb.push_values(chunk, |mut b, r| {
                    b.push_bind(id)
                        .push_bind(r.seq as i64)
                        .push_bind(sheet_no as i64);
                    match &r.outcome {
                        Outcome::Point { x, y } => {
                            b.push_bind("ok")
                                .push_bind(*x)
                                .push_bind(*y)
                                .push_bind(None::<String>)
                                .push_bind(None::<String>)
                                .push_bind(None::<String>);
                        }
                        Outcome::Failed {
                            column,
                            raw,
                            reason,
                        } => {
                            b.push_bind("error")
                                .push_bind(None::<f64>)
                                .push_bind(None::<f64>)
                                .push_bind(column.clone())
                                .push_bind(raw.clone())
                                .push_bind(reason.clone());
                        }
                    }
                });
                qb.push(" ON CONFLICT (job_id, seq) DO NOTHING");
                let added = qb.build().execute(&mut *tx).await?.rows_affected();
                if want_ok {
                    stored.ok += added;
                } else {
                    stored.failed += added;
                }
            }
        }
        if stored.ok + stored.failed > 0 {
            sqlx::query(
                "UPDATE sheets SET rows_ok = rows_ok + ?, rows_failed = rows_failed + ? \
                 WHERE job_id = ? AND sheet_no = ?",
            )
            .bind(stored.ok as i64)
            .bind(stored.failed as i64)
            .bind(id)
            .bind(sheet_no as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    /// Results in input order, `limit` at a time, after `after` (exclusive; None = from the start).
    pub async fn results_page(
        &self,
        id: &str,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>> {
        let rows = sqlx::query(
            "SELECT seq, sheet_no, status, out_x, out_y, error_column, error_value, error \
             FROM results WHERE job_id = ? AND seq > ? ORDER BY seq LIMIT ?",
        )
        .bind(id)
        .bind(after.map(|a| a as i64).unwrap_or(-1))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let status: String = r.get(2);
                let outcome = if status == "ok" {
                    Outcome::Point {
                        x: r.get(3),
                        y: r.get(4),
                    }
                } else {
                    Outcome::Failed {
                        column: r.get(5),
                        raw: r.get(6),
                        reason: r.get::<Option<String>, _>(7).unwrap_or_default(),
                    }
                };
                Ok(StoredResult {
                    seq: r.get::<i64, _>(0) as u64,
                    sheet_no: r.get::<i64, _>(1) as u32,
                    outcome,
                })
            })
            .collect()
    }

    pub async fn job(&self, id: &str) -> Result<Option<JobRecord>> {
        let row = sqlx::query(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| job_from_row(&r)).transpose()
    }

    /// Newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs ORDER BY created_ms DESC, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Jobs that a restart must pick up again, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE state NOT IN ('done', 'failed') ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Running jobs whose every row has a result: ready for the merger.
    pub async fn resolved_jobs(&self) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT j.id FROM jobs j JOIN sheets s ON s.job_id = j.id \
             WHERE j.state = 'running' AND j.total_rows IS NOT NULL \
             GROUP BY j.id, j.total_rows \
             HAVING SUM(s.rows_ok + s.rows_failed) >= j.total_rows \
             UNION \
             SELECT j.id FROM jobs j WHERE j.state = 'running' AND j.total_rows = 0",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    pub async fn files(&self, id: &str) -> Result<Vec<JobFile>> {
        let rows = sqlx::query(
            "SELECT file_no, label, path, owned, layout, rows FROM job_files \
             WHERE job_id = ? ORDER BY file_no",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| JobFile {
                file_no: r.get::<i64, _>(0) as u32,
                label: r.get(1),
                path: r.get(2),
                owned: r.get(3),
                layout: r.get(4),
                rows: r.get::<Option<i64>, _>(5).map(|n| n as u64),
            })
            .collect())
    }

    pub async fn sheets(&self, id: &str) -> Result<Vec<SheetRecord>> {
        let rows = sqlx::query(
            "SELECT sheet_no, name, topic, rows_total, rows_ok, rows_failed FROM sheets \
             WHERE job_id = ? ORDER BY sheet_no",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| SheetRecord {
                sheet_no: r.get::<i64, _>(0) as u32,
                name: r.get(1),
                topic: r.get(2),
                rows_total: r.get::<i64, _>(3) as u64,
                rows_ok: r.get::<i64, _>(4) as u64,
                rows_failed: r.get::<i64, _>(5) as u64,
            })
            .collect())
    }

    /// How many jobs are in each state.
    pub async fn job_state_counts(&self) -> Result<Vec<(String, u64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>(0), r.get::<i64, _>(1) as u64))
            .collect())
    }

    /// Sheets of jobs that are not finished, with their job ids.
    pub async fn active_sheets(&self) -> Result<Vec<(String, SheetRecord)>> {
        let rows = sqlx::query(
            "SELECT s.job_id, s.sheet_no, s.name, s.topic, s.rows_total, s.rows_ok, s.rows_failed \
             FROM sheets s JOIN jobs j ON j.id = s.job_id \
             WHERE j.state NOT IN ('done', 'failed') ORDER BY s.job_id, s.sheet_no",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    SheetRecord {
                        sheet_no: r.get::<i64, _>(1) as u32,
                        name: r.get(2),
                        topic: r.get(3),
                        rows_total: r.get::<i64, _>(4) as u64,
                        rows_ok: r.get::<i64, _>(5) as u64,
                        rows_failed: r.get::<i64, _>(6) as u64,
                    },
                )
            })
            .collect())
    }

    pub async fn delete_job(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM results WHERE job_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = sqlx::query("DELETE FROM jobs WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(gone > 0)
    }
}

fn job_from_row(r: &sqlx::sqlite::SqliteRow) -> Result<JobRecord> {
    Ok(JobRecord {
        id: r.get(0),
        label: r.get(1),
        state: JobState::parse(r.get::<&str, _>(2))?,
        options: r.get(3),
        source_crs: r.get(4),
        operation: r.get(5),
        total_rows: r.get::<Option<i64>, _>(6).map(|n| n as u64),
        message: r.get(7),
        output_path: r.get(8),
        created_ms: r.get(9),
        published_ms: r.get(10),
        resolved_ms: r.get(11),
        finished_ms: r.get(12),
    })
}
