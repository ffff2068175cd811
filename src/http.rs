//! The HTTP front door: upload, job status, download, metrics, and a plain page.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use crate::intake::ReadOptions;
use crate::lookup::TemplateConfig;
use crate::pipeline::{new_job_id, parse_delimiter, JobError, JobInput, JobOptions, Pipeline};
use crate::store::{JobRecord, JobState, SheetRecord};

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    max_upload: u64,
}

pub fn router(pipeline: Arc<Pipeline>, max_upload_bytes: u64) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/jobs", get(list_jobs).post(create_job))
        .route("/jobs/{id}", get(job_status).delete(delete_job))
        .route("/jobs/{id}/result.xlsx", get(download))
        .route("/jobs/{id}/retry", axum::routing::post(retry_job))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The upload size is checked while streaming to disk, with a message that says which limit.
        .layer(DefaultBodyLimit::disable())
        .with_state(AppState {
            pipeline,
            max_upload: max_upload_bytes,
        })
}

/// An error a person can act on, as JSON.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        if e.is_input_error() {
            ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        } else {
            tracing::error!("{e}");
            ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        JobError::from(e).into()
    }
}

#[derive(Serialize)]
struct SheetView {
    name: String,
    rows_total: u64,
    rows_done: u64,
    rows_ok: u64,
    rows_failed: u64,
}

#[derive(Serialize)]
struct JobView {
    id: String,
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
}

fn job_view(job: JobRecord, sheets: Vec<SheetRecord>) -> JobView {
    let done = sheets.iter().map(|s| s.rows_ok + s.rows_failed).sum();
    let failed = sheets.iter().map(|s| s.rows_failed).sum();
    JobView {
        result_url: (job.state == JobState::Done).then(|| format!("/jobs/{}/result.xlsx", job.id)),
        id: job.id,
        label: job.label,
        state: job.state,
        message: job.message,
        source_crs: job.source_crs,
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

async fn list_jobs(State(st): State<AppState>) -> Result<Json<Vec<JobView>>, ApiError> {
    let store = st.pipeline.store();
    let mut out = Vec::new();
    for job in store.jobs().await? {
        let sheets = store.sheets(&job.id).await?;
        out.push(job_view(job, sheets));
    }
    Ok(Json(out))
}

async fn job_status(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    let store = st.pipeline.store();
    let job = store
        .job(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let sheets = store.sheets(&id).await?;
    Ok(Json(job_view(job, sheets)))
}

async fn delete_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if st.pipeline.delete_job(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))
    }
}

/// `POST /jobs/{id}/retry`: re-drives a finished job's error rows (202), 404 for no such job,
/// 409 while it is not finished.
async fn retry_job(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match st.pipeline.retry(&id).await {
        Ok(rows) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "retried_rows": rows, "status_url": format!("/jobs/{id}") })),
        )
            .into_response()),
        Err(JobError::NotFound(_)) => Err(ApiError(StatusCode::NOT_FOUND, format!("no job {id}"))),
        Err(e @ JobError::NotFinished { .. }) => Err(ApiError(StatusCode::CONFLICT, e.to_string())),
        Err(e) => Err(e.into()),
    }
}

async fn download(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let job = st
        .pipeline
        .store()
        .job(&id)
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no job {id}")))?;
    let path = match (job.state, &job.output_path) {
        (JobState::Done, Some(p)) => PathBuf::from(p),
        (JobState::Failed, _) => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "job {id} failed: {}",
                    job.message.unwrap_or_else(|| "no reason recorded".into())
                ),
            ))
        }
        (state, _) => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "job {id} is {}; the workbook is not ready yet",
                    state.as_str()
                ),
            ))
        }
    };
    let file = tokio::fs::File::open(&path).await.map_err(|e| {
        ApiError(
            StatusCode::GONE,
            format!("the workbook of job {id} is gone: {e}"),
        )
    })?;
    let stem = std::path::Path::new(&job.label)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| id.clone());
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
            (
                header::CONTENT_TYPE,
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename=\"{ascii}.xlsx\"; filename*=UTF-8''{}.xlsx",
                    percent_encode(&stem)
                ),
            ),
        ],
        Body::from_stream(tokio_util::io::ReaderStream::new(file)),
    )
        .into_response())
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `POST /jobs`: multipart `file` parts plus option fields named like the CLI flags. The answer
/// (202) comes only after every file is on disk and the job is recorded.
async fn create_job(
    State(st): State<AppState>,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = new_job_id();
    let dir = st.pipeline.upload_dir(&id);
    let result = receive_upload(&st, &id, &dir, &mut multipart).await;
    let (inputs, options) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    match st.pipeline.submit(Some(id.clone()), inputs, options).await {
        Ok(id) => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "status_url": format!("/jobs/{id}") })),
        )),
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            Err(e.into())
        }
    }
}

async fn receive_upload(
    st: &AppState,
    id: &str,
    dir: &std::path::Path,
    multipart: &mut Multipart,
) -> Result<(Vec<JobInput>, JobOptions), ApiError> {
    let bad = |msg: String| ApiError(StatusCode::BAD_REQUEST, msg);
    let mut inputs = Vec::new();
    let mut options = JobOptions::default();
    let mut read = ReadOptions::default();
    let mut received: u64 = 0;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(format!("the upload is not readable multipart: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let label = field
                .file_name()
                .map(sanitize_file_name)
                .unwrap_or_else(|| format!("upload-{}.csv", inputs.len() + 1));
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store the upload: {e}"),
                )
            })?;
            let path = dir.join(format!("{}-{label}", inputs.len()));
            let mut out = tokio::fs::File::create(&path).await.map_err(|e| {
                ApiError(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("cannot store the upload: {e}"),
                )
            })?;
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| bad(format!("the upload of {label} broke off: {e}")))?
            {
                received += chunk.len() as u64;
                if received > st.max_upload {
                    return Err(ApiError(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!(
                            "the upload is larger than {} MiB (GEOBATCH_MAX_UPLOAD_MB)",
                            st.max_upload / (1024 * 1024)
                        ),
                    ));
                }
                out.write_all(&chunk).await.map_err(|e| {
                    ApiError(
                        StatusCode::INSUFFICIENT_STORAGE,
                        format!("cannot store the upload: {e}"),
                    )
                })?;
            }
            // Durable before acknowledged: the 202 promises the job survives a crash.
            out.sync_all().await.map_err(|e| {
                ApiError(
                    StatusCode::INSUFFICIENT_STORAGE,
                    format!("cannot store the upload: {e}"),
                )
            })?;
            inputs.push(JobInput {
                label,
                path,
                owned: true,
            });
            continue;
        }
        let value = field
            .text()
            .await
            .map_err(|e| bad(format!("form field {name}: {e}")))?;
        let value = Some(value.trim().to_string()).filter(|v| !v.is_empty());
        match name.as_str() {
            "from" => options.from = value,
            "to" => options.to = value,
            "x" => read.x_column = value,
            "y" => read.y_column = value,
            "sheet_by" => options.sheet_by = value,
            "encoding" => read.encoding = value,
            "engine" => options.engine = value,
            "lookup" => options.lookup = value.map(|v| v.parse()).transpose().map_err(unprocessable)?,
            "rate" => options.rate = parse_number(&name, value)?,
            "daily_quota" => options.daily_quota = parse_number(&name, value)?,
            "cache_ttl" => options.cache_ttl = parse_number(&name, value)?,
            "lookup_template" => {
                options.lookup_template = value
                    .map(|v| TemplateConfig::from_json(&v))
                    .transpose()
                    .map_err(unprocessable)?
            }
            "delimiter" => {
                read.delimiter = value
                    .map(|v| parse_delimiter(&v))
                    .transpose()
                    .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e))?
            }
            other => {
                return Err(ApiError(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!(
                        "unknown form field {other:?}; fields are file, from, to, x, y, sheet_by, encoding, delimiter, engine, \
                         lookup, rate, daily_quota, cache_ttl, lookup_template"
                    ),
                ))
            }
        }
    }
    if inputs.is_empty() {
        return Err(bad("no file part named \"file\" in the upload".into()));
    }
    if let Ok(dir) = tokio::fs::File::open(dir).await {
        let _ = dir.sync_all().await;
    }
    tracing::debug!(
        job = id,
        files = inputs.len(),
        bytes = received,
        "upload stored"
    );
    options.read = read;
    Ok((inputs, options))
}

/// Keeps the name readable but never a path.
fn unprocessable(msg: String) -> ApiError {
    ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg)
}

/// A numeric form field (empty: unset).
fn parse_number<T: std::str::FromStr>(
    name: &str,
    value: Option<String>,
) -> Result<Option<T>, ApiError> {
    value
        .map(|v| {
            v.parse()
                .map_err(|_| unprocessable(format!("form field {name}: {v:?} is not a number")))
        })
        .transpose()
}

fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == ':' { '_' } else { c })
        .collect();
    let clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() {
        "upload.csv".into()
    } else {
        clean
    }
}

async fn healthz(State(st): State<AppState>) -> Response {
    let broker_up = st.pipeline.bus_ready();
    (
        StatusCode::OK,
        Json(json!({ "status": "ok", "broker": if broker_up { "up" } else { "waiting" } })),
    )
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    crate::metrics::response(&st.pipeline).await
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}
