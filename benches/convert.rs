//! `cargo bench --bench convert`: generates a LOCALDATA-shaped CSV (CP949, EPSG:5174, a few bad
//! rows), runs `geobatch convert` on the embedded default, and prints rows/s and peak RSS.
//!
//! GEOBATCH_BENCH_ROWS sets the size (default 1,000,000).

use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

mod support;

fn main() {
    let rows = support::rows(1_000_000);
    let dir = support::fresh_dir("bench-convert");
    let input = dir.join("localdata.csv");
    let started = Instant::now();
    generate(&input, rows);
    let size = std::fs::metadata(&input).unwrap().len();
    println!(
        "generated {rows} rows ({:.1} MB, CP949) in {:.1}s",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    let output = dir.join("localdata.xlsx");
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_geobatch"))
        .args(["convert", "--no-progress", "--from", "EPSG:5174", "-o"])
        .arg(&output)
        .arg(&input)
        .env("GEOBATCH_DATA_DIR", dir.join("data"))
        .env("GEOBATCH_LOG", "warn")
        .status()
        .expect("run geobatch");
    let secs = started.elapsed().as_secs_f64();
    assert!(status.success(), "geobatch convert failed");
    println!(
        "convert: {rows} rows in {secs:.1}s = {:.0} rows/s; peak RSS {:.1} MiB; workbook {:.1} MB",
        rows as f64 / secs,
        peak_child_rss_kib() as f64 / 1024.0,
        std::fs::metadata(&output).unwrap().len() as f64 / 1e6
    );
}

/// Peak resident set of the largest child waited for (Linux reports KiB).
fn peak_child_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}

fn generate(path: &Path, rows: u64) {
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let header = "번호,개방서비스명,개방자치단체코드,관리번호,인허가일자,영업상태명,소재지전화,소재지우편번호,소재지전체주소,도로명전체주소,사업장명,업태구분명,좌표정보(x),좌표정보(y)\n";
    out.write_all(&encoding_rs::EUC_KR.encode(header).0)
        .unwrap();
    let mut line = String::new();
    // A deterministic walk over Korea in EPSG:5174 metres; every 997th row is bad.
    for (i, (x, y)) in (0..rows).zip(support::Walk::default()) {
        let (xs, ys) = if i % 997 == 0 {
            ("-".to_string(), String::new())
        } else {
            (format!("{x:.9}"), format!("{y:.9}"))
        };
        line.clear();
        line.push_str(&format!(
            "{},일반음식점,3000000,{:019},2019{:04},영업/정상,02-123-{:04},0{:04},서울특별시 종로구 세종로 {}번지,\"서울특별시 종로구 세종대로 {}, 1층\",가게{},한식,{},{}\n",
            i + 1,
            i,
            i % 1231 + 101,
            i % 10_000,
            i % 10_000,
            i % 500,
            i % 300,
            i,
            xs,
            ys
        ));
        out.write_all(&encoding_rs::EUC_KR.encode(&line).0).unwrap();
    }
    out.flush().unwrap();
}
