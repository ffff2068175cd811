//! `cargo bench --bench lookup`: a LOCALDATA-shaped CSV (EPSG:5174) whose rows repeat the
//! coordinates of a smaller set of buildings (every business in one building shares its
//! point), converted with `--lookup kakao` by 4 workers at a budget of 10 requests/s against a
//! fake Kakao server in this process. The fake enforces the budget itself (more than 10
//! requests in any second: HTTP 429), so 429s received measure how well the budget holds.
//!
//! Prints achieved requests/s against the budget, wall time, 429s received and requests saved
//! by the cache. GEOBATCH_BENCH_ROWS (default 30,000) and GEOBATCH_BENCH_DISTINCT (default
//! 3,000) shrink it; GEOBATCH_BENCH_RATE changes the budget (default 10).

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

async fn coord2address(
    State(st): State<Arc<BudgetFake>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    if let Some(too_many) = st.admit() {
        return too_many;
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
    let dir = bench_dir("bench-lookup");
    let input = dir.join("localdata.csv");
    generate(&input, rows, distinct);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = Arc::new(BudgetFake::new(rate as usize));
    let base = serve_fake(
        &runtime,
        "/v2/local/geo/coord2address.json",
        coord2address,
        state.clone(),
    );

    let output = dir.join("localdata.xlsx");
    let rate_text = rate.to_string();
    let args: Vec<&std::ffi::OsStr> = vec![
        "--from".as_ref(),
        "EPSG:5174".as_ref(),
        "--lookup".as_ref(),
        "kakao".as_ref(),
        "--rate".as_ref(),
        rate_text.as_ref(),
        "-o".as_ref(),
        output.as_os_str(),
        input.as_os_str(),
    ];
    let wall = run_convert(&dir, &base, &args);

    println!("rows {rows}, distinct points {distinct}, 4 workers, budget {rate}/s");
    let requests = state.report(rate);
    println!("wall time {wall:.1}s");
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
