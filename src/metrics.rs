//! Prometheus text exposition of this process's counters, the consumer lag its workers see,
//! and the store's view of jobs and sheets. Served on `/metrics` by `serve`, and on
//! `GEOBATCH_METRICS_ADDR` by any process (workers have no other HTTP port).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::pipeline::{Histogram, Pipeline};

fn histogram(out: &mut String, name: &str, help: &str, h: &Histogram) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    let (buckets, count, sum) = h.snapshot();
    for (b, c) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
}

fn counter(out: &mut String, name: &str, help: &str, value: &AtomicU64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
        value.load(Ordering::Relaxed)
    );
}

fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The whole exposition. Store figures cover unfinished jobs only, so the series stay few.
pub async fn render(pipeline: &Pipeline) -> String {
    let c = pipeline.counters();
    let mut out = String::new();
    counter(
        &mut out,
        "geobatch_rows_read_total",
        "Input rows read by intake.",
        &c.rows_read,
    );
    counter(
        &mut out,
        "geobatch_rows_published_total",
        "Rows published to row topics.",
        &c.rows_published,
    );
    counter(
        &mut out,
        "geobatch_rows_converted_total",
        "Rows converted by this process's workers.",
        &c.rows_converted,
    );
    counter(
        &mut out,
        "geobatch_rows_failed_total",
        "Converted rows that ended as errors.",
        &c.rows_failed,
    );
    counter(
        &mut out,
        "geobatch_rows_skipped_total",
        "Redelivered rows skipped because their result was already stored.",
        &c.rows_skipped,
    );
    counter(
        &mut out,
        "geobatch_batches_total",
        "Row batches converted.",
        &c.batches,
    );
    counter(
        &mut out,
        "geobatch_jobs_merged_total",
        "Workbooks written.",
        &c.jobs_merged,
    );
    counter(
        &mut out,
        "geobatch_lookup_cache_hits_total",
        "Rows whose address came from the lookup cache.",
        &c.lookup_cache_hits,
    );
    let stats = pipeline.lookup_stats();
    for (name, help, get) in [
        (
            "geobatch_lookup_requests_total",
            "Requests sent to the address provider (retries included).",
            (|s| s.requests) as fn(&crate::lookup::LookupStats) -> u64,
        ),
        ("geobatch_lookup_retries_total", "Lookup retries.", |s| {
            s.retries
        }),
        (
            "geobatch_lookup_rate_limited_total",
            "HTTP 429 answers from the address provider.",
            |s| s.rate_limited,
        ),
        (
            "geobatch_lookup_server_errors_total",
            "5xx answers from the address provider.",
            |s| s.server_errors,
        ),
        (
            "geobatch_lookup_timeouts_total",
            "Lookups that timed out.",
            |s| s.timeouts,
        ),
        (
            "geobatch_lookup_circuit_opens_total",
            "Times the address provider's circuit breaker opened.",
            |s| s.circuit_opens,
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        for (provider, s) in &stats {
            let _ = writeln!(out, "{name}{{provider=\"{provider}\"}} {}", get(s));
        }
    }
    histogram(
        &mut out,
        "geobatch_transform_seconds",
        "Time to convert one row batch.",
        &c.transform_seconds,
    );

    out.push_str("# HELP geobatch_consumer_lag Messages not yet consumed, per row-topic partition.\n# TYPE geobatch_consumer_lag gauge\n");
    for ((topic, partition), lag) in pipeline.consumer_lag().snapshot() {
        let _ = writeln!(
            out,
            "geobatch_consumer_lag{{topic=\"{}\",partition=\"{partition}\"}} {lag}",
            label(&topic)
        );
    }

    let store = pipeline.store();
    out.push_str("# HELP geobatch_jobs Jobs by state.\n# TYPE geobatch_jobs gauge\n");
    if let Ok(states) = store.job_state_counts().await {
        for (state, n) in states {
            let _ = writeln!(out, "geobatch_jobs{{state=\"{state}\"}} {n}");
        }
    }
    out.push_str("# HELP geobatch_sheet_rows_total Rows of each sheet of unfinished jobs.\n# TYPE geobatch_sheet_rows_total gauge\n");
    let sheets = store.active_sheets().await.unwrap_or_default();
    for (job, s) in &sheets {
        let _ = writeln!(
            out,
            "geobatch_sheet_rows_total{{job_id=\"{job}\",sheet=\"{}\"}} {}",
            label(&s.name),
            s.rows_total
        );
    }
    out.push_str("# HELP geobatch_sheet_rows_done Resolved rows of each sheet of unfinished jobs.\n# TYPE geobatch_sheet_rows_done gauge\n");
    for (job, s) in &sheets {
        let _ = writeln!(
            out,
            "geobatch_sheet_rows_done{{job_id=\"{job}\",sheet=\"{}\"}} {}",
            label(&s.name),
            s.rows_ok + s.rows_failed
        );
    }
    out
}

pub async fn response(pipeline: &Pipeline) -> axum::response::Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(pipeline).await,
    )
        .into_response()
}

/// `/metrics` (and `/healthz`) on an address of its own.
pub async fn serve(
    listener: tokio::net::TcpListener,
    pipeline: Arc<Pipeline>,
    stop: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    tracing::info!("metrics on http://{}/metrics", listener.local_addr()?);
    let app = Router::new()
        .route(
            "/metrics",
            get(
                |axum::extract::State(p): axum::extract::State<Arc<Pipeline>>| async move {
                    response(&p).await
                },
            ),
        )
        .route("/healthz", get(|| async { "ok" }))
        .with_state(pipeline);
    axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await
}
