//! The HTTP front door: upload, job status, download, retry, delete, the options, health,
//! metrics, and the page.

mod assets;
mod auth;
mod jobs;
mod preview;
mod server;
mod upload;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use auth::Tokens;
pub use server::{serve, Timeouts};

use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::options::JobSpec;
use crate::pipeline::{BrokerHealth, JobError, Pipeline};

#[derive(Clone)]
struct AppState {
    pipeline: Arc<Pipeline>,
    max_upload: u64,
    templates: Arc<BTreeMap<String, serde_json::Value>>,
    counts: jobs::CountCache,
}

/// What the routes need besides the pipeline.
#[derive(Clone, Debug, Default)]
pub struct HttpConfig {
    /// The whole request of an upload, in bytes.
    pub max_upload_bytes: u64,
    pub tokens: Tokens,
    /// The operator's named lookup templates.
    pub templates: Arc<BTreeMap<String, serde_json::Value>>,
}

pub fn router(pipeline: Arc<Pipeline>, config: HttpConfig) -> Router {
    let mut router = Router::new();
    // `GET /jobs/{id}/result.<ext>` for every output format.
    for format in crate::merge::formats() {
        router = router.route(
            &format!("/jobs/{{id}}/result.{}", format.extension),
            get(move |State(st): State<AppState>, Path(id): Path<String>| {
                jobs::download(st, id, format)
            }),
        );
    }
    router
        .route("/", get(assets::page))
        .route("/assets/{name}", get(assets::asset))
        .route("/options", get(options))
        .route("/jobs", get(jobs::list).post(upload::create_job))
        .route("/jobs/preview", post(preview::preview))
        .route("/jobs/{id}", get(jobs::status).delete(jobs::delete))
        .route("/jobs/{id}/retry", post(jobs::retry))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        // The upload size is checked while streaming to disk, with a message that says which limit.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(config.tokens),
            auth::require_token,
        ))
        .with_state(AppState {
            pipeline,
            max_upload: config.max_upload_bytes,
            templates: config.templates,
            counts: Default::default(),
        })
}

/// An error a person can act on, as JSON: `{"error": …, "field": …}` (the option it is about,
/// when there is one, so a form can show it there).
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<String>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(field) = self.field {
            body["field"] = json!(field);
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        let field = e.option();
        let status = match &e {
            e if e.is_input_error() => StatusCode::UNPROCESSABLE_ENTITY,
            JobError::NotFound(_) => StatusCode::NOT_FOUND,
            JobError::NotFinished { .. } => StatusCode::CONFLICT,
            JobError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => {
                tracing::error!("{e}");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        ApiError {
            status,
            message: e.to_string(),
            field: field.map(String::from),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        JobError::from(e).into()
    }
}

/// The job options with their help texts, the lookup providers, the operator's template
/// names, the output formats and the CRSs Korean data usually comes in: the form is built from
/// this, so it offers exactly what `--help` does.
async fn options(State(st): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({
        "templates": st.templates.keys().collect::<Vec<_>>(),
        "options": JobSpec::docs(),
        "providers": crate::lookup::providers::names()
            .into_iter()
            .filter(|p| *p != "echo")
            .collect::<Vec<_>>(),
        "formats": crate::options::OUTPUT_FORMATS,
        "likely_crs": preview::LIKELY_CODES
            .iter()
            .filter_map(|&c| crate::convert::crs::Crs::from_epsg(crate::job::Epsg::new(c)).ok())
            .map(|c| json!({ "code": format!("EPSG:{}", c.epsg()), "name": c.name() }))
            .collect::<Vec<_>>(),
    }))
}

/// 200 while the broker answers (or is still being connected to at start-up), 503 with
/// `"broker": "down"` when the last look at it went unanswered.
async fn healthz(State(st): State<AppState>) -> Response {
    let broker = st.pipeline.broker_health();
    let status = if broker == BrokerHealth::Down {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    let overall = if status == StatusCode::OK {
        "ok"
    } else {
        "degraded"
    };
    (
        status,
        Json(json!({ "status": overall, "broker": broker.as_str() })),
    )
        .into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
    crate::metrics::response(&st.pipeline).await
}
