//! Jobs as the API shows them: list, status, download, retry, delete.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::job::{JobId, JobState};
use crate::merge::{self, OutputFormat};
use crate::pipeline::JobError;
use crate::secret::percent_encode;
use crate::store::{JobRecord, SheetRecord};

#[derive(Serialize)]
struct SheetView {
    name: String,
    rows_total: u64,
    rows_done: u64,
    rows_ok: u64,
    rows_failed: u64,
}

#[derive(Serialize)]
pub(super) struct JobView {
    id: JobId,
    label: String,
    state: JobState,
    message: Option<String>,
    source_crs: Option<String>,
    total_rows: Option<u64>,
    rows_done: u64,
    rows_failed: u64,
    sheets: Vec<SheetView>,
    created_ms: i64,
    finished_ms: Option<i64>,
    result_url: Option<String>,
    /// Address lookup and geocoding jobs: requests so far and an estimate of what is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    lookups: Option<LookupView>,
}

#[derive(Serialize)]
struct LookupView {
    /// Requests sent to the providers for this job so far.
    requests: u64,
    /// Rows answered by the cache (or by an identical address or point of the same batch).
    cache_hits: u64,
    /// The requests the rows left will need at this job's rate of requests per row so far
    /// (one per row left while none is done): distinct addresses left, as far as seen.
    requests_left_estimate: u64,
    /// Those requests at the budget (the first provider's), in seconds.
    seconds_left_estimate: u64,
    /// With a daily quota: UTC days those requests span.
    #[serde(skip_serializing_if = "Option::is_none")]
    days_left_estimate: Option<u64>,
}

/// What is left of a lookup or geocoding job, at the pace of its rows so far.
fn lookup_view(job: &JobRecord, done: u64) -> Option<LookupView> {
    let options = &job.options;
    let provider = match (&options.lookup, options.geocoders().first()) {
        (Some(p), _) => p.as_str(),
        (None, Some(p)) if options.is_geocode() => p,
        _ => return None,
    };
    let rate = options
        .rate
        .or_else(|| crate::lookup::providers::find(provider).map(|p| p.default_rate_per_sec()))
        .unwrap_or(1.0);
    let left = job.total_rows.unwrap_or(done).saturating_sub(done);
    let asked = job.lookup_requests + job.lookup_cache_hits;
    let requests_left = if asked == 0 {
        left
    } else {
        (left as f64 * job.lookup_requests as f64 / asked as f64).ceil() as u64
    };
    Some(LookupView {
        requests: job.lookup_requests,
        cache_hits: job.lookup_cache_hits,
        requests_left_estimate: requests_left,
        seconds_left_estimate: (requests_left as f64 / rate).ceil() as u64,
        days_left_estimate: options
            .daily_quota
            .map(|q| requests_left.div_ceil(q.max(1))),
    })
}

fn job_view(job: JobRecord, sheets: Vec<SheetRecord>) -> JobView {
    let done = sheets.iter().map(|s| s.rows_ok + s.rows_failed).sum();
    let failed = sheets.iter().map(|s| s.rows_failed).sum();
    JobView {
        lookups: lookup_view(&job, done),
        result_url: (job.state == JobState::Done)
            .then(|| format!("/jobs/{}/result.{}", job.id, job.options.formats()[0])),
        id: job.id,
        label: job.label,
        state: job.state,
        message: job.message,
        source_crs: job.source_crs.map(|c| c.to_string()),
        total_rows: job.total_rows,
        rows_done: done,
        rows_failed: failed,
        sheets: sheets
            .into_iter()
            .map(|s| SheetView {
                name: s.name,
                rows_total: s.rows_total,
                rows_done: s.rows_ok + s.rows_failed,
                rows_ok: s.rows_ok,
                rows_failed: s.rows_failed,
            })
            .collect(),
        created_ms: job.created_ms,
        finished_ms: job.finished_ms,
    }
}

/// A job id from the path: anything malformed is "no such job", before it reaches the store
/// or the disk.
fn job_id(raw: &str) -> Result<JobId, ApiError> {
    JobId::parse(raw).map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "no such job"))
}

fn not_found(id: &JobId) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no job {id}"))
}

pub(super) async fn list(State(st): State<AppState>) -> Result<Json<Vec<JobView>>, ApiError> {
    let store = st.pipeline.store();
    let mut out = Vec::new();
    for job in store.jobs().await? {
        let sheets = store.sheets(&job.id).await?;
        out.push(job_view(job, sheets));
    }
    Ok(Json(out))
}

pub(super) async fn status(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let id = job_id(&id)?;
    let store = st.pipeline.store();
    let job = store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    let sheets = store.sheets(&id).await?;
    Ok(Json(job_view(job, sheets)))
}

pub(super) async fn delete(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = job_id(&id)?;
    if st.pipeline.delete_job(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(not_found(&id))
    }
}

/// `POST /jobs/{id}/retry`: re-drives a finished job's error rows (202), 404 for no such job,
/// 409 while it is not finished.
pub(super) async fn retry(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    match st.pipeline.retry(&id).await {
        Ok(rows) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "retried_rows": rows, "status_url": format!("/jobs/{id}") })),
        )
            .into_response()),
        Err(JobError::NotFound(_)) => Err(not_found(&id)),
        Err(e) => Err(e.into()),
    }
}

/// `GET /jobs/{id}/result.<format>`: the file of one of the job's output formats; 404 for a
/// format the job did not ask for, 409 while it is not done. A CSV result of several sheets is
/// a zip.
pub(super) async fn download(
    st: AppState,
    id: String,
    format: &'static OutputFormat,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let store = st.pipeline.store();
    let job = store.job(&id).await?.ok_or_else(|| not_found(&id))?;
    let ext = format.extension;
    let formats = job.options.formats();
    if !formats.contains(&ext) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "job {id} has no {ext} result; its formats are {} (option format)",
                formats.join(", ")
            ),
        ));
    }
    let stored = match (job.state, &job.output_path) {
        (JobState::Done, Some(p)) => PathBuf::from(p),
        (JobState::Failed, _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "job {id} failed: {}",
                    job.message.unwrap_or_else(|| "no reason recorded".into())
                ),
            ))
        }
        (state, _) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                format!("job {id} is {state}; the {ext} result is not ready yet"),
            ))
        }
    };
    let sheets = store.sheets(&id).await?.len();
    let path = merge::result_path(&stored, &formats, ext, sheets);
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError::new(
            StatusCode::GONE,
            format!("the {ext} result of job {id} is gone: {e}"),
        )
    })?;
    let file_ext = merge::file_extension(ext, sheets);
    let content_type = match file_ext {
        "zip" => "application/zip",
        _ => format.content_type,
    };
    let stem = std::path::Path::new(&job.label)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.to_string());
    let ascii: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{ascii}.{file_ext}\"; filename*=UTF-8''{}.{file_ext}",
                    percent_encode(&stem)
                ),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}
