//! `cargo bench --bench geocode`: a CSV of store addresses whose rows repeat a smaller set of
//! buildings, written as people write them (`…, 3층`, `(주)상호 …`, extra spaces), geocoded
//! with `--geocode 주소` (Kakao) by 4 workers at a budget of 10 requests/s against a fake Kakao
//! Local `search/address` in this process that enforces the budget itself (more than 10
//! requests in any second: HTTP 429).
//!
//! Prints requests against distinct cleaned addresses, achieved requests/s against the budget,
//! 429s received and wall time. GEOBATCH_BENCH_ROWS (default 30,000),
//! GEOBATCH_BENCH_DISTINCT (default 3,000) and GEOBATCH_BENCH_RATE (default 10) change it.

#[path = "common/budget_fake.rs"]
mod budget_fake;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use budget_fake::{bench_dir, env_or, run_convert, serve_fake, BudgetFake};
use serde_json::json;

/// Kakao Local `search/address`: every `… 세종대로 N` is a building at a point of its own.
async fn search_address(
    State(st): State<Arc<BudgetFake>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(too_many) = st.admit() {
        return too_many;
    }
    let query = q
        .iter()
        .find(|(n, _)| n == "query")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let n: f64 = query
        .rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    let (x, y) = (126.97 + n * 1e-5, 37.57 + n * 1e-5);
    Json(json!({
        "meta": {"total_count": 1, "pageable_count": 1, "is_end": true},
        "documents": [{
            "address_name": query, "address_type": "ROAD_ADDR",
            "x": x.to_string(), "y": y.to_string(),
            "address": {"address_name": format!("서울 종로구 세종로 {n}")},
            "road_address": {"address_name": query, "building_name": "", "zone_no": "03154"}
        }]
    }))
    .into_response()
}

fn main() {
    let rows = env_or("GEOBATCH_BENCH_ROWS", 30_000);
    let distinct = env_or("GEOBATCH_BENCH_DISTINCT", 3_000).clamp(1, rows.max(1));
    let rate = env_or("GEOBATCH_BENCH_RATE", 10);
    let dir = bench_dir("bench-geocode");
    let input = dir.join("stores.csv");
    generate(&input, rows, distinct);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = Arc::new(BudgetFake::new(rate as usize));
    let base = serve_fake(
        &runtime,
        "/v2/local/search/address.json",
        search_address,
        state.clone(),
    );

    let output = dir.join("stores.xlsx");
    let rate_text = rate.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        input.as_os_str(),
        "--geocode".as_ref(),
        "주소".as_ref(),
        "--rate".as_ref(),
        rate_text.as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
    ];
    let wall = run_convert(&dir, &base, &args);

    println!("rows {rows}, distinct cleaned addresses {distinct}, 4 workers, budget {rate}/s");
    let requests = state.report(rate);
    println!(
        "requests - distinct cleaned addresses = {}",
        requests as i64 - distinct as i64
    );
    println!("wall time {wall:.1}s");
}

/// Row i is at building `i·7919 mod distinct`, written one of four ways that all clean to
/// `서울특별시 종로구 세종대로 N`.
fn generate(path: &Path, rows: u64, distinct: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    out.write_all("번호,상호,주소\n".as_bytes()).unwrap();
    for i in 0..rows {
        let n = (i * 7919) % distinct + 1;
        let address = match i % 4 {
            0 => format!("서울특별시 종로구 세종대로 {n}"),
            1 => format!("\"서울특별시 종로구 세종대로 {n}, {}층\"", i % 9 + 1),
            2 => format!("(주)가게{i} 서울특별시  종로구 세종대로 {n}"),
            _ => format!("서울특별시 종로구 세종대로 {n} {}호", i % 300 + 101),
        };
        writeln!(out, "{},가게{i},{address}", i + 1).unwrap();
    }
    out.flush().unwrap();
}
