//! `POST /jobs`: a multipart upload of `file` parts and the job's option fields.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::Json;
use futures::StreamExt;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{ApiError, AppState};
use crate::job::{quote_short, JobId};
use crate::options::{JobOptions, JobSpec, Origin, MAX_OPTION_BYTES};
use crate::pipeline::{JobError, JobInput, Pipeline};

/// Longest stored upload file name, in bytes (the file system's limit is 255).
const MAX_STORED_NAME_BYTES: usize = 120;
/// Longest job label (the upload's name as shown), in characters.
const MAX_LABEL_CHARS: usize = 200;

/// The answer (202) comes only after every file is on disk and the job is recorded.
pub(super) async fn create_job(
    State(st): State<AppState>,
    request: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    let id = JobId::random();
    let dir = st.pipeline.upload_dir(&id);
    let (inputs, fields) = receive(&st, &id, &dir, request).await?;
    let submitted = match job_options(&st, &fields) {
        Ok(options) => st.pipeline.submit(Some(id.clone()), inputs, options).await,
        Err(e) => Err(e),
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

/// The form's option fields, checked as `geobatch convert` checks its flags.
pub(super) fn job_options(
    st: &AppState,
    fields: &[(String, String)],
) -> Result<JobOptions, JobError> {
    let mut ctx = Pipeline::option_context(Origin::Form);
    ctx.templates = st.templates.clone();
    Ok(
        JobSpec::from_fields(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .and_then(|spec| spec.validate(&ctx))?,
    )
}

/// A multipart request's files, stored durably under `dir`, and its text fields; the whole
/// request counted against the upload limit as it streams. On error `dir` is removed.
pub(super) async fn receive(
    st: &AppState,
    id: &JobId,
    dir: &Path,
    request: Request,
) -> Result<(Vec<JobInput>, Vec<(String, String)>), ApiError> {
    let max = st.max_upload;
    // The whole request counts against the limit, as it streams (boundaries and fields too).
    let over = Arc::new(AtomicBool::new(false));
    let (parts, body) = request.into_parts();
    let mut seen: u64 = 0;
    let flag = over.clone();
    let counted = body.into_data_stream().map(move |chunk| {
        let chunk = chunk.map_err(std::io::Error::other)?;
        seen += chunk.len() as u64;
        if seen > max {
            flag.store(true, Ordering::Relaxed);
            return Err(std::io::Error::other("the upload is over the size limit"));
        }
        Ok(chunk)
    });
    let request = Request::from_parts(parts, Body::from_stream(counted));
    let mut multipart = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the upload takes multipart/form-data (a file part and option fields): {e}"),
        )
    })?;
    let result = receive_upload(st, id, dir, &mut multipart)
        .await
        .map_err(|e| {
            if over.load(Ordering::Relaxed) {
                too_large(max)
            } else {
                e
            }
        });
    if result.is_err() {
        let _ = tokio::fs::remove_dir_all(dir).await;
    }
    result
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
        let name: String = field.name().unwrap_or("").chars().take(200).collect();
        if name == "file" {
            let label = field
                .file_name()
                .map(sanitize_file_name)
                .unwrap_or_else(|| format!("upload-{}", inputs.len() + 1));
            tokio::fs::create_dir_all(dir).await.map_err(stored)?;
            let path = dir.join(format!(
                "{}-{}",
                inputs.len(),
                shorten(&label, MAX_STORED_NAME_BYTES)
            ));
            let label = shorten(&label, MAX_LABEL_CHARS * 4);
            let mut out = tokio::fs::File::create(&path).await.map_err(stored)?;
            while let Some(chunk) = field.chunk().await.map_err(|e| {
                bad(format!(
                    "the upload of {} broke off: {e}",
                    quote_short(&label)
                ))
            })? {
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
        // An option is a few bytes; read at most MAX_OPTION_BYTES of one, never the rest.
        let mut value = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| bad(format!("form field {}: {e}", quote_short(&name))))?
        {
            if value.len() + chunk.len() > MAX_OPTION_BYTES {
                return Err(ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message: format!(
                        "form field {} is longer than {MAX_OPTION_BYTES} bytes",
                        quote_short(&name)
                    ),
                    field: JobSpec::docs()
                        .into_iter()
                        .find(|d| d.name == name)
                        .map(|d| d.name),
                });
            }
            value.extend_from_slice(&chunk);
        }
        received += value.len() as u64;
        let value = String::from_utf8(value)
            .map_err(|_| bad(format!("form field {} is not UTF-8", quote_short(&name))))?;
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

/// `name` cut to at most `max` bytes at a character boundary, keeping a short extension.
fn shorten(name: &str, max: usize) -> String {
    if name.len() <= max {
        return name.to_string();
    }
    let ext = name
        .rfind('.')
        .map(|i| &name[i..])
        .filter(|e| e.len() <= 16)
        .unwrap_or("");
    let stem = &name[..name.len() - ext.len()];
    let mut cut = max.saturating_sub(ext.len() + 3).min(stem.len());
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}...{ext}", &stem[..cut])
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_keep_their_extension() {
        let long = format!("{}.csv", "가".repeat(200));
        let s = shorten(&long, MAX_STORED_NAME_BYTES);
        assert!(
            s.len() <= MAX_STORED_NAME_BYTES && s.ends_with("....csv"),
            "{s}"
        );
        assert_eq!(shorten("a.csv", 10), "a.csv");
    }
}
