//! The job repository: jobs, their input files and their sheets.

use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{decode_json, now_ms, on_pool, Result, ResultStore, StoreError};
use crate::job::{Epsg, JobId, JobState, Layout};
use crate::options::JobOptions;

/// An input file of a job as stored.
#[derive(Clone, Debug, Serialize)]
pub struct JobFile {
    pub file_no: u32,
    pub label: String,
    pub path: String,
    /// The store owns (and deletes) uploads; a CLI input stays where the user keeps it.
    pub owned: bool,
    /// Found when the job was accepted.
    pub layout: Option<Layout>,
    pub rows: Option<u64>,
}

#[derive(Clone, Debug)]
pub struct JobRecord {
    pub id: JobId,
    pub label: String,
    pub state: JobState,
    pub options: JobOptions,
    pub source_crs: Option<Epsg>,
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
    /// The input file and its table whose rows fill the sheet.
    pub file_no: u32,
    pub table_no: u32,
    pub topic: String,
    pub rows_total: u64,
    pub rows_ok: u64,
    pub rows_failed: u64,
}

pub struct NewSheet<'a> {
    pub sheet_no: u32,
    pub name: &'a str,
    pub topic: &'a str,
    pub file_no: u32,
    pub table_no: u32,
}

pub struct NewJob<'a> {
    pub id: &'a JobId,
    pub label: &'a str,
    pub options: &'a JobOptions,
    pub files: &'a [JobFile],
}

const JOB_COLUMNS: &str = "id, label, state, options, source_crs, operation, total_rows, message, \
     output_path, created_ms, published_ms, resolved_ms, finished_ms, lookup_requests, \
     lookup_cache_hits";

fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data serializes")
}

impl ResultStore {
    pub async fn create_job(&self, job: &NewJob<'_>) -> Result<()> {
        let options = json_text(job.options);
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(
                "INSERT INTO jobs (id, label, state, options, created_ms) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(job.id.as_str())
            .bind(job.label)
            .bind(JobState::Accepted.as_str())
            .bind(&options)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            for f in job.files {
                sqlx::query(
                    "INSERT INTO job_files (job_id, file_no, label, path, owned, layout) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(job.id.as_str())
                .bind(f.file_no as i64)
                .bind(&f.label)
                .bind(&f.path)
                .bind(f.owned)
                .bind(f.layout.as_ref().map(json_text))
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn set_state(
        &self,
        id: &JobId,
        state: JobState,
        message: Option<&str>,
    ) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET state = $1, message = COALESCE($2, message), \
                 published_ms = CASE WHEN $1 = $5 AND published_ms IS NULL THEN $3 ELSE published_ms END, \
                 resolved_ms = CASE WHEN $1 = $6 THEN $3 ELSE resolved_ms END, \
                 finished_ms = CASE WHEN $1 IN ($7, $8) THEN $3 ELSE finished_ms END \
                 WHERE id = $4",
            )
            .bind(state.as_str())
            .bind(message)
            .bind(now_ms())
            .bind(id.as_str())
            .bind(JobState::Running.as_str())
            .bind(JobState::Merging.as_str())
            .bind(JobState::Done.as_str())
            .bind(JobState::Failed.as_str())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Marks a job paused with why and until when (only a job that is not finished).
    pub async fn pause(&self, id: &JobId, message: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "UPDATE jobs SET state = $1, message = $2 WHERE id = $3 AND state NOT IN ($4, $5)",
            )
            .bind(JobState::Paused.as_str())
            .bind(message)
            .bind(id.as_str())
            .bind(JobState::Done.as_str())
            .bind(JobState::Failed.as_str())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A paused job runs again (its pause message goes).
    pub async fn unpause(&self, id: &JobId) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET state = $1, message = NULL WHERE id = $2 AND state = $3")
                .bind(JobState::Running.as_str())
                .bind(id.as_str())
                .bind(JobState::Paused.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn set_plan(&self, id: &JobId, source_crs: Epsg, operation: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET source_crs = $1, operation = $2 WHERE id = $3")
                .bind(source_crs.to_string())
                .bind(operation)
                .bind(id.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn set_output(&self, id: &JobId, path: &str) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query("UPDATE jobs SET output_path = $1 WHERE id = $2")
                .bind(path)
                .bind(id.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// Records a sheet, filled by table `table_no` of file `file_no`; a re-driven intake finds
    /// the same sheets and keeps their counters.
    pub async fn add_sheet(&self, id: &JobId, sheet: &NewSheet<'_>) -> Result<()> {
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sheets (job_id, sheet_no, name, topic, file_no, table_no) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (job_id, sheet_no) DO UPDATE SET file_no = excluded.file_no, \
                 table_no = excluded.table_no",
            )
            .bind(id.as_str())
            .bind(sheet.sheet_no as i64)
            .bind(sheet.name)
            .bind(sheet.topic)
            .bind(sheet.file_no as i64)
            .bind(sheet.table_no as i64)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Intake has read every row: totals per file and sheet, and the job moves to `running`.
    pub async fn finish_intake(
        &self,
        id: &JobId,
        file_rows: &[(u32, u64)],
        sheet_rows: &[(u32, u64)],
    ) -> Result<()> {
        let total: u64 = file_rows.iter().map(|(_, rows)| rows).sum();
        on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            for (file_no, rows) in file_rows {
                sqlx::query("UPDATE job_files SET rows = $1 WHERE job_id = $2 AND file_no = $3")
                    .bind(*rows as i64)
                    .bind(id.as_str())
                    .bind(*file_no as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            for (sheet_no, rows) in sheet_rows {
                sqlx::query("UPDATE sheets SET rows_total = $1 WHERE job_id = $2 AND sheet_no = $3")
                    .bind(*rows as i64)
                    .bind(id.as_str())
                    .bind(*sheet_no as i64)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE jobs SET total_rows = $1, state = $2, \
                 published_ms = COALESCE(published_ms, $3) WHERE id = $4",
            )
            .bind(total as i64)
            .bind(JobState::Running.as_str())
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok(())
    }

    pub async fn job(&self, id: &JobId) -> Result<Option<JobRecord>> {
        let row: Option<JobRow> = on_pool!(self, pool => {
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                .bind(id.as_str())
                .fetch_optional(pool)
                .await?
        });
        row.map(JobRow::into_record).transpose()
    }

    /// Newest first.
    pub async fn jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where("TRUE ORDER BY created_ms DESC, id", &[])
            .await
    }

    /// Jobs that a restart must pick up again, oldest first.
    pub async fn unfinished_jobs(&self) -> Result<Vec<JobRecord>> {
        self.jobs_where(
            "state NOT IN ($1, $2) ORDER BY created_ms, id",
            &[JobState::Done, JobState::Failed],
        )
        .await
    }

    async fn jobs_where(
        &self,
        condition_and_order: &str,
        states: &[JobState],
    ) -> Result<Vec<JobRecord>> {
        let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE {condition_and_order}");
        let rows: Vec<JobRow> = on_pool!(self, pool => {
            let mut q = sqlx::query_as(&sql);
            for s in states {
                q = q.bind(s.as_str());
            }
            q.fetch_all(pool).await?
        });
        rows.into_iter().map(JobRow::into_record).collect()
    }

    /// Running jobs whose every row has a result: ready for the merger.
    pub async fn resolved_jobs(&self) -> Result<Vec<JobId>> {
        let ids: Vec<String> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT j.id FROM jobs j JOIN sheets s ON s.job_id = j.id \
                 WHERE j.state = $1 AND j.total_rows IS NOT NULL \
                 GROUP BY j.id, j.total_rows \
                 HAVING SUM(s.rows_ok + s.rows_failed) >= j.total_rows \
                 UNION \
                 SELECT j.id FROM jobs j WHERE j.state = $1 AND j.total_rows = 0",
            )
            .bind(JobState::Running.as_str())
            .fetch_all(pool)
            .await?
        });
        ids.iter().map(|s| job_id(s)).collect()
    }

    pub async fn files(&self, id: &JobId) -> Result<Vec<JobFile>> {
        let rows: Vec<FileRow> = self
            .of_job(
                "SELECT file_no, label, path, owned, layout, rows FROM job_files \
                 WHERE job_id = $1 ORDER BY file_no",
                id,
            )
            .await?;
        rows.into_iter().map(FileRow::into_file).collect()
    }

    pub async fn sheets(&self, id: &JobId) -> Result<Vec<SheetRecord>> {
        let rows: Vec<SheetRow> = self
            .of_job(
                "SELECT sheet_no, name, topic, file_no, table_no, rows_total, rows_ok, rows_failed FROM sheets \
                 WHERE job_id = $1 ORDER BY sheet_no",
                id,
            )
            .await?;
        Ok(rows.into_iter().map(SheetRow::into_record).collect())
    }

    /// Every row of `sql`, whose one parameter is the job's id.
    async fn of_job<T>(&self, sql: &str, id: &JobId) -> Result<Vec<T>>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        Ok(on_pool!(self, pool => {
            sqlx::query_as(sql).bind(id.as_str()).fetch_all(pool).await?
        }))
    }

    /// How many jobs are in each state.
    pub async fn job_state_counts(&self) -> Result<Vec<(JobState, u64)>> {
        let sql = "SELECT state, COUNT(*) AS n FROM jobs GROUP BY state ORDER BY state";
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(sql).fetch_all(pool).await?
        });
        rows.into_iter()
            .map(|(s, n)| Ok((job_state(&s)?, n as u64)))
            .collect()
    }

    /// Sheets of jobs that are not finished, with their job ids.
    pub async fn active_sheets(&self) -> Result<Vec<(JobId, SheetRecord)>> {
        let sql = "SELECT s.job_id, s.sheet_no, s.name, s.topic, s.file_no, s.table_no, s.rows_total, s.rows_ok, \
                   s.rows_failed FROM sheets s JOIN jobs j ON j.id = s.job_id \
                   WHERE j.state NOT IN ($1, $2) ORDER BY s.job_id, s.sheet_no";
        let rows: Vec<ActiveSheetRow> = on_pool!(self, pool => {
            sqlx::query_as(sql)
                .bind(JobState::Done.as_str())
                .bind(JobState::Failed.as_str())
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|r| Ok((job_id(&r.job_id)?, r.sheet.into_record())))
            .collect()
    }

    /// Adds to a job's lookup counters.
    pub async fn add_lookup_counts(
        &self,
        id: &JobId,
        requests: u64,
        cache_hits: u64,
    ) -> Result<()> {
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
            .bind(id.as_str())
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    pub async fn delete_job(&self, id: &JobId) -> Result<bool> {
        let gone = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM results WHERE job_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let gone = sqlx::query("DELETE FROM jobs WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            gone
        });
        Ok(gone > 0)
    }
}

fn job_id(s: &str) -> Result<JobId> {
    JobId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn job_state(s: &str) -> Result<JobState> {
    s.parse()
        .map_err(|e: crate::job::UnknownText| StoreError::Corrupt(e.to_string()))
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
        let id = job_id(&self.id)?;
        let options = decode_json(&format!("job {id}: options"), &self.options)?;
        let source_crs = self
            .source_crs
            .map(|c| Epsg::parse(&c).map_err(|e| StoreError::Corrupt(format!("job {id}: {e}"))))
            .transpose()?;
        Ok(JobRecord {
            state: job_state(&self.state)?,
            id,
            label: self.label,
            options,
            source_crs,
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
    fn into_file(self) -> Result<JobFile> {
        let layout = self
            .layout
            .map(|l| decode_json(&format!("{}: layout", self.label), &l))
            .transpose()?;
        Ok(JobFile {
            file_no: self.file_no as u32,
            label: self.label,
            path: self.path,
            owned: self.owned,
            layout,
            rows: self.rows.map(|n| n as u64),
        })
    }
}

#[derive(sqlx::FromRow)]
struct SheetRow {
    sheet_no: i64,
    name: String,
    topic: String,
    file_no: i64,
    table_no: i64,
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
            file_no: self.file_no as u32,
            table_no: self.table_no as u32,
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
