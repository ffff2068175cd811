//! `cargo bench --bench lookup`: a LOCALDATA-shaped CSV (EPSG:5174) whose rows repeat the
//! coordinates of a smaller set of buildings (every business in one building shares its
//! point), converted with `--lookup kakao` by 4 workers at a budget of 10 requests/s against a
//! fake Kakao server in this process. The fake enforces the budget itself (more than 10
//! requests in any second: HTTP 429), so 429s received measure how well the budget holds.
//!
//! Prints achieved requests/s against the budget, wall time, 429s received and requests saved
//! by the cache. GEOBATCH_BENCH_ROWS (default 30,000) and GEOBATCH_BENCH_DISTINCT (default
//! 3,000) shrink it; GEOBATCH_BENCH_RATE changes the budget (default 10).

use std::collections::VecDeque;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Fake {
    /// Receipt times of answered requests in the last second.
    window: VecDeque<Instant>,
    answered: Vec<Instant>,
    too_many: u64,
}

struct FakeState {
    budget: usize,
    fake: Mutex<Fake>,
}

async fn coord2address(
    State(st): State<Arc<FakeState>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let now = Instant::now();
    {
        let mut f = st.fake.lock().unwrap();
        while f
            .window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            f.window.pop_front();
        }
        if f.window.len() >= st.budget {
            f.too_many += 1;
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [("Retry-After", "1")],
                Json(json!({"errorType": "RequestThrottled", "message": "too many requests"})),
            )
                .into_response();
        }
        f.window.push_back(now);
        f.answered.push(now);
    }
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (x, y) = (get("x"), get("y"));
    Json(json!({
        "meta": {"total_count": 1},
        "documents": [{
            "road_address": {
                "address_name": format!("서울특별시 종로구 세종대로 {x}"),
                "building_name": format!("빌딩 {y}"),
                "zone_no": "03154"
            },
            "address": {"address_name": format!("서울특별시 종로구 세종로 {y}")}
        }]
    }))
    .into_response()
}

fn main() {
    let rows = env_or("GEOBATCH_BENCH_ROWS", 30_000);
    let distinct = env_or("GEOBATCH_BENCH_DISTINCT", 3_000).clamp(1, rows.max(1));
    let rate = env_or("GEOBATCH_BENCH_RATE", 10);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-lookup");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("localdata.csv");
    generate(&input, rows, distinct);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = Arc::new(FakeState {
        budget: rate as usize,
        fake: Mutex::new(Fake::default()),
    });
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/v2/local/geo/coord2address.json",
            axum::routing::get(coord2address),
        )
        .with_state(state.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });

    let output = dir.join("localdata.xlsx");
    let started = Instant::now();
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_geobatch"))
        .args([
            "convert",
            "--no-progress",
            "--from",
            "EPSG:5174",
            "--lookup",
            "kakao",
        ])
        .args(["--rate", &rate.to_string(), "-o"])
        .arg(&output)
        .arg(&input)
        .env("GEOBATCH_DATA_DIR", dir.join("data"))
        .env("GEOBATCH_LOG", "warn")
        .env("GEOBATCH_WORKERS", "4")
        .env("GEOBATCH_KAKAO_BASE_URL", &base)
        .env("KAKAO_REST_API_KEY", "bench-key")
        .status()
        .expect("run geobatch");
    let wall = started.elapsed().as_secs_f64();
    assert!(status.success(), "geobatch convert failed");

    let f = state.fake.lock().unwrap();
    let requests = f.answered.len() as u64;
    let span = match (f.answered.first(), f.answered.last()) {
        (Some(a), Some(b)) if requests > 1 => b.duration_since(*a).as_secs_f64(),
        _ => 0.0,
    };
    // n requests spread over a span hold n - 1 intervals.
    let achieved = if span > 0.0 {
        (requests - 1) as f64 / span
    } else {
        0.0
    };
    println!("rows {rows}, distinct points {distinct}, 4 workers, budget {rate}/s");
    println!(
        "requests {requests} in {span:.1}s: {achieved:.2}/s = {:.1}% of the budget",
        achieved / rate as f64 * 100.0
    );
    println!("wall time {wall:.1}s");
    println!("429s received {}", f.too_many);
    println!(
        "requests saved by the cache {} ({:.1}% of rows)",
        rows.saturating_sub(requests),
        rows.saturating_sub(requests) as f64 / rows.max(1) as f64 * 100.0
    );
}

/// LOCALDATA columns (CP949), EPSG:5174 points; row i is at building `i·7919 mod distinct`
/// (7919 is prime: every building gets rows, spread through the file).
fn generate(path: &Path, rows: u64, distinct: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let header = "번호,개방서비스명,개방자치단체코드,관리번호,인허가일자,영업상태명,소재지전화,사업장명,업태구분명,좌표정보(x),좌표정보(y)\n";
    out.write_all(&encoding_rs::EUC_KR.encode(header).0)
        .unwrap();
    for i in 0..rows {
        let mut b = (i * 7919) % distinct;
        // Buildings on a grid over Seoul (EPSG:5174 metres), 37 m apart.
        let x = 190_000.0 + (b % 60) as f64 * 37.0;
        b /= 60;
        let y = 440_000.0 + b as f64 * 37.0;
        let line = format!(
            "{},일반음식점,3000000,{:019},2019{:04},영업/정상,02-123-{:04},가게{},한식,{x:.6},{y:.6}\n",
            i + 1,
            i,
            i % 1231 + 101,
            i % 10_000,
            i
        );
        out.write_all(&encoding_rs::EUC_KR.encode(&line).0).unwrap();
    }
    out.flush().unwrap();
}
