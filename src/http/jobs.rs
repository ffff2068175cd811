//! Jobs as the API shows them: list, status, download, retry, delete.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::json;

use super::{ApiError, AppState};
use crate::job::{JobId, JobState};
use crate::merge::{self, OutputFormat};
use crate::pipeline::JobError;
use crate::pipeline::LookupEstimate;
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
    /// The first format's result (kept for clients of earlier versions).
    result_url: Option<String>,
    /// Every format's result, once the job is done.
    results: Vec<ResultLink>,
    /// The options given, in short (`from EPSG:5174 · to EPSG:4326 · xlsx,geojson`).
    options: String,
    /// Rows per status (`ok`, `no_result`, `error`, …), once the job is done.
    status_counts: Option<StatusCounts>,
    /// Address lookup and geocoding jobs: requests so far and an estimate of what is left.
    #[serde(skip_serializing_if = "Option::is_none")]
    lookups: Option<LookupEstimate>,
}

/// Jobs whose results are counted at most.
const COUNTED_JOBS: usize = 10_000;

/// A done job's rows per status, counted once per finish (a retry finishes again), so polling
/// the list does not count big jobs over and over.
#[derive(Clone, Default)]
pub(super) struct CountCache(Arc<Mutex<HashMap<JobId, (i64, StatusCounts)>>>);

type StatusCounts = BTreeMap<String, u64>;

impl CountCache {
    async fn get(
        &self,
        store: &crate::store::ResultStore,
        job: &JobRecord,
    ) -> Result<Option<StatusCounts>, ApiError> {
        let Some(finished) = job.finished_ms.filter(|_| job.state == JobState::Done) else {
            return Ok(None);
        };
        if let Some((at, counts)) = self.0.lock().expect("counts").get(&job.id) {
            if *at == finished {
                return Ok(Some(counts.clone()));
            }
        }
        let counts: StatusCounts = store.status_counts(&job.id).await?.into_iter().collect();
        let mut cache = self.0.lock().expect("counts");
        if cache.len() >= COUNTED_JOBS {
            cache.clear();
        }
        cache.insert(job.id.clone(), (finished, counts.clone()));
        Ok(Some(counts))
    }
}

#[derive(Serialize)]
struct ResultLink {
    format: String,
    url: String,
}

/// The options a person set, in one short line; column names quoted.
fn options_short(o: &crate::options::JobOptions) -> String {
    let quoted = |v: &Option<String>| v.as_deref().map(crate::job::quote_short);
    let parts = [
        ("from", o.from.map(|c| c.to_string())),
        ("to", o.to.map(|c| c.to_string())),
        ("x", quoted(&o.read.x_column)),
        ("y", quoted(&o.read.y_column)),
        ("sheet_by", quoted(&o.sheet_by)),
        ("engine", o.engine.map(|e| e.to_string())),
        ("lookup", o.lookup.clone()),
        ("geocode", o.read.geocode.as_ref().map(|g| g.join(","))),
        (
            "providers",
            Some(o.providers.join(",")).filter(|p| !p.is_empty()),
        ),
    ];
    parts
        .into_iter()
        .filter_map(|(name, v)| Some(format!("{name} {}", v?)))
        .chain([o.formats().join(",")])
        .collect::<Vec<_>>()
        .join(" · ")
}

fn job_view(
    job: JobRecord,
    sheets: Vec<SheetRecord>,
    status_counts: Option<StatusCounts>,
) -> JobView {
    let done = sheets.iter().map(|s| s.rows_ok + s.rows_failed).sum();
    let failed = sheets.iter().map(|s| s.rows_failed).sum();
    let done_state = job.state == JobState::Done;
    let results = job
        .options
        .formats()
        .into_iter()
        .filter(|_| done_state)
        .map(|f| ResultLink {
            format: f.to_string(),
            url: format!("/jobs/{}/result.{f}", job.id),
        })
        .collect();
    JobView {
        lookups: LookupEstimate::of(&job, done),
        result_url: done_state
            .then(|| format!("/jobs/{}/result.{}", job.id, job.options.formats()[0])),
        results,
        options: options_short(&job.options),
        status_counts,
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
        let counts = st.counts.get(store, &job).await?;
        out.push(job_view(job, sheets, counts));
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
    let counts = st.counts.get(store, &job).await?;
    Ok(Json(job_view(job, sheets, counts)))
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
/// 409 while it is not finished. `?providers=a,b` (geocoding jobs): its `no_result` rows too,
/// with this provider chain.
pub(super) async fn retry(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    let providers = query
        .iter()
        .find(|(k, _)| k == "providers")
        .map(|(_, v)| v.as_str());
    match st.pipeline.retry_with(&id, providers).await {
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
