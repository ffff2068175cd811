//! A provider's budget as the provider enforces it, for benches' fake servers: more than
//! `budget` requests in any second is HTTP 429 with `Retry-After: 1`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

#[derive(Default)]
struct Window {
    /// Receipt times of answered requests in the last second.
    recent: VecDeque<Instant>,
    answered: Vec<Instant>,
    too_many: u64,
}

pub struct BudgetFake {
    budget: usize,
    window: Mutex<Window>,
}

impl BudgetFake {
    pub fn new(budget: usize) -> BudgetFake {
        BudgetFake {
            budget,
            window: Mutex::new(Window::default()),
        }
    }

    /// None: the request is within the budget (and counted); else the 429 to send.
    pub fn admit(&self) -> Option<Response> {
        let now = Instant::now();
        let mut w = self.window.lock().unwrap();
        while w
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            w.recent.pop_front();
        }
        if w.recent.len() >= self.budget {
            w.too_many += 1;
            return Some(
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("Retry-After", "1")],
                    Json(json!({"errorType": "RequestThrottled", "message": "too many requests"})),
                )
                    .into_response(),
            );
        }
        w.recent.push_back(now);
        w.answered.push(now);
        None
    }

    /// Prints requests answered, their rate against the budget, and 429s sent.
    pub fn report(&self, rate: u64) -> u64 {
        let w = self.window.lock().unwrap();
        let requests = w.answered.len() as u64;
        let span = match (w.answered.first(), w.answered.last()) {
            (Some(a), Some(b)) if requests > 1 => b.duration_since(*a).as_secs_f64(),
            _ => 0.0,
        };
        // n requests spread over a span hold n - 1 intervals.
        let achieved = if span > 0.0 {
            (requests - 1) as f64 / span
        } else {
            0.0
        };
        println!(
            "requests {requests} in {span:.1}s: {achieved:.2}/s = {:.1}% of the budget",
            achieved / rate as f64 * 100.0
        );
        println!("429s received {}", w.too_many);
        requests
    }
}

pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A bench's scratch directory under the target directory, emptied.
pub fn bench_dir(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves `handler` at `path` on 127.0.0.1 in `runtime`, with `state`; the base URL.
pub fn serve_fake<H, T>(
    runtime: &tokio::runtime::Runtime,
    path: &str,
    handler: H,
    state: std::sync::Arc<BudgetFake>,
) -> String
where
    H: axum::handler::Handler<T, std::sync::Arc<BudgetFake>>,
    T: 'static,
{
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(path, axum::routing::get(handler))
        .with_state(state);
    runtime.spawn(async move { axum::serve(listener, app).await });
    base
}

/// `geobatch convert ARGS` with 4 workers, its data in `dir`, against the fake Kakao at
/// `base`; the wall time in seconds.
pub fn run_convert(dir: &std::path::Path, base: &str, args: &[&std::ffi::OsStr]) -> f64 {
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_geobatch"))
        .args(["convert", "--no-progress"])
        .args(args)
        .env("GEOBATCH_DATA_DIR", dir.join("data"))
        .env("GEOBATCH_LOG", "warn")
        .env("GEOBATCH_WORKERS", "4")
        .env("GEOBATCH_KAKAO_BASE_URL", base)
        .env("KAKAO_REST_API_KEY", "bench-key")
        .status()
        .expect("run geobatch");
    assert!(status.success(), "geobatch convert failed");
    started.elapsed().as_secs_f64()
}
