//! `POST /jobs`: a multipart upload of `file` parts and the job's option fields.

use std::path::Path;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{ApiError, AppState};
use crate::job::JobId;
use crate::options::{JobSpec, Origin};
use crate::pipeline::{JobError, JobInput, Pipeline};

/// The answer (202) comes only after every file is on disk and the job is recorded.
pub(super) async fn create_job(
    State(st): State<AppState>,
    mut multipart: Multipart,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = JobId::random();
    let dir = st.pipeline.upload_dir(&id);
    let result = receive_upload(&st, &id, &dir, &mut multipart).await;
    let (inputs, fields) = match result {
        Ok(v) => v,
        Err(e) => {
            let _ = tokio::fs::remove_dir_all(&dir).await;
            return Err(e);
        }
    };
    let options = JobSpec::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .and_then(|spec| spec.validate(&Pipeline::option_context(Origin::Form)));
    let submitted = match options {
        Ok(options) => st.pipeline.submit(Some(id.clone()), inputs, options).await,
        Err(e) => Err(JobError::from(e)),
    };
    match submitted {
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

/// The files, stored durably, and the text fields.
async fn receive_upload(
    st: &AppState,
    id: &JobId,
    dir: &Path,
    multipart: &mut Multipart,
) -> Result<(Vec<JobInput>, Vec<(String, String)>), ApiError> {
    let bad = |msg: String| ApiError::new(StatusCode::BAD_REQUEST, msg);
    let stored = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("cannot store the upload: {e}"),
        )
    };
    let mut inputs = Vec::new();
    let mut fields = Vec::new();
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
                .unwrap_or_else(|| format!("upload-{}", inputs.len() + 1));
            tokio::fs::create_dir_all(dir).await.map_err(stored)?;
            let path = dir.join(format!("{}-{label}", inputs.len()));
            let mut out = tokio::fs::File::create(&path).await.map_err(stored)?;
            while let Some(chunk) = field
                .chunk()
                .await
                .map_err(|e| bad(format!("the upload of {label} broke off: {e}")))?
            {
                received += chunk.len() as u64;
                if received > st.max_upload {
                    return Err(too_large(st.max_upload));
                }
                out.write_all(&chunk).await.map_err(stored)?;
            }
            // Durable before acknowledged: the 202 promises the job survives a crash.
            out.sync_all().await.map_err(stored)?;
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
        received += value.len() as u64;
        if received > st.max_upload {
            return Err(too_large(st.max_upload));
        }
        fields.push((name, value));
    }
    if inputs.is_empty() {
        return Err(bad("no file part named \"file\" in the upload".into()));
    }
    if let Ok(dir) = tokio::fs::File::open(dir).await {
        let _ = dir.sync_all().await;
    }
    tracing::debug!(
        job = %id,
        files = inputs.len(),
        bytes = received,
        "upload stored"
    );
    Ok((inputs, fields))
}

fn too_large(max: u64) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "the upload is larger than {} MiB (GEOBATCH_MAX_UPLOAD_MB)",
            max / (1024 * 1024)
        ),
    )
}

/// Keeps the name readable but never a path.
fn sanitize_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == ':' { '_' } else { c })
        .collect();
    let clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() {
        "upload".into()
    } else {
        clean
    }
}
