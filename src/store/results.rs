//! One result per input row: written idempotently in bulk, read back in input order.

use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;
use sqlx::QueryBuilder;

use super::{decode_json, on_pool, Result, ResultStore, StoreError};
use crate::job::{Fields, JobId, JobState, Outcome, RowError, RowResult, RowStatus};

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

/// Results written by one statement at most (SQLite allows 32766 bound parameters, 11 a row).
const INSERT_CHUNK: usize = 2500;

impl ResultStore {
    /// The sequence numbers in `[from, to]` that already have a result.
    pub async fn resolved_seqs(&self, id: &JobId, from: u64, to: u64) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT seq FROM results WHERE job_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
            )
            .bind(id.as_str())
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(pool)
            .await?
        });
        Ok(seqs.into_iter().map(|s| s as u64).collect())
    }

    /// Up to `limit` resolved sequence numbers from `from` on, in order.
    pub async fn resolved_seqs_from(&self, id: &JobId, from: u64, limit: u32) -> Result<Vec<u64>> {
        let seqs: Vec<i64> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "SELECT seq FROM results WHERE job_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
            )
            .bind(id.as_str())
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
        id: &JobId,
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
                .bind(id.as_str())
                .bind(sheet_no as i64)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(stored)
    }

    /// How many of a job's rows have each status (`ok`, `no_result`, `error`, …).
    pub async fn status_counts(&self, id: &JobId) -> Result<Vec<(String, u64)>> {
        let rows: Vec<(String, i64)> = on_pool!(self, pool => {
            sqlx::query_as("SELECT status, COUNT(*) FROM results WHERE job_id = $1 GROUP BY status")
                .bind(id.as_str())
                .fetch_all(pool)
                .await?
        });
        Ok(rows.into_iter().map(|(s, n)| (s, n as u64)).collect())
    }

    /// Results in input order, `limit` at a time, after `after` (exclusive; None = from the start).
    pub async fn results_page(
        &self,
        id: &JobId,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<StoredResult>> {
        let rows: Vec<ResultRow> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT seq, sheet_no, status, out_x, out_y, error_column, error_value, error, \
                 fields FROM results WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            )
            .bind(id.as_str())
            .bind(after.map(|a| a as i64).unwrap_or(-1))
            .bind(limit as i64)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter().map(ResultRow::into_result).collect()
    }

    /// Makes a finished job's `error` rows unresolved again (their results deleted, the sheet
    /// counters recounted) and puts the job back to `accepted`; returns how many rows.
    pub async fn reset_failed_rows(&self, id: &JobId) -> Result<u64> {
        self.reset_rows(id, false, None).await
    }

    /// Like [`ResultStore::reset_failed_rows`], and also the `no_result` rows when
    /// `no_result_too`; with `options`, the job's options are replaced in the same
    /// transaction (a retry with another provider chain).
    pub async fn reset_rows(
        &self,
        id: &JobId,
        no_result_too: bool,
        options: Option<&crate::options::JobOptions>,
    ) -> Result<u64> {
        let error = RowStatus::Error.as_str();
        let also = match no_result_too {
            true => RowStatus::NoResult.as_str(),
            false => error,
        };
        let options = options.map(|o| serde_json::to_string(o).expect("options serialize"));
        let reset = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let reset = sqlx::query(
                "DELETE FROM results WHERE job_id = $1 AND (status = $2 OR status = $3)",
            )
            .bind(id.as_str())
            .bind(error)
            .bind(also)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if let Some(options) = &options {
                sqlx::query("UPDATE jobs SET options = $2 WHERE id = $1")
                    .bind(id.as_str())
                    .bind(options)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "UPDATE sheets SET \
                 rows_ok = (SELECT COUNT(*) FROM results r WHERE r.job_id = sheets.job_id \
                            AND r.sheet_no = sheets.sheet_no AND r.status <> $2), \
                 rows_failed = (SELECT COUNT(*) FROM results r WHERE r.job_id = sheets.job_id \
                                AND r.sheet_no = sheets.sheet_no AND r.status = $2) \
                 WHERE job_id = $1",
            )
            .bind(id.as_str())
            .bind(error)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE jobs SET state = $2, message = NULL, resolved_ms = NULL, \
                 finished_ms = NULL WHERE id = $1",
            )
            .bind(id.as_str())
            .bind(JobState::Accepted.as_str())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            reset
        });
        Ok(reset)
    }
}

/// The one write whose SQL differs between the backends: a bulk insert of results that skips
/// rows already stored and says how many of each kind it added.
trait InsertResults {
    async fn insert_results(
        &mut self,
        id: &JobId,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored>;
}

impl InsertResults for SqliteConnection {
    async fn insert_results(
        &mut self,
        id: &JobId,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        // One statement per kind: `rows_affected` then counts each kind separately.
        let mut stored = Stored::default();
        for want_error in [false, true] {
            let subset: Vec<&RowResult> = rows
                .iter()
                .filter(|r| r.outcome.is_error() == want_error)
                .collect();
            if subset.is_empty() {
                continue;
            }
            let mut qb = QueryBuilder::new(
                "INSERT INTO results (job_id, seq, sheet_no, status, out_x, out_y, error_column, \
                 error_value, error, fields) ",
            );
            qb.push_values(subset, |mut b, r| {
                let c = Columns::of(r);
                b.push_bind(id.as_str())
                    .push_bind(r.seq as i64)
                    .push_bind(sheet_no as i64)
                    .push_bind(c.status)
                    .push_bind(c.x)
                    .push_bind(c.y)
                    .push_bind(c.column)
                    .push_bind(c.raw)
                    .push_bind(c.reason)
                    .push_bind(c.fields);
            });
            qb.push(" ON CONFLICT (job_id, seq) DO NOTHING");
            let added = qb.build().execute(&mut *self).await?.rows_affected();
            if want_error {
                stored.failed += added;
            } else {
                stored.ok += added;
            }
        }
        Ok(stored)
    }
}

impl InsertResults for PgConnection {
    async fn insert_results(
        &mut self,
        id: &JobId,
        sheet_no: u32,
        rows: &[RowResult],
    ) -> Result<Stored> {
        let n = rows.len();
        let mut seq = Vec::with_capacity(n);
        let mut status = Vec::with_capacity(n);
        let (mut xs, mut ys) = (Vec::with_capacity(n), Vec::with_capacity(n));
        let (mut columns, mut raws, mut reasons, mut fields) = (
            Vec::with_capacity(n),
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
            fields.push(c.fields);
        }
        let (ok, failed): (i64, i64) = sqlx::query_as(
            "WITH added AS ( \
                 INSERT INTO results (job_id, seq, sheet_no, status, out_x, out_y, error_column, \
                                      error_value, error, fields) \
                 SELECT $1, u.seq, $2, u.status, u.out_x, u.out_y, u.error_column, u.error_value, \
                        u.error, u.fields \
                 FROM UNNEST($3::bigint[], $4::text[], $5::double precision[], $6::double precision[], \
                             $7::text[], $8::text[], $9::text[], $10::text[]) \
                      AS u(seq, status, out_x, out_y, error_column, error_value, error, fields) \
                 ON CONFLICT (job_id, seq) DO NOTHING \
                 RETURNING status) \
             SELECT COUNT(*) FILTER (WHERE status <> $11), COUNT(*) FILTER (WHERE status = $11) \
             FROM added",
        )
        .bind(id.as_str())
        .bind(sheet_no as i64)
        .bind(seq)
        .bind(status)
        .bind(xs)
        .bind(ys)
        .bind(columns)
        .bind(raws)
        .bind(reasons)
        .bind(fields)
        .bind(RowStatus::Error.as_str())
        .fetch_one(&mut *self)
        .await?;
        Ok(Stored {
            ok: ok as u64,
            failed: failed as u64,
        })
    }
}

/// A result as the columns of `results` hold it.
struct Columns {
    status: &'static str,
    x: Option<f64>,
    y: Option<f64>,
    column: Option<String>,
    raw: Option<String>,
    reason: Option<String>,
    /// JSON object of the added columns' values; NULL when there are none.
    fields: Option<String>,
}

impl Columns {
    fn of(r: &RowResult) -> Columns {
        match &r.outcome {
            Outcome::Resolved {
                status,
                point,
                fields,
            } => Columns {
                status: status.as_str(),
                x: point.map(|p| p.0),
                y: point.map(|p| p.1),
                column: None,
                raw: None,
                reason: None,
                fields: (!fields.is_empty()).then(|| {
                    let map: serde_json::Map<String, serde_json::Value> = fields
                        .iter()
                        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                        .collect();
                    serde_json::Value::Object(map).to_string()
                }),
            },
            Outcome::Failed(e) => Columns {
                status: RowStatus::Error.as_str(),
                x: None,
                y: None,
                column: e.column.clone(),
                raw: e.raw.clone(),
                reason: Some(e.reason.clone()),
                fields: None,
            },
        }
    }
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
    fields: Option<String>,
}

impl ResultRow {
    fn into_result(self) -> Result<StoredResult> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("result {}: {what}", self.seq));
        let status: RowStatus = self
            .status
            .parse()
            .map_err(|e: crate::job::UnknownText| corrupt(&e.to_string()))?;
        let outcome = match status {
            RowStatus::Error => Outcome::Failed(RowError {
                column: self.error_column,
                raw: self.error_value,
                reason: self.error.unwrap_or_default(),
            }),
            _ => {
                let point = match (self.out_x, self.out_y) {
                    (Some(x), Some(y)) => Some((x, y)),
                    _ => None,
                };
                if point.is_none() && matches!(status, RowStatus::Ok | RowStatus::Ambiguous) {
                    return Err(corrupt("resolved but has no position"));
                }
                let fields: Fields = match &self.fields {
                    None => Fields::new(),
                    Some(text) => {
                        let map: serde_json::Map<String, serde_json::Value> =
                            decode_json(&format!("result {}: fields", self.seq), text)?;
                        map.into_iter()
                            .filter_map(|(k, v)| match v {
                                serde_json::Value::String(s) => Some((k, s)),
                                _ => None,
                            })
                            .collect()
                    }
                };
                Outcome::Resolved {
                    status,
                    point,
                    fields,
                }
            }
        };
        Ok(StoredResult {
            seq: self.seq as u64,
            sheet_no: self.sheet_no as u32,
            outcome,
        })
    }
}
